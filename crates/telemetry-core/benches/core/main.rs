//! Criterion benchmarks of the core: a `TrackStats` call on one and two threads (and with the
//! quality detectors off, to measure what they cost), and a flush of 100,000 participants with 4
//! tracks each. Run with
//! `cargo bench -p telemetry-core --features bench --bench core`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

#[path = "../support.rs"]
mod support;

use support::{START, drain, media_sample, meta, populated, populated_with};

/// Calls timed per chunk; samples are built between chunks, untimed. Small enough that the samples
/// are still in cache when the calls read them, as they are for an SFU that just built them.
const CHUNK: usize = 1_000;

/// Times `TrackStats` calls over `keys`, in chunks; between chunks (untimed) builds the samples,
/// and after every sixth sample per track flushes, as a 30 s flush at a 5 s cadence would.
fn timed_calls(
    state: &support::Populated,
    keys: &[(String, telemetry_core::StatsKey)],
    iters: u64,
    barrier: Option<&Barrier>,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut done = 0u64;
    let mut cursor = 0usize;
    let per_flush = keys.len() * 6;
    while done < iters {
        let count = CHUNK.min((iters - done) as usize).min(per_flush - cursor % per_flush);
        // Each round of the keys is a new 5-second sample.
        let round = (cursor / keys.len()) as i64;
        let at = START.plus_millis(5000 * (round + 1));
        let call_meta = meta(&state.service, at);
        let samples: Vec<_> = (0..count)
            .map(|i| {
                let index = cursor + i;
                media_sample(
                    START.plus_millis(5000 * (index / keys.len()) as i64 + 5000),
                    index as u64,
                )
            })
            .collect();
        if let Some(barrier) = barrier {
            barrier.wait();
        }
        let started = Instant::now();
        for sample in &samples {
            let (room_id, key) = &keys[cursor % keys.len()];
            cursor += 1;
            let _ = black_box(state.service.track_stats_at(call_meta, room_id, "", key, sample));
        }
        if let Some(barrier) = barrier {
            barrier.wait();
        }
        elapsed += started.elapsed();
        done += count as u64;
        if cursor.is_multiple_of(per_flush) && barrier.is_none() {
            // What the server's driver does: flush, and drain rate cells (it does so every second).
            state.service.flush_stats_at(at);
            state.service.drain_node_rates();
            drain(&state.receiver);
        }
    }
    elapsed
}

fn track_stats(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("track_stats");
    group.throughput(Throughput::Elements(1));
    let state = populated(10_000);
    group.bench_function("media_sample_10k_participants", |bencher| {
        bencher.iter_custom(|iters| timed_calls(&state, &state.keys, iters, None));
    });
    // The same calls on the 4 tracks of one participant: no cache misses, the CPU cost alone.
    let single = populated(1);
    group.bench_function("media_sample_one_participant", |bencher| {
        bencher.iter_custom(|iters| timed_calls(&single, &single.keys, iters, None));
    });
    // The same two without the quality detectors (`quality.enabled = false`): what they cost.
    let without = || telemetry_core::CoreConfig {
        node_id: "bench".into(),
        quality: telemetry_core::quality::QualityConfig {
            enabled: false,
            ..telemetry_core::quality::QualityConfig::default()
        },
        ..telemetry_core::CoreConfig::default()
    };
    drop(state);
    let state = populated_with(10_000, without());
    group.bench_function("media_sample_10k_participants_without_detectors", |bencher| {
        bencher.iter_custom(|iters| timed_calls(&state, &state.keys, iters, None));
    });
    let single = populated_with(1, without());
    group.bench_function("media_sample_one_participant_without_detectors", |bencher| {
        bencher.iter_custom(|iters| timed_calls(&single, &single.keys, iters, None));
    });
    group.finish();

    let mut group = criterion.benchmark_group("track_stats_threads");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        let state = populated(20_000);
        group.bench_function(format!("{threads}"), |bencher| {
            bencher.iter_custom(|iters| {
                let barrier = Barrier::new(threads);
                let elapsed = std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..threads)
                        .map(|thread| {
                            let state = &state;
                            let barrier = &barrier;
                            scope.spawn(move || {
                                // Each thread owns a disjoint share of the tracks.
                                let share = state.keys.len() / threads;
                                let keys = &state.keys[thread * share..(thread + 1) * share];
                                timed_calls(state, keys, iters, Some(barrier))
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("bench thread"))
                        .max()
                        .unwrap_or_default()
                });
                state.service.flush_stats();
                drain(&state.receiver);
                elapsed
            });
        });
    }
    group.finish();
}

fn flush(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("flush");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let participants = 100_000;
    group.throughput(Throughput::Elements((participants * support::TRACKS_PER_PARTICIPANT) as u64));
    let state = populated(participants);
    let mut round = 0i64;
    group.bench_function("100k_participants_4_tracks_6_samples", |bencher| {
        bencher.iter_batched(
            || {
                drain(&state.receiver);
                round += 1;
                // Six 5-second samples per track, as a 30-second flush interval folds.
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
                START.plus_millis(round * 30_000 + 30_000)
            },
            |now| black_box(state.service.flush_stats_at(now)),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, track_stats, flush);
criterion_main!(benches);
