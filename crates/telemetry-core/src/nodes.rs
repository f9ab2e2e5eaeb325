//! Reporting nodes: the node names callers send, interned as [`NodeId`]s, and bounded.
//!
//! A node's name is chosen by its caller, so the table that interns them is the first thing a
//! hostile client (or a fleet whose nodes take a new id at every restart) would grow without end:
//! every node has rate rings, Prometheus cells and lifecycle metrics of its own. The table holds
//! at most `max_nodes` nodes; a node without calls for `node_idle_timeout` is forgotten. When the
//! table is full, a new node takes the place of the node idle the longest, if that one has made
//! no call for `evict_after` (at least a flush interval: its tracks' samples are flushed by then);
//! else the new node is refused ([`NodeLimit`], counted). So nodes that are reporting are never
//! pushed out, and a flood of invented ids cannot lock a new real node out for longer than
//! `evict_after`. Forgetting a node drops its per-node state everywhere (the service calls
//! [`NodeTable::expire`] from its rate drain, every second, after the node's last rate cells are
//! out), as if the node had stopped exporting metrics.
//!
//! Ids are never reused: a stale id held somewhere resolves to nothing, never to another node.
//! Activity is stamped with the service's clock, never with the caller's call times.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::time::UnixMillis;

/// A reporting SFU node, interned (see [`crate::TelemetryService::node`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

/// The id of the configured node: in-process calls are made by it; it never expires.
pub(crate) const LOCAL_NODE: NodeId = NodeId(0);

/// A new node refused because `max_nodes` nodes are live.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "node id refused: {max} nodes are live (`limits.max_nodes`), each with a call in the last \
     {evict_after_seconds} s"
)]
pub struct NodeLimit {
    /// The limit.
    pub max: usize,
    /// How long a node must be idle before a new one takes its place, in seconds.
    pub evict_after_seconds: i64,
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    /// When the node last made a call, by the service's clock (milliseconds).
    last_seen: AtomicI64,
    /// Never forgotten and not counted against the limit: the configured node and the service's
    /// own (the webhook sender).
    pinned: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<NodeId, Entry>,
    index: HashMap<Arc<str>, NodeId>,
    next: u32,
    /// Entries that are not pinned.
    counted: usize,
    /// Nodes pushed out by new ones, whose state the next [`NodeTable::expire`] drops.
    evicted: Vec<NodeId>,
    /// No node can be pushed out before this time (ms): the last scan found none idle long
    /// enough, and times only move forward. Spares a flood of new ids a scan each.
    no_eviction_before: i64,
}

/// The interned nodes. See the module docs.
#[derive(Debug)]
pub(crate) struct NodeTable {
    state: RwLock<State>,
    max: usize,
    idle_ms: i64,
    evict_after_ms: i64,
    refused: AtomicU64,
    expired: AtomicU64,
}

/// Counters of the node table, for the metrics snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeCounters {
    pub(crate) live: u64,
    pub(crate) refused: u64,
    pub(crate) expired: u64,
}

impl NodeTable {
    /// A table holding `local` (pinned, as [`LOCAL_NODE`]), with room for `max` more nodes that
    /// are forgotten after `idle_ms` without calls, or pushed out by a new node when the table is
    /// full and they have made no call for `evict_after_ms`.
    pub(crate) fn new(local: &str, max: usize, idle_ms: i64, evict_after_ms: i64) -> Self {
        let table = Self {
            state: RwLock::new(State::default()),
            max,
            idle_ms,
            evict_after_ms: evict_after_ms.min(idle_ms),
            refused: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        };
        let id = table.insert(&mut table.state.write(), local, UnixMillis(0), true);
        debug_assert_eq!(id, LOCAL_NODE);
        table
    }

    /// Returns the id of the node called `name`, registering it on first use and stamping its
    /// activity at `now`.
    pub(crate) fn get_or_register(&self, name: &str, now: UnixMillis) -> Result<NodeId, NodeLimit> {
        self.lookup(name, now, false)
    }

    /// Like [`Self::get_or_register`] for one of the service's own nodes: never refused, never
    /// forgotten.
    pub(crate) fn pinned(&self, name: &str, now: UnixMillis) -> NodeId {
        self.lookup(name, now, true).expect("pinned nodes are never refused")
    }

