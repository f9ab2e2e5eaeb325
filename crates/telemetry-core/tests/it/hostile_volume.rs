//! Hostile volumes of caller-chosen ids (issue 9): hundreds of thousands of distinct nodes,
//! participants, tracks, rooms and countries leave the core's state bounded, every refusal is
//! counted, idle state is forgotten, and no lifecycle call loses its event.

use std::time::Duration;

use telemetry_core::proto as lk;
use telemetry_core::{CallMeta, CoreConfig, CoreLimits, Direction, StatsKey};

use crate::harness::{Harness, participant, stat};

const HOSTILE: usize = 200_000;

fn limited(limits: CoreLimits) -> Harness {
    Harness::with_config(CoreConfig {
        node_id: "node-a".into(),
        flush_interval: Duration::from_secs(30),
        worker_cleanup_wait: Duration::from_secs(60),
        limits,
        ..CoreConfig::default()
    })
}

fn metric(harness: &Harness, name: &str, labels: &[(&str, &str)]) -> u64 {
    harness.service.metrics().value(name, labels) as u64
}

fn key(participant: &str, track: &str) -> StatsKey {
    StatsKey::for_track(
        "DE",
        Direction::Upstream,
        participant.to_owned(),
        track.to_owned(),
        lk::TrackSource::Camera,
        lk::TrackType::Video,
    )
}

fn room(index: usize) -> lk::Room {
    lk::Room { sid: format!("RM_{index}"), name: format!("room-{index}"), ..Default::default() }
}

#[test]
fn distinct_node_ids_are_capped_counted_and_forgotten_when_idle() {
    let harness = limited(CoreLimits {
        max_nodes: 1000,
        node_idle_timeout: Duration::from_secs(600),
        ..CoreLimits::default()
    });
    let service = &harness.service;
    let (mut accepted, mut refused) = (0, 0);
    for index in 0..HOSTILE {
        match service.node(&format!("{index:050}")) {
            Ok(node) => {
                accepted += 1;
                let meta = CallMeta { at: harness.now(), node };
                service
                    .track_stats_at(meta, "RM_x", "", &key("PA_x", "TR_x"), &stat(1000, 1))
                    .expect("a sample without a worker is still counted");
            }
            Err(limit) => {
                refused += 1;
                assert!(limit.to_string().contains("limits.max_nodes"), "{limit}");
            }
        }
    }
    assert_eq!((accepted, refused), (1000, HOSTILE - 1000));
    assert_eq!(metric(&harness, "rtc_telemetry_live", &[("kind", "nodes")]), 1000);
    assert_eq!(
        metric(&harness, "rtc_telemetry_limit_refusals_total", &[("limit", "nodes")]),
        (HOSTILE - 1000) as u64
    );
    assert!(
        service.node("a-new-hostile-node").unwrap_err().to_string().contains("in the last 60 s"),
        "a new node waits for an idle one"
    );
    let series = |harness: &Harness| {
        harness.service.metrics().family("livekit_packet_total").map_or(0, |f| f.samples.len())
    };
    assert!(series(&harness) >= 1000, "one series per live node");
    // The configured node is never refused nor forgotten.
    assert_eq!(service.node("node-a").unwrap(), service.now().node);

    // A minute later (a flush interval, at least a minute), a new node that comes up pushes out
    // the hostile node idle the longest, so invented ids lock real nodes out for a minute at most.
    assert!(service.node("sfu-new").is_err(), "every node made a call within the minute");
    harness.advance(Duration::from_secs(61));
    let real = service.node("sfu-new").expect("takes an idle node's place");
    service.drain_node_rates();
    assert_eq!(metric(&harness, "rtc_telemetry_live", &[("kind", "nodes")]), 1000);
    assert_eq!(metric(&harness, "rtc_telemetry_idle_expired_total", &[("kind", "nodes")]), 1);

    // Ten idle minutes later, a drain forgets every node and its series; new ones are welcome.
    harness.advance(Duration::from_secs(540));
    assert_eq!(service.node("sfu-new").unwrap(), real, "its calls keep it live");
    harness.advance(Duration::from_secs(61));
    service.drain_node_rates();
    harness.outputs();
    assert_eq!(metric(&harness, "rtc_telemetry_live", &[("kind", "nodes")]), 1);
    assert_eq!(metric(&harness, "rtc_telemetry_idle_expired_total", &[("kind", "nodes")]), 1000);
    assert_eq!(series(&harness), 0, "a forgotten node's Prometheus series go with it");
    assert!(service.node("a-new-node").is_ok());
    assert_eq!(service.node_name(service.node("node-a").unwrap()).as_ref(), "node-a");
}

#[test]
fn an_active_node_is_never_forgotten() {
    let harness =
        limited(CoreLimits { node_idle_timeout: Duration::from_secs(60), ..CoreLimits::default() });
    let node = harness.service.node("sfu-1").unwrap();
    for _ in 0..10 {
        harness.advance(Duration::from_secs(30));
        assert_eq!(harness.service.node("sfu-1").unwrap(), node, "its calls keep it live");
        harness.service.drain_node_rates();
    }
    assert_eq!(metric(&harness, "rtc_telemetry_idle_expired_total", &[("kind", "nodes")]), 0);
}

