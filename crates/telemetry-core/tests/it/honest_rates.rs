//! Honest rates (DESIGN.md): exact windows, average and peak rates at the samples' resolution,
//! and node-level rate series fed by spreading each sample over the seconds it covers.

use std::time::Duration;

use telemetry_core::rates::{RateCell, RatePoint, window_points};
use telemetry_core::{
    CoreConfig, DEFAULT_GUARD, Direction, Output, StatsBatch, StatsKey, UnixMillis,
};

use crate::harness::{Harness, participant, room, stat, stat_with, timed_stream};

const MBIT: f64 = 1_000_000.0;

/// Collects stats batches and node rate cells while driving a harness through time.
struct Run {
    harness: Harness,
    batches: Vec<StatsBatch>,
    cells: std::collections::BTreeMap<i64, RateCell>,
}

impl Run {
    fn new(config: CoreConfig) -> Self {
        let harness = Harness::with_config(config);
        harness.service.participant_joined(
            room(),
            participant("PA_1"),
            None,
            None,
            true,
            DEFAULT_GUARD,
        );
        Self { harness, batches: Vec::new(), cells: Default::default() }
    }

    fn collect(&mut self) {
        self.harness.service.drain_node_rates();
        for output in self.harness.outputs() {
            match output.output {
                Output::Stats(batch) => self.batches.push(batch),
                Output::NodeRates(rates) => {
                    for cell in rates.cells {
                        self.cells.entry(cell.second).or_default().add(&cell.cell);
                    }
                }
                _ => {}
            }
        }
    }

    fn points(&self, from: UnixMillis, to: UnixMillis, window_seconds: i64) -> Vec<RatePoint> {
        window_points(self.cells.iter().map(|(s, c)| (*s, *c)), from, to, window_seconds)
    }

    /// Total bytes and covered milliseconds over every coalesced window.
    fn totals(&self) -> (u64, i64) {
        self.batches
            .iter()
            .flat_map(|b| &b.stats)
            .map(|s| {
                (s.coalesced.totals.wire_bytes(), s.coalesced.window.expect("window").covered_ms)
            })
            .fold((0, 0), |(b, c), (bytes, covered)| (b + bytes, c + covered))
    }
}

/// Drives a constant data stream of `bits_per_second`, reported every `cadence` seconds without
/// timestamps, from `stream_start` (seconds after the join) for `duration` seconds, flushing every
/// `flush` seconds. The reporter ticks every `cadence` seconds from the join.
fn constant_stream(
    cadence: i64,
    stream_start: i64,
    duration: i64,
    flush: i64,
) -> (Run, UnixMillis) {
    let mut run = Run::new(CoreConfig {
        flush_interval: Duration::from_secs(flush as u64),
        ..CoreConfig::default()
    });
    let joined = run.harness.now();
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DTPA_1");
    let bytes_per_second = 125_000u64;
    let end = stream_start + duration;
    let mut reported_until = stream_start;
    for second in 1..=end {
        run.harness.advance(Duration::from_secs(1));
        if second % cadence == 0 && second > stream_start {
            let bytes = (second - reported_until) as u64 * bytes_per_second;
            reported_until = second;
            run.harness.track_stats(
                "RoomSid",
                &key,
                stat(bytes, (second - reported_until) as u32 + 1),
            );
        }
        if second % flush == 0 {
            run.harness.service.flush_stats();
            run.collect();
        }
    }
    run.harness.service.flush_stats();
    run.collect();
    (run, joined)
}

/// The stream is 1 Mbit/s whatever the cadence: the average over the coalesced windows and every
/// full 5-second node rate agree within 1%, and no 5-second node rate exceeds 1.05 Mbit/s. A
/// 5-minute batch never shows as a spike.
///
/// The data channel opens mid-session, 30 s before the reporter's next tick: a first sample
/// without times reaches back to the worker's creation but at most one flush interval, so with the
/// 300 s reporter the first sample covers exactly the 30 s the stream had been open.
#[test]
fn a_constant_stream_has_the_same_rate_whatever_the_reporting_cadence() {
    for cadence in [1, 5, 30, 300] {
        let stream_start = if cadence > 30 { cadence - 30 } else { 0 };
        let duration = 3000 - stream_start;
        let (run, joined) = constant_stream(cadence, stream_start, duration, 30);
        let (bytes, covered_ms) = run.totals();
        assert_eq!(
            bytes,
            125_000 * duration as u64,
            "cadence {cadence}: every byte is in some window"
        );
        let average = bytes as f64 * 8000.0 / covered_ms as f64;
        assert!((average / MBIT - 1.0).abs() < 0.01, "cadence {cadence}: average {average}");

        let from = joined.plus_millis(stream_start * 1000);
        let points = run.points(from, joined.plus_millis(3000 * 1000), 5);
        assert!(!points.is_empty());
        for point in &points {
            assert!(point.bps_in <= 1.05 * MBIT, "cadence {cadence}: {point:?}");
        }
        let full = points.iter().filter(|p| (p.bps_in / MBIT - 1.0).abs() < 0.01).count();
        assert!(
            full >= points.len() - 2,
            "cadence {cadence}: all but the edge windows are 1 Mbit/s"
        );
    }
}

