//! The memory a track costs between flushes, counted by an instrumented global allocator (so this
//! binary measures nothing else). Run with
//! `cargo bench -p telemetry-core --features bench --bench footprint`.

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[path = "support.rs"]
mod support;

use support::{START, TRACKS_PER_PARTICIPANT, drain, media_sample, meta, populated};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    memory_per_track();
    memory_per_node();
}

/// Net heap bytes per distinct reporting node: what a fleet whose nodes get new ids (or a caller
/// inventing them) costs, each node sending one sample for a participant without a worker.
fn memory_per_node() {
    let nodes = 20_000;
    let config = telemetry_core::CoreConfig {
        limits: telemetry_core::CoreLimits { max_nodes: nodes, ..Default::default() },
        ..Default::default()
    };
    let (service, receiver) = telemetry_core::TelemetryService::new(config);
    let region = Region::new(GLOBAL);
    let key = telemetry_core::StatsKey::for_track(
        "DE",
        telemetry_core::Direction::Upstream,
        "PA_nobody".to_owned(),
        "TR_nothing".to_owned(),
        telemetry_core::proto::TrackSource::Camera,
        telemetry_core::proto::TrackType::Video,
    );
    for index in 0..nodes {
        let node = service.node(&format!("{index:050}")).expect("under the limit");
        let at = START.plus_millis(index as i64);
        let _ = service.track_stats_at(
            telemetry_core::CallMeta { at, node },
            "RM_x",
            "",
            &key,
            &media_sample(at, index as u64),
        );
    }
    service.drain_node_rates();
    drain(&receiver);
    let _metrics = service.metrics();
    println!(
        "| memory | state per distinct node after one sample | {:.0} B |",
        net(&region) as f64 / nodes as f64
    );
}

/// Net heap bytes per track: workers, tables, keys and accumulators, after six samples per track
/// (a 30-second flush interval at the usual 5-second cadence) and one earlier flush.
fn memory_per_track() {
    let participants = 25_000;
    let region = Region::new(GLOBAL);
    let state = populated(participants);
    let keys_bytes: usize = state
        .keys
        .iter()
        .map(|(room, key)| {
            room.capacity()
                + key.country.capacity()
                + key.participant_id.capacity()
                + key.track_id.capacity()
        })
        .sum::<usize>()
        + state.keys.capacity() * std::mem::size_of::<(String, telemetry_core::StatsKey)>();
    let feed = |round: i64| {
        for sample_index in 0..6 {
            let at = START.plus_millis(round * 30_000 + sample_index * 5000);
            let call_meta = meta(&state.service, at);
            for (index, (room_id, key)) in state.keys.iter().enumerate() {
                let _ = state.service.track_stats_at(
                    call_meta,
                    room_id,
                    "",
                    key,
                    &media_sample(at, index as u64),
                );
            }
        }
    };
    feed(0);
    state.service.flush_stats_at(START.plus_millis(30_000));
    drain(&state.receiver);
    state.service.drain_node_rates();
    drain(&state.receiver);
    let after_flush = net(&region) - keys_bytes as i64;
    feed(1);
    state.service.drain_node_rates();
    drain(&state.receiver);
    let before_flush = net(&region) - keys_bytes as i64;
    let tracks = (participants * TRACKS_PER_PARTICIPANT) as f64;
    println!(
        "| memory | state per track right after a flush | {:.0} B |",
        after_flush as f64 / tracks
    );
    println!(
        "| memory | state per track after 6 samples, before the next flush | {:.0} B |",
        before_flush as f64 / tracks
    );
    println!(
        "| memory | growth per track between flushes | {:.0} B |",
        (before_flush - after_flush) as f64 / tracks
    );
}

fn net(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64
}
