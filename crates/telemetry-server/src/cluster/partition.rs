//! The partition rule: which JetStream subject a call is published on. Public, so an SFU can
//! publish to JetStream itself (README.md, "Running several instances", states it too):
//!
//! 1. The call's room key: the room's **name**, or its **sid** where the call has no name
//!    (`trackStats`: `roomName`, else `roomId`; calls with a `room`: `room.name`, else
//!    `room.sid`; egress: `info.roomName`, else `info.roomId`; ingress: `info.roomName`;
//!    `apiCall`: `info.roomName`, else `info.roomId`).
//! 2. Its partition: FNV-1a, 32 bits (offset basis `0x811c9dc5`, prime `0x01000193`), over the
//!    key's UTF-8 bytes, modulo `cluster.partitions`.
//! 3. A call with neither (`localRoomState`, `report`, and any call whose room has no name and
//!    no sid) goes to partition 0.
//!
//! The subject is `<cluster.subject_prefix>.<partition>` (`rtctelemetry.v1.calls.7`); the body
//! is a `TelemetryBatch` protobuf of calls of that partition, in order, each with `at` and
//! `nodeId` set (the instance that ingests an HTTP or gRPC request fills in what the caller left
//! out, so processing does not depend on when or where it runs).
//!
//! All calls of a room therefore share a partition, as long as the SFU names the room (or leaves
//! the name out) consistently.

use telemetry_core::proto as lk;
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;

/// The partition of calls without a room.
pub const ROOMLESS_PARTITION: u32 = 0;

/// The key that decides a call's partition: its room's name, or its sid where it has no name.
pub fn room_key(call: &v1::TelemetryCall) -> Option<&str> {
    fn room(room: &Option<lk::Room>) -> Option<&str> {
        room.as_ref().and_then(|room| first_non_empty(&room.name, &room.sid))
    }
    match call.call.as_ref()? {
        Member::TrackStats(stats) => first_non_empty(&stats.room_name, &stats.room_id),
        Member::RoomStarted(c) | Member::RoomEnded(c) => room(&c.room),
        Member::ParticipantJoined(c) => room(&c.room),
        Member::ParticipantActive(c) => room(&c.room),
        Member::ParticipantResumed(c) => room(&c.room),
        Member::ParticipantLeft(c) => room(&c.room),
        Member::TrackPublishRequested(c)
        | Member::TrackPublished(c)
        | Member::TrackUnpublished(c) => room(&c.room),
        Member::TrackSubscribeRequested(c)
        | Member::TrackMuted(c)
        | Member::TrackUnmuted(c)
        | Member::TrackPublishedUpdate(c) => room(&c.room),
        Member::TrackSubscribed(c) => room(&c.room),
        Member::TrackUnsubscribed(c) => room(&c.room),
        Member::TrackSubscribeFailed(c) => room(&c.room),
        Member::TrackMaxSubscribedVideoQuality(c) => room(&c.room),
        Member::TrackPublishRtpStats(c) => room(&c.room),
        Member::TrackSubscribeRtpStats(c) => room(&c.room),
        Member::EgressStarted(c) | Member::EgressUpdated(c) | Member::EgressEnded(c) => {
            c.info.as_ref().and_then(|info| first_non_empty(&info.room_name, &info.room_id))
        }
        Member::IngressCreated(c)
        | Member::IngressDeleted(c)
        | Member::IngressStarted(c)
        | Member::IngressUpdated(c)
        | Member::IngressEnded(c) => {
            c.info.as_ref().and_then(|info| first_non_empty(&info.room_name, ""))
        }
        Member::ApiCall(c) => {
            c.info.as_ref().and_then(|info| first_non_empty(&info.room_name, &info.room_id))
        }
        Member::LocalRoomState(_) | Member::Report(_) => None,
    }
}

/// The call's partition among `partitions` (at least 1).
pub fn partition_of(call: &v1::TelemetryCall, partitions: u32) -> u32 {
    match room_key(call) {
        Some(key) => fnv1a_32(key.as_bytes()) % partitions.max(1),
        None => ROOMLESS_PARTITION,
    }
}

/// The partition of a room among `partitions` by the same rule, from its name and sid (the
/// name, else the sid); `None` without either.
pub fn partition_of_room(name: &str, sid: &str, partitions: u32) -> Option<u32> {
    first_non_empty(name, sid).map(|key| fnv1a_32(key.as_bytes()) % partitions.max(1))
}

/// The subject of `partition`.
pub fn subject(prefix: &str, partition: u32) -> String {
    format!("{prefix}.{partition}")
}

/// The start of the names of `partition`'s durable JetStream consumers
/// (`rtc-telemetry-p<partition>`): each holder of the partition's lease consumes through its own,
/// [`consumer_name`], and deletes its predecessors' when it takes the lease.
pub fn consumer_prefix(partition: u32) -> String {
    format!("rtc-telemetry-p{partition}")
}

/// The durable JetStream consumer of `partition` under the lease of `epoch`
/// (`rtc-telemetry-p<partition>-e<epoch>`).
pub fn consumer_name(partition: u32, epoch: i64) -> String {
    format!("{}-e{epoch}", consumer_prefix(partition))
}

/// FNV-1a, 32 bits.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn first_non_empty<'a>(first: &'a str, second: &'a str) -> Option<&'a str> {
    if !first.is_empty() {
        Some(first)
    } else if !second.is_empty() {
        Some(second)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