/// What the first-sample rule gives when the reporter is slower than the flush interval and the
/// stream started with the worker: the first report is attributed to the last flush interval (the
/// rule's bound), every later report to its true interval. Reporters that slow should stamp their
/// samples with times (next test).
#[test]
fn a_first_sample_without_times_reaches_back_at_most_one_flush_interval() {
    let (run, joined) = constant_stream(300, 0, 600, 30);
    let first = &run.batches[0].stats[0].coalesced;
    let window = first.window.expect("window");
    assert_eq!(window.start, joined.plus_millis(270_000));
    assert_eq!(window.end, joined.plus_millis(300_000));
    let second = &run.batches[1].stats[0].coalesced.window.expect("window");
    assert_eq!(
        (second.start, second.end),
        (joined.plus_millis(300_000), joined.plus_millis(600_000))
    );
    assert!((second.avg_bps / MBIT - 1.0).abs() < 1e-9);
}

#[test]
fn timestamped_samples_are_exact_at_any_cadence_from_the_first() {
    for cadence in [1i64, 5, 30, 300] {
        let mut run = Run::new(CoreConfig::default());
        let start = run.harness.now();
        let key = StatsKey::for_data("", Direction::Downstream, "PA_1", "TR_DTPA_1");
        for report in 1..=(1200 / cadence) {
            run.harness.advance(Duration::from_secs(cadence as u64));
            let from = start.plus_millis((report - 1) * cadence * 1000);
            let to = start.plus_millis(report * cadence * 1000);
            run.harness.track_stats(
                "RoomSid",
                &key,
                stat_with(timed_stream(from, to, 125_000 * cadence as u64, cadence as u32)),
            );
            if report * cadence % 30 == 0 {
                run.harness.service.flush_stats();
                run.collect();
            }
        }
        run.harness.service.flush_stats();
        run.collect();
        let (bytes, covered) = run.totals();
        assert_eq!(covered, 1_200_000, "cadence {cadence}");
        assert!((bytes as f64 * 8000.0 / covered as f64 / MBIT - 1.0).abs() < 1e-9);
        let points = run.points(start, start.plus_millis(1_200_000), 5);
        assert!(points.iter().all(|p| (p.bps_out / MBIT - 1.0).abs() < 1e-9), "cadence {cadence}");
    }
}

/// A 10 s burst at 100 Mbit/s inside a 5-minute window, reported every second, keeps its height
/// in the coalesced stat and in the node rate series, and the window's average is exact.
#[test]
fn a_reported_burst_keeps_its_height_and_the_average_stays_exact() {
    let mut run =
        Run::new(CoreConfig { flush_interval: Duration::from_secs(300), ..CoreConfig::default() });
    let start = run.harness.now();
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DTPA_1");
    let mut sent = 0u64;
    for second in 1..=300i64 {
        run.harness.advance(Duration::from_secs(1));
        let bits = if (101..=110).contains(&second) { 100_000_000 } else { 1_000_000 };
        let bytes = bits / 8;
        sent += bytes;
        run.harness.track_stats("RoomSid", &key, stat(bytes, 100));
        if second % 5 == 0 {
            run.collect();
        }
    }
    run.harness.service.flush_stats();
    run.collect();

    assert_eq!(run.batches.len(), 1);
    let coalesced = &run.batches[0].stats[0].coalesced;
    let window = coalesced.window.expect("window");
    assert_eq!((window.start, window.end), (start, start.plus_millis(300_000)));
    assert_eq!(window.covered_ms, 300_000);
    assert_eq!(window.resolution_ms, 1000);
    assert!(window.peak_bps >= 95.0 * MBIT, "peak {}", window.peak_bps);
    let exact_average = sent as f64 * 8.0 / 300.0;
    assert!((window.avg_bps - exact_average).abs() < 1e-6, "{} vs {exact_average}", window.avg_bps);
    assert!((exact_average - (290.0 * 1.0 + 10.0 * 100.0) / 300.0 * MBIT).abs() < 1e-6);

    let points = run.points(start, start.plus_millis(300_000), 5);
    let peak = points.iter().map(|p| p.bps_in).fold(0.0, f64::max);
    assert!(peak >= 95.0 * MBIT, "node rate peak {peak}");
    let points_1s = run.points(start, start.plus_millis(300_000), 1);
    assert_eq!(
        points_1s.iter().filter(|p| p.bps_in >= 99.0 * MBIT).count(),
        10,
        "exactly the 10 burst seconds"
    );
}

