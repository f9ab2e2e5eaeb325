//! Fenced writes and partition checkpoints: how cluster mode stores each partition's outputs
//! exactly once across a take-over (DESIGN.md, "Take-over without loss or duplicates").
//!
//! **Attribution.** The pipeline attributes each output of the core to the partition of its room
//! (the partition rule of [`super::partition`], over the room's name, else its sid): events,
//! webhooks, stats windows, worker states and quality issues. Node room states and node rates
//! belong to no partition and are written as without the cluster.
//!
//! **Fencing.** While this instance consumes a partition at an epoch ([`Fencing::hold`]), the
//! partition's outputs are written in batches of their own, each fenced by the lease
//! ([`telemetry_store::model::Fence`]): the store writes such a batch only if the lease is still
//! held at that epoch when it commits, and holds the lease row `FOR SHARE` until then, so a take
//! waits for the write and a write after a take writes nothing. Outputs the core made for a
//! partition before its current epoch began, or for a partition lost or given back
//! ([`Fencing::gone`]) up to the moment it went, are dropped by the pipeline itself.
//!
//! **Checkpoints.** A consumer applies each message under the read side of [`Fencing::gate`]; a
//! flush of the stats workers takes the write side, so it cuts every partition's stream between
//! two messages: everything applied before it, and nothing after, is in its windows. The flush
//! records that cut ([`Fencing::begin_checkpoint`]): per partition held, the stream sequence of
//! the last message applied. The pipeline writes the flush's outputs of a partition in one
//! fenced batch with that offset (never splitting a flush), together with the partition's
//! worker states, which it holds back until then: the stored workers and windows of a partition
//! are always those of its stored offset. A new owner therefore restores the partition's open
//! workers from the store and replays the stream after the offset: each sample after the offset
//! lands in exactly one stored window, each lifecycle call's event and webhook keep their ids
//! (`telemetry_core::Origin`), and the store keeps one of each.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use telemetry_store::model::{Fence, Lease, WorkerRecord};

/// What the pipeline knows of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partition {
    /// Consumed here at `epoch`: its outputs after the core's output `since` are written fenced.
    Held {
        /// The lease's epoch.
        epoch: i64,
        /// The core's last output when consumption at this epoch began.
        since: u64,
        /// The stream sequence of the last message applied (or the offset it began after).
        applied: u64,
    },
    /// Lost or given back: its outputs up to the core's output `through` are dropped.
    Gone {
        /// The core's last output when the partition went.
        through: u64,
    },
}

/// A flush's cut of the partitions held.
#[derive(Debug)]
struct Checkpoint {
    /// The core's last output before the flush.
    start: u64,
    /// The core's last output after it; `None` while it runs.
    end: Option<u64>,
    /// Per partition held: its lease and the stream sequence of its last message applied.
    offsets: Vec<(Lease, u64)>,
}

/// Where the pipeline may cut its next write ([`Fencing::next_cut`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// No flush is waiting to be written: any number of outputs.
    Free,
    /// Through this output at most (the last before a flush, or a flush's last).
    Through(u64),
    /// A flush runs and every output before it is written: wait for it to end.
    Wait,
}

/// How one output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// As without the cluster.
    Unfenced,
    /// In the partition's fenced batch.
    Fenced(Lease),
    /// Not at all: a former epoch's, or a partition's gone from here.
    Dropped,
}

/// Fenced writes and checkpoints of this instance (see the module documentation).
#[derive(Debug)]
pub struct Fencing {
    instance: String,
    partitions: u32,
    /// Read while a consumer applies one message; written by a flush (its cut) and by a
    /// partition's restore or forgetting.
    pub gate: tokio::sync::RwLock<()>,
    /// Notified when a flush ends: the pipeline may write it.
    pub ended: tokio::sync::Notify,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    partitions: BTreeMap<u32, Partition>,
    checkpoints: VecDeque<Checkpoint>,
    /// Worker states of held partitions, held back until the partition's next checkpoint.
    workers: BTreeMap<u32, (i64, Vec<WorkerRecord>)>,
}

impl Fencing {
    /// Fencing for `instance` over `partitions` partitions.
    pub fn new(instance: &str, partitions: u32) -> Self {
        Self {
            instance: instance.to_owned(),
            partitions,
            gate: tokio::sync::RwLock::new(()),
            ended: tokio::sync::Notify::new(),
            state: Mutex::default(),
        }
    }

    /// The partition of a room (by its name, else its sid), or `None` without either.
    pub fn partition_of_room(&self, name: &str, sid: &str) -> Option<u32> {
        super::partition::partition_of_room(name, sid, self.partitions)
    }

    /// `lease` is consumed from now on: the core's outputs of its partition after `since` are
    /// written fenced by it; `applied` is the stream sequence consumption begins after. Call it
    /// under the gate's write side.
    pub fn hold(&self, lease: Lease, since: u64, applied: u64) {
        let mut state = self.lock();
        state
            .partitions
            .insert(lease.partition, Partition::Held { epoch: lease.epoch, since, applied });
        state.workers.remove(&lease.partition);
    }

