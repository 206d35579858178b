#!/usr/bin/env python3
"""Check a hookwire delivery with the reference Standard Webhooks library.

The body is read raw from stdin; the three webhook-* header values come as arguments.
Prints "ok" and exits 0 when the signature verifies, else prints the error and exits 1.
"""
import argparse
import sys

from standardwebhooks.webhooks import Webhook

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--secret", required=True, help="whsec_<base64>")
p.add_argument("--id", required=True, help="webhook-id header")
p.add_argument("--timestamp", required=True, help="webhook-timestamp header (unix seconds)")
p.add_argument("--signature", required=True, help='webhook-signature header, e.g. "v1,<base64>"')
args = p.parse_args()

body = sys.stdin.buffer.read()
headers = {
    "webhook-id": args.id,
    "webhook-timestamp": args.timestamp,
    "webhook-signature": args.signature,
}
try:
    # Also rejects timestamps more than 5 minutes from now, and bodies that are not JSON.
    Webhook(args.secret).verify(body, headers)
except Exception as e:  # WebhookVerificationError, or a malformed secret/header/body
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
print("ok")
