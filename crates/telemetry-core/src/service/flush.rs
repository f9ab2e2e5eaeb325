//! Flushing the stats workers (LiveKit's `FlushStats`): every worker's tracks coalesced into one
//! [`StatsBatch`] per worker, on the output queue in flush order; workers closed for longer than
//! `worker_cleanup_wait` reaped, and workers and tracks idle for `limits.participant_idle_timeout`
//! closed and dropped (their close leaves the participant gauge and the store's live workers);
//! the workers' quality detector states that changed pushed for the store to keep.
//!
//! A flush takes each shard's workers out under the shard's lock and coalesces them outside every
//! lock, so concurrent `TrackStats` calls wait at most for one worker's swap.

use crate::ids::{ANALYTICS_STAT_PREFIX, IdGenerator};
use crate::output::{CoalescedStat, Output, StatsBatch};
use crate::service::TelemetryService;
use crate::time::UnixMillis;
use crate::workers::Taken;

/// What flushes share, under the flush lock (which also serialises flushes).
#[derive(Debug)]
pub(super) struct FlushState {
    /// The generator of stat ids.
    ids: IdGenerator,
}

impl FlushState {
    pub(super) fn new(ids: IdGenerator) -> Self {
        Self { ids }
    }
}

impl TelemetryService {
    /// Flushes every stats worker now (LiveKit's `FlushStats`).
    pub fn flush_stats(&self) -> Option<u64> {
        self.flush_stats_at(self.inner.clock.now())
    }

    /// Flushes every stats worker as of `now`: one [`StatsBatch`] per worker with samples, and
    /// reaps workers closed for longer than `worker_cleanup_wait`. Returns the sequence number of
    /// the last batch pushed. Concurrent `TrackStats` calls wait at most for one worker's swap.
    pub fn flush_stats_at(&self, now: UnixMillis) -> Option<u64> {
        let inner = &*self.inner;
        let mut flush = inner.flush.lock();
        let cleanup_wait_ms = inner.config.cleanup_wait_millis();
        let idle_ms = inner.config.participant_idle_millis();
        let mut last = None;
        let mut taken = Vec::new();
        let mut batches = Vec::new();
        let mut closed_idle = Vec::new();
        let mut reaped = Vec::new();
        let mut quality_changes = Vec::new();
        let mut quality_states = Vec::new();
        for shard in inner.workers.shards() {
            inner.workers.take_shard(
                shard,
                now,
                cleanup_wait_ms,
                idle_ms,
                &mut taken,
                &mut closed_idle,
                &mut reaped,
                &inner.quality,
                &mut quality_changes,
                &mut quality_states,
            );
            // Coalesce outside every lock.
            batches.extend(taken.drain(..).map(|taken| self.coalesce(taken, now, &mut flush.ids)));
            if batches.len() >= 1024 {
                last = inner.queue.push(batches.drain(..).map(Output::Stats)).or(last);
            }
        }
        // Issues of workers and tracks closed for idleness end with them.
        last = inner.push_quality(quality_changes).or(last);
        // The detectors' states as of this flush: in cluster mode the flush is a partition's
        // checkpoint, so they are written with its stored offset.
        last = inner.queue.push(quality_states.into_iter().map(Output::QualityState)).or(last);
        if !closed_idle.is_empty() {
            // Workers closed for idleness leave the participant gauge of the node that made them,
            // and the store's live workers. Under the lifecycle lock, which a call holds until its
            // worker state is pushed: a key whose worker is not the one closed (made at another
            // time) was rejoined since the close, and the new worker's state has replaced the
            // record already, so the closed one's is not pushed over it.
            let mut lifecycle = inner.lifecycle.lock();
            let mut states = Vec::with_capacity(closed_idle.len());
            for (node, mut state) in closed_idle {
                if let Some(metrics) = lifecycle.metrics.get_mut(&node) {
                    metrics.participants -= 1;
                }
                let hash = inner.workers.hash(&state.room_id, &state.participant_id);
                let replaced = inner.workers.with_worker(
                    hash,
                    &state.room_id,
                    &state.participant_id,
                    |worker| {
                        worker.is_none_or(|worker| worker.lock().created_at != state.created_at)
                    },
                );
                if replaced {
                    continue;
                }
                state.node = inner.node_name(node);
                states.push(Output::Worker(state));
            }
            last = inner.queue.push(states).or(last);
        }
        if !reaped.is_empty() {
            // Reaped workers leave the store's kept workers (they were closed already, out of
            // the participant gauge). Under the lifecycle lock, which a call holds until its
            // worker state is pushed: a key with a worker now was rejoined since the reap, and
            // the new worker's state has replaced the record already, so it is left alone.
            let _lifecycle = inner.lifecycle.lock();
            let states: Vec<_> = reaped
                .into_iter()
                .filter(|(_, state)| {
                    let hash = inner.workers.hash(&state.room_id, &state.participant_id);
                    inner.workers.with_worker(
                        hash,
                        &state.room_id,
                        &state.participant_id,
                        |worker| worker.is_none(),
                    )
                })
                .map(|(node, mut state)| {
                    state.node = inner.node_name(node);
                    Output::Worker(state)
                })
                .collect();
            last = inner.queue.push(states).or(last);
        }
        inner.queue.push(batches.into_iter().map(Output::Stats)).or(last)
    }

    fn coalesce(&self, taken: Taken, now: UnixMillis, ids: &mut IdGenerator) -> StatsBatch {
        let names = self.inner.nodes.reader();
        let stats = taken
            .tracks
            .into_iter()
            .map(|track| CoalescedStat {
                id: ids.next_inline(ANALYTICS_STAT_PREFIX),
                track_id: track.track_id,
                direction: track.direction,
                kind: track.kind,
                node: names.get(track.node, &self.inner.unknown_node),
                coalesced: track.accumulator.finish(),
            })
            .collect();
        StatsBatch {
            room_id: taken.room_id,
            room_name: taken.room_name,
            participant_id: taken.participant_id,
            identity: taken.identity,
            flushed_at: now,
            analytics_key: self.inner.analytics_key.clone(),
            stats,
        }
    }
}
