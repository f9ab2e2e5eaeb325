// Checks webhooks with LiveKit's Node receiver (npm `livekit-server-sdk`).
//
// Reads a JSON list of cases from stdin, each
//   {"name": str, "body": str, "authorization": str, "key": str, "secret": str},
// and prints one JSON object per case, in order, on its own line:
//   {"name", "ok": true, "event", "id", "createdAt", "roomSid", "roomName", "participantSid",
//    "participantIdentity", "trackSid", "egressId", "ingressId", "json"}
// where "json" is the receiver's own protobuf-JSON rendering of the parsed event, or
//   {"name", "ok": false, "error": "<ErrorName>: <message>"}.
//
// Used by crates/telemetry-core/tests/conformance.rs; set up with tools/setup-conformance.sh
// (`npm ci` in this folder).

import { WebhookReceiver } from 'livekit-server-sdk';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function receive(testCase) {
  const receiver = new WebhookReceiver(testCase.key, testCase.secret);
  const event = await receiver.receive(testCase.body, testCase.authorization);
  return {
    ok: true,
    event: event.event,
    id: event.id,
    createdAt: event.createdAt.toString(),
    roomSid: event.room?.sid ?? '',
    roomName: event.room?.name ?? '',
    participantSid: event.participant?.sid ?? '',
    participantIdentity: event.participant?.identity ?? '',
    trackSid: event.track?.sid ?? '',
    egressId: event.egressInfo?.egressId ?? '',
    ingressId: event.ingressInfo?.ingressId ?? '',
    json: event.toJson(),
  };
}

for (const testCase of JSON.parse(await readStdin())) {
  let result;
  try {
    result = await receive(testCase);
  } catch (error) {
    // Every rejection is reported, not thrown.
    result = { ok: false, error: `${error?.name ?? 'Error'}: ${error?.message ?? error}` };
  }
  process.stdout.write(JSON.stringify({ name: testCase.name, ...result }) + '\n');
}