#[test]
fn distinct_participants_are_capped_without_losing_their_events() {
    let harness = limited(CoreLimits { max_participants: 50_000, ..CoreLimits::default() });
    let mut events = 0;
    for index in 0..HOSTILE {
        let room = room(index % 1000);
        harness.service.participant_joined(
            room,
            participant(&format!("PA_{index}")),
            None,
            None,
            true,
            telemetry_core::DEFAULT_GUARD,
        );
        if index % 10_000 == 0 {
            events += harness.events().len();
        }
    }
    events += harness.events().len();
    assert_eq!(harness.service.worker_count(), 50_000);
    assert_eq!(
        metric(&harness, "rtc_telemetry_limit_refusals_total", &[("limit", "participants")]),
        (HOSTILE - 50_000) as u64
    );
    assert_eq!(events, HOSTILE, "every join still has its event");
    // A refused participant's samples are counted as arriving without a worker.
    let refused = format!("PA_{}", HOSTILE - 1);
    harness.track_stats("RM_999", &key(&refused, "TR_1"), stat(100, 1));
    assert_eq!(harness.service.sample_counters().without_worker, 1);
}

#[test]
fn idle_participants_are_closed_and_reaped() {
    let harness = limited(CoreLimits {
        participant_idle_timeout: Duration::from_secs(600),
        ..CoreLimits::default()
    });
    for index in 0..10_000 {
        harness.service.participant_joined(
            room(index % 100),
            participant(&format!("PA_{index}")),
            None,
            None,
            true,
            telemetry_core::DEFAULT_GUARD,
        );
    }
    // One participant keeps sending samples; the rest never leave and never send.
    let mut flushes = 0;
    while harness.service.worker_count() > 1 {
        harness.track_stats("RM_0", &key("PA_0", "TR_1"), stat(100, 1));
        harness.advance(Duration::from_secs(30));
        harness.flush();
        flushes += 1;
        assert!(flushes < 40, "idle workers are closed after 10 min and reaped 1 min later");
    }
    assert_eq!(
        metric(&harness, "rtc_telemetry_idle_expired_total", &[("kind", "participants")]),
        9_999
    );
    assert_eq!(
        metric(&harness, "livekit_participant_total", &[]),
        1,
        "idle workers leave the participant gauge"
    );
}

#[test]
fn distinct_tracks_of_one_participant_are_capped_and_idle_ones_dropped() {
    let harness = limited(CoreLimits {
        max_tracks_per_participant: 64,
        participant_idle_timeout: Duration::from_secs(600),
        ..CoreLimits::default()
    });
    crate::harness::join(&harness, &room(1), &participant("PA_1"));
    let mut shed = 0;
    for index in 0..HOSTILE {
        let result = harness.service.track_stats(
            "RM_1",
            "room-1",
            &key("PA_1", &format!("TR_{index}")),
            &stat(100, 1),
        );
        if let Err(error) = result {
            assert_eq!(error, telemetry_core::Shed::TooManyTracks);
            assert!(error.to_string().contains("limits.max_tracks_per_participant"));
            shed += 1;
        }
    }
    assert_eq!(shed, HOSTILE - 64);
    assert_eq!(harness.service.sample_counters().shed_too_many_tracks, (HOSTILE - 64) as u64);
    let batches = harness.flush();
    assert_eq!(batches[0].stats.len(), 64, "the tracks kept are flushed");
    // Tracks without samples for longer than the idle timeout are dropped, making room again.
    for _ in 0..21 {
        harness.track_stats("RM_1", &key("PA_1", "TR_0"), stat(100, 1));
        harness.advance(Duration::from_secs(30));
        harness.flush();
    }
    assert_eq!(metric(&harness, "rtc_telemetry_idle_expired_total", &[("kind", "tracks")]), 63);
    harness.track_stats("RM_1", &key("PA_1", "TR_new"), stat(100, 1));
}

#[test]
fn rooms_never_ended_are_capped_in_the_room_gauge() {
    let harness = limited(CoreLimits { max_open_rooms: 10_000, ..CoreLimits::default() });
    let mut calls = 0;
    for index in 0..HOSTILE {
        harness.service.room_started(room(index));
        if index % 10_000 == 0 {
            calls += harness.calls().iter().filter(|(w, e)| w.is_some() && e.is_some()).count();
        }
    }
    calls += harness.calls().iter().filter(|(w, e)| w.is_some() && e.is_some()).count();
    assert_eq!(calls, HOSTILE, "every room still has its event and webhook");
    assert_eq!(metric(&harness, "livekit_room_total", &[]), 10_000);
    assert_eq!(metric(&harness, "rtc_telemetry_live", &[("kind", "open_rooms")]), 10_000);
    assert_eq!(
        metric(&harness, "rtc_telemetry_limit_refusals_total", &[("limit", "open_rooms")]),
        (HOSTILE - 10_000) as u64
    );
    // Ending a tracked room frees its place; ending an untracked one changes nothing.
    harness.service.room_ended(room(0));
    harness.service.room_ended(room(HOSTILE - 1));
    assert_eq!(metric(&harness, "livekit_room_total", &[]), 9_999);
}

#[test]
fn caller_chosen_countries_do_not_grow_prometheus_labels() {
    let harness = Harness::new();
    crate::harness::join(&harness, &room(1), &participant("PA_1"));
    // Under `max_samples_per_track` (4096) between flushes.
    for index in 0..4000 {
        let mut key = key("PA_1", "TR_1");
        key.country = format!("country-{index}");
        harness.track_stats("RM_1", &key, stat(100, 1));
    }
    let mut key = key("PA_1", "TR_1");
    key.country = "FR".into();
    harness.track_stats("RM_1", &key, stat(100, 1));
    let family = harness.service.metrics();
    let family = family.family("livekit_packet_total").expect("the family");
    let mut countries: Vec<&str> = family
        .samples
        .iter()
        .flat_map(|sample| sample.labels.iter())
        .filter(|(name, _)| *name == "country")
        .map(|(_, value)| value.as_str())
        .collect();
    countries.sort_unstable();
    countries.dedup();
    assert_eq!(countries, ["FR", "other"]);
}
