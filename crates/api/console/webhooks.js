// The webhooks of an organization: the list, "Add New Webhook", and one webhook's page
// with its attempt log, delivery chart, delivery options, resends and actions.

import { api, all, explain } from './api.js';
import { deliveryChart } from './chart.js';
import { confirmDialog, copyButton, h, notice, replace, table, time } from './dom.js';
import { deliveryOptions } from './options.js';

const orgPath = (org) => `/v1/orgs/${encodeURIComponent(org)}`;
const hookPath = (org, id) => `${orgPath(org)}/webhooks/${encodeURIComponent(id)}`;
const hookLink = (org, id) => `#/orgs/${encodeURIComponent(org)}/webhooks/${encodeURIComponent(id)}`;

/** "3 in flight of a limit of 16 (max 256)": the answering node's adaptive limit. */
function concurrencyFact(w) {
  const c = w.circuit;
  if (!c || c.concurrency_limit == null) return 'Not attempted on this node yet';
  const ceiling = w.max_concurrency == null ? '' : ` (max ${w.max_concurrency})`;
  return `${c.in_flight ?? 0} in flight of a limit of ${c.concurrency_limit}${ceiling}`;
}

function health(w) {
  if (w.broken_reason) {
    return h('span', { class: 'pill bad', title: w.broken_reason }, 'Broken: delete it and create it again');
  }
  if (!w.enabled) {
    return h('span', { class: 'pill off' }, w.disabled_reason ? `Disabled: ${w.disabled_reason}` : 'Disabled');
  }
  if (w.failing_since) {
    return h('span', { class: 'pill bad' }, 'Failing since ', time(w.failing_since));
  }
  return h('span', { class: 'pill good' }, 'Healthy');
}

export async function webhooksPage(main, { org, readOnly }) {
  const webhooks = await all(`${orgPath(org)}/webhooks`, 'webhooks');
  const rows = webhooks.map((w) => h('tr', null,
    h('td', { class: 'url' }, h('a', { href: hookLink(org, w.id) }, w.url || w.id)),
    h('td', null, w.description || h('span', { class: 'muted' }, 'No description')),
    h('td', null, w.events.join(', ')),
    h('td', null, w.enabled ? 'Enabled' : 'Disabled'),
    h('td', null, health(w)),
    h('td', null, time(w.last_success_at)),
  ));
  replace(main,
    h('div', { class: 'heading' },
      h('h1', { tabindex: -1 }, 'Webhooks'),
      readOnly ? null : h('a', { class: 'button', href: `#/orgs/${encodeURIComponent(org)}/new` }, 'Add New Webhook')),
    h('p', { class: 'muted' }, `Organization ${org}: hookwire POSTs a signed message to each URL when one of its events happens.`),
    webhooks.length
      ? table(`Webhooks of ${org}`, ['URL', 'Description', 'Events', 'Enabled', 'Health', 'Last success'], rows)
      : h('p', { class: 'empty' }, 'No webhooks yet.'));
}

export async function newWebhookPage(main, { org }) {
  const { event_types: types } = await api('GET', '/v1/event-types');
  const url = h('input', { id: 'url', name: 'url', type: 'url', required: true, placeholder: 'https://example.com/hooks/mode', autocomplete: 'url' });
  const description = h('textarea', { id: 'description', name: 'description', rows: 2, maxlength: 1000 });
  const boxes = types.map((t) => {
    const id = `event-${t.name}`;
    return h('div', { class: 'event' },
      h('input', { type: 'checkbox', id, name: 'events', value: t.name, 'aria-describedby': `${id}-d` }),
      h('label', { for: id }, h('code', null, t.name)),
      h('p', { id: `${id}-d`, class: 'hint' }, t.description));
  });
  const options = deliveryOptions(null, { org, eventTypes: types.filter((t) => !t.operational).map((t) => t.name) });
  const result = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Create Webhook');
  const form = h('form', { class: 'card' },
    h('h1', { tabindex: -1 }, 'Add New Webhook'),
    h('p', { class: 'muted' }, 'hookwire sends a test event to the URL first; the webhook is saved only if the receiver answers it with a 2xx status.'),
    h('label', { for: 'url' }, 'Target URL'), url,
    h('label', { for: 'description' }, 'Description'), description,
    h('fieldset', null, h('legend', null, 'Events'), boxes),
    options.element,
    result,
    h('div', { class: 'actions' }, submit,
      h('a', { class: 'button secondary', href: `#/orgs/${encodeURIComponent(org)}` }, 'Cancel')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const events = [...form.querySelectorAll('input[name=events]:checked')].map((b) => b.value);
    if (!events.length) {
      replace(result, notice('error', 'Choose at least one event.'));
      boxes[0]?.querySelector('input')?.focus();
      return;
    }
    submit.disabled = true;
    replace(result, notice('info', 'Sending a test event…'));
    try {
      const created = await api('POST', `${orgPath(org)}/webhooks`, {
        url: url.value.trim(), description: description.value, events, ...options.changes(),
      });
      replace(main, createdCard(org, created));
      main.querySelector('h1')?.focus();
    } catch (error) {
      replace(result, notice('error', explain(error)));
      submit.disabled = false;
    }
  });
  replace(main, form);
}