    fn lookup(&self, name: &str, now: UnixMillis, pinned: bool) -> Result<NodeId, NodeLimit> {
        {
            let state = self.state.read();
            if let Some(id) = state.index.get(name) {
                state.entries[id].last_seen.store(now.0, Ordering::Relaxed);
                return Ok(*id);
            }
        }
        let mut state = self.state.write();
        if let Some(id) = state.index.get(name) {
            state.entries[id].last_seen.store(now.0, Ordering::Relaxed);
            return Ok(*id);
        }
        // (2^32 ids, each after an idle period, is not in this universe; refused all the same.)
        let full = !pinned && state.counted >= self.max && !self.evict_one(&mut state, now);
        if full || state.next == u32::MAX {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(NodeLimit {
                max: self.max,
                evict_after_seconds: self.evict_after_ms / 1000,
            });
        }
        Ok(self.insert(&mut state, name, now, pinned))
    }

    /// Removes the node idle the longest, if it has made no call for `evict_after_ms`; its state
    /// goes at the next [`Self::expire`].
    fn evict_one(&self, state: &mut State, now: UnixMillis) -> bool {
        if now.0 <= state.no_eviction_before {
            return false;
        }
        let oldest = state
            .entries
            .iter()
            .filter(|(_, entry)| !entry.pinned)
            .map(|(id, entry)| (entry.last_seen.load(Ordering::Relaxed), *id))
            .min();
        let Some((last_seen, id)) = oldest else { return false };
        if now.0.saturating_sub(last_seen) <= self.evict_after_ms {
            state.no_eviction_before = last_seen.saturating_add(self.evict_after_ms);
            return false;
        }
        let entry = state.entries.remove(&id).expect("just found");
        state.index.remove(&entry.name);
        state.counted -= 1;
        state.evicted.push(id);
        self.expired.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn insert(&self, state: &mut State, name: &str, now: UnixMillis, pinned: bool) -> NodeId {
        let id = NodeId(state.next);
        state.next += 1;
        let name: Arc<str> = name.into();
        state.index.insert(name.clone(), id);
        state.entries.insert(id, Entry { name, last_seen: AtomicI64::new(now.0), pinned });
        if !pinned {
            state.counted += 1;
        }
        id
    }

    /// The name of `node`, if it is still known.
    pub(crate) fn name(&self, node: NodeId) -> Option<Arc<str>> {
        self.state.read().entries.get(&node).map(|entry| entry.name.clone())
    }

    /// A reader that resolves many ids under one read lock (hold it briefly: a node being
    /// registered waits for it, and lookups wait behind that).
    pub(crate) fn reader(&self) -> NodeNames<'_> {
        NodeNames(self.state.read())
    }

    /// Forgets every node without a call for longer than the idle timeout at `now`; returns their
    /// ids (sorted), so the caller can drop their state.
    pub(crate) fn expire(&self, now: UnixMillis) -> Vec<NodeId> {
        let idle = |entry: &Entry| {
            !entry.pinned
                && now.0.saturating_sub(entry.last_seen.load(Ordering::Relaxed)) > self.idle_ms
        };
        {
            let state = self.state.read();
            if state.evicted.is_empty() && !state.entries.values().any(idle) {
                return Vec::new();
            }
        }
        let mut state = self.state.write();
        let idle_ones: Vec<NodeId> =
            state.entries.iter().filter(|(_, entry)| idle(entry)).map(|(id, _)| *id).collect();
        for id in &idle_ones {
            if let Some(entry) = state.entries.remove(id) {
                state.index.remove(&entry.name);
                state.counted -= 1;
            }
        }
        self.expired.fetch_add(idle_ones.len() as u64, Ordering::Relaxed);
        let mut expired = std::mem::take(&mut state.evicted);
        expired.extend(idle_ones);
        expired.sort_unstable();
        expired
    }

    pub(crate) fn counters(&self) -> NodeCounters {
        NodeCounters {
            live: self.state.read().counted as u64,
            refused: self.refused.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }
}

/// Resolves node ids under one read lock of the table.
pub(crate) struct NodeNames<'a>(parking_lot::RwLockReadGuard<'a, State>);

impl NodeNames<'_> {
    /// The name of `node`, or `fallback` for a node no longer known.
    pub(crate) fn get(&self, node: NodeId, fallback: &Arc<str>) -> Arc<str> {
        self.0.entries.get(&node).map_or_else(|| fallback.clone(), |entry| entry.name.clone())
    }
}

#[cfg(test)]
mod tests;
