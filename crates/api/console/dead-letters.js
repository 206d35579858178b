// An organization's dead letters: filters, and replay or purge of the chosen ones.

import { all, api, explain } from './api.js';
import { confirmDialog, h, notice, replace, table, time } from './dom.js';

const orgPath = (org) => `/v1/orgs/${encodeURIComponent(org)}`;

/** `datetime-local` input → RFC 3339, or undefined. */
function rfc3339(input) {
  return input.value ? new Date(input.value).toISOString() : undefined;
}

export async function deadLettersPage(main, context, filters = {}, message = null) {
  const { org, readOnly } = context;
  const webhooks = await all(`${orgPath(org)}/webhooks`, 'webhooks');
  const letters = await all(`${orgPath(org)}/dead-letters`, 'dead_letters', {
    webhook_id: filters.webhook_id, since: filters.since, until: filters.until,
  });
  const urlOf = new Map(webhooks.map((w) => [w.id, w.url]));

  const webhook = h('select', { id: 'f-webhook', name: 'webhook_id' },
    h('option', { value: '' }, 'Any webhook'),
    webhooks.map((w) => h('option', { value: w.id }, w.url)));
  webhook.value = filters.webhook_id ?? '';
  const since = h('input', { id: 'f-since', type: 'datetime-local', name: 'since' });
  const until = h('input', { id: 'f-until', type: 'datetime-local', name: 'until' });
  if (filters.sinceLocal) since.value = filters.sinceLocal;
  if (filters.untilLocal) until.value = filters.untilLocal;
  const filterForm = h('form', { class: 'filters', 'aria-label': 'Filter dead letters' },
    h('div', null, h('label', { for: 'f-webhook' }, 'Webhook'), webhook),
    h('div', null, h('label', { for: 'f-since' }, 'Dead since'), since),
    h('div', null, h('label', { for: 'f-until' }, 'Dead before'), until),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary' }, 'Filter')));
  const current = () => ({
    webhook_id: webhook.value || undefined,
    since: rfc3339(since),
    until: rfc3339(until),
    sinceLocal: since.value,
    untilLocal: until.value,
  });
  filterForm.addEventListener('submit', (event) => {
    event.preventDefault();
    deadLettersPage(main, context, current()).catch((e) => replace(main, notice('error', explain(e))));
  });

  const boxes = [];
  const rows = letters.map((d) => {
    const box = h('input', { type: 'checkbox', id: `dl-${d.id}`, value: d.id, 'aria-label': `Choose dead letter ${d.id}` });
    boxes.push(box);
    return h('tr', null,
      h('td', null, box),
      h('td', null, time(d.dead_at)),
      h('td', null, h('code', null, d.reason)),
      h('td', null, d.detail),
      h('td', { class: 'url' }, d.webhook_id ? urlOf.get(d.webhook_id) ?? d.webhook_id : '—'),
      h('td', null, d.event_type ?? '—', d.event_id ? [' ', h('code', null, d.event_id)] : null),
      h('td', null, String(d.attempts)),
      h('td', null, d.truncated ? `${d.body_bytes} bytes (truncated)` : `${d.body_bytes} bytes`));
  });
  const feedback = h('div', { 'aria-live': 'polite' }, message);
  const chosen = () => boxes.filter((b) => b.checked).map((b) => b.value);
  const run = async (work) => {
    const ids = chosen();
    if (!ids.length) {
      replace(feedback, notice('error', 'Choose at least one dead letter first.'));
      return;
    }
    try {
      const done = await work(ids);
      if (done) await deadLettersPage(main, context, current(), done);
    } catch (error) {
      if (error.status === 401) return context.onUnauthorized(error);
      replace(feedback, notice('error', explain(error)));
    }
  };
  const replay = h('button', { type: 'button' }, 'Replay selected');
  replay.addEventListener('click', () => run(async (ids) => {
    const r = await api('POST', `${orgPath(org)}/dead-letters/replay`, { ids });
    const failed = r.failed.map((f) => `${f.id}: ${f.error}`).join('; ');
    return r.failed.length
      ? notice('error', `Replayed ${r.replayed.length}; ${r.failed.length} could not be replayed: ${failed}`)
      : notice('success', `Replayed ${r.replayed.length}.`);
  }));
  const purge = h('button', { type: 'button', class: 'danger' }, 'Purge selected');
  purge.addEventListener('click', () => run(async (ids) => {
    if (!await confirmDialog(`Delete ${ids.length} dead letter(s) for good?`, 'Purge')) return null;
    const r = await api('POST', `${orgPath(org)}/dead-letters/purge`, { ids });
    return notice('success', `Purged ${r.purged}.`);
  }));
  const selectAll = h('button', { type: 'button', class: 'link' }, 'Choose all');
  selectAll.addEventListener('click', () => boxes.forEach((b) => { b.checked = true; }));

  replace(main,
    h('h1', { tabindex: -1 }, 'Dead letters'),
    h('p', { class: 'muted' }, 'Deliveries that failed for good. Replay sends them again with a fresh set of retries; purge deletes them.'),
    filterForm,
    feedback,
    letters.length
      ? [readOnly ? null : h('div', { class: 'actions' }, replay, purge, selectAll),
        table('Dead letters', ['', 'Dead at', 'Reason', 'Detail', 'Webhook', 'Event', 'Attempts', 'Body'], rows)]
      : h('p', { class: 'empty' }, 'No dead letters.'));
}
