"""Checks webhooks with LiveKit's Python receiver (PyPI `livekit-api`).

Reads a JSON list of cases from stdin, each
    {"name": str, "body": str, "authorization": str, "key": str, "secret": str},
and prints one JSON object per case, in order, on its own line:
    {"name", "ok": true, "event", "id", "createdAt", "roomSid", "roomName", "participantSid",
     "participantIdentity", "trackSid", "egressId", "ingressId", "json"}
where "json" is the receiver's own protobuf-JSON rendering of the parsed event, or
    {"name", "ok": false, "error": "<ExceptionType>: <message>"}.

Used by crates/telemetry-core/tests/conformance.rs; set up with tools/setup-conformance.sh.
PyJWT warns (InsecureKeyLengthWarning, on stderr) when an HS256 secret is shorter than 32 bytes;
the test uses a long secret.
"""

import json
import sys

from google.protobuf.json_format import MessageToDict
from livekit import api


def receive(case):
    receiver = api.WebhookReceiver(api.TokenVerifier(case["key"], case["secret"]))
    event = receiver.receive(case["body"], case["authorization"])
    return {
        "ok": True,
        "event": event.event,
        "id": event.id,
        "createdAt": str(event.created_at),
        "roomSid": event.room.sid,
        "roomName": event.room.name,
        "participantSid": event.participant.sid,
        "participantIdentity": event.participant.identity,
        "trackSid": event.track.sid,
        "egressId": event.egress_info.egress_id,
        "ingressId": event.ingress_info.ingress_id,
        "json": MessageToDict(event),
    }


def main():
    for case in json.load(sys.stdin):
        try:
            result = receive(case)
        except Exception as error:  # every rejection is reported, not raised
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps({"name": case["name"], **result}), flush=True)


if __name__ == "__main__":
    main()