    /// The message at stream sequence `sequence` of `lease`'s partition was applied (under the
    /// gate's read side).
    pub fn applied(&self, lease: Lease, sequence: u64) {
        if let Some(Partition::Held { epoch, applied, .. }) =
            self.lock().partitions.get_mut(&lease.partition)
            && *epoch == lease.epoch
        {
            *applied = (*applied).max(sequence);
        }
    }

    /// Whether `lease` is the one consumed here now.
    pub fn holds(&self, lease: Lease) -> bool {
        matches!(
            self.lock().partitions.get(&lease.partition),
            Some(Partition::Held { epoch, .. }) if *epoch == lease.epoch
        )
    }

    /// `partition` is no longer consumed here (lost, or given back): the core's outputs of it
    /// up to `through` are dropped. Call it under the gate's write side, after forgetting the
    /// partition's workers.
    pub fn gone(&self, partition: u32, through: u64) {
        let mut state = self.lock();
        state.partitions.insert(partition, Partition::Gone { through });
        state.workers.remove(&partition);
    }

    /// A flush starts after the core's output `start` (under the gate's write side): records the
    /// cut of every partition held, for [`Fencing::end_checkpoint`] to complete.
    pub fn begin_checkpoint(&self, start: u64) {
        let mut state = self.lock();
        let offsets = state
            .partitions
            .iter()
            .filter_map(|(&partition, held)| match *held {
                Partition::Held { epoch, applied, .. } => {
                    Some((Lease { partition, epoch }, applied))
                }
                Partition::Gone { .. } => None,
            })
            .collect();
        state.checkpoints.push_back(Checkpoint { start, end: None, offsets });
    }

    /// The flush begun last ended with the core's output `end`.
    pub fn end_checkpoint(&self, end: u64) {
        if let Some(checkpoint) = self.lock().checkpoints.iter_mut().rev().find(|c| c.end.is_none())
        {
            checkpoint.end = Some(end);
        }
        self.ended.notify_one();
    }

    /// Where the write after the core's output `written` may end.
    pub fn next_cut(&self, written: u64) -> Cut {
        let state = self.lock();
        match state.checkpoints.front() {
            None => Cut::Free,
            Some(checkpoint) if checkpoint.start > written => Cut::Through(checkpoint.start),
            Some(Checkpoint { end: Some(end), .. }) => Cut::Through((*end).max(written)),
            Some(_) => Cut::Wait,
        }
    }

    /// How the core's output `seq` of `partition` (`None`: of no partition) is written.
    pub fn route(&self, partition: Option<u32>, seq: u64) -> Route {
        let Some(partition) = partition else { return Route::Unfenced };
        match self.lock().partitions.get(&partition) {
            None => Route::Unfenced,
            Some(&Partition::Held { epoch, since, .. }) if seq > since => {
                Route::Fenced(Lease { partition, epoch })
            }
            Some(Partition::Held { .. }) => Route::Dropped,
            Some(&Partition::Gone { through }) if seq <= through => Route::Dropped,
            Some(Partition::Gone { .. }) => Route::Unfenced,
        }
    }

    /// Holds back the worker states of `lease`'s partition until its next checkpoint.
    pub fn defer_workers(&self, lease: Lease, workers: Vec<WorkerRecord>) {
        if workers.is_empty() {
            return;
        }
        let mut state = self.lock();
        let entry = state.workers.entry(lease.partition).or_insert((lease.epoch, Vec::new()));
        if entry.0 != lease.epoch {
            *entry = (lease.epoch, Vec::new());
        }
        entry.1.extend(workers);
    }

    /// If the write that ended with the core's output `written` completed the oldest
    /// checkpoint, takes it: per partition, its fence with the offset and the worker states held
    /// back for it.
    pub fn take_checkpoint(&self, written: u64) -> Option<Vec<(Fence, Vec<WorkerRecord>)>> {
        let mut state = self.lock();
        let done =
            state.checkpoints.front().is_some_and(|c| c.end.is_some_and(|end| end <= written));
        if !done {
            return None;
        }
        let checkpoint = state.checkpoints.pop_front()?;
        let mut parts = Vec::with_capacity(checkpoint.offsets.len());
        for (lease, offset) in checkpoint.offsets {
            // A partition given up since its cut: its part is dropped (the next owner replays).
            let held = matches!(
                state.partitions.get(&lease.partition),
                Some(Partition::Held { epoch, .. }) if *epoch == lease.epoch
            );
            if !held {
                continue;
            }
            let workers = match state.workers.remove(&lease.partition) {
                Some((epoch, workers)) if epoch == lease.epoch => workers,
                _ => Vec::new(),
            };
            let fence = Fence { instance: self.instance.clone(), lease, offset: Some(offset) };
            parts.push((fence, workers));
        }
        Some(parts)
    }

    /// The fence of `lease` for a write without an offset.
    pub fn fence(&self, lease: Lease) -> Fence {
        Fence { instance: self.instance.clone(), lease, offset: None }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
