#!/usr/bin/env python3
"""Publish one event to hookwire the way any AMQP producer can, here with pika.

hookwire consumes from the topic exchange `<namespace>.events`; the routing key is the
event type and the org travels in the `org` header. Publisher confirms plus
mandatory=True make a lost message an error instead of a silent drop.
"""
import argparse
import json
import sys
import time
import uuid

import pika
from pika.exceptions import AMQPError, NackError, UnroutableError

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
p.add_argument("--namespace", required=True)
p.add_argument("--org", required=True)
p.add_argument("--event", required=True, help="event type, e.g. report_created")
p.add_argument("--data", default="{}", help='JSON object, e.g. {"report_run_url": "..."}')
p.add_argument("--id", default=None, help="message id (default: a random UUID)")
p.add_argument("--traceparent", default=None, help="W3C traceparent header, passed on to the receiver")
p.add_argument("--tracestate", default=None, help="W3C tracestate header")
args = p.parse_args()

try:
    data = json.loads(args.data)
except ValueError as e:
    sys.exit(f"--data is not JSON: {e}")
if not isinstance(data, dict):
    sys.exit("--data must be a JSON object")
# Compact UTF-8 JSON, byte for byte what JSON.stringify gives in publish_amqplib.js.
body = json.dumps({"event": args.event, **data}, separators=(",", ":"), ensure_ascii=False).encode()

headers = {"org": args.org}
# W3C Trace Context rides in AMQP headers under its HTTP names.
if args.traceparent:
    headers["traceparent"] = args.traceparent
if args.tracestate:
    headers["tracestate"] = args.tracestate

props = pika.BasicProperties(
    delivery_mode=2,  # persistent
    content_type="application/json",
    message_id=args.id or str(uuid.uuid4()),
    timestamp=int(time.time()),
    headers=headers,
)

try:
    with pika.BlockingConnection(pika.URLParameters(args.url)) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(f"{args.namespace}.events", args.event, body, props, mandatory=True)
except UnroutableError:
    sys.exit(f"unroutable: no queue is bound for {args.event!r} on {args.namespace}.events")
except NackError:
    sys.exit("the broker nacked the message (not stored)")
except AMQPError as e:  # e.g. 404 NOT_FOUND when the exchange does not exist
    sys.exit(f"publish failed: {e!r}")
print(props.message_id)