/// A late batch revises the seconds it covers; the seconds after it (the rate "now") get nothing.
#[test]
fn a_late_batch_never_shows_as_a_spike_now() {
    let mut run = Run::new(CoreConfig::default());
    let start = run.harness.now();
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DTPA_1");
    run.harness.advance(Duration::from_secs(10));
    run.harness.track_stats("RoomSid", &key, stat(1000, 10));
    run.harness.advance(Duration::from_secs(300));
    // Five minutes of bytes arrive at once, sent evenly since the previous sample.
    run.harness.track_stats("RoomSid", &key, stat(300 * 125_000, 300));
    run.collect();
    let now = run.harness.now();
    let last_five = run.points(now.plus_millis(-5000), now, 5);
    assert!(
        (last_five[0].bps_in / MBIT - 1.0).abs() < 1e-9,
        "the last 5 s show the true 1 Mbit/s: {last_five:?}"
    );
    let all = run.points(start, now, 5);
    assert!(all.iter().all(|p| p.bps_in <= 1.0 * MBIT + 1e-6));
}

/// A zero-length sample (two reports in the same millisecond) joins the previous interval instead
/// of inventing an infinite rate.
#[test]
fn zero_length_samples_join_the_previous_interval() {
    let run = Run::new(CoreConfig::default());
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DTPA_1");
    run.harness.advance(Duration::from_secs(2));
    run.harness.track_stats("RoomSid", &key, stat(250_000, 1));
    run.harness.track_stats("RoomSid", &key, stat(250_000, 1));
    let batches = run.harness.flush();
    let window = batches[0].stats[0].coalesced.window.expect("window");
    assert_eq!(window.covered_ms, 2000);
    assert!((window.peak_bps - 2.0 * MBIT).abs() < 1e-6, "{window:?}");
    assert!((window.avg_bps - 2.0 * MBIT).abs() < 1e-6);
}

/// Gaps between timestamped samples are not counted as covered time.
#[test]
fn gaps_are_not_covered_time() {
    let run = Run::new(CoreConfig::default());
    let start = run.harness.now();
    let key = StatsKey::for_track(
        "",
        Direction::Upstream,
        "PA_1",
        "TR_1",
        telemetry_core::proto::TrackSource::Camera,
        telemetry_core::proto::TrackType::Video,
    );
    run.harness.track_stats(
        "RoomSid",
        &key,
        stat_with(timed_stream(start, start.plus_millis(5000), 625_000, 500)),
    );
    // Muted for 10 s, then 5 s more at twice the rate.
    run.harness.track_stats(
        "RoomSid",
        &key,
        stat_with(timed_stream(
            start.plus_millis(15_000),
            start.plus_millis(20_000),
            1_250_000,
            1000,
        )),
    );
    let batches = run.harness.flush();
    let window = batches[0].stats[0].coalesced.window.expect("window");
    assert_eq!(
        (window.start, window.end, window.covered_ms),
        (start, start.plus_millis(20_000), 10_000)
    );
    assert!((window.avg_bps - 1.5 * MBIT).abs() < 1e-6);
    assert!((window.peak_bps - 2.0 * MBIT).abs() < 1e-6);
    assert_eq!(window.resolution_ms, 5000);
}

/// Rate groups (cluster mode's partitions): the cells of samples read from a replayable log
/// drain apart by their room's group, samples applied directly are of no group, and a group
/// forgotten drops its cells not drained yet (its samples are replayed elsewhere).
#[test]
fn rate_groups_keep_logged_samples_apart_and_a_forgotten_group_drops_its_cells() {
    use std::sync::Arc;
    use telemetry_core::{Call, ManualClock, Origin, TelemetryService};
    let clock = Arc::new(ManualClock::new(crate::harness::T0));
    let (service, receiver) = TelemetryService::builder(CoreConfig::default())
        .clock(clock)
        .rate_groups(Arc::new(|name: &str, _sid: &str| if name == "one" { 1 } else { 2 }))
        .build();
    let key = StatsKey::for_data("", Direction::Upstream, "PA_1", "TR_DTPA_1");
    let sample = |name: &str, bytes: u64| Call::TrackStats {
        room_id: format!("RM_{name}"),
        room_name: name.to_owned(),
        key: key.clone(),
        stat: stat(bytes, 10),
    };
    let origin = |sequence: u64| Origin { sequence, index: 0 };
    let drained = |service: &TelemetryService| {
        service.drain_node_rates();
        let mut outputs = Vec::new();
        receiver.take(usize::MAX, &mut outputs);
        outputs
            .into_iter()
            .filter_map(|output| match output.output {
                Output::NodeRates(rates) => {
                    Some((rates.group, rates.cells.iter().map(|c| c.cell.bytes_in).sum::<u64>()))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    service.apply_from(service.now(), origin(1), sample("one", 1000)).expect("applied");
    service.apply_from(service.now(), origin(2), sample("two", 2000)).expect("applied");
    service.apply(service.now(), sample("direct", 4000)).expect("applied");
    assert_eq!(drained(&service), [(None, 4000), (Some(1), 1000), (Some(2), 2000)]);

    service.apply_from(service.now(), origin(3), sample("one", 1000)).expect("applied");
    service.apply_from(service.now(), origin(4), sample("two", 2000)).expect("applied");
    service.forget_node_rates(1);
    assert_eq!(drained(&service), [(Some(2), 2000)]);
}
