//! Stats workers: one per `(room id, participant id)`, holding that participant's running
//! accumulators per track and direction, its reference guards and its connected state
//! (reference §2.7).
//!
//! Workers live in a table split into shards, each an `RwLock` over a hash table whose slots
//! hold the worker itself behind its own `Mutex` (no `Arc` hop: a `TrackStats` call is mostly
//! cache misses, so every pointer it does not follow counts). A `TrackStats` call takes one shard
//! read lock and one worker lock. A flush walks a shard under its read lock and holds each worker
//! lock only to swap its accumulators out; coalescing happens after, outside every lock. Creating,
//! replacing or reaping a worker takes the shard's write lock, which only lifecycle calls and
//! reaps do.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};
use livekit_protocol as lk;
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

use crate::coalesce::{SampleSummary, TrackAccumulator};
use crate::keys::{Direction, StatsKey, StreamKind};
use crate::metrics::{SampleCounters, StatsMetrics};
use crate::rates::{RateCell, RateRing, sample_interval};
use crate::service::NodeId;
use crate::time::UnixMillis;

/// Number of shards. A power of two well above the core count keeps two threads on different
/// participants from meeting on one lock, and keeps each shard's share of a flush small.
const SHARDS: usize = 256;

/// One participant's stats worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) room_id: Arc<str>,
    pub(crate) room_name: Arc<str>,
    pub(crate) participant_id: Arc<str>,
    pub(crate) identity: Arc<str>,
    pub(crate) created_at: UnixMillis,
    connected: bool,
    closed_at: Option<UnixMillis>,
    /// Set by the flush that takes the final samples; later samples are counted as arriving
    /// without a worker rather than silently lost with it.
    reaped: bool,
    ref_count: i64,
    /// Guard names and whether each is active. Names reused after a release re-activate, which
    /// maps LiveKit's "a fresh guard object per session" onto caller-chosen names.
    guards: Vec<(Box<str>, bool)>,
    /// Hashes of direction and track id, parallel to `tracks` and kept inline: a lookup scans
    /// them without touching the (large) track states. Most participants have a handful of
    /// tracks; a subscriber in a large room may have hundreds, still one short scan.
    track_hashes: SmallVec<[u64; 8]>,
    /// The tracks, in arrival order.
    tracks: Vec<TrackState>,
}

#[derive(Debug)]
struct TrackState {
    direction: Direction,
    /// Track ids are short (`TR_` and 12 characters): inline, no allocation, no pointer chase.
    track_id: CompactString,
    kind: StreamKind,
    node: NodeId,
    /// End of the latest sample interval; survives flushes, so a timestamp-less sample always
    /// starts where the previous one ended.
    last_end: Option<UnixMillis>,
    accumulator: TrackAccumulator,
}

/// What recording a sample did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Folded in, covering this interval.
    Interval(UnixMillis, UnixMillis),
    /// Counted, but skipped: a counter was negative.
    Invalid,
    /// Not recorded: the track reached `max_samples_per_track` since the last flush.
    ShedTrackLimit,
    /// Not recorded: the worker was reaped.
    Reaped,
}

/// A track's samples taken by a flush.
#[derive(Debug)]
pub(crate) struct TakenTrack {
    pub(crate) direction: Direction,
    pub(crate) track_id: CompactString,
    pub(crate) kind: StreamKind,
    pub(crate) node: NodeId,
    pub(crate) accumulator: TrackAccumulator,
}

impl Worker {
    pub(crate) fn new(
        room_id: &str,
        room_name: &str,
        participant_id: &str,
        identity: &str,
        created_at: UnixMillis,
    ) -> Self {
        Self {
            room_id: room_id.into(),
            room_name: room_name.into(),
            participant_id: participant_id.into(),
            identity: identity.into(),
            created_at,
            connected: false,
            closed_at: None,
            reaped: false,
            ref_count: 0,
            guards: Vec::new(),
            track_hashes: SmallVec::new(),
            tracks: Vec::new(),
        }
    }

