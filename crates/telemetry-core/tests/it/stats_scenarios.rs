//! LiveKit's `pkg/telemetry/stats_test.go`, restated (reference §6.2): data keys with country
//! "test", a join first, and "flush" meaning `FlushStats`.

use telemetry_core::proto as lk;
use telemetry_core::{Direction, StatsBatch, StatsKey};

use crate::harness::{Harness, join, participant, room, stat, stat_with};

fn key(direction: Direction, track: &str) -> StatsKey {
    StatsKey::for_data("test", direction, "part1", track)
}

fn joined() -> Harness {
    let harness = Harness::new();
    join(&harness, &room(), &participant("part1"));
    harness.outputs();
    harness
}

fn stream(batch: &StatsBatch, index: usize) -> lk::AnalyticsStream {
    batch.stats[index].coalesced.stream()
}

/// §6.2.1: the flushed stat is stamped with room and participant.
#[test]
fn flushed_stat_is_stamped_with_room_and_participant() {
    let harness = joined();
    harness.track_stats("RoomSid", &key(Direction::Downstream, "track1"), stat(33, 1));
    let batches = harness.flush();
    assert_eq!(batches.len(), 1);
    let stats = batches[0].to_analytics_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].kind, lk::StreamType::Downstream as i32);
    assert_eq!(stats[0].participant_id, "part1");
    assert_eq!(stats[0].room_id, "RoomSid");
    assert_eq!(stats[0].room_name, "RoomName");
    assert_eq!(stats[0].track_id, "track1");
    assert_eq!(stats[0].node, "node-a");
    assert!(stats[0].id.starts_with("AS_"));
    assert_eq!(stats[0].time_stamp, Some(harness.now().to_timestamp()));
}

/// §6.2.2: samples of one track are summed.
#[test]
fn downstream_samples_of_one_track_are_summed() {
    let harness = joined();
    harness.track_stats("RoomSid", &key(Direction::Downstream, "track1"), stat(33, 1));
    harness.track_stats("RoomSid", &key(Direction::Downstream, "track1"), stat(23, 1));
    let batches = harness.flush();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].stats.len(), 1);
    assert_eq!(&*batches[0].stats[0].track_id, "track1");
    assert_eq!(
        (stream(&batches[0], 0).primary_bytes, stream(&batches[0], 0).primary_packets),
        (56, 2)
    );
}

/// §6.2.3: several tracks give one batch with one stat each.
#[test]
fn several_downstream_tracks_keep_their_own_values() {
    let harness = joined();
    harness.track_stats("RoomSid", &key(Direction::Downstream, "track1"), stat(33, 1));
    harness.track_stats("RoomSid", &key(Direction::Downstream, "track2"), stat(23, 1));
    let batches = harness.flush();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].stats.len(), 2);
    let by_track =
        |track: &str| batches[0].stats.iter().find(|s| &*s.track_id == track).expect("stat");
    assert_eq!(by_track("track1").coalesced.stream().primary_bytes, 33);
    assert_eq!(by_track("track2").coalesced.stream().primary_bytes, 23);
}

/// §6.2.4: RTCP counters and loss are summed, RTT and jitter are maxima.
#[test]
fn downstream_rtcp_and_quality_aggregation() {
    let harness = joined();
    let track = key(Direction::Downstream, "track1");
    harness.track_stats(
        "RoomSid",
        &track,
        stat_with(lk::AnalyticsStream {
            primary_bytes: 1,
            primary_packets: 1,
            packets_lost: 3,
            nacks: 1,
            plis: 1,
            rtt: 23,
            jitter: 3,
            ..Default::default()
        }),
    );
    harness.track_stats(
        "RoomSid",
        &track,
        stat_with(lk::AnalyticsStream {
            primary_bytes: 2,
            primary_packets: 2,
            packets_lost: 4,
            nacks: 1,
            plis: 1,
            firs: 1,
            rtt: 10,
            jitter: 5,
            ..Default::default()
        }),
    );
    let batches = harness.flush();
    let s = &stream(&batches[0], 0);
    assert_eq!((s.nacks, s.plis, s.firs), (2, 2, 1));
    assert_eq!((s.rtt, s.jitter), (23, 5));
    assert_eq!(s.packets_lost, 7);
}

