//! The upstream board: which published tracks' upstream is in trouble now, and which subscribers
//! it reached, shared by every stats worker.
//!
//! A publisher's worker writes its track's entry when the set of conditions that hold on its
//! upstream changes (a bad run begins, an issue closes); a subscriber's worker reads the entry of
//! the track it receives, so that trouble its publisher's upstream explains is reported once, on
//! the upstream track, with the subscriber in `affected`, and not as one more issue per
//! subscriber. While no upstream anywhere is in trouble (the usual case) a downstream sample
//! reads one atomic counter and takes no lock.
//!
//! The board's locks are leaves: taken under a worker lock, never the other way round. An entry
//! exists only while its upstream is in trouble, and is removed when the trouble ends, the track
//! is unpublished or its publisher leaves; its subscriber list is capped at [`MAX_AFFECTED`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use compact_str::CompactString;
use hashbrown::HashMap;
use parking_lot::Mutex;

/// Subscribers listed as affected by one upstream's trouble; more are counted, not listed.
pub(crate) const MAX_AFFECTED: usize = 256;

/// Number of lock shards, so that publishers in trouble do not meet on one lock.
const SHARDS: usize = 16;

/// One upstream in trouble.
#[derive(Debug, Default)]
struct Entry {
    /// The kinds whose condition holds on the upstream (a bad run under way or an issue open).
    bad: u8,
    /// The subscribers whose downstream samples of the track arrived meanwhile, in arrival order.
    affected: Vec<Arc<str>>,
}

/// The shared board of upstream tracks in trouble, keyed by track id.
#[derive(Debug)]
pub(crate) struct UpstreamBoard {
    /// Entries on the board: zero lets downstream samples skip it.
    entries: AtomicUsize,
    shards: [Mutex<HashMap<CompactString, Entry>>; SHARDS],
}

impl Default for UpstreamBoard {
    fn default() -> Self {
        Self { entries: AtomicUsize::new(0), shards: std::array::from_fn(|_| Mutex::default()) }
    }
}

impl UpstreamBoard {
    fn shard(&self, track_id: &str) -> &Mutex<HashMap<CompactString, Entry>> {
        // FNV-1a: short ids, no need for a keyed hash to pick one of 16 locks.
        let hash = track_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        &self.shards[(hash as usize) % SHARDS]
    }

    /// Writes the kinds in trouble on `track_id`'s upstream; `0` removes its entry.
    pub(crate) fn set(&self, track_id: &str, bad: u8) {
        let mut shard = self.shard(track_id).lock();
        if bad == 0 {
            if shard.remove(track_id).is_some() {
                self.entries.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        match shard.get_mut(track_id) {
            Some(entry) => entry.bad = bad,
            None => {
                shard.insert(CompactString::from(track_id), Entry { bad, affected: Vec::new() });
                self.entries.fetch_add(1, Ordering::Relaxed);
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
        let mut shard = self.shard(track_id).lock();
        let entry = shard.entry(CompactString::from(track_id)).or_insert_with(|| {
            self.entries.fetch_add(1, Ordering::Relaxed);
            Entry::default()
        });
        entry.bad |= bad;
        for subscriber in affected {
            if entry.affected.len() >= MAX_AFFECTED {
                break;
            }
            if !entry.affected.iter().any(|listed| **listed == **subscriber) {
                entry.affected.push(Arc::from(subscriber.as_str()));
            }
        }
    }

    /// A subscriber's downstream sample of `track_id`: returns the kinds in trouble on its
    /// upstream (0 if none) and lists `subscriber` as affected if there are any.
    pub(crate) fn reached(&self, track_id: &str, subscriber: &Arc<str>) -> u8 {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut shard = self.shard(track_id).lock();
        let Some(entry) = shard.get_mut(track_id) else {
            return 0;
        };
        if entry.affected.len() < MAX_AFFECTED
            && !entry.affected.iter().any(|listed| **listed == **subscriber)
        {
            entry.affected.push(subscriber.clone());
        }
        entry.bad
    }

    /// How many subscribers are listed for `track_id`.
    pub(crate) fn affected_count(&self, track_id: &str) -> usize {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.shard(track_id).lock().get(track_id).map_or(0, |entry| entry.affected.len())
    }

    /// The subscribers listed for `track_id`.
    pub(crate) fn affected(&self, track_id: &str) -> Vec<String> {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        self.shard(track_id)
            .lock()
            .get(track_id)
            .map(|entry| entry.affected.iter().map(|id| id.to_string()).collect())
            .unwrap_or_default()
    }
}