    /// Counts `guard` once: a guard already active adds nothing (LiveKit's `Activate`).
    pub(crate) fn activate(&mut self, guard: &str) {
        match self.guards.iter_mut().find(|(name, _)| &**name == guard) {
            Some((_, true)) => {}
            Some((_, active)) => {
                *active = true;
                self.ref_count += 1;
            }
            None => {
                self.guards.push((guard.into(), true));
                self.ref_count += 1;
            }
        }
    }

    /// Releases `guard`; true when that brought the count to zero (LiveKit's `Release`). A guard
    /// never activated, or already released, changes nothing.
    fn release(&mut self, guard: &str) -> bool {
        match self.guards.iter_mut().find(|(name, _)| &**name == guard) {
            Some((_, active)) if *active => {
                *active = false;
                self.ref_count -= 1;
                self.ref_count == 0
            }
            _ => false,
        }
    }

    /// Releases `guard` and closes the worker when no guard holds it any more; true only for the
    /// call that closed it (LiveKit's `Close`).
    pub(crate) fn close(&mut self, guard: &str, at: UnixMillis) -> bool {
        if self.release(guard) && self.closed_at.is_none() {
            self.closed_at = Some(at);
            return true;
        }
        false
    }

    /// If the worker is open, activates `guard` on it and returns false (the caller joins it);
    /// returns true if it is closed (LiveKit's `Closed`).
    pub(crate) fn closed_or_join(&mut self, guard: &str) -> bool {
        if self.closed_at.is_none() {
            self.activate(guard);
            return false;
        }
        true
    }

    pub(crate) fn set_connected(&mut self) {
        self.connected = true;
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// Folds one sample into its track's accumulator.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &mut self,
        at: UnixMillis,
        node: NodeId,
        key: &StatsKey,
        stat: &lk::AnalyticsStat,
        summary: &SampleSummary,
        flush_interval_ms: i64,
        max_samples_per_track: u32,
        hasher: &DefaultHashBuilder,
    ) -> Recorded {
        if self.reaped {
            return Recorded::Reaped;
        }
        let direction = key.stream_type;
        let hash = hasher.hash_one((direction, key.track_id.as_str()));
        let tracks = &self.tracks;
        let found = self.track_hashes.iter().enumerate().position(|(index, &candidate)| {
            candidate == hash
                && tracks[index].direction == direction
                && tracks[index].track_id == key.track_id
        });
        let index = match found {
            Some(index) => index,
            None => {
                self.track_hashes.push(hash);
                self.tracks.push(TrackState {
                    direction,
                    track_id: CompactString::from(key.track_id.as_str()),
                    kind: key.kind(),
                    node,
                    last_end: None,
                    accumulator: TrackAccumulator::default(),
                });
                self.tracks.len() - 1
            }
        };
        let track = &mut self.tracks[index];
        if track.accumulator.samples() >= max_samples_per_track {
            return Recorded::ShedTrackLimit;
        }
        if !summary.valid {
            track.accumulator.record(stat, summary, (at, at));
            return Recorded::Invalid;
        }
        let first_start = self.created_at.max(at.plus_millis(-flush_interval_ms));
        let (start, end) = sample_interval(summary.own_interval, track.last_end, first_start, at);
        track.last_end = Some(track.last_end.map_or(end, |last| last.max(end)));
        track.node = node;
        track.accumulator.record(stat, summary, (start, end));
        Recorded::Interval(start, end)
    }

    /// Takes every track's accumulated samples; returns them (upstream first, then by track id)
    /// and whether the worker is now reaped: closed for longer than `cleanup_wait_ms`.
    pub(crate) fn take_for_flush(
        &mut self,
        now: UnixMillis,
        cleanup_wait_ms: i64,
    ) -> (Vec<TakenTrack>, bool) {
        let reap =
            self.closed_at.is_some_and(|closed_at| now.millis_since(closed_at) > cleanup_wait_ms);
        if reap {
            self.reaped = true;
        }
        let mut taken = Vec::new();
        for track in &mut self.tracks {
            if track.accumulator.samples() > 0 {
                taken.push(TakenTrack {
                    direction: track.direction,
                    track_id: track.track_id.clone(),
                    kind: track.kind,
                    node: track.node,
                    accumulator: std::mem::take(&mut track.accumulator),
                });
            }
        }
        taken.sort_unstable_by(|a, b| (a.direction, &a.track_id).cmp(&(b.direction, &b.track_id)));
        (taken, reap)
    }
}

