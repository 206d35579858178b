// A webhook's delivery options in a form: its CEL filter and transform, its custom
// headers, its own retry policy (a schedule of the configured tiers and a max age) and its
// limits (attempts in flight at once, deliveries per second). Secret
// header values are write-only: the API never returns them, so an existing secret header
// shows its name and an empty field that replaces the value only when filled.

import { h } from './dom.js';
import { transformEditor } from './transform.js';

let rows = 0;

/** One header row: a name (fixed for an existing header), a value, secret or not. */
function headerRow({ name, value, secret, existing }, list) {
  const n = ++rows;
  const nameInput = existing
    ? null
    : h('input', { id: `header-name-${n}`, class: 'header-name', placeholder: 'X-Api-Key', autocomplete: 'off', spellcheck: 'false' });
  const valueInput = h('input', {
    id: `header-value-${n}`,
    class: 'header-value',
    type: secret ? 'password' : 'text',
    value: value ?? '',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: secret && existing ? 'Unchanged (secret)' : '',
  });
  const secretBox = existing
    ? null
    : h('input', { type: 'checkbox', id: `header-secret-${n}`, class: 'header-secret' });
  secretBox?.addEventListener('change', () => { valueInput.type = secretBox.checked ? 'password' : 'text'; });
  const label = existing ? name : 'new header';
  const remove = h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove header ${label}` }, 'Remove');
  const row = h('div', { class: 'header-row' },
    existing
      ? h('code', { class: 'header-name' }, name, secret ? ' (secret)' : '')
      : [h('label', { for: nameInput.id, class: 'visually-hidden' }, 'Header name'), nameInput],
    h('label', { for: valueInput.id, class: 'visually-hidden' }, existing ? `Value of ${name}` : 'Header value'),
    valueInput,
    secretBox ? [secretBox, h('label', { for: secretBox.id }, 'Secret')] : null,
    remove);
  const entry = {
    row,
    removed: false,
    existing,
    secret: () => (existing ? secret : secretBox.checked),
    name: () => (existing ? name : nameInput.value.trim()),
    value: () => valueInput.value,
    originalValue: value,
  };
  remove.addEventListener('click', () => {
    entry.removed = true;
    row.remove();
    list.focus();
  });
  return entry;
}

/** Comma-separated delays as a list: `5s, 2m` → ['5s', '2m']. */
function delays(text) {
  return text.split(',').map((d) => d.trim()).filter(Boolean);
}

/**
 * The filter, transform, headers and retry policy fields. `webhook` is the current webhook
 * (null for a new one); `org` and `eventTypes` are what the transform's preview needs.
 * `changes()` returns what to send: for a new webhook `{filter, headers, secret_headers}`,
 * for an existing one only what changed (`filter`, and headers to set or remove with null).
 */
export function deliveryOptions(webhook, { org, eventTypes }) {
  const transform = transformEditor(webhook, org, eventTypes);
  const filter = h('textarea', {
    id: 'filter', name: 'filter', rows: 2, spellcheck: 'false', 'aria-describedby': 'filter-hint',
    placeholder: 'body.report_run_url.startsWith("https://modeanalytics.com/api/acme/spaces/finance/")',
  });
  filter.value = webhook?.filter ?? '';
  const list = h('div', { class: 'header-list', tabindex: -1 });
  const entries = [];
  const add = (spec) => {
    const entry = headerRow(spec, list);
    entries.push(entry);
    list.append(entry.row);
    return entry;
  };
  for (const [name, value] of Object.entries(webhook?.headers ?? {})) add({ name, value, secret: false, existing: true });
  for (const name of webhook?.secret_headers ?? []) add({ name, value: '', secret: true, existing: true });
  const addButton = h('button', { type: 'button', class: 'secondary' }, 'Add header');
  addButton.addEventListener('click', () => {
    const entry = add({ existing: false });
    entry.row.querySelector('input')?.focus();
  });
  const schedule = h('input', {
    id: 'retry-schedule', name: 'retry-schedule', autocomplete: 'off', spellcheck: 'false',
    placeholder: '5s, 2m', 'aria-describedby': 'retry-hint',
  });
  schedule.value = (webhook?.retry?.schedule ?? []).join(', ');
  const maxAge = h('input', {
    id: 'retry-max-age', name: 'retry-max-age', autocomplete: 'off', spellcheck: 'false',
    placeholder: '1h', 'aria-describedby': 'retry-hint',
  });
  maxAge.value = webhook?.retry?.max_age ?? '';
  // No min or max: the API's `invalid_limits` names the range, as for every other field.
  const limit = (id) => h('input', { id, name: id, type: 'number', step: 1, inputmode: 'numeric', 'aria-describedby': 'limits-hint' });
  const concurrency = limit('max-concurrency');
  concurrency.value = webhook?.max_concurrency ?? '';
  const rate = limit('rate-limit');
  rate.value = webhook?.rate_limit_per_sec ?? '';
  const element = h('fieldset', { class: 'options' },
    h('legend', null, 'Delivery options'),
    h('label', { for: 'filter' }, 'Filter (CEL)'),
    filter,
    h('p', { id: 'filter-hint', class: 'hint' }, 'Only events for which this expression over ', h('code', null, 'body'), ' and ', h('code', null, 'event_type'), ' is true are delivered. Leave it empty to deliver every event.'),
    transform.element,
    h('p', { class: 'field-title' }, 'Custom headers'),
    h('p', { class: 'hint' }, 'Added to every request. Secret values are stored encrypted and never shown again.'),
    list,
    addButton,
    h('p', { class: 'field-title' }, 'Retry policy'),
    h('label', { for: 'retry-schedule' }, 'Retry schedule'),
    schedule,
    h('label', { for: 'retry-max-age' }, 'Max age'),
    maxAge,
    h('p', { id: 'retry-hint', class: 'hint' }, 'A shorter schedule than the server\'s: the waits between attempts, each one of its configured retry tiers. Deliveries older than the max age are dead-lettered as expired. Leave a field empty to use the server\'s.'),
    h('p', { class: 'field-title' }, 'Limits'),
    h('label', { for: 'max-concurrency' }, 'Max concurrency'),
    concurrency,
    h('label', { for: 'rate-limit' }, 'Rate limit (per second)'),
    rate,
    h('p', { id: 'limits-hint', class: 'hint' }, 'At most this many deliveries in flight at once (1 to 1,000; empty: the server\'s ceiling), and per second (1 to 100,000; empty: unlimited). Once set, a limit can be changed but not removed.'));

  /** The limits to send: those given, and for an existing webhook only those changed. */
  const limits = () => {
    const out = {};
    for (const [field, input] of [['max_concurrency', concurrency], ['rate_limit_per_sec', rate]]) {
      const text = input.value.trim();
      const value = text === '' ? null : Number(text);
      if (value !== null && value !== (webhook?.[field] ?? null)) out[field] = value;
    }
    return out;
  };

  /** The `retry` object of a request: set parts, and for an existing webhook null for cleared ones. */
  const retry = () => {
    const out = {};
    const [text, age] = [schedule.value.trim(), maxAge.value.trim()];
    if (!webhook) {
      if (text) out.schedule = delays(text);
      if (age) out.max_age = age;
    } else {
      if (delays(text).join(',') !== (webhook.retry?.schedule ?? []).join(',')) out.schedule = text ? delays(text) : null;
      if (age !== (webhook.retry?.max_age ?? '')) out.max_age = age || null;
    }
    return Object.keys(out).length ? out : null;
  };

  const changes = () => {
    const text = filter.value.trim();
    const out = {};
    if (!webhook) {
      if (text) out.filter = text;
      transform.change(out);
      const headers = {};
      const secrets = {};
      for (const e of entries) {
        if (e.removed || !e.name()) continue;
        (e.secret() ? secrets : headers)[e.name()] = e.value();
      }
      if (Object.keys(headers).length) out.headers = headers;
      if (Object.keys(secrets).length) out.secret_headers = secrets;
      if (retry()) out.retry = retry();
      return { ...out, ...limits() };
    }
    if (text !== (webhook.filter ?? '')) out.filter = text || null;
    transform.change(out);
    const headers = {};
    const secrets = {};
    for (const e of entries) {
      const name = e.name();
      if (!name) continue;
      const target = e.secret() ? secrets : headers;
      if (e.existing && e.removed) target[name] = null;
      else if (e.removed) continue;
      else if (!e.existing) target[name] = e.value();
      else if (e.secret() && e.value()) target[name] = e.value();
      else if (!e.secret() && e.value() !== e.originalValue) target[name] = e.value();
    }
    if (Object.keys(headers).length) out.headers = headers;
    if (Object.keys(secrets).length) out.secret_headers = secrets;
    if (retry()) out.retry = retry();
    return { ...out, ...limits() };
  };
  return { element, changes, filter };
}
