#!/usr/bin/env node
// The console end to end, in Debian's chromium driven by playwright-core, against a live
// `hookwire serve` and loopback receivers this script runs. Started by the Rust test
// crates/cli/tests/it/console.rs, which passes:
//   HOOKWIRE_URL        the API's base URL (http://127.0.0.1:PORT)
//   ADMIN_TOKEN         an operator's token
//   SCOPED_TOKEN        an access token for `acme` (minted with the CLI)
//   NAMESPACE, AMQP_URL where publish_amqplib.js publishes events
//   PROXY_URL           the same serve behind the shipped nginx config, over TLS from a
//                       test CA: https://127.0.0.1:PORT/hookwire
//   ARTIFACTS           where the screenshots go
// Exits non-zero, naming the failed step, on the first failure.
'use strict';
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { chromium } = require('playwright-core');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const BASE = env('HOOKWIRE_URL');
const ADMIN = env('ADMIN_TOKEN');
const SCOPED = env('SCOPED_TOKEN');
const NAMESPACE = env('NAMESPACE');
const AMQP_URL = env('AMQP_URL');
const ARTIFACTS = env('ARTIFACTS');
const PROXY_URL = env('PROXY_URL');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 30_000;
const XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> nightly report';

/** A loopback receiver answering `status()` to every POST, counting what it got: the
 * bodies in `got`, their headers in `heads`. */
function receiver(status, body = '') {
  const got = [];
  const heads = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push(Buffer.concat(chunks).toString());
      heads.push(req.headers);
      res.writeHead(status.value, { 'content-type': 'text/plain' });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}/hook`, got, heads, status, close: () => server.close(),
  })));
}

async function call(method, route, body, token = ADMIN) {
  const res = await fetch(`${BASE}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function publish(org, id) {
  execFileSync(process.execPath, [path.join(__dirname, 'publish_amqplib.js'),
    '--url', AMQP_URL, '--namespace', NAMESPACE, '--org', org, '--event', 'report_created',
    '--id', id, '--data', JSON.stringify({ report_run_url: `https://mode.test/r/${id}` })], { stdio: 'pipe' });
}

