//! Call quality: each detector opens and closes at the right sample times whatever the
//! cadence, a publisher's trouble is one upstream issue listing the subscribers it reached, a
//! subscriber's own downlink trouble is one downstream issue, a clean call has none, and every
//! issue is closed by the end of its track.

use proptest::prelude::*;
use telemetry_core::proto as lk;
use telemetry_core::quality::{IssueKind, QualityChange};
use telemetry_core::{Direction, Output, StatsKey, UnixMillis};

use crate::harness::{Harness, T0, join, participant, room};

const TRACK: &str = "TR_audio";
const PUBLISHER: &str = "PA_pub";

/// The trouble a leg has between two times (seconds after `T0`).
#[derive(Clone, Copy, Debug)]
struct Trouble {
    kind: IssueKind,
    from_s: i64,
    to_s: i64,
}

/// One leg's sample over `[start_s, end_s)`: 50 packets a second; during trouble, the trouble's
/// condition over that part of the interval.
fn sample(start_s: i64, end_s: i64, trouble: Option<Trouble>) -> lk::AnalyticsStat {
    let seconds = (end_s - start_s) as u32;
    let bad_s = trouble.map_or(0, |t| (end_s.min(t.to_s) - start_s.max(t.from_s)).max(0)) as u32;
    let kind = trouble.map(|t| t.kind);
    // Trouble in part of a long sample shows as its share of the sample, as a real receiver's
    // counters would; a sample mostly in trouble breaks the thresholds.
    let bad = bad_s * 2 > seconds || (bad_s > 0 && bad_s == seconds);
    let packets = match kind {
        Some(IssueKind::NoMedia) => 50 * (seconds - bad_s),
        _ => 50 * seconds,
    };
    let lost = if kind == Some(IssueKind::PacketLoss) { 10 * bad_s } else { 0 };
    let stream = lk::AnalyticsStream {
        primary_packets: packets,
        primary_bytes: u64::from(packets) * 100,
        packets_lost: lost,
        jitter: if bad && kind == Some(IssueKind::Jitter) { 80_000 } else { 5_000 },
        rtt: if bad && kind == Some(IssueKind::Rtt) { 900 } else { 40 },
        start_time: Some(at(start_s).to_timestamp()),
        end_time: Some(at(end_s).to_timestamp()),
        ..Default::default()
    };
    let score = if bad && kind == Some(IssueKind::LowScore) { 2.0 } else { 4.5 };
    lk::AnalyticsStat {
        streams: vec![stream],
        score,
        mime: "audio/opus".into(),
        ..Default::default()
    }
}

fn at(seconds: i64) -> UnixMillis {
    T0.plus_millis(seconds * 1000)
}

fn key(direction: Direction, participant_id: &str) -> StatsKey {
    StatsKey::for_track(
        "US",
        direction,
        participant_id,
        TRACK,
        lk::TrackSource::Microphone,
        lk::TrackType::Audio,
    )
}

fn subscriber(index: usize) -> String {
    format!("PA_sub{index}")
}

/// A room with one publisher of `TRACK` and `subscribers` subscribers, all joined.
fn call(subscribers: usize) -> Harness {
    let harness = Harness::new();
    let room = room();
    join(&harness, &room, &participant(PUBLISHER));
    for index in 0..subscribers {
        join(&harness, &room, &participant(&subscriber(index)));
    }
    harness.outputs();
    harness
}

