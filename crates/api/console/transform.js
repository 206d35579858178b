// A webhook's transform: a CEL expression whose value becomes the JSON body sent, edited
// with a preview beside it of what a sample event of a chosen type would send. The
// preview answers the exact body and the headers; it sends nothing.

import { api, explain } from './api.js';
import { h, notice, replace } from './dom.js';

const enc = encodeURIComponent;

/** The preview's answer: the exact body, then the headers. */
function shown(r) {
  return [
    h('p', { class: 'field-title' }, r.transformed
      ? `Body sent: ${r.body_bytes} bytes, made by the transform`
      : `Body sent: the event's own, ${r.body_bytes} bytes`),
    h('pre', { class: 'preview-body', id: 'transform-preview-body' }, r.body),
    h('p', { class: 'field-title' }, 'Headers'),
    h('dl', { class: 'preview-headers' },
      Object.entries(r.headers).map(([name, value]) => [h('dt', null, h('code', null, name)), h('dd', null, value)])),
  ];
}

/**
 * The transform field and its preview. `webhook` is the current webhook (null for a new
 * one), `org` its organization, `eventTypes` the types a sample may be of.
 * `change(out)` adds what to send: for a new webhook the transform when one is given, for
 * an existing one `transform` when it changed (null removes it).
 */
export function transformEditor(webhook, org, eventTypes) {
  const field = h('textarea', {
    id: 'transform', name: 'transform', rows: 4, spellcheck: 'false', 'aria-describedby': 'transform-hint',
    placeholder: '{"text": "Report finished: " + body.report_run_url}',
  });
  field.value = webhook?.transform ?? '';
  const sample = h('select', { id: 'transform-sample', name: 'transform-sample' },
    eventTypes.map((name) => h('option', { value: name }, name)));
  const previewButton = h('button', { type: 'button', class: 'secondary' }, 'Preview');
  const output = h('div', { id: 'transform-preview', 'aria-live': 'polite' },
    h('p', { class: 'hint' }, 'Preview shows what an example event of the chosen type would send.'));
  previewButton.addEventListener('click', async () => {
    const text = field.value.trim();
    const request = { event_type: sample.value };
    if (text) request.transform = text;
    // Without a transform in the field, the draft route shows the event's own body: the
    // webhook's route would run the transform it has stored.
    const path = webhook && text
      ? `/v1/orgs/${enc(org)}/webhooks/${enc(webhook.id)}/transform/preview`
      : `/v1/orgs/${enc(org)}/webhooks/transform/preview`;
    previewButton.disabled = true;
    try {
      replace(output, shown(await api('POST', path, request)));
    } catch (error) {
      if (error.status === 401) throw error;
      replace(output, notice('error', explain(error)));
    } finally {
      previewButton.disabled = false;
    }
  });
  const element = h('div', { class: 'transform' },
    h('label', { for: 'transform' }, 'Transform (CEL)'),
    field,
    h('p', { id: 'transform-hint', class: 'hint' }, 'The JSON of this expression\'s value, a map or a list over ', h('code', null, 'body'), ' and ', h('code', null, 'event_type'), ', is sent instead of the event\'s body, e.g. for a Slack incoming webhook. Leave it empty to send the event as it is.'),
    h('div', { class: 'preview' },
      h('label', { for: 'transform-sample' }, 'Sample event'),
      h('div', { class: 'actions' }, sample, previewButton),
      output));
  const change = (out) => {
    const text = field.value.trim();
    if (!webhook) {
      if (text) out.transform = text;
    } else if (text !== (webhook.transform ?? '').trim()) {
      out.transform = text || null;
    }
  };
  return { element, change, field };
}