function secretBox(secret, title) {
  return h('div', { class: 'secret' },
    h('p', null, h('strong', null, title), ' It is shown only now: store it where your receiver verifies signatures.'),
    h('div', { class: 'copy-row' },
      h('code', { class: 'secret-value', id: 'secret-value' }, secret),
      copyButton(secret, 'Copy secret')));
}

function createdCard(org, created) {
  return h('section', { class: 'card' },
    h('h1', { tabindex: -1 }, 'Webhook created'),
    notice('success', 'The receiver accepted the test event, and the webhook is saved.'),
    h('p', { class: 'url' }, created.url),
    secretBox(created.secret, 'Signing secret.'),
    h('div', { class: 'actions' },
      h('a', { class: 'button', href: hookLink(org, created.id) }, 'Open the webhook'),
      h('a', { class: 'button secondary', href: `#/orgs/${encodeURIComponent(org)}` }, 'Back to webhooks')));
}

function attemptRows(attempts, onResend) {
  return attempts.slice().reverse().slice(0, 200).map((a) => h('tr', null,
    h('td', null, time(a.at)),
    h('td', null, h('code', null, a.event_id)),
    h('td', null, String(a.attempt)),
    h('td', null, h('span', { class: `pill ${a.outcome === 'delivered' ? 'good' : 'bad'}` }, a.outcome)),
    h('td', null, a.status ?? '—'),
    h('td', null, `${a.latency_ms} ms`),
    h('td', { class: 'excerpt' }, a.error ? h('span', { class: 'muted' }, a.error, ' ') : null,
      a.response_excerpt ? h('code', null, a.response_excerpt) : null),
    onResend
      ? h('td', null, h('button', {
        type: 'button', class: 'secondary', 'aria-label': `Resend ${a.event_id}`, onclick: (e) => onResend(a.event_id, e.currentTarget),
      }, 'Resend'))
      : null,
  ));
}

/** The headers of a webhook for its facts: plain ones with values, secret ones by name. */
function headersFact(w) {
  const plain = Object.entries(w.headers ?? {}).map(([k, v]) => `${k}: ${v}`);
  const secret = (w.secret_headers ?? []).map((k) => `${k}: (secret)`);
  const all = [...plain, ...secret];
  return all.length ? all.join(', ') : '—';
}

/** The webhook's own retry policy for its facts; the server's where it sets none. */
function retryFact(w) {
  const r = w.retry;
  if (!r) return 'Server default';
  const schedule = r.schedule ? (r.schedule.length ? r.schedule.join(', ') : 'one attempt only') : 'server default';
  return `schedule ${schedule}; max age ${r.max_age ?? 'server default'}`;
}

/** The webhook's limits for its facts; the server's where it sets none. */
function limitsFact(w) {
  const concurrency = w.max_concurrency ? `at most ${w.max_concurrency} in flight` : 'server\'s concurrency';
  const rate = w.rate_limit_per_sec ? `${w.rate_limit_per_sec} per second` : 'no rate limit';
  return `${concurrency}; ${rate}`;
}

/** The client certificate for its facts: that one is set, until when, and whose; never the key. */
function clientCertificateFact(w) {
  const c = w.client_certificate;
  return c ? `set, expires ${time(c.expires_at)} (${c.subject})` : '—';
}

/** The webhook's own CA certificates for its facts, by subject. */
function caCertificatesFact(w) {
  const cas = w.ca_certificates ?? [];
  return cas.length ? cas.map((c) => `${c.subject} (expires ${time(c.expires_at)})`).join(', ') : '—';
}

/** A `datetime-local` value as RFC 3339 (UTC), or null when empty or invalid. */
function rfc3339(local) {
  const d = new Date(local);
  return local && !Number.isNaN(d.getTime()) ? d.toISOString() : null;
}

