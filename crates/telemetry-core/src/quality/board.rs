//! The upstream board: which published tracks' upstream is in trouble now, and which subscribers
//! it reached, shared by every stats worker.
//!
//! A publisher's worker writes its track's entry when the set of conditions that hold on its
//! upstream changes (a bad run begins, an issue closes); a subscriber's worker reads the entry of
//! the track it receives, so that trouble its publisher's upstream explains is reported once, on
//! the upstream track, with the subscriber in `affected`, and not as one more issue per
//! subscriber.
//!
//! Every downstream sample looks at the board, so a look takes no lock in the usual cases:
//! - no upstream anywhere is in trouble: one atomic counter is read;
//! - the subscriber's upstream is in trouble and the subscriber is listed on its entry already:
//!   the subscriber's track keeps the entry ([`Seen`]), and reads its kinds and whether it is
//!   still on the board, two atomics on the entry's own cache line;
//! - the subscriber's upstream is not in trouble: the count of entries whose track ids hash to
//!   the upstream's slot of [`PRESENCE`] is read, and it is zero unless another upstream in
//!   trouble shares the slot.
//!
//! Otherwise the look takes the shard's lock. (When every look took it, the locks' cache lines
//! went back and forth between the cores: 5 % of the CPU of the ingest benchmark, where some
//! upstreams are always in trouble.)
//!
//! The board's locks are leaves: taken under a worker lock, never the other way round; an
//! entry's list lock is taken under its shard's lock only. An entry exists only while its
//! upstream is in trouble, and is removed when the trouble ends, the track is unpublished or
//! its publisher leaves; its subscriber list is capped at [`MAX_AFFECTED`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};

use compact_str::CompactString;
use hashbrown::HashMap;
use parking_lot::Mutex;

/// Subscribers listed as affected by one upstream's trouble; more are counted, not listed.
pub(crate) const MAX_AFFECTED: usize = 256;

/// Number of lock shards, so that publishers in trouble do not meet on one lock.
const SHARDS: usize = 64;

/// Number of presence counts: each counts the entries whose track ids hash to it.
const PRESENCE: usize = 4096;

/// One upstream in trouble, on a cache line of its own.
#[derive(Debug)]
#[repr(align(64))]
struct Entry {
    /// The kinds whose condition holds on the upstream (a bad run under way or an issue open).
    bad: AtomicU8,
    /// Cleared when the entry leaves the board: a subscriber keeping it looks again.
    on_board: AtomicBool,
    /// The subscribers whose downstream samples of the track arrived meanwhile, in arrival
    /// order. Locked under the shard's lock only.
    affected: Mutex<Vec<Arc<str>>>,
}

impl Entry {
    fn new(bad: u8) -> Arc<Self> {
        Arc::new(Self {
            bad: AtomicU8::new(bad),
            on_board: AtomicBool::new(true),
            affected: Mutex::new(Vec::new()),
        })
    }

    fn list(&self, subscriber: &Arc<str>) {
        let mut affected = self.affected.lock();
        if affected.len() < MAX_AFFECTED && !affected.iter().any(|listed| **listed == **subscriber)
        {
            affected.push(subscriber.clone());
        }
    }
}

/// One lock shard, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    entries: Mutex<HashMap<CompactString, Arc<Entry>>>,
}

/// What a subscriber's track learnt at its last look at the board: the entry of its upstream,
/// on which the subscriber is listed (or the list was full), if there was one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    entry: Option<Arc<Entry>>,
}

/// The shared board of upstream tracks in trouble, keyed by track id.
#[derive(Debug)]
pub(crate) struct UpstreamBoard {
    /// Entries on the board: zero lets downstream samples skip it.
    entries: AtomicUsize,
    shards: Box<[Shard; SHARDS]>,
    /// The entries whose track ids hash to each slot; written under the shard's lock.
    presence: Box<[AtomicU32; PRESENCE]>,
}