/// Per-shard state that every `TrackStats` call updates: node rate cells, Prometheus accounting
/// and sample counters.
#[derive(Debug, Default)]
pub(crate) struct ShardAux {
    pub(crate) rates: Vec<(NodeId, RateRing)>,
    pub(crate) spilled: Vec<(NodeId, i64, RateCell)>,
    pub(crate) metrics: StatsMetrics,
    pub(crate) counters: SampleCounters,
}

impl ShardAux {
    pub(crate) fn spread(
        &mut self,
        node: NodeId,
        interval: (UnixMillis, UnixMillis),
        bytes: u64,
        packets: u64,
        direction: Direction,
    ) {
        let index = match self.rates.iter().position(|(n, _)| *n == node) {
            Some(index) => index,
            None => {
                self.rates.push((node, RateRing::default()));
                self.rates.len() - 1
            }
        };
        let mut spilled = Vec::new();
        self.rates[index].1.add(interval.0, interval.1, bytes, packets, direction, &mut spilled);
        self.spilled.extend(spilled.into_iter().map(|(second, cell)| (node, second, cell)));
    }

    pub(crate) fn drain_rates(&mut self, out: &mut Vec<(NodeId, i64, RateCell)>) {
        out.append(&mut self.spilled);
        let mut cells = Vec::new();
        for (node, ring) in &mut self.rates {
            ring.drain_into(&mut cells);
            out.extend(cells.drain(..).map(|(second, cell)| (*node, second, cell)));
        }
    }
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    /// Tells this worker from a later one under the same key, for reaps decided under the read
    /// lock and carried out under the write lock.
    generation: u64,
    /// Sids are short: inline, so a lookup compares them without leaving the slot.
    room_id: CompactString,
    participant_id: CompactString,
    worker: Mutex<Worker>,
}

/// One shard of the worker table, aligned so that two shards never share a cache line (nor an
/// adjacent-line prefetch pair): threads on different shards must not write the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Shard {
    workers: RwLock<HashTable<Slot>>,
    /// Closed workers replaced by a new one for the same key: flushed once more, then dropped.
    retired: Mutex<Vec<Worker>>,
    pub(crate) aux: Mutex<ShardAux>,
}

/// The samples a flush took from one worker, with the worker's identity.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) room_id: Arc<str>,
    pub(crate) room_name: Arc<str>,
    pub(crate) participant_id: Arc<str>,
    pub(crate) identity: Arc<str>,
    pub(crate) tracks: Vec<TakenTrack>,
}

impl Taken {
    fn from_worker(worker: &Worker, tracks: Vec<TakenTrack>) -> Self {
        Self {
            room_id: worker.room_id.clone(),
            room_name: worker.room_name.clone(),
            participant_id: worker.participant_id.clone(),
            identity: worker.identity.clone(),
            tracks,
        }
    }
}

/// Every stats worker, sharded by key.
#[derive(Debug)]
pub(crate) struct WorkerTable {
    shards: Box<[Shard]>,
    hasher: DefaultHashBuilder,
    next_generation: std::sync::atomic::AtomicU64,
}

impl Default for WorkerTable {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            next_generation: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl WorkerTable {
    pub(crate) fn hash(&self, room_id: &str, participant_id: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        room_id.hash(&mut hasher);
        participant_id.hash(&mut hasher);
        std::hash::Hasher::finish(&hasher)
    }

    pub(crate) fn shard(&self, hash: u64) -> &Shard {
        // The low bits pick the hash table bucket; shard by the high bits.
        &self.shards[(hash >> 56) as usize % SHARDS]
    }