/** What a resend did, in words. */
function resendSummary(queued, skipped) {
  const reasons = { not_subscribed: 'not subscribed', filtered: 'filtered out' };
  const skips = skipped.length
    ? ` ${skipped.length} skipped: ${skipped.map((s) => `${s.event_id} (${reasons[s.reason] ?? s.reason})`).join(', ')}.`
    : '';
  return `Resent ${queued.length} event${queued.length === 1 ? '' : 's'}.${skips}`;
}

export async function webhookPage(main, context, id) {
  const { org, readOnly } = context;
  const [w, attempts] = await Promise.all([
    api('GET', hookPath(org, id)),
    all(`${hookPath(org, id)}/attempts`, 'attempts'),
  ]);
  const feedback = h('div', { 'aria-live': 'polite' });
  const reload = () => webhookPage(main, context, id).then(() => main.querySelector('h1')?.focus());
  const act = async (work) => {
    try {
      await work();
    } catch (error) {
      if (error.status === 401) return context.onUnauthorized(error);
      replace(feedback, notice('error', explain(error)));
    }
    return null;
  };

  const sendTest = h('button', { type: 'button', class: 'secondary' }, 'Send test');
  sendTest.addEventListener('click', () => act(async () => {
    sendTest.disabled = true;
    replace(feedback, notice('info', 'Sending a test event…'));
    const r = await api('POST', `${hookPath(org, id)}/test`).finally(() => { sendTest.disabled = false; });
    replace(feedback, r.delivered
      ? notice('success', `The receiver accepted the test event (HTTP ${r.status}, ${r.latency_ms} ms).`)
      : notice('error', `The receiver did not accept the test event: ${r.error ?? `HTTP ${r.status}`}.`));
  }));
  const toggle = h('button', { type: 'button', class: 'secondary' }, w.enabled ? 'Disable' : 'Enable');
  toggle.addEventListener('click', () => act(async () => {
    await api('PATCH', hookPath(org, id), { enabled: !w.enabled, version: w.version });
    await reload();
    replace(main.querySelector('#feedback > div'), notice('success', w.enabled ? 'Webhook disabled.' : 'Webhook enabled.'));
  }));
  const rotate = h('button', { type: 'button', class: 'secondary' }, 'Rotate secret');
  rotate.addEventListener('click', () => act(async () => {
    if (!await confirmDialog('Issue a new signing secret? The current one keeps signing during the grace period.', 'Rotate secret')) return;
    const r = await api('POST', `${hookPath(org, id)}/rotate-secret`, undefined, undefined, { 'If-Match': `"${w.version}"` });
    // The rotation is a change: what this page sends next must name the new version.
    Object.assign(w, await api('GET', hookPath(org, id)));
    replace(feedback, secretBox(r.secret, 'New signing secret.'),
      h('p', { class: 'hint' }, 'The previous secret signs too until ', time(r.previous_valid_until), '.'));
  }));
  const remove = h('button', { type: 'button', class: 'danger' }, 'Delete');
  remove.addEventListener('click', () => act(async () => {
    if (!await confirmDialog(`Delete the webhook to ${w.url}? Deliveries to it stop, and this cannot be undone.`, 'Delete webhook')) return;
    await api('DELETE', hookPath(org, id));
    location.hash = `#/orgs/${encodeURIComponent(org)}`;
  }));
  const refresh = h('button', { type: 'button', class: 'secondary', onclick: reload }, 'Refresh');

  const onResend = readOnly ? null : (eventId, button) => act(async () => {
    button.disabled = true;
    const r = await api('POST', `${hookPath(org, id)}/resend`, { event_id: eventId }).finally(() => { button.disabled = false; });
    replace(feedback, notice('success', `Event ${eventId} resent with its original webhook-id ${r.queued[0]?.message_id ?? ''}.`));
  });

  const options = deliveryOptions(w, { org, eventTypes: w.events });
  const saveOptions = h('button', { type: 'submit' }, 'Save delivery options');
  const optionsFeedback = h('div', { 'aria-live': 'polite' });
  const optionsForm = h('form', { class: 'card' }, options.element, optionsFeedback, h('div', { class: 'actions' }, saveOptions));
  optionsForm.addEventListener('submit', (event) => {
    event.preventDefault();
    return act(async () => {
      const changes = options.changes();
      if (!Object.keys(changes).length) {
        replace(optionsFeedback, notice('info', 'Nothing changed.'));
        return;
      }
      saveOptions.disabled = true;
      try {
        await api('PATCH', hookPath(org, id), { ...changes, version: w.version });
      } catch (error) {
        saveOptions.disabled = false;
        if (error.status === 401) throw error;
        replace(optionsFeedback, notice('error', explain(error)));
        options.filter.focus();
        return;
      }
      await reload();
      replace(main.querySelector('#feedback > div'), notice('success', 'Delivery options saved.'));
    });
  });

  const from = h('input', { id: 'resend-from', type: 'datetime-local', step: 1, required: true });
  const to = h('input', { id: 'resend-to', type: 'datetime-local', step: 1, required: true });
  const resendRange = h('button', { type: 'submit' }, 'Resend range');
  const rangeFeedback = h('div', { 'aria-live': 'polite' });
  const rangeForm = h('form', { class: 'card' },
    h('h2', null, 'Resend events'),
    h('p', { class: 'hint' }, 'Sends again every kept event received in this range, with its original webhook-id, through the normal delivery path. Events are kept for the retention hookwire is configured with (seven days by default).'),
    h('div', { class: 'range' },
      h('div', null, h('label', { for: 'resend-from' }, 'From'), from),
      h('div', null, h('label', { for: 'resend-to' }, 'To'), to)),
    rangeFeedback,
    h('div', { class: 'actions' }, resendRange));
  rangeForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const [start, end] = [rfc3339(from.value), rfc3339(to.value)];
    if (!start || !end) {
      replace(rangeFeedback, notice('error', 'Give both times.'));
      return null;
    }
    return act(async () => {
      resendRange.disabled = true;
      replace(rangeFeedback, notice('info', 'Resending…'));
      const queued = [];
      const skipped = [];
      try {
        let cursor = null;
        for (;;) {
          let page;
          try {
            page = await api('POST', `${hookPath(org, id)}/resend`, { from: start, to: end, cursor });
          } catch (error) {
            if (error.status !== 429) throw error;
            // The resend budget is used up: wait as the API says, then carry on.
            replace(rangeFeedback, notice('info', `Resending… ${queued.length} queued so far; waiting for the resend budget.`));
            await new Promise((resolve) => { setTimeout(resolve, 1000 * (error.retryAfterSecs ?? 1)); });
            continue;
          }
          queued.push(...page.queued);
          skipped.push(...page.skipped);
          cursor = page.next_cursor;
          if (!cursor) break;
        }
        replace(rangeFeedback, notice('success', resendSummary(queued, skipped)));
      } catch (error) {
        if (error.status === 401) throw error;
        replace(rangeFeedback, notice('error', explain(error), queued.length ? ` ${resendSummary(queued, skipped)}` : ''));
      } finally {
        resendRange.disabled = false;
      }
    });
  });

  const facts = [
    ...(w.broken_reason ? [['Broken', w.broken_reason]] : []),
    ['Description', w.description || '—'],
    ['Events', w.events.join(', ')],
    ['Filter', w.filter ? h('code', null, w.filter) : '—'],
    ['Transform', w.transform ? h('code', null, w.transform) : '—'],
    ['Headers', headersFact(w)],
    ['Client certificate', clientCertificateFact(w)],
    ['CA certificates', caCertificatesFact(w)],
    ['Retry policy', retryFact(w)],
    ['Limits', limitsFact(w)],
    ['Enabled', w.enabled ? 'Yes' : 'No'],
    ['Disabled reason', w.disabled_reason ?? '—'],
    ['Failing since', time(w.failing_since)],
    ['Consecutive failures', String(w.consecutive_failures)],
    ['Last success', time(w.last_success_at)],
    ['Circuit', w.circuit ? w.circuit.state.replace('_', '-') : '—'],
    ['Concurrency', concurrencyFact(w)],
    ['Created', time(w.created_at)],
  ];
  replace(main,
    h('p', null, h('a', { href: `#/orgs/${encodeURIComponent(org)}` }, '← All webhooks')),
    h('div', { class: 'heading' }, h('h1', { tabindex: -1, class: 'url' }, w.url || w.id), health(w)),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    readOnly ? null : h('div', { class: 'actions' }, sendTest, toggle, rotate, remove),
    h('div', { id: 'feedback' }, feedback),
    h('section', null,
      h('div', { class: 'heading' }, h('h2', null, 'Deliveries'), refresh),
      deliveryChart(attempts)),
    h('section', null,
      h('h2', null, 'Attempt log'),
      attempts.length
        ? table('Attempts, newest first',
          ['Time', 'Event', 'Attempt', 'Outcome', 'Status', 'Latency', 'Response', ...(readOnly ? [] : [''])],
          attemptRows(attempts, onResend))
        : h('p', { class: 'empty' }, 'No attempts yet.')),
    readOnly ? null : h('section', null, h('h2', null, 'Delivery options'), optionsForm),
    readOnly ? null : h('section', null, rangeForm));
}