/// Reports every `cadence_s` up to `until_s`: the publisher's upstream, then each subscriber's
/// downstream, with the trouble of each leg. Returns the quality changes, with the call time
/// each was raised at.
fn run(
    harness: &Harness,
    subscribers: usize,
    cadence_s: i64,
    until_s: i64,
    upstream: Option<Trouble>,
    downstream: &dyn Fn(usize) -> Option<Trouble>,
) -> Vec<QualityChange> {
    let mut changes = Vec::new();
    let mut start_s = 0;
    while start_s < until_s {
        let end_s = start_s + cadence_s;
        harness.clock.set(at(end_s));
        harness.track_stats(
            "RoomSid",
            &key(Direction::Upstream, PUBLISHER),
            sample(start_s, end_s, upstream),
        );
        for index in 0..subscribers {
            harness.track_stats(
                "RoomSid",
                &key(Direction::Downstream, &subscriber(index)),
                sample(start_s, end_s, downstream(index)),
            );
        }
        changes.extend(quality_changes(harness));
        start_s = end_s;
    }
    changes
}

fn quality_changes(harness: &Harness) -> Vec<QualityChange> {
    harness
        .outputs()
        .into_iter()
        .filter_map(|output| match output.output {
            Output::Quality(change) => Some(*change),
            _ => None,
        })
        .collect()
}

fn seconds(at: UnixMillis) -> i64 {
    (at.0 - T0.0) / 1000
}

#[test]
fn each_detector_opens_and_closes_at_the_trouble_s_times_at_every_cadence() {
    for kind in IssueKind::ALL {
        // Trouble from 63 s to 128 s: not on any cadence's sample boundary.
        let trouble = Trouble { kind, from_s: 63, to_s: 128 };
        for cadence_s in [1, 5, 30] {
            let harness = call(0);
            let changes = run(&harness, 0, cadence_s, 240, Some(trouble), &|_| None);
            let context = format!("{} at {cadence_s} s", kind.as_str());
            assert_eq!(changes.len(), 2, "{context}: {changes:#?}");
            let (started, ended) = (&changes[0], &changes[1]);
            assert!(!started.issue.is_ended() && ended.issue.is_ended(), "{context}");
            assert_eq!(started.issue.id, ended.issue.id, "{context}");
            assert_eq!(started.issue.kind, kind);
            assert_eq!(started.issue.direction, Direction::Upstream);
            assert_eq!(&*started.issue.participant_id, PUBLISHER);
            assert_eq!(started.issue.track_id, TRACK);
            // Started and ended in sample time, within one sample interval of the trouble.
            let started_s = seconds(started.issue.started_at);
            let ended_s = seconds(ended.issue.ended_at.expect("ended"));
            assert!((started_s - 63).abs() <= cadence_s, "{context}: started at {started_s}");
            assert!((ended_s - 128).abs() <= cadence_s, "{context}: ended at {ended_s}");
            assert_eq!(ended.issue.started_at, started.issue.started_at, "{context}");
            // Raised once the condition held for `open_after` (10 s), within one sample.
            let raised_s = seconds(started.at);
            assert!(
                raised_s >= started_s + 10 && raised_s <= started_s + 10 + cadence_s,
                "{context}"
            );
            let closed_s = seconds(ended.at);
            assert!(closed_s >= ended_s + 10 && closed_s <= ended_s + 10 + cadence_s, "{context}");
            match kind {
                IssueKind::PacketLoss => {
                    assert!(ended.issue.value > 5.0 && ended.issue.value <= 100.0 * 10.0 / 60.0)
                }
                IssueKind::Jitter => assert_eq!(ended.issue.value, 80.0),
                IssueKind::Rtt => assert_eq!(ended.issue.value, 900.0),
                IssueKind::LowScore => assert_eq!(ended.issue.value, 2.0),
                IssueKind::NoMedia => assert_eq!(ended.issue.value, 0.0),
            }
        }
    }
}

#[test]
fn a_clean_call_opens_no_issue() {
    for cadence_s in [1, 5, 30] {
        let harness = call(3);
        assert!(run(&harness, 3, cadence_s, 300, None, &|_| None).is_empty());
    }
}

