//! Stats workers: one per `(room id, participant id)`, holding that participant's running
//! accumulators per track and direction, its reference guards and its connected state
//! (reference §2.7).
//!
//! Workers live in a table split into shards, each an `RwLock` over a hash table of
//! `Arc<Mutex<Worker>>`. A `TrackStats` call takes one shard read lock and one worker lock; a
//! flush copies a shard's worker handles under the read lock, then locks one worker at a time,
//! so neither ever waits long for the other. Creating or replacing a worker takes the shard's
//! write lock, which only lifecycle calls and reaps do.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, Equivalent, HashMap, HashTable};
use livekit_protocol as lk;
use parking_lot::{Mutex, RwLock};

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
    tracks: HashMap<TrackKey, TrackState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TrackKey {
    direction: Direction,
    track_id: Arc<str>,
}

// `Arc<str>` and `&str` hash alike, so the derived hashes agree.
#[derive(Hash)]
struct TrackKeyRef<'a> {
    direction: Direction,
    track_id: &'a str,
}

impl Equivalent<TrackKey> for TrackKeyRef<'_> {
    fn equivalent(&self, key: &TrackKey) -> bool {
        self.direction == key.direction && self.track_id == &*key.track_id
    }
}

#[derive(Debug)]
struct TrackState {
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
    pub(crate) track_id: Arc<str>,
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
            tracks: HashMap::new(),
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
        mime: String,
        summary: &SampleSummary,
        flush_interval_ms: i64,
        max_samples_per_track: u32,
    ) -> Recorded {
        if self.reaped {
            return Recorded::Reaped;
        }
        let lookup = TrackKeyRef { direction: key.stream_type, track_id: &key.track_id };
        let track = match self.tracks.get_mut(&lookup) {
            Some(track) => track,
            None => self
                .tracks
                .entry(TrackKey {
                    direction: key.stream_type,
                    track_id: key.track_id.as_str().into(),
                })
                .or_insert(TrackState {
                    kind: key.kind(),
                    node,
                    last_end: None,
                    accumulator: TrackAccumulator::default(),
                }),
        };
        if track.accumulator.samples() >= max_samples_per_track {
            return Recorded::ShedTrackLimit;
        }
        if !summary.valid {
            track.accumulator.record(stat, mime, summary, (at, at));
            return Recorded::Invalid;
        }
        let first_start = self.created_at.max(at.plus_millis(-flush_interval_ms));
        let (start, end) = sample_interval(summary.own_interval, track.last_end, first_start, at);
        track.last_end = Some(track.last_end.map_or(end, |last| last.max(end)));
        track.node = node;
        track.accumulator.record(stat, mime, summary, (start, end));
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
        for (key, track) in &mut self.tracks {
            if track.accumulator.samples() > 0 {
                taken.push(TakenTrack {
                    direction: key.direction,
                    track_id: key.track_id.clone(),
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
pub(crate) struct Slot {
    hash: u64,
    room_id: Box<str>,
    participant_id: Box<str>,
    pub(crate) worker: Arc<Mutex<Worker>>,
}

/// One shard of the worker table.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    pub(crate) workers: RwLock<HashTable<Slot>>,
    /// Closed workers replaced by a new one for the same key: flushed once more, then dropped.
    pub(crate) retired: Mutex<Vec<Arc<Mutex<Worker>>>>,
    pub(crate) aux: Mutex<ShardAux>,
}

/// Every stats worker, sharded by key.
#[derive(Debug)]
pub(crate) struct WorkerTable {
    shards: Box<[Shard]>,
    hasher: DefaultHashBuilder,
}

impl Default for WorkerTable {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: DefaultHashBuilder::default(),
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
            &*slot.participant_id == participant_id && &*slot.room_id == room_id
        });
        f(slot.map(|slot| &*slot.worker))
    }

    /// LiveKit's `getOrCreateWorker`: returns the open worker for the key with `guard` activated
    /// on it, or a new one (carrying over a closed predecessor's connected state) and `true`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn get_or_create(
        &self,
        room_id: &str,
        room_name: &str,
        participant_id: &str,
        identity: &str,
        guard: &str,
        at: UnixMillis,
    ) -> (Arc<Mutex<Worker>>, bool) {
        let hash = self.hash(room_id, participant_id);
        let shard = self.shard(hash);
        let mut workers = shard.workers.write();
        let mut was_connected = false;
        let found = workers.find_mut(hash, |slot| {
            &*slot.participant_id == participant_id && &*slot.room_id == room_id
        });
        if let Some(slot) = &found {
            let mut worker = slot.worker.lock();
            if !worker.closed_or_join(guard) {
                drop(worker);
                return (slot.worker.clone(), false);
            }
            was_connected = worker.is_connected();
        }
        let mut worker = Worker::new(room_id, room_name, participant_id, identity, at);
        worker.activate(guard);
        // Carry over connected state (livekit/livekit#3173): a resume that recreates the worker
        // must still end in `participant_left`, not `participant_connection_aborted`.
        worker.connected = was_connected;
        let worker = Arc::new(Mutex::new(worker));
        match found {
            Some(slot) => {
                let old = std::mem::replace(&mut slot.worker, worker.clone());
                shard.retired.lock().push(old);
            }
            None => {
                workers.insert_unique(
                    hash,
                    Slot {
                        hash,
                        room_id: room_id.into(),
                        participant_id: participant_id.into(),
                        worker: worker.clone(),
                    },
                    |slot| slot.hash,
                );
            }
        }
        (worker, true)
    }

    /// Removes the slot holding `worker`, if the table still holds that very worker.
    pub(crate) fn remove_if_same(shard: &Shard, hash: u64, worker: &Arc<Mutex<Worker>>) {
        let mut workers = shard.workers.write();
        if let Ok(entry) = workers.find_entry(hash, |slot| Arc::ptr_eq(&slot.worker, worker)) {
            entry.remove();
        }
    }

    /// Returns every worker handle of a shard with its hash.
    pub(crate) fn snapshot(shard: &Shard) -> Vec<(u64, Arc<Mutex<Worker>>)> {
        shard.workers.read().iter().map(|slot| (slot.hash, slot.worker.clone())).collect()
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
