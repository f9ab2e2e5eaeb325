//! The latency distribution of single `TrackStats` calls, idle and while another thread flushes
//! 100,000 participants with 4 tracks each (criterion reports means, not tails). Run with
//! `cargo bench -p telemetry-core --features bench --bench latency`.

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[path = "support.rs"]
mod support;

use support::{START, drain, media_sample, meta, populated};

fn main() {
    latency_idle_and_during_flush();
}

fn percentile(sorted: &[u32], fraction: f64) -> u32 {
    sorted[((sorted.len() - 1) as f64 * fraction) as usize]
}

/// One thread calls `TrackStats` and times every call; first alone, then while a second thread
/// flushes the 100,000 participants the service holds.
fn latency_idle_and_during_flush() {
    let state = populated(100_000);
    let at = START.plus_millis(5000);
    let call_meta = meta(&state.service, at);
    // The calling thread uses its own 10,000 tracks; the flush covers all 400,000.
    let caller_keys = &state.keys[..40_000];
    for sample_index in 0..6 {
        let at = START.plus_millis(sample_index * 5000);
        let feed_meta = meta(&state.service, at);
        for (index, (room_id, key)) in state.keys.iter().enumerate() {
            let _ = state.service.track_stats_at(
                feed_meta,
                room_id,
                "",
                key,
                &media_sample(at, index as u64),
            );
        }
    }

    let timer_overhead = {
        let mut samples: Vec<u32> = (0..100_000)
            .map(|_| {
                let started = Instant::now();
                black_box(());
                started.elapsed().as_nanos() as u32
            })
            .collect();
        samples.sort_unstable();
        percentile(&samples, 0.5)
    };

    let measure = |count: usize, keep: &dyn Fn() -> bool| {
        let samples: Vec<_> = (0..count).map(|i| media_sample(at, i as u64)).collect();
        let mut latencies = Vec::with_capacity(count);
        for (i, sample) in samples.iter().enumerate() {
            let (room_id, key) = &caller_keys[i % caller_keys.len()];
            let started = Instant::now();
            let _ = black_box(state.service.track_stats_at(call_meta, room_id, "", key, sample));
            let nanos = started.elapsed().as_nanos() as u32;
            if keep() {
                latencies.push(nanos);
            }
        }
        latencies.sort_unstable();
        latencies
    };

    let idle = measure(400_000, &|| true);
    let flushing = AtomicBool::new(false);
    let (during, flush_millis) = std::thread::scope(|scope| {
        let flusher = scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            flushing.store(true, Ordering::SeqCst);
            let started = Instant::now();
            state.service.flush_stats_at(START.plus_millis(30_000));
            let millis = started.elapsed().as_secs_f64() * 1000.0;
            flushing.store(false, Ordering::SeqCst);
            millis
        });
        let mut during = Vec::new();
        while !flusher.is_finished() || during.is_empty() {
            during.extend(measure(50_000, &|| flushing.load(Ordering::SeqCst)));
        }
        during.sort_unstable();
        (during, flusher.join().expect("flusher"))
    });
    drain(&state.receiver);

    println!(
        "| latency | timer overhead (median of an empty timed section) | {timer_overhead} ns |"
    );
    println!(
        "| latency | TrackStats idle: p50 / p99 / p99.9 | {} / {} / {} ns |",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        percentile(&idle, 0.999)
    );
    println!(
        "| latency | TrackStats during a flush of 100,000 participants x 4 tracks ({} calls): p50 / p99 / p99.9 | {} / {} / {} ns |",
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        percentile(&during, 0.999)
    );
    println!(
        "| latency | ratio of p99 during the flush to idle p99 | {:.2} |",
        percentile(&during, 0.99) as f64 / percentile(&idle, 0.99) as f64
    );
    println!("| flush | that flush, with a concurrent caller | {flush_millis:.0} ms |");
}
