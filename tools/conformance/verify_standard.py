"""Checks Standard Webhooks signatures with the reference Python library (PyPI `standardwebhooks`).

Reads a JSON list of cases from stdin, each
    {"name": str, "body": str, "headers": {"webhook-id", "webhook-timestamp", "webhook-signature"},
     "secret": "whsec_..."},
and prints one JSON object per case, in order, on its own line:
    {"name", "ok": true, "event", "id"}   (from the verified, parsed body), or
    {"name", "ok": false, "error": "<ExceptionType>: <message>"}.

Used by crates/telemetry-core/tests/conformance.rs; set up with tools/setup-conformance.sh.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def verify(case):
    payload = Webhook(case["secret"]).verify(case["body"], case["headers"])
    return {"ok": True, "event": payload.get("event", ""), "id": payload.get("id", "")}


def main():
    for case in json.load(sys.stdin):
        try:
            result = verify(case)
        except Exception as error:  # every rejection is reported, not raised
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps({"name": case["name"], **result}), flush=True)


if __name__ == "__main__":
    main()