#[test]
fn a_lossy_publisher_with_five_subscribers_is_one_upstream_issue_with_five_affected() {
    for cadence_s in [1, 5, 30] {
        let harness = call(5);
        let trouble = Trouble { kind: IssueKind::PacketLoss, from_s: 60, to_s: 120 };
        // The loss reaches every subscriber's downstream too.
        let changes = run(&harness, 5, cadence_s, 240, Some(trouble), &|_| Some(trouble));
        assert_eq!(changes.len(), 2, "at {cadence_s} s: {changes:#?}");
        let ended = &changes[1].issue;
        assert_eq!(ended.direction, Direction::Upstream);
        assert_eq!(&*ended.participant_id, PUBLISHER);
        let mut affected = ended.affected.clone();
        affected.sort();
        assert_eq!(affected, (0..5).map(subscriber).collect::<Vec<_>>(), "at {cadence_s} s");
    }
}

/// The ingest routes wait for the last output a request's calls produced: a sample that opens
/// or closes an issue names its quality output, and one that changes nothing names none.
#[test]
fn a_sample_that_opens_or_closes_an_issue_returns_its_output_s_sequence_number() {
    let harness = call(0);
    let trouble = Some(Trouble { kind: IssueKind::PacketLoss, from_s: 0, to_s: 30 });
    let upstream = key(Direction::Upstream, PUBLISHER);
    let mut returned = Vec::new();
    for start_s in (0..60).step_by(5) {
        harness.clock.set(at(start_s + 5));
        let meta = harness.meta();
        let seq = harness
            .service
            .track_stats_at(
                meta,
                "RoomSid",
                "RoomName",
                &upstream,
                &sample(start_s, start_s + 5, trouble),
            )
            .expect("sample accepted");
        let outputs = harness.outputs();
        assert_eq!(seq, outputs.last().map(|output| output.seq), "at {start_s} s: {outputs:?}");
        returned.extend(seq);
    }
    assert_eq!(returned.len(), 2, "one issue opened and closed: {returned:?}");
}

#[test]
fn a_subscriber_s_bad_downlink_is_one_downstream_issue_on_its_track() {
    for cadence_s in [1, 5, 30] {
        let harness = call(5);
        let trouble = Trouble { kind: IssueKind::PacketLoss, from_s: 60, to_s: 120 };
        let changes =
            run(&harness, 5, cadence_s, 240, None, &|index| (index == 2).then_some(trouble));
        assert_eq!(changes.len(), 2, "at {cadence_s} s: {changes:#?}");
        for change in &changes {
            assert_eq!(change.issue.direction, Direction::Downstream);
            assert_eq!(&*change.issue.participant_id, subscriber(2));
            assert_eq!(change.issue.track_id, TRACK);
            assert!(change.issue.affected.is_empty());
        }
    }
}

#[test]
fn a_subscriber_s_own_high_rtt_is_its_own_issue_even_while_the_publisher_s_rtt_is_high() {
    let harness = call(1);
    let trouble = Trouble { kind: IssueKind::Rtt, from_s: 60, to_s: 120 };
    let changes = run(&harness, 1, 5, 240, Some(trouble), &|_| Some(trouble));
    let directions: Vec<(Direction, bool)> =
        changes.iter().map(|change| (change.issue.direction, change.issue.is_ended())).collect();
    assert_eq!(directions.len(), 4, "{changes:#?}");
    assert_eq!(directions.iter().filter(|(d, _)| *d == Direction::Downstream).count(), 2);
}

