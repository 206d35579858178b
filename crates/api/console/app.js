// The console's entry: sign-in, the header with the organization picker, and the router.
// Addresses are `#/orgs/{org}` (webhooks), `#/orgs/{org}/new`, `#/orgs/{org}/webhooks/{id}`
// and `#/orgs/{org}/dead-letters`.

import { api, all, explain, session } from './api.js';
import { confirmDialog, h, notice, replace } from './dom.js';
import { deadLettersPage } from './dead-letters.js';
import { newWebhookPage, webhookPage, webhooksPage } from './webhooks.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let me = null;

/** The token a link carries as `#token=…` (the embed case), removed from the address bar
 * and the history at once, so that it is neither bookmarked nor shown. */
function takeTokenFromAddress() {
  const match = /^#token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

/** A token from the address is taken when the page loads, never later: a crafted link
 * followed inside a signed-in tab must not switch it to another organization unseen. A
 * signed-in session is replaced only when the user says so. */
async function signInFromAddress() {
  const offered = takeTokenFromAddress();
  if (!offered || offered === session.token) return;
  if (session.token && !(await confirmDialog(
    'This link signs in with another token. Sign out of the current session and use the link’s token?',
    'Use the link’s token'))) return;
  session.set(offered);
}

function signInPage(message) {
  top.replaceChildren(h('span', { class: 'brand' }, 'hookwire'));
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const status = h('div');
  const form = h('form', { class: 'card narrow' },
    h('h1', { tabindex: -1 }, 'Sign in'),
    message ? notice('error', message) : null,
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { class: 'hint' }, 'An operator token or an organization access token. It is kept for this browser tab only, until you sign out or close it.'),
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    session.set(input.value.trim());
    try {
      me = await api('GET', '/v1/whoami');
      await route();
    } catch (error) {
      session.clear();
      replace(status, notice('error', explain(error)));
      input.focus();
    }
  });
  replace(main, form);
  input.focus();
}

function signOut() {
  session.clear();
  me = null;
  history.replaceState(null, '', location.pathname + location.search);
  signInPage();
}

/** The organizations this token can open, for the picker: all with webhooks for an operator. */
async function knownOrgs() {
  if (me.kind !== 'operator') return me.orgs;
  return all('/v1/admin/orgs', 'orgs');
}

async function header(org) {
  const nav = org
    ? h('nav', { 'aria-label': 'Sections' },
      h('a', { href: `#/orgs/${encodeURIComponent(org)}`, 'aria-current': section() === 'webhooks' ? 'page' : null }, 'Webhooks'),
      h('a', { href: `#/orgs/${encodeURIComponent(org)}/dead-letters`, 'aria-current': section() === 'dead-letters' ? 'page' : null }, 'Dead letters'))
    : null;
  let picker = null;
  if (me.kind === 'operator' || me.orgs.length > 1) {
    const orgs = await knownOrgs().catch(() => []);
    const input = h('input', { id: 'org-picker', name: 'org', list: 'org-list', value: org ?? '', required: true, autocomplete: 'off' });
    picker = h('form', { class: 'picker', role: 'search' },
      h('label', { for: 'org-picker' }, 'Organization'),
      input,
      h('datalist', { id: 'org-list' }, orgs.map((o) => h('option', { value: o }))),
      h('button', { type: 'submit', class: 'secondary' }, 'Open'));
    picker.addEventListener('submit', (event) => {
      event.preventDefault();
      location.hash = `#/orgs/${encodeURIComponent(input.value.trim())}`;
    });
  } else {
    picker = h('span', { class: 'org' }, 'Organization: ', h('strong', null, me.orgs[0]));
  }
  const who = me.kind === 'operator' ? 'Operator' : me.read_only ? 'Read-only' : null;
  replace(top,
    h('span', { class: 'brand' }, 'hookwire'),
    picker,
    nav,
    h('span', { class: 'who' }, who ? h('span', { class: 'badge' }, who) : null,
      h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out')));
}

function section() {
  return location.hash.includes('/dead-letters') ? 'dead-letters' : 'webhooks';
}

/** What the address asks for. */
function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (parts[0] !== 'orgs' || !parts[1]) return { page: 'home' };
  const org = parts[1];
  if (parts[2] === 'new') return { page: 'new', org };
  if (parts[2] === 'webhooks' && parts[3]) return { page: 'webhook', org, id: parts[3] };
  if (parts[2] === 'dead-letters') return { page: 'dead-letters', org };
  return { page: 'webhooks', org };
}

async function route() {
  const target = parseRoute();
  if (target.page === 'home' && me.kind !== 'operator') {
    location.hash = `#/orgs/${encodeURIComponent(me.orgs[0])}`;
    return;
  }
  // A limited token's links always lead to its own organizations, whatever the address.
  const own = me.kind === 'operator' || me.orgs.includes(target.org);
  await header(own ? target.org : me.orgs[0]);
  const context = { org: target.org, readOnly: me.read_only, onUnauthorized: (e) => signInPage(explain(e)) };
  replace(main, h('p', { class: 'muted', role: 'status' }, 'Loading…'));
  try {
    if (target.page === 'home') {
      replace(main, h('section', { class: 'card' },
        h('h1', { tabindex: -1 }, 'Choose an organization'),
        h('p', null, 'Type an organization above, or pick one that has webhooks from its list, then choose Open.')));
    } else if (target.page === 'new') {
      await newWebhookPage(main, context);
    } else if (target.page === 'webhook') {
      await webhookPage(main, context, target.id);
    } else if (target.page === 'dead-letters') {
      await deadLettersPage(main, context);
    } else {
      await webhooksPage(main, context);
    }
  } catch (error) {
    if (error.status === 401) return signInPage(explain(error));
    replace(main, notice('error', explain(error)));
  }
  main.querySelector('h1')?.focus();
}

async function start() {
  await signInFromAddress();
  if (!session.token) return signInPage();
  try {
    me = await api('GET', '/v1/whoami');
  } catch (error) {
    session.clear();
    return signInPage(explain(error));
  }
  await route();
}

window.addEventListener('hashchange', () => {
  // Only a page load takes a token: one that arrives later is dropped unread.
  if (takeTokenFromAddress() !== null) return;
  if (me) route();
});
start();
