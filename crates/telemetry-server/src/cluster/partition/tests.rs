//! The partition rule, pinned: an SFU that publishes itself computes the same numbers.

use telemetry_core::proto as lk;
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;

use crate::cluster::partition::{ROOMLESS_PARTITION, fnv1a_32, partition_of, room_key, subject};

fn room_started(name: &str, sid: &str) -> v1::TelemetryCall {
    v1::TelemetryCall {
        call: Some(Member::RoomStarted(v1::RoomCall {
            room: Some(lk::Room {
                name: name.to_owned(),
                sid: sid.to_owned(),
                ..Default::default()
            }),
        })),
        ..Default::default()
    }
}

#[test]
fn fnv1a_matches_the_published_test_vectors() {
    // From the FNV reference (Fowler, Noll, Vo): FNV-1a 32-bit.
    assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
}

#[test]
fn a_room_is_keyed_by_its_name_else_its_sid_and_roomless_calls_go_to_partition_zero() {
    assert_eq!(room_key(&room_started("demo", "RM_1")), Some("demo"));
    assert_eq!(room_key(&room_started("", "RM_1")), Some("RM_1"));
    assert_eq!(partition_of(&room_started("", ""), 16), ROOMLESS_PARTITION);
    let stats = v1::TelemetryCall {
        call: Some(Member::TrackStats(v1::TrackStatsCall {
            room_id: "RM_1".to_owned(),
            room_name: "demo".to_owned(),
            ..Default::default()
        })),
        ..Default::default()
    };
    // A room's samples and its lifecycle calls share a partition.
    assert_eq!(partition_of(&stats, 16), partition_of(&room_started("demo", "RM_9"), 16));
    assert_eq!(partition_of(&room_started("foobar", ""), 16), 0xbf9c_f968 % 16);
    let report = v1::TelemetryCall {
        call: Some(Member::Report(v1::ReportCall::default())),
        ..Default::default()
    };
    assert_eq!(partition_of(&report, 16), ROOMLESS_PARTITION);
    assert_eq!(subject("rtctelemetry.v1.calls", 7), "rtctelemetry.v1.calls.7");
}