#[test]
fn issues_end_when_the_participant_leaves_or_the_track_is_unpublished() {
    let trouble = Trouble { kind: IssueKind::Jitter, from_s: 0, to_s: 1000 };
    // The publisher leaves: its upstream issue ends at the leave, before its leave's outputs.
    let harness = call(0);
    let opened = run(&harness, 0, 5, 60, Some(trouble), &|_| None);
    assert_eq!(opened.len(), 1);
    harness.service.participant_left(
        room(),
        participant(PUBLISHER),
        true,
        telemetry_core::DEFAULT_GUARD,
    );
    let outputs = harness.outputs();
    let Output::Quality(ended) = &outputs[0].output else { panic!("{outputs:#?}") };
    assert_eq!(ended.issue.id, opened[0].issue.id);
    assert_eq!(ended.issue.ended_at, Some(at(60)));
    assert!(matches!(outputs[1].output, Output::Call(_)));

    // The track is unpublished.
    let harness = call(0);
    let opened = run(&harness, 0, 5, 60, Some(trouble), &|_| None);
    assert_eq!(opened.len(), 1);
    let track = lk::TrackInfo { sid: TRACK.into(), ..Default::default() };
    harness.service.track_unpublished(room(), PUBLISHER, "pub", track, false, true);
    let ended = quality_changes(&harness);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].issue.id, opened[0].issue.id);
    // Late samples of the track open nothing more once its publisher left.
    harness.service.participant_left(
        room(),
        participant(PUBLISHER),
        true,
        telemetry_core::DEFAULT_GUARD,
    );
    harness.outputs();
    let late = run(&harness, 0, 5, 60, Some(trouble), &|_| None);
    assert!(late.is_empty(), "{late:#?}");
}