/// §6.2.5: loss deltas are reported per flush as sent, not differenced.
#[test]
fn loss_deltas_are_not_differenced_across_flushes() {
    let harness = joined();
    let track = key(Direction::Downstream, "track1");
    harness.track_stats(
        "RoomSid",
        &track,
        stat_with(lk::AnalyticsStream { packets_lost: 1, ..Default::default() }),
    );
    let first = harness.flush();
    harness.track_stats(
        "RoomSid",
        &track,
        stat_with(lk::AnalyticsStream { packets_lost: 4, ..Default::default() }),
    );
    let second = harness.flush();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_eq!(stream(&first[0], 0).packets_lost, 1);
    assert_eq!(stream(&second[0], 0).packets_lost, 4);
}

/// §6.2.6: RTCP counters stay with their own track.
#[test]
fn downstream_rtcp_on_several_tracks() {
    let harness = joined();
    harness.track_stats(
        "RoomSid",
        &key(Direction::Downstream, "track1"),
        stat_with(lk::AnalyticsStream { nacks: 0, ..Default::default() }),
    );
    harness.track_stats(
        "RoomSid",
        &key(Direction::Downstream, "track1"),
        stat_with(lk::AnalyticsStream { nacks: 1, ..Default::default() }),
    );
    harness.track_stats(
        "RoomSid",
        &key(Direction::Downstream, "track2"),
        stat_with(lk::AnalyticsStream { firs: 1, ..Default::default() }),
    );
    let batches = harness.flush();
    assert_eq!(batches[0].stats.len(), 2);
    let by_track = |track: &str| {
        batches[0].stats.iter().find(|s| &*s.track_id == track).expect("stat").coalesced.stream()
    };
    assert_eq!(by_track("track1").nacks, 1);
    assert_eq!(by_track("track2").firs, 1);
}

/// §6.2.7: upstream aggregation, kind UPSTREAM.
#[test]
fn upstream_aggregation() {
    let harness = joined();
    let track = key(Direction::Upstream, "track1");
    harness.track_stats(
        "RoomSid",
        &track,
        stat_with(lk::AnalyticsStream {
            packets_lost: 3,
            nacks: 1,
            plis: 1,
            firs: 1,
            rtt: 13,
            jitter: 5,
            ..Default::default()
        }),
    );
    harness.track_stats(
        "RoomSid",
        &track,
        stat_with(lk::AnalyticsStream {
            packets_lost: 4,
            nacks: 1,
            plis: 1,
            firs: 1,
            rtt: 33,
            jitter: 2,
            ..Default::default()
        }),
    );
    let batches = harness.flush();
    let s = &stream(&batches[0], 0);
    assert_eq!((s.nacks, s.plis, s.firs, s.rtt, s.jitter, s.packets_lost), (2, 2, 2, 33, 5, 7));
    assert_eq!(batches[0].to_analytics_stats()[0].kind, lk::StreamType::Upstream as i32);
}