async function until(what, check, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let step = 'start';
const shot = (page, name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

/** A `datetime-local` value for `date` in this machine's time zone (the browser's too). */
function localInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** A browser context whose page records every CSP violation and script error. */
async function context(browser, options = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 }, ...options });
  const page = await ctx.newPage();
  page.problems = [];
  // A failed API call logs its status too; only policy violations count here.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) page.problems.push(m.text());
  });
  page.on('pageerror', (e) => page.problems.push(String(e)));
  // Every file the console asks for exists (an icon included); the API's 404s are answers.
  page.on('response', (r) => {
    if (r.status() === 404 && !new URL(r.url()).pathname.includes('/v1/')) page.problems.push(`404 ${r.url()}`);
  });
  return { ctx, page };
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const ok = await receiver({ value: 204 });
  const down = await receiver({ value: 500 }, 'receiver is down for maintenance');
  const flaky = await receiver({ value: 400 }, 'bad payload');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    // Another organization's webhook, which the scoped token must never show.
    step = 'seed globex';
    const globexUrl = `${ok.url}?org=globex-secret`;
    const seeded = await call('POST', '/v1/orgs/globex/webhooks', { url: globexUrl, description: 'globex only', events: ['report_created'] });
    assert.equal(seeded.status, 201, JSON.stringify(seeded.body));

    step = 'headers: strict CSP';
    const index = await fetch(`${BASE}/console/`);
    const csp = index.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self';/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

    const { ctx, page } = await context(browser);
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });

    step = 'sign in as operator';
    await page.goto(`${BASE}/console`);
    await page.getByLabel('API token').fill(ADMIN);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Choose an organization' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('hookwire.token')), ADMIN);
    await page.getByLabel('Organization').fill('acme');
    await page.getByRole('button', { name: 'Open' }).click();
    await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
    await page.getByText('No webhooks yet.').waitFor();

    step = 'add a webhook whose receiver answers 500: refused, reason shown, nothing saved';
    await page.getByRole('link', { name: 'Add New Webhook' }).click();
    await page.getByLabel('Target URL').fill(down.url);
    await page.getByLabel('Description').fill('should not be saved');
    await page.getByLabel('report_created').check();
    await page.getByRole('button', { name: 'Create Webhook' }).click();
    const refusal = page.getByRole('alert');
    await refusal.waitFor();
    const refusalText = await refusal.innerText();
    assert.match(refusalText, /did not accept the test event/);
    assert.match(refusalText, /500/);
    assert.equal(down.got.length, 1, 'one test event reached the failing receiver');
    assert.deepEqual((await call('GET', '/v1/orgs/acme/webhooks')).body.webhooks, []);
    await shot(page, 'console-refused');

    step = 'keyboard and labels: every control of the form has a label';
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => !el.labels?.length && !el.getAttribute('aria-label')).map((el) => el.outerHTML));
    assert.deepEqual(unlabelled, []);

    step = 'add a webhook whose receiver answers 204, with a filter and headers (one secret)';
    await page.getByLabel('Target URL').fill(ok.url);
    await page.getByLabel('Description').fill(XSS);
    await page.getByLabel('Filter (CEL)').fill('!body.report_run_url.endsWith("/skip")');
    await page.getByRole('button', { name: 'Add header' }).click();
    await page.getByLabel('Header name').last().fill('X-Team');
    await page.getByLabel('Header value').last().fill('console');
    await page.getByRole('button', { name: 'Add header' }).click();
    await page.getByLabel('Header name').last().fill('X-Api-Key');
    await page.getByLabel('Header value').last().fill('sekrit-console-value');
    await page.getByLabel('Secret', { exact: true }).last().check();
    assert.equal(await page.getByLabel('Header value').last().getAttribute('type'), 'password', 'a secret value is masked');
    await page.getByRole('button', { name: 'Create Webhook' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Webhook created' }).waitFor();
    const secret = (await page.locator('#secret-value').innerText()).trim();
    assert.match(secret, /^whsec_/);
    await page.getByRole('button', { name: 'Copy secret' }).click();
    await page.getByRole('button', { name: 'Copied' }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
    await shot(page, 'console-created');
    const listed = (await call('GET', '/v1/orgs/acme/webhooks')).body.webhooks;
    assert.equal(listed.length, 1);
    const hook = listed[0];
    assert.equal(hook.description, XSS);
    assert.equal(hook.filter, '!body.report_run_url.endsWith("/skip")');
    assert.deepEqual(hook.headers, { 'x-team': 'console' });
    assert.deepEqual(hook.secret_headers, ['x-api-key']);

    step = 'listed, with the <script> description as text';
    await page.getByRole('link', { name: 'Back to webhooks' }).click();
    const row = page.getByRole('row', { name: new RegExp(ok.url.replace(/[/.?]/g, '\\$&')) });
    await row.waitFor();
    assert.ok((await row.innerText()).includes(XSS), 'the description shows as typed');
    assert.equal(await row.locator('script, img').count(), 0, 'no element came from the description');
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nothing from the description ran');

    step = 'the secret is not shown again, nor the secret header value';
    await row.getByRole('link').click();
    await page.getByRole('heading', { name: ok.url }).waitFor();
    assert.ok(!(await page.content()).includes(secret));
    assert.ok(!(await page.content()).includes('sekrit-console-value'));
    assert.equal(await page.getByLabel('Value of x-api-key').inputValue(), '', 'a secret header value is write-only');
    assert.equal(await page.getByLabel('Value of x-team').inputValue(), 'console');

    step = 'publish events and see them in the attempt log and the chart';
    for (const n of [1, 2, 3]) publish('acme', `evt-console-${n}`);
    await until('three deliveries', () => ok.got.length >= 4); // the test event and three
    await until('three attempts in the log', async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.getByRole('heading', { name: 'Attempt log' }).waitFor();
      return (await page.locator('table tbody tr').count()) >= 3;
    });
    const log = await page.locator('table').innerText();
    for (const n of [1, 2, 3]) assert.ok(log.includes(`evt-console-${n}`), log);
    assert.match(await page.locator('.chart-box figcaption').innerText(), /3 succeeded/);
    assert.ok(await page.locator('svg.chart rect.ok').count() >= 1, 'a success bar');
    assert.match(await page.locator('svg.chart').getAttribute('aria-label'), /3 succeeded, 0 failed/);

    const delivered = ok.heads[ok.got.findIndex((b) => b.includes('evt-console-1'))];
    assert.equal(delivered['x-team'], 'console');
    assert.equal(delivered['x-api-key'], 'sekrit-console-value');

    step = 'resend one event from its attempt-log row: the same webhook-id again';
    const copies = (id) => ok.got.filter((b) => b.includes(`/r/${id}"`)).length;
    const idOf = (id) => ok.heads[ok.got.findIndex((b) => b.includes(`/r/${id}"`))]['webhook-id'];
    const firstId = idOf('evt-console-2');
    await page.getByRole('button', { name: 'Resend evt-console-2' }).first().click();
    await page.getByText(`Event evt-console-2 resent with its original webhook-id ${firstId}.`).waitFor();
    await until('the resent delivery', () => copies('evt-console-2') === 2);
    const resentHeads = ok.heads.filter((_, i) => ok.got[i].includes('/r/evt-console-2"'));
    assert.equal(resentHeads[1]['webhook-id'], firstId);

    step = 'resend a range: every event received in it';
    const before = ok.got.length;
    await page.getByLabel('From', { exact: true }).fill(localInput(new Date(Date.now() - 10 * 60_000)));
    await page.getByLabel('To', { exact: true }).fill(localInput(new Date(Date.now() + 10 * 60_000)));
    await page.getByRole('button', { name: 'Resend range' }).click();
    await page.getByText('Resent 3 events.').waitFor();
    await until('three resent deliveries', () => ok.got.length >= before + 3);
    for (const n of [1, 2, 3]) assert.ok(copies(`evt-console-${n}`) >= 2, `evt-console-${n} resent`);

    step = 'a bad range is refused with the reason';
    await page.getByLabel('From', { exact: true }).fill(localInput(new Date(Date.now() + 60_000)));
    await page.getByLabel('To', { exact: true }).fill(localInput(new Date(Date.now() - 60_000)));
    await page.getByRole('button', { name: 'Resend range' }).click();
    await page.getByText('The range is not valid').waitFor();

    step = 'edit the filter and the headers on the webhook page';
    await page.getByLabel('Filter (CEL)').fill('body.report_run_url.startsWith("https://mode.test/")');
    await page.getByRole('button', { name: 'Remove header x-team' }).click();
    await page.getByLabel('Value of x-api-key').fill('rotated-console-value');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('Delivery options saved.').waitFor();
    const edited = (await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body;
    assert.equal(edited.filter, 'body.report_run_url.startsWith("https://mode.test/")');
    assert.deepEqual(edited.headers, {});
    assert.deepEqual(edited.secret_headers, ['x-api-key']);
    assert.ok(!(await page.content()).includes('rotated-console-value'));
    await page.getByLabel('Filter (CEL)').fill('body.(');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('The filter is not a valid CEL expression.').waitFor();
    await page.getByLabel('Filter (CEL)').fill('');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('Delivery options saved.').waitFor();
    assert.equal((await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body.filter, null);
    const rotatedHeader = ok.got.length;
    publish('acme', 'evt-console-4');
    await until('a delivery with the new secret header', () => ok.got.length > rotatedHeader);
    assert.equal(ok.heads[rotatedHeader]['x-api-key'], 'rotated-console-value');
    assert.equal(ok.heads[rotatedHeader]['x-team'], undefined);

    step = 'set a retry policy on the webhook page: checked against the configured tiers, shown, cleared';
    await page.getByLabel('Retry schedule').fill('500ms, 2s');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('The retry policy is not allowed. (retry.schedule: 2s is not a configured retry tier').waitFor();
    await page.getByLabel('Retry schedule').fill('500ms');
    await page.getByLabel('Max age').fill('10m');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('schedule 500ms; max age 10m').waitFor();
    assert.deepEqual((await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body.retry, { schedule: ['500ms'], max_age: '10m' });
    await page.getByLabel('Retry schedule').fill('');
    await page.getByLabel('Max age').fill('');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await until('the retry policy cleared', async () => (await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body.retry === null);
    await page.getByText('Server default', { exact: true }).waitFor();

    step = 'set limits on the webhook page: out of range explained, then saved and shown';
    await page.getByLabel('Max concurrency').fill('0');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('A limit is out of range: max concurrency is 1 to 1,000').waitFor();
    await page.getByLabel('Max concurrency').fill('4');
    await page.getByLabel('Rate limit (per second)').fill('20');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('at most 4 in flight; 20 per second').waitFor();
    const limited = (await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body;
    assert.equal(limited.max_concurrency, 4);
    assert.equal(limited.rate_limit_per_sec, 20);
    assert.equal(await page.getByLabel('Max concurrency').inputValue(), '4');

    step = 'edit a transform with its preview beside it, save it, see the body it sends, remove it';
    const slack = '{"text": "Report finished: " + body.report_run_url}';
    await page.getByLabel('Transform (CEL)').fill('{"text": ');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByText('The transform is not a valid CEL expression.').waitFor();
    await page.getByLabel('Transform (CEL)').fill(slack);
    await page.getByLabel('Sample event').selectOption('report_created');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.locator('#transform-preview-body').waitFor();
    assert.equal(await page.locator('#transform-preview-body').innerText(),
      '{"text":"Report finished: https://example.com/report_run/example"}');
    const previewed = await page.locator('#transform-preview').innerText();
    assert.match(previewed, /made by the transform/);
    assert.match(previewed, /webhook-signature/);
    assert.match(previewed, /x-api-key\s+\(secret\)/, 'a secret header value is never shown');
    assert.ok(!previewed.includes('rotated-console-value'), previewed);
    await page.getByLabel('Transform (CEL)').fill('{"text": body.no_such_field}');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByText('The transform gives no body for this event.').waitFor();
    await page.getByLabel('Transform (CEL)').fill(slack);
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await page.getByText('Delivery options saved.').waitFor();
    assert.equal((await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body.transform, slack);
    await page.getByText(slack, { exact: true }).waitFor();
    const transformedAt = ok.got.length;
    publish('acme', 'evt-console-slack');
    await until('a transformed delivery', () => ok.got.length > transformedAt);
    assert.equal(ok.got[transformedAt], '{"text":"Report finished: https://mode.test/r/evt-console-slack"}');
    await page.getByLabel('Transform (CEL)').fill('');
    await page.getByRole('button', { name: 'Save delivery options' }).click();
    await until('the transform removed', async () => (await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body.transform === null);

    step = 'send test';
    await page.getByRole('button', { name: 'Send test' }).click();
    await page.getByText('The receiver accepted the test event (HTTP 204').waitFor();
    await shot(page, 'console-webhook');

    step = 'rotate the secret: shown once, with a copy button';
    await page.getByRole('button', { name: 'Rotate secret' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Rotate secret' }).click();
    await page.getByText('New signing secret.').waitFor();
    const rotated = (await page.locator('#secret-value').innerText()).trim();
    assert.match(rotated, /^whsec_/);
    assert.notEqual(rotated, secret);
    await page.getByRole('button', { name: 'Copy secret' }).waitFor();

    step = 'disable, then enable';
    await page.getByRole('button', { name: 'Disable' }).click();
    await page.getByText('Webhook disabled.').waitFor();
    assert.equal((await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body.enabled, false);
    await page.getByRole('button', { name: 'Enable' }).click();
    await page.getByText('Webhook enabled.').waitFor();
    assert.equal((await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).body.enabled, true);

    step = 'replay a dead letter';
    const deadHook = await call('POST', '/v1/orgs/acme/webhooks?verify=false', { url: flaky.url, description: 'rejects then heals', events: ['report_created'] });
    assert.equal(deadHook.status, 201);
    publish('acme', 'evt-dead-1');
    await until('a dead letter', async () => (await call('GET', '/v1/orgs/acme/dead-letters')).body.dead_letters.length === 1);
    flaky.status.value = 204;
    await page.getByRole('link', { name: 'Dead letters' }).click();
    await page.getByRole('heading', { name: 'Dead letters' }).waitFor();
    await page.getByLabel('Webhook', { exact: true }).selectOption({ label: flaky.url });
    await page.getByRole('button', { name: 'Filter' }).click();
    const deadRow = page.getByRole('row', { name: /evt-dead-1/ });
    await deadRow.waitFor();
    await shot(page, 'console-dead-letters');
    await deadRow.getByRole('checkbox').check();
    await page.getByRole('button', { name: 'Replay selected' }).click();
    await page.getByText('Replayed 1.').waitFor();
    await until('the replayed delivery', () => flaky.got.length >= 2);
    assert.match(flaky.got[1], /mode\.test\/r\/evt-dead-1/);
    assert.deepEqual((await call('GET', '/v1/orgs/acme/dead-letters')).body.dead_letters, []);

    step = 'purge a dead letter';
    flaky.status.value = 400;
    publish('acme', 'evt-dead-2');
    await until('a second dead letter', async () => (await call('GET', '/v1/orgs/acme/dead-letters')).body.dead_letters.length === 1);
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByRole('row', { name: /evt-dead-2/ }).waitFor();
    await page.getByRole('button', { name: 'Choose all' }).click();
    await page.getByRole('button', { name: 'Purge selected' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Purge' }).click();
    await page.getByText('Purged 1.').waitFor();
    assert.deepEqual((await call('GET', '/v1/orgs/acme/dead-letters')).body.dead_letters, []);
    flaky.status.value = 204;

    step = 'delete with confirmation';
    await page.goto(`${BASE}/console/#/orgs/acme/webhooks/${hook.id}`);
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    assert.equal((await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).status, 200, 'cancel keeps it');
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete webhook' }).click();
    await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
    assert.equal((await call('GET', `/v1/orgs/acme/webhooks/${hook.id}`)).status, 404);
    assert.deepEqual(page.problems, [], 'no CSP violation or script error');
    await ctx.close();

    step = 'the embed link: a scoped token, taken from the address and removed from it';
    const phone = await context(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    await phone.page.goto(`${BASE}/console/#token=${encodeURIComponent(SCOPED)}`);
    await phone.page.getByRole('heading', { name: 'Webhooks' }).waitFor();
    assert.ok(!phone.page.url().includes('token'), phone.page.url());
    assert.ok(!phone.page.url().includes(SCOPED));
    await phone.page.getByText('Organization: acme').waitFor();
    assert.equal(await phone.page.getByLabel('Organization').count(), 0, 'no organization picker');
    assert.ok(!(await phone.page.content()).includes('globex'));

    step = 'phone width: nothing wider than the screen';
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await shot(phone.page, 'console-phone');
    await phone.page.getByRole('link', { name: flaky.url }).click();
    await phone.page.getByRole('heading', { name: 'Attempt log' }).waitFor();
    assert.match(await phone.page.locator('.chart-box figcaption').innerText(), /1 succeeded\s+2 failed/);
    const webhookOverflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(webhookOverflow <= 0, `the webhook page is ${webhookOverflow}px wider than the screen`);
    await shot(phone.page, 'console-phone-webhook');

    step = 'a scoped token sees nothing of another organization';
    await phone.page.goto(`${BASE}/console/#/orgs/globex`);
    await phone.page.getByRole('alert').waitFor();
    assert.match(await phone.page.getByRole('alert').innerText(), /Not found/);
    assert.equal(await phone.page.getByRole('link', { name: 'Webhooks', exact: true }).getAttribute('href'), '#/orgs/acme',
      'the links lead back to its own organization');
    assert.ok(!(await phone.page.content()).includes('globex-secret'));
    await phone.page.goto(`${BASE}/console/#/orgs/globex/webhooks/${seeded.body.id}`);
    await phone.page.getByRole('alert').waitFor();
    assert.ok(!(await phone.page.content()).includes('globex-secret'));
    await shot(phone.page, 'console-other-org');
    assert.deepEqual(phone.page.problems, [], 'no CSP violation or script error');

    step = 'a token in the address after the page has loaded is dropped unread';
    const token = () => phone.page.evaluate(() => sessionStorage.getItem('hookwire.token'));
    await phone.page.evaluate((t) => { location.hash = `#token=${encodeURIComponent(t)}`; }, ADMIN);
    await phone.page.waitForFunction(() => !location.hash.includes('token'));
    assert.equal(await token(), SCOPED, 'a hashchange never switches the session');

    step = 'a link opened in a signed-in tab asks before replacing the session';
    await phone.page.goto('about:blank');
    await phone.page.goto(`${BASE}/console/#token=${encodeURIComponent(ADMIN)}`);
    await phone.page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    await phone.page.getByText('Organization: acme').waitFor();
    assert.equal(await token(), SCOPED, 'cancel keeps the signed-in session');
    assert.ok(!phone.page.url().includes('token'), phone.page.url());
    assert.deepEqual(phone.page.problems, [], 'no CSP violation, script error or missing file');

    step = 'the console behind the shipped TLS proxy, under /hookwire/';
    // The Rust test checks the proxy's certificate with its CA; the browser is not told it.
    const proxied = await context(browser, { ignoreHTTPSErrors: true });
    await proxied.page.goto(`${PROXY_URL}/console/#token=${encodeURIComponent(SCOPED)}`);
    await proxied.page.getByText('Organization: acme').waitFor();
    await proxied.page.getByRole('link', { name: flaky.url }).waitFor();
    assert.ok(proxied.page.url().startsWith(`${PROXY_URL}/console/`), proxied.page.url());
    assert.deepEqual(proxied.page.problems, [], 'no CSP violation, script error or missing file behind the proxy');
    await proxied.ctx.close();

    step = 'signing out forgets the token';
    await phone.page.goto(`${BASE}/console/`);
    await phone.page.getByRole('button', { name: 'Sign out' }).click();
    await phone.page.getByLabel('API token').waitFor();
    assert.equal(await phone.page.evaluate(() => sessionStorage.getItem('hookwire.token')), null);
    await phone.ctx.close();
  } finally {
    await browser.close();
    for (const r of [ok, down, flaky]) r.close();
  }
  console.log('console e2e: every step passed');
}

main().catch((error) => {
  console.error(`console e2e failed at step "${step}":\n${error.stack || error}`);
  process.exit(1);
});