    pub(crate) fn hasher(&self) -> &DefaultHashBuilder {
        &self.hasher
    }

    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Runs `f` with the worker for the key, if there is one, under the shard's read lock.
    pub(crate) fn with_worker<R>(
        &self,
        hash: u64,
        room_id: &str,
        participant_id: &str,
        f: impl FnOnce(Option<&Mutex<Worker>>) -> R,
    ) -> R {
        let workers = self.shard(hash).workers.read();
        let slot = workers.find(hash, |slot| {
            slot.hash == hash && slot.participant_id == participant_id && slot.room_id == room_id
        });
        f(slot.map(|slot| &slot.worker))
    }

    /// LiveKit's `getOrCreateWorker`: runs `f` on the open worker for the key with `guard`
    /// activated on it, or on a new one (carrying over a closed predecessor's connected state);
    /// returns whether a worker was created.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn get_or_create(
        &self,
        room_id: &str,
        room_name: &str,
        participant_id: &str,
        identity: &str,
        guard: &str,
        at: UnixMillis,
        f: impl FnOnce(&mut Worker),
    ) -> bool {
        let hash = self.hash(room_id, participant_id);
        let shard = self.shard(hash);
        let mut workers = shard.workers.write();
        let mut was_connected = false;
        let found = workers.find_mut(hash, |slot| {
            slot.hash == hash && slot.participant_id == participant_id && slot.room_id == room_id
        });
        if let Some(slot) = &found {
            let mut worker = slot.worker.lock();
            if !worker.closed_or_join(guard) {
                f(&mut worker);
                return false;
            }
            was_connected = worker.is_connected();
        }
        let mut worker = Worker::new(room_id, room_name, participant_id, identity, at);
        worker.activate(guard);
        // Carry over connected state (livekit/livekit#3173): a resume that recreates the worker
        // must still end in `participant_left`, not `participant_connection_aborted`.
        worker.connected = was_connected;
        f(&mut worker);
        let generation = self.next_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match found {
            Some(slot) => {
                let old = std::mem::replace(slot.worker.get_mut(), worker);
                slot.generation = generation;
                shard.retired.lock().push(old);
            }
            None => {
                workers.insert_unique(
                    hash,
                    Slot {
                        hash,
                        generation,
                        room_id: CompactString::from(room_id),
                        participant_id: CompactString::from(participant_id),
                        worker: Mutex::new(worker),
                    },
                    |slot| slot.hash,
                );
            }
        }
        true
    }

    /// Takes the samples of every worker of `shard` (and of its retired workers) into `out`, and
    /// reaps the workers closed for longer than `cleanup_wait_ms`.
    pub(crate) fn take_shard(
        &self,
        shard: &Shard,
        now: UnixMillis,
        cleanup_wait_ms: i64,
        out: &mut Vec<Taken>,
    ) {
        let mut reaped = Vec::new();
        {
            let workers = shard.workers.read();
            for slot in workers.iter() {
                let mut worker = slot.worker.lock();
                let (tracks, reap) = worker.take_for_flush(now, cleanup_wait_ms);
                if !tracks.is_empty() {
                    out.push(Taken::from_worker(&worker, tracks));
                }
                if reap {
                    reaped.push((slot.hash, slot.generation));
                }
            }
        }
        if !reaped.is_empty() {
            let mut workers = shard.workers.write();
            for (hash, generation) in reaped {
                if let Ok(entry) = workers.find_entry(hash, |slot| slot.generation == generation) {
                    entry.remove();
                }
            }
        }
        // Replaced workers: their last samples go out, then they are dropped.
        let retired = std::mem::take(&mut *shard.retired.lock());
        for mut worker in retired {
            let (tracks, _) = worker.take_for_flush(now, cleanup_wait_ms);
            if !tracks.is_empty() {
                out.push(Taken::from_worker(&worker, tracks));
            }
        }
    }

    pub(crate) fn worker_count(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.workers.read().len() + shard.retired.lock().len())
            .sum()
    }
}

#[cfg(test)]
mod tests;
