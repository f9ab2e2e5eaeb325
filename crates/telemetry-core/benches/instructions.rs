//! Instructions per `TrackStats` call, with and without the quality detectors, counted by
//! valgrind's callgrind: a count that does not depend on the machine's load, where wall-clock
//! benches on these shared machines vary by more than the detectors cost. Run with
//! `cargo bench -p telemetry-core --features bench --bench instructions` (needs `valgrind`).
//!
//! The binary runs itself under callgrind four times per case, with `N` and `2 N` calls, with
//! the detectors on and off; the difference between the `2 N` and `N` runs is the cost of `N`
//! calls (their share of the flushes included), everything else (start, populating, building
//! the samples) cancelling out.

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

use std::process::Command;

#[path = "support.rs"]
mod support;

use support::{START, drain, media_sample, meta, populated_with};

/// Environment variable that makes the binary do the counted work instead of measuring.
const CHILD: &str = "RTC_TELEMETRY_INSTRUCTIONS_CHILD";

/// `N`: calls in the shorter run.
const CALLS: usize = 48_000;

fn config(detectors: bool) -> telemetry_core::CoreConfig {
    telemetry_core::CoreConfig {
        node_id: "bench".into(),
        quality: telemetry_core::quality::QualityConfig {
            enabled: detectors,
            ..telemetry_core::quality::QualityConfig::default()
        },
        ..telemetry_core::CoreConfig::default()
    }
}

/// The counted work: `participants` joined, samples for `2 N` calls built, `calls` of them
/// made round robin over the tracks (a new 5-second sample per round), flushing every sixth
/// round as a 30 s flush at a 5 s cadence would.
fn work(participants: usize, detectors: bool, calls: usize, lossy: bool) {
    let state = populated_with(participants, config(detectors));
    let keys = &state.keys;
    let samples: Vec<_> = (0..2 * CALLS)
        .map(|index| {
            let mut sample = media_sample(
                START.plus_millis(5000 * (index / keys.len()) as i64 + 5000),
                index as u64,
            );
            if lossy {
                // 10 % of the packets lost: every track in trouble, every detector at work.
                for stream in &mut sample.streams {
                    stream.packets_lost = stream.primary_packets / 9;
                }
            }
            sample
        })
        .collect();
    let per_flush = keys.len() * 6;
    for (index, sample) in samples.iter().enumerate().take(calls) {
        let round = (index / keys.len()) as i64;
        let at = START.plus_millis(5000 * (round + 1));
        let (room_id, key) = &keys[index % keys.len()];
        let _ = std::hint::black_box(state.service.track_stats_at(
            meta(&state.service, at),
            room_id,
            "",
            key,
            sample,
        ));
        if (index + 1).is_multiple_of(per_flush) {
            state.service.flush_stats_at(at);
            state.service.drain_node_rates();
            drain(&state.receiver);
        }
    }
}

/// Instructions callgrind counted for one child run.
fn counted(participants: usize, detectors: bool, calls: usize, lossy: bool) -> u64 {
    let me = std::env::current_exe().expect("the bench binary");
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(&me)
        .env(CHILD, format!("{participants} {detectors} {calls} {lossy}"))
        .output()
        .expect("valgrind runs (apt install valgrind)");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the counted run failed: {log}");
    log.lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instruction count in callgrind's output: {log}"))
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let parts: Vec<&str> = spec.split_whitespace().collect();
        let participants = parts[0].parse().expect("participants");
        let detectors = parts[1] == "true";
        let calls = parts[2].parse().expect("calls");
        work(participants, detectors, calls, parts[3] == "true");
        return;
    }
    println!("| case | instructions per call, detectors on | off | on / off |");
    println!("| --- | --- | --- | --- |");
    for (participants, lossy) in [(1, false), (100, false), (100, true)] {
        let per_call = |detectors: bool| {
            let difference = counted(participants, detectors, 2 * CALLS, lossy)
                - counted(participants, detectors, CALLS, lossy);
            difference as f64 / CALLS as f64
        };
        let (on, off) = (per_call(true), per_call(false));
        println!(
            "| {participants} participant{} ({} tracks), {} samples | {on:.0} | {off:.0} | {:.3} |",
            if participants == 1 { "" } else { "s" },
            participants * support::TRACKS_PER_PARTICIPANT,
            if lossy { "lossy (10 %)" } else { "clean" },
            on / off
        );
    }
}