#[test]
fn a_muted_track_has_no_no_media_issue() {
    let harness = call(0);
    let track = lk::TrackInfo { sid: TRACK.into(), ..Default::default() };
    run(&harness, 0, 5, 10, None, &|_| None);
    harness.service.track_muted(room(), PUBLISHER, track);
    let silent = Trouble { kind: IssueKind::NoMedia, from_s: 10, to_s: 1000 };
    assert!(run(&harness, 0, 5, 120, Some(silent), &|_| None).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the trouble, cadence and end of the track, every issue that opened is closed by
    /// the end of its track, once, with the same id, after it started.
    #[test]
    fn every_opened_issue_is_closed_by_the_end_of_its_track(
        kind_index in 0usize..5,
        cadence_s in prop::sample::select(vec![1i64, 2, 5, 10, 30]),
        from_s in 0i64..200,
        length_s in 0i64..200,
        until_s in 1i64..300,
        downstream_kind in prop::option::of(0usize..5),
        end_by_unpublish in any::<bool>(),
    ) {
        let harness = call(2);
        let trouble = Trouble { kind: IssueKind::ALL[kind_index], from_s, to_s: from_s + length_s };
        let down = downstream_kind.map(|k| Trouble { kind: IssueKind::ALL[k], from_s, to_s: from_s + length_s });
        let mut changes = run(&harness, 2, cadence_s, until_s, Some(trouble), &|index| down.filter(|_| index == 0));
        let track = lk::TrackInfo { sid: TRACK.into(), ..Default::default() };
        if end_by_unpublish {
            harness.service.track_unpublished(room(), PUBLISHER, "pub", track.clone(), false, true);
            for index in 0..2 {
                harness.service.track_unsubscribed(room(), &subscriber(index), track.clone(), true);
            }
        } else {
            for sid in [PUBLISHER.to_owned(), subscriber(0), subscriber(1)] {
                harness.service.participant_left(room(), participant(&sid), true, telemetry_core::DEFAULT_GUARD);
            }
        }
        changes.extend(quality_changes(&harness));
        let mut open = std::collections::BTreeMap::new();
        for change in &changes {
            let issue = &change.issue;
            if issue.is_ended() {
                let started = open.remove(&issue.id);
                prop_assert_eq!(started, Some(issue.started_at), "{:?} ended without start", issue.id);
                prop_assert!(issue.ended_at.expect("ended") >= issue.started_at);
            } else {
                prop_assert!(open.insert(issue.id.clone(), issue.started_at).is_none());
            }
        }
        prop_assert!(open.is_empty(), "left open: {:?}", open);
    }
}

/// The publisher's audio track `TRACK`, as `TrackPublished` carries it.
fn audio_track(muted: bool) -> lk::TrackInfo {
    lk::TrackInfo {
        sid: TRACK.into(),
        r#type: lk::TrackType::Audio as i32,
        mime_type: "audio/opus".into(),
        muted,
        ..Default::default()
    }
}

/// From `from_s` to `until_s`, every `cadence_s`: the publisher's upstream sample of `TRACK`
/// when `sends(start_s)` says it sends one, then a flush at the sample's end, the flush clock
/// `lag_s` later. Returns the quality changes.
fn silence(
    harness: &Harness,
    cadence_s: i64,
    (from_s, until_s): (i64, i64),
    lag_s: i64,
    sends: &dyn Fn(i64) -> bool,
) -> Vec<QualityChange> {
    let mut changes = Vec::new();
    let mut start_s = from_s;
    while start_s < until_s {
        let end_s = start_s + cadence_s;
        harness.clock.set(at(end_s + lag_s));
        if sends(start_s) {
            let meta = telemetry_core::CallMeta { at: at(end_s), ..harness.meta() };
            harness
                .service
                .track_stats_at(
                    meta,
                    "RoomSid",
                    "RoomName",
                    &key(Direction::Upstream, PUBLISHER),
                    &sample(start_s, end_s, None),
                )
                .expect("sample accepted");
        }
        harness.service.flush_stats();
        changes.extend(quality_changes(harness));
        start_s = end_s;
    }
    changes
}

/// A published track whose samples stop opens `no_media` from the end of its last sample, at
/// every cadence of samples and flushes, and closes it from the start of the first sample with
/// packets.
#[test]
fn a_published_track_that_stops_sending_samples_opens_no_media_from_its_last_one() {
    for cadence_s in [1, 5, 30] {
        let harness = call(0);
        harness.clock.set(at(0));
        harness.service.track_published(room(), PUBLISHER, "pub", audio_track(false), true);
        harness.outputs();
        // Samples until 60 s, none until 150 s, samples again until 240 s.
        let sends = |start_s: i64| !(60..150).contains(&start_s);
        let changes = silence(&harness, cadence_s, (0, 240), 0, &sends);
        let context = format!("at {cadence_s} s: {changes:#?}");
        assert_eq!(changes.len(), 2, "{context}");
        let (opened, closed) = (&changes[0], &changes[1]);
        assert_eq!(opened.issue.kind, IssueKind::NoMedia, "{context}");
        assert_eq!(opened.issue.direction, Direction::Upstream);
        assert_eq!(&*opened.issue.participant_id, PUBLISHER);
        assert_eq!(opened.issue.track_id, TRACK);
        assert_eq!(opened.issue.value, 0.0);
        assert_eq!(opened.issue.started_at, at(60), "{context}");
        // Raised once the silence lasted `open_after` (10 s) and one sample interval (a track
        // is not silent between two samples), within one flush.
        let raised_s = seconds(opened.at);
        assert!((70 + cadence_s..=70 + 2 * cadence_s).contains(&raised_s), "{context}");
        assert_eq!(closed.issue.id, opened.issue.id);
        assert_eq!(closed.issue.ended_at, Some(at(150)), "{context}");
        let closed_s = seconds(closed.at);
        assert!((160..=160 + cadence_s).contains(&closed_s), "{context}");
    }
}

/// A track that reports every 30 s, flushed every second, is not silent between two samples;
/// once its samples stop it is, from the last one's end.
#[test]
fn a_track_reporting_every_30_s_flushed_every_second_is_silent_only_once_its_samples_stop() {
    let harness = call(0);
    harness.clock.set(at(25));
    harness.service.track_published(room(), PUBLISHER, "pub", audio_track(false), true);
    harness.outputs();
    let mut changes = Vec::new();
    for second in 26..400 {
        harness.clock.set(at(second));
        if second % 30 == 0 && second <= 300 {
            harness.track_stats(
                "RoomSid",
                &key(Direction::Upstream, PUBLISHER),
                sample(second - 30, second, None),
            );
        }
        harness.service.flush_stats();
        changes.extend(quality_changes(&harness));
    }
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].issue.kind, IssueKind::NoMedia);
    assert_eq!(changes[0].issue.started_at, at(300));
    // `open_after` (10 s) and the track's 30 s interval after its last sample.
    assert_eq!(seconds(changes[0].at), 340);
}

