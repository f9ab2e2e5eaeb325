"""Sends analytics built with LiveKit's own Python protobufs (PyPI `livekit-protocol`) to a
`livekit.AnalyticsRecorderService` over its three client streams, as a LiveKit node would, and
prints what it sent as JSON (for crates/telemetry-server/tests/it/recorder.rs).

Usage: send_recorder.py HOST:PORT TOKEN
"""

import json
import sys
import time

import grpc
from google.protobuf import empty_pb2, timestamp_pb2
from livekit.protocol import analytics, models

target, token = sys.argv[1], sys.argv[2]
now = int(time.time())


def ts(seconds):
    stamp = timestamp_pb2.Timestamp()
    stamp.seconds = seconds
    return stamp


room = models.Room(sid="RM_recorder0001", name="recorded-room", creation_time=now - 120)
alice = models.ParticipantInfo(sid="PA_recorder0001", identity="alice", state=models.ParticipantInfo.State.ACTIVE)

events = [
    analytics.AnalyticsEvent(id="AE_recorder0001", type=analytics.AnalyticsEventType.ROOM_CREATED,
                             timestamp=ts(now - 120), room=room, node_id="lk-node-1"),
    analytics.AnalyticsEvent(id="AE_recorder0002", type=analytics.AnalyticsEventType.PARTICIPANT_JOINED,
                             timestamp=ts(now - 110), room_id=room.sid, room=room,
                             participant_id=alice.sid, participant=alice, node_id="lk-node-1"),
    analytics.AnalyticsEvent(id="AE_recorder0003", type=analytics.AnalyticsEventType.PARTICIPANT_ACTIVE,
                             timestamp=ts(now - 109), room_id=room.sid, room=room,
                             participant_id=alice.sid, participant=alice, node_id="lk-node-1",
                             client_meta=analytics.AnalyticsClientMeta(client_connect_time=420)),
]

stats = []
for index in range(3):
    stream = analytics.AnalyticsStream(
        primary_packets=500, primary_bytes=625_000, packets_lost=3, rtt=45, jitter=2500,
        start_time=ts(now - 90 + index * 30), end_time=ts(now - 60 + index * 30))
    stats.append(analytics.AnalyticsStat(
        id=f"AS_recorder000{index}", kind=analytics.StreamType.UPSTREAM, time_stamp=ts(now - 60 + index * 30),
        node="lk-node-1", room_id=room.sid, room_name=room.name, participant_id=alice.sid,
        track_id="TR_recorder0001", score=4.1, streams=[stream], mime="video/VP8",
        min_score=3.9, median_score=4.1))

node_rooms = analytics.AnalyticsNodeRooms(
    node_id="lk-node-1", sequence_number=7, timestamp=ts(now - 5),
    rooms=[analytics.AnalyticsRoom(id=room.sid, name=room.name, created_at=ts(now - 120),
                                   participants=[analytics.AnalyticsRoomParticipant(
                                       id=alice.sid, identity="alice", state=models.ParticipantInfo.State.ACTIVE)])])

metadata = [("authorization", f"Bearer {token}")]
with grpc.insecure_channel(target) as channel:
    def stream(method, request_type):
        return channel.stream_unary(
            f"/livekit.AnalyticsRecorderService/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString)

    stream("IngestEvents", analytics.AnalyticsEvents)(
        iter([analytics.AnalyticsEvents(events=events[:1]), analytics.AnalyticsEvents(events=events[1:])]),
        metadata=metadata, timeout=30)
    stream("IngestStats", analytics.AnalyticsStats)(
        iter([analytics.AnalyticsStats(stats=stats[:2]), analytics.AnalyticsStats(stats=stats[2:])]),
        metadata=metadata, timeout=30)
    stream("IngestNodeRoomStates", analytics.AnalyticsNodeRooms)(iter([node_rooms]), metadata=metadata, timeout=30)
    try:
        stream("IngestEvents", analytics.AnalyticsEvents)(iter([]), metadata=[("authorization", "Bearer bad")], timeout=30)
        unauthenticated = False
    except grpc.RpcError as error:
        unauthenticated = error.code() == grpc.StatusCode.UNAUTHENTICATED

print(json.dumps({
    "room": room.sid,
    "events": [event.id for event in events],
    "stats": [stat.id for stat in stats],
    "unauthenticated_refused": unauthenticated,
}))