impl Default for UpstreamBoard {
    fn default() -> Self {
        Self {
            entries: AtomicUsize::new(0),
            shards: Box::new(std::array::from_fn(|_| Shard::default())),
            presence: Box::new(std::array::from_fn(|_| AtomicU32::new(0))),
        }
    }
}

/// FNV-1a: short ids, no need for a keyed hash to pick a lock.
fn hash(track_id: &str) -> u64 {
    track_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl UpstreamBoard {
    fn shard(&self, track_id: &str) -> &Shard {
        &self.shards[(hash(track_id) as usize) % SHARDS]
    }

    fn presence(&self, track_id: &str) -> &AtomicU32 {
        &self.presence[((hash(track_id) >> 16) as usize) % PRESENCE]
    }

    /// Writes the kinds in trouble on `track_id`'s upstream; `0` removes its entry.
    pub(crate) fn set(&self, track_id: &str, bad: u8) {
        let shard = self.shard(track_id);
        let mut entries = shard.entries.lock();
        if bad == 0 {
            if let Some(entry) = entries.remove(track_id) {
                entry.on_board.store(false, Ordering::Release);
                self.entries.fetch_sub(1, Ordering::Relaxed);
                self.presence(track_id).fetch_sub(1, Ordering::Release);
            }
            return;
        }
        match entries.get(track_id) {
            Some(entry) => entry.bad.store(bad, Ordering::Release),
            None => {
                entries.insert(CompactString::from(track_id), Entry::new(bad));
                self.entries.fetch_add(1, Ordering::Relaxed);
                self.presence(track_id).fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Adds the kinds `bad` to `track_id`'s entry, with the subscribers `affected` listed (those
    /// not listed yet, up to [`MAX_AFFECTED`]): an upstream issue restored from the store
    /// ([`crate::TelemetryService::restore_issues`]).
    pub(crate) fn restore(&self, track_id: &str, bad: u8, affected: &[String]) {
        if bad == 0 {
            return;
        }
        let shard = self.shard(track_id);
        let mut entries = shard.entries.lock();
        let entry = entries.entry(CompactString::from(track_id)).or_insert_with(|| {
            self.entries.fetch_add(1, Ordering::Relaxed);
            self.presence(track_id).fetch_add(1, Ordering::Release);
            Entry::new(0)
        });
        entry.bad.fetch_or(bad, Ordering::Release);
        for subscriber in affected {
            entry.list(&Arc::from(subscriber.as_str()));
        }
    }

    /// A subscriber's downstream sample of `track_id`: returns the kinds in trouble on its
    /// upstream (0 if none) and lists `subscriber` as affected if there are any. `seen` is what
    /// the subscriber's track learnt at its last look (see [`Seen`]); it is kept up to date.
    pub(crate) fn reached(&self, track_id: &str, subscriber: &Arc<str>, seen: &mut Seen) -> u8 {
        if self.entries.load(Ordering::Relaxed) == 0 {
            seen.entry = None;
            return 0;
        }
        if let Some(entry) = &seen.entry {
            // Listed on it already.
            if entry.on_board.load(Ordering::Acquire) {
                return entry.bad.load(Ordering::Acquire);
            }
            seen.entry = None;
        }
        if self.presence(track_id).load(Ordering::Acquire) == 0 {
            return 0;
        }
        let entries = self.shard(track_id).entries.lock();
        match entries.get(track_id) {
            None => 0,
            Some(entry) => {
                entry.list(subscriber);
                seen.entry = Some(entry.clone());
                entry.bad.load(Ordering::Acquire)
            }
        }
    }

    /// How many subscribers are listed for `track_id`.
    pub(crate) fn affected_count(&self, track_id: &str) -> usize {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.shard(track_id)
            .entries
            .lock()
            .get(track_id)
            .map_or(0, |entry| entry.affected.lock().len())
    }

    /// The subscribers listed for `track_id`.
    pub(crate) fn affected(&self, track_id: &str) -> Vec<String> {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        self.shard(track_id)
            .entries
            .lock()
            .get(track_id)
            .map(|entry| entry.affected.lock().iter().map(|id| id.to_string()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
