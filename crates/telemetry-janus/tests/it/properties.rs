//! Property tests on events made from the capture: reordered, repeated and missing events keep
//! the call sequence consistent and never count a byte twice; a restart at any point keeps every
//! lifecycle call and loses at most one stats period per stream.

use std::collections::BTreeMap;

use proptest::prelude::*;
use telemetry_core::{Call, Direction};
use telemetry_janus::event::Body;
use telemetry_janus::{AdapterConfig, Adapters, Emitted, Event};

use crate::support::{Run, capture, check_consistency, millis, run, sampled_bytes};

/// How the capture is disturbed: events moved a few places, repeated, dropped.
#[derive(Clone, Debug)]
struct Disturbance {
    /// (index, distance): the event at `index` moves `distance` places later.
    moves: Vec<(usize, usize)>,
    /// Indexes of events sent twice.
    repeats: Vec<usize>,
    /// Indexes of events lost.
    drops: Vec<usize>,
}

fn disturbance() -> impl Strategy<Value = Disturbance> {
    (
        prop::collection::vec((0..641usize, 1..6usize), 0..80),
        prop::collection::vec(0..641usize, 0..80),
        prop::collection::vec(0..641usize, 0..40),
    )
        .prop_map(|(moves, repeats, drops)| Disturbance { moves, repeats, drops })
}

fn disturb(events: &[Event], disturbance: &Disturbance) -> Vec<Event> {
    let mut events: Vec<Option<Event>> = events.iter().cloned().map(Some).collect();
    for &index in &disturbance.drops {
        events[index] = None;
    }
    let mut out: Vec<Event> = Vec::with_capacity(events.len() * 2);
    for (index, event) in events.into_iter().enumerate() {
        let Some(event) = event else { continue };
        if disturbance.repeats.contains(&index) {
            out.push(event.clone());
        }
        out.push(event);
    }
    for &(index, distance) in &disturbance.moves {
        if index < out.len() {
            let to = (index + distance).min(out.len() - 1);
            let event = out.remove(index);
            out.insert(to, event);
        }
    }
    out
}

/// The largest counter value Janus reported, by direction, over every handle.
fn counted(events: &[Event]) -> BTreeMap<Direction, u64> {
    let mut last: BTreeMap<(u64, String, Direction), u64> = BTreeMap::new();
    for event in events {
        if let Body::MediaStats(reports) = &event.body {
            for report in reports {
                let handle = event.handle_id.expect("a handle");
                for (direction, bytes) in [
                    (Direction::Upstream, report.bytes_received),
                    (Direction::Downstream, report.bytes_sent),
                ] {
                    let value = last.entry((handle, report.mid.clone(), direction)).or_default();
                    *value = (*value).max(bytes);
                }
            }
        }
    }
    let mut totals = BTreeMap::new();
    for ((_, _, direction), bytes) in last {
        *totals.entry(direction).or_default() += bytes;
    }
    totals
}

fn lifecycle(calls: &[Emitted]) -> Vec<String> {
    calls
        .iter()
        .filter(|emitted| !matches!(emitted.call, Call::TrackStats { .. }))
        .map(|emitted| format!("{} {:?}", emitted.at.0, emitted.call))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reordered_repeated_and_missing_events_keep_the_calls_consistent(
        disturbance in disturbance()
    ) {
        let events = disturb(&capture(), &disturbance);
        let (run, adapters) = run(&events);
        prop_assert!(run.rejected.is_empty(), "{:?}", run.rejected);
        // Whatever was lost (`detached`, `destroyed`, `leaving`...), a day later everything has
        // ended and nothing is held.
        check_consistency(&run.calls, true);
        prop_assert!(adapters.get("janus-probe").is_none_or(|adapter| adapter.is_empty()));
        let counted = counted(&events);
        let sampled = sampled_bytes(&run.calls);
        for direction in [Direction::Upstream, Direction::Downstream] {
            let sampled: u64 = sampled.iter().filter(|((_, _, d), _)| *d == direction).map(|(_, b)| b).sum();
            prop_assert!(
                sampled <= counted.get(&direction).copied().unwrap_or(0),
                "{direction:?}: {sampled} bytes sampled, more than Janus counted"
            );
        }
    }

    #[test]
    fn a_restart_at_any_point_keeps_the_call_and_loses_at_most_one_period_per_stream(
        split in 1..640usize
    ) {
        let events = capture();
        let (whole, _) = run(&events);
        // Which event made each of the uninterrupted run's samples.
        let mut made_by: Vec<(usize, Emitted)> = Vec::new();
        let mut adapters = Adapters::new(AdapterConfig::default());
        for (index, event) in events.iter().enumerate() {
            let mut calls = Vec::new();
            adapters.apply(event, &mut calls).expect("the capture applies");
            made_by.extend(calls.into_iter().map(|call| (index, call)));
        }

        let mut before = Adapters::new(AdapterConfig::default());
        let mut restarted = Run::default();
        restarted.apply(&mut before, &events[..split]);
        let snapshots = before.take_snapshots();
        let mut after = Adapters::new(AdapterConfig::default());
        for snapshot in &snapshots {
            after.restore(snapshot, millis(events[split].timestamp)).expect("restored");
        }
        restarted.apply(&mut after, &events[split..]);
        let end = events.iter().map(|event| event.timestamp).max().expect("events");
        after.tick(millis(end + 86_400_000_000), &mut restarted.calls);
        prop_assert!(restarted.rejected.is_empty(), "{:?}", restarted.rejected);

        // The same rooms, participants and tracks, under the same sids, at the same times.
        prop_assert_eq!(lifecycle(&restarted.calls), lifecycle(&whole.calls));
        check_consistency(&restarted.calls, true);
        // Per stream, the samples after the restart lose at most the first one's bytes.
        let whole_bytes = sampled_bytes(&whole.calls);
        let restarted_bytes = sampled_bytes(&restarted.calls);
        for (stream, &total) in &whole_bytes {
            let got = restarted_bytes.get(stream).copied().unwrap_or(0);
            // The first sample of the stream at or after the split: the one period that may be lost.
            let lost_at_most = made_by.iter().find_map(|(index, emitted)| match &emitted.call {
                Call::TrackStats { key, stat, .. }
                    if *index >= split
                        && (key.participant_id.as_str(), key.track_id.as_str(), key.stream_type)
                            == (stream.0.as_str(), stream.1.as_str(), stream.2) =>
                {
                    Some(stat.streams[0].primary_bytes)
                }
                _ => None,
            }).unwrap_or(0);
            prop_assert!(got <= total, "{stream:?}: {got} > {total}");
            prop_assert!(got + lost_at_most >= total, "{stream:?}: {got} + {lost_at_most} < {total}");
        }
    }
}