/// §6.2.8: two upstream tracks, then an unpublish and an empty flush that sends nothing.
#[test]
fn upstream_tracks_then_unpublish_sends_nothing_more() {
    let harness = joined();
    for (bytes, packets) in [(1, 1), (2, 2)] {
        let mut first = stat(bytes, packets);
        let mut second = stat(bytes, packets);
        if bytes == 1 {
            first.streams[0].nacks = 1;
            second.streams[0].firs = 1;
        }
        harness.track_stats("RoomSid", &key(Direction::Upstream, "track1"), first);
        harness.track_stats("RoomSid", &key(Direction::Upstream, "track2"), second);
    }
    let batches = harness.flush();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].stats.len(), 2);
    for stat in &batches[0].stats {
        assert_eq!(
            (stat.coalesced.stream().primary_bytes, stat.coalesced.stream().primary_packets),
            (3, 3)
        );
    }
    assert_eq!(batches[0].stats[0].coalesced.stream().nacks, 1);
    assert_eq!(batches[0].stats[1].coalesced.stream().firs, 1);

    harness.service.track_unpublished(
        room(),
        "part1",
        "part1-identity",
        lk::TrackInfo { sid: "track2".into(), ..Default::default() },
        true,
        true,
    );
    assert!(harness.flush().is_empty(), "nothing new arrived: an empty flush sends nothing");
}

/// §6.2.9: a join and a leave without samples send no stats.
#[test]
fn no_stats_no_send() {
    let harness = joined();
    harness.service.participant_left(
        room(),
        participant("part1"),
        true,
        telemetry_core::DEFAULT_GUARD,
    );
    assert!(harness.flush().is_empty());
}

/// §6.2.10: a single upstream sample comes out unchanged.
#[test]
fn single_upstream_track() {
    let harness = joined();
    harness.track_stats("RoomSid", &key(Direction::Upstream, "track1"), stat(3, 3));
    let batches = harness.flush();
    let s = &stream(&batches[0], 0);
    assert_eq!((s.primary_bytes, s.primary_packets), (3, 3));
    assert_eq!(batches[0].stats[0].direction, Direction::Upstream);
}

/// §6.2.11: simulcast streams of one sample merge into one stream.
#[test]
fn simulcast_streams_are_merged() {
    let harness = joined();
    let sample = lk::AnalyticsStat {
        streams: vec![
            lk::AnalyticsStream {
                primary_bytes: 1,
                primary_packets: 1,
                ssrc: 11,
                ..Default::default()
            },
            lk::AnalyticsStream {
                primary_bytes: 2,
                primary_packets: 2,
                ssrc: 22,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    harness.track_stats("RoomSid", &key(Direction::Upstream, "track1"), sample);
    let batches = harness.flush();
    let stats = batches[0].to_analytics_stats();
    assert_eq!(stats[0].streams.len(), 1);
    assert_eq!(
        (
            stats[0].streams[0].primary_bytes,
            stats[0].streams[0].primary_packets,
            stats[0].streams[0].ssrc
        ),
        (3, 3, 0)
    );
}

/// §6.2.12: both directions in one batch, upstream first.
#[test]
fn both_directions_in_one_batch_upstream_first() {
    let harness = joined();
    harness.track_stats("RoomSid", &key(Direction::Downstream, "trackID1"), stat(5, 1));
    harness.track_stats("RoomSid", &key(Direction::Upstream, "trackID"), stat(7, 1));
    let batches = harness.flush();
    assert_eq!(batches.len(), 1);
    let stats = batches[0].to_analytics_stats();
    assert_eq!(stats.len(), 2);
    assert_eq!(
        (stats[0].kind, stats[0].track_id.as_str()),
        (lk::StreamType::Upstream as i32, "trackID")
    );
    assert_eq!(
        (stats[1].kind, stats[1].track_id.as_str()),
        (lk::StreamType::Downstream as i32, "trackID1")
    );
}

/// LiveKit drops a sample for a participant without a worker from analytics.
#[test]
fn sample_without_worker_is_not_in_analytics_but_counted() {
    let harness = Harness::new();
    harness.track_stats("RoomSid", &key(Direction::Upstream, "track1"), stat(3, 3));
    assert!(harness.flush().is_empty());
    assert_eq!(harness.service.sample_counters().without_worker, 1);
    let metrics = harness.service.metrics();
    assert_eq!(
        metrics.value(
            "livekit_packet_bytes",
            &[("direction", "incoming"), ("transmission", "initial")]
        ),
        3.0
    );
}
