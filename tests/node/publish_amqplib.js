#!/usr/bin/env node
// Publish one event to hookwire with amqplib, mirroring tests/py/publish_pika.py:
// topic exchange `<namespace>.events`, routing key = event type, org in the `org`
// header, publisher confirms + mandatory so that an unroutable or nacked message fails.
// Usage: node publish_amqplib.js --namespace NS --org ORG --event TYPE
//          [--data JSON] [--id MESSAGE_ID] [--url amqp://guest:guest@127.0.0.1:5672/%2f]
'use strict';
const crypto = require('node:crypto');
const amqp = require('amqplib');

const args = { url: 'amqp://guest:guest@127.0.0.1:5672/%2f', data: '{}' };
for (let i = 2; i < process.argv.length; i += 2) {
  const key = process.argv[i];
  if (!key.startsWith('--') || i + 1 >= process.argv.length) fail(`bad argument: ${key}`);
  args[key.slice(2)] = process.argv[i + 1];
}
for (const k of ['namespace', 'org', 'event']) if (!args[k]) fail(`--${k} is required`);

function fail(msg) {
  console.error(msg);
  process.exit(1);
}

async function main() {
  let data;
  try {
    data = JSON.parse(args.data);
  } catch (err) {
    fail(`--data is not JSON: ${err.message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) fail('--data must be a JSON object');
  const body = Buffer.from(JSON.stringify({ event: args.event, ...data }));
  const messageId = args.id || crypto.randomUUID();

  const conn = await amqp.connect(args.url);
  try {
    const ch = await conn.createConfirmChannel();
    // basic.return (no queue bound) arrives before the ack, so check it after the confirm.
    let returned = false;
    ch.on('return', () => { returned = true; });
    let channelError = null; // e.g. 404 NOT_FOUND: the exchange does not exist
    ch.on('error', (err) => { channelError = err; });

    ch.publish(`${args.namespace}.events`, args.event, body, {
      persistent: true, // delivery_mode 2
      contentType: 'application/json',
      messageId,
      timestamp: Math.floor(Date.now() / 1000),
      headers: { org: args.org },
      mandatory: true,
    });
    try {
      await ch.waitForConfirms(); // rejects on a nack or a closed channel
    } catch (err) {
      fail(`publish failed: ${channelError ? channelError.message : err.message || 'nacked'}`);
    }
    if (returned) fail(`unroutable: no queue is bound for '${args.event}' on ${args.namespace}.events`);
    await ch.close();
  } finally {
    await conn.close().catch(() => {});
  }
  console.log(messageId);
}

main().catch((err) => fail(`publish failed: ${err.message}`));