#[test]
fn a_published_track_that_never_sends_a_sample_opens_no_media_from_its_publication() {
    for cadence_s in [1, 5, 30] {
        let harness = call(0);
        harness.clock.set(at(3));
        harness.service.track_published(room(), PUBLISHER, "pub", audio_track(false), true);
        harness.outputs();
        let changes = silence(&harness, cadence_s, (3, 123), 0, &|_| false);
        let context = format!("at {cadence_s} s: {changes:#?}");
        assert_eq!(changes.len(), 1, "{context}");
        assert_eq!(changes[0].issue.kind, IssueKind::NoMedia, "{context}");
        assert_eq!(changes[0].issue.started_at, at(3), "{context}");
        assert!((13..=13 + cadence_s).contains(&seconds(changes[0].at)), "{context}");
        // It ends when the track is unpublished, and silence opens nothing more.
        harness.clock.set(at(130));
        harness.service.track_unpublished(room(), PUBLISHER, "pub", audio_track(false), true, true);
        let ended = quality_changes(&harness);
        assert_eq!(ended.len(), 1, "{context}");
        assert_eq!(ended[0].issue.ended_at, Some(at(130)));
        assert!(silence(&harness, cadence_s, (130, 200), 0, &|_| false).is_empty(), "{context}");
    }
}

/// Sample time, not the flush clock: calls that arrive an hour late (a backlog, a replay) do
/// not make a track that keeps sending look silent, and a silent one still opens after
/// `open_after` of the flush clock once its calls stop.
#[test]
fn late_calls_that_keep_coming_open_no_no_media() {
    for cadence_s in [1, 5, 30] {
        let harness = call(0);
        harness.clock.set(at(3600));
        let meta = telemetry_core::CallMeta { at: at(0), ..harness.meta() };
        harness
            .service
            .apply(
                meta,
                telemetry_core::Call::TrackPublished {
                    room: room(),
                    participant_id: PUBLISHER.into(),
                    identity: "pub".into(),
                    track: audio_track(false),
                    should_send_event: true,
                },
            )
            .expect("applied");
        harness.outputs();
        let changes = silence(&harness, cadence_s, (0, 300), 3600, &|_| true);
        assert!(changes.is_empty(), "at {cadence_s} s: {changes:#?}");
        // Then the calls stop: silent from the last sample's end, read off the flush clock.
        let changes = silence(&harness, cadence_s, (300, 360), 3600, &|_| false);
        assert_eq!(changes.len(), 1, "at {cadence_s} s: {changes:#?}");
        assert_eq!(changes[0].issue.started_at, at(300));
        let raised_s = seconds(changes[0].at);
        assert!((310 + cadence_s..=310 + 2 * cadence_s).contains(&raised_s), "at {cadence_s} s");
    }
}

