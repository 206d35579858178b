// The admin API, with the token of this browser tab's session.

const TOKEN_KEY = 'hookwire.token';
// The API lives one level above the console (`…/console/` → `…/`), proxied prefix or not.
const BASE = new URL('../', document.baseURI);

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** A failed call: the API's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterSecs = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterSecs = retryAfterSecs;
  }
}

/** Calls the API; resolves with the JSON answer (null for 204), rejects with ApiError. */
export async function api(method, path, body, query, extraHeaders) {
  const url = new URL(path.replace(/^\//, ''), BASE);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { ...extraHeaders, Authorization: `Bearer ${session.token ?? ''}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, 'network', 'hookwire did not answer');
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      data?.error?.code ?? `http_${response.status}`,
      data?.error?.message ?? response.statusText,
      Number(response.headers.get('retry-after')) || null,
    );
  }
  return data;
}

/** Every page of a list route, concatenated (`key` names the list in each page). */
export async function all(path, key, query = {}, max = 5000) {
  const items = [];
  let cursor;
  do {
    const page = await api('GET', path, undefined, { ...query, limit: 500, cursor });
    items.push(...page[key]);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

// What each of the API's error codes means to someone using the console.
const MEANINGS = {
  network: 'hookwire could not be reached. Check the connection and try again.',
  unauthorized: 'This token is not accepted. Sign in again with a valid token.',
  token_expired: 'This access token has expired. Ask for a new link or token.',
  forbidden: 'This token may not do that.',
  read_only_token: 'This token is read-only: it can look, not change.',
  not_found: 'Not found: it may have been deleted, or be older than hookwire keeps events.',
  conflict: 'This webhook changed meanwhile. Reload the page and try again.',
  webhook_limit_reached: 'This organization has as many webhooks as it may have. Delete one first.',
  test_event_failed: (message) => {
    const answer = message.replace(/^the test event was not accepted: /, '').replace(/; nothing was saved$/, '');
    return `The receiver did not accept the test event (${answer}), so nothing was saved.`;
  },
  target_refused: 'hookwire does not deliver to that address.',
  invalid_url: 'That URL is not valid: use an http:// or https:// URL without a user name or password.',
  invalid_events: 'Choose at least one event.',
  invalid_description: 'The description is too long (at most 1,000 characters).',
  invalid_selection: 'Choose what to act on first.',
  invalid_time: 'A date is not valid.',
  invalid_filter: 'The filter is not a valid CEL expression.',
  invalid_transform: 'The transform is not a valid CEL expression.',
  transform_error: 'The transform gives no body for this event.',
  invalid_sample: 'The sample event is not valid.',
  invalid_headers: 'A custom header is not allowed or not valid.',
  invalid_retry_policy: 'The retry policy is not allowed.',
  invalid_limits: 'A limit is out of range: max concurrency is 1 to 1,000, the rate limit 1 to 100,000 per second.',
  invalid_range: 'The range is not valid: "From" must be before "To".',
  not_subscribed: 'This webhook does not subscribe to that event type any more, so the event was not resent.',
  filtered: 'The webhook\'s filter refuses that event now, so it was not resent.',
  webhook_disabled: 'This webhook is disabled. Enable it before resending.',
  too_many_test_events: 'Too many test events are in flight. Try again in a moment.',
  request_timeout: 'hookwire took too long to answer. Try again.',
  internal: 'hookwire failed. The server log has the detail.',
};

/** What went wrong, in words: the meaning of the code, then the API's own message. */
export function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error?.message ?? error}`;
  const meaning = MEANINGS[error.code];
  if (!meaning) return `${error.message} (${error.code})`;
  if (typeof meaning === 'function') return meaning(error.message);
  return error.message && error.code !== 'network' ? `${meaning} (${error.message})` : meaning;
}
