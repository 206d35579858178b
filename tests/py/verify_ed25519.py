#!/usr/bin/env python3
"""Check a hookwire delivery's v1a (Ed25519) signature with pyca/cryptography.

An implementation independent of hookwire's: the signed content is built here from the
Standard Webhooks spec, "{webhook-id}.{webhook-timestamp}.{raw body}". The body is read
raw from stdin; the header values and the whpk_ public key come as arguments. Prints "ok"
and exits 0 when one v1a signature verifies, else prints why and exits 1.
"""
import argparse
import base64
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--public-key", required=True, help="whpk_<base64>")
p.add_argument("--id", required=True, help="webhook-id header")
p.add_argument("--timestamp", required=True, help="webhook-timestamp header (unix seconds)")
p.add_argument("--signature", required=True, help='webhook-signature header, e.g. "v1,… v1a,…"')
args = p.parse_args()

if not args.public_key.startswith("whpk_"):
    print("the public key does not start with whpk_")
    sys.exit(1)
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(args.public_key[len("whpk_"):]))
if abs(time.time() - int(args.timestamp)) > 300:
    print("timestamp more than 5 minutes from now")
    sys.exit(1)
body = sys.stdin.buffer.read()
content = f"{args.id}.{args.timestamp}.".encode() + body
for versioned in args.signature.split(" "):
    version, _, value = versioned.partition(",")
    if version != "v1a":
        continue
    try:
        key.verify(base64.b64decode(value), content)
    except InvalidSignature:
        continue
    print("ok")
    sys.exit(0)
print("no v1a signature verifies with this public key")
sys.exit(1)