#[test]
fn a_muted_silent_track_opens_nothing_until_unmuted_and_a_mute_ends_no_media() {
    for cadence_s in [1, 5, 30] {
        let harness = call(0);
        harness.clock.set(at(0));
        // Published muted: nothing for two minutes of silence.
        harness.service.track_published(room(), PUBLISHER, "pub", audio_track(true), true);
        harness.outputs();
        let context = format!("at {cadence_s} s");
        assert!(silence(&harness, cadence_s, (0, 120), 0, &|_| false).is_empty(), "{context}");
        // Unmuted at 120 s and still silent: from the unmute.
        harness.service.track_unmuted(room(), PUBLISHER, audio_track(false));
        let changes = silence(&harness, cadence_s, (120, 180), 0, &|_| false);
        assert_eq!(changes.len(), 1, "{context}: {changes:#?}");
        assert_eq!(changes[0].issue.started_at, at(120), "{context}");
        // Muted again at 180 s: the issue ends there, and nothing opens while muted.
        harness.service.track_muted(room(), PUBLISHER, audio_track(true));
        let ended = quality_changes(&harness);
        assert_eq!(ended.len(), 1, "{context}: {ended:#?}");
        assert_eq!(ended[0].issue.id, changes[0].issue.id);
        assert_eq!(ended[0].issue.ended_at, Some(at(180)));
        assert!(silence(&harness, cadence_s, (180, 300), 0, &|_| false).is_empty(), "{context}");
    }
}

#[test]
fn a_silent_track_s_no_media_ends_when_its_publisher_leaves() {
    let harness = call(0);
    harness.clock.set(at(0));
    harness.service.track_published(room(), PUBLISHER, "pub", audio_track(false), true);
    harness.outputs();
    let opened = silence(&harness, 5, (0, 30), 0, &|_| false);
    assert_eq!(opened.len(), 1, "{opened:#?}");
    harness.service.participant_left(
        room(),
        participant(PUBLISHER),
        true,
        telemetry_core::DEFAULT_GUARD,
    );
    let ended = quality_changes(&harness);
    assert_eq!(ended.len(), 1, "{ended:#?}");
    assert_eq!(ended[0].issue.id, opened[0].issue.id);
    assert_eq!(ended[0].issue.ended_at, Some(at(30)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A published track that stops and resumes sending at any times, flushed at any cadence,
    /// muted or not, then ended by a mute, an unpublish or its publisher's leave: every
    /// `no_media` issue that opened is closed, once, after it started.
    #[test]
    fn every_no_media_issue_of_a_silent_track_is_closed(
        cadence_s in prop::sample::select(vec![1i64, 5, 30]),
        stop_s in 0i64..200,
        resume_s in 0i64..300,
        until_s in 1i64..300,
        muted_at_s in prop::option::of(0i64..300),
        end in 0usize..3,
    ) {
        let harness = call(0);
        harness.clock.set(at(0));
        harness.service.track_published(room(), PUBLISHER, "pub", audio_track(false), true);
        harness.outputs();
        let sends = |start_s: i64| start_s < stop_s || start_s >= resume_s;
        let mut changes = Vec::new();
        let mut from_s = 0;
        if let Some(muted_s) = muted_at_s.filter(|&s| s < until_s) {
            changes.extend(silence(&harness, cadence_s, (0, muted_s), 0, &sends));
            harness.service.track_muted(room(), PUBLISHER, audio_track(true));
            changes.extend(quality_changes(&harness));
            from_s = muted_s;
        }
        changes.extend(silence(&harness, cadence_s, (from_s, until_s.max(from_s)), 0, &sends));
        match end {
            0 => harness.service.track_muted(room(), PUBLISHER, audio_track(true)),
            1 => harness.service.track_unpublished(room(), PUBLISHER, "pub", audio_track(false), true, true),
            _ => harness.service.participant_left(room(), participant(PUBLISHER), true, telemetry_core::DEFAULT_GUARD),
        }
        changes.extend(quality_changes(&harness));
        let mut open = std::collections::BTreeMap::new();
        for change in &changes {
            let issue = &change.issue;
            if issue.is_ended() {
                let started = open.remove(&issue.id);
                prop_assert_eq!(started, Some(issue.started_at), "{:?} ended without start", issue.id);
                prop_assert!(issue.ended_at.expect("ended") >= issue.started_at);
            } else {
                prop_assert!(open.insert(issue.id.clone(), issue.started_at).is_none());
            }
        }
        prop_assert!(open.is_empty(), "left open: {:?}", open);
    }
}
