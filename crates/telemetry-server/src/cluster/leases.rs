//! Partition ownership: this instance's heartbeat and leases (DESIGN.md, "Ownership").
//!
//! Every `cluster.lease / 3` the instance sends one heartbeat to the store
//! ([`telemetry_store::ClusterStore::cluster_heartbeat`]). It renews its unexpired leases, takes
//! free or expired partitions up to its fair share of the live instances, and learns that share.
//! Then it gives back what it holds above the share (highest partitions first), so a new instance
//! gets its share within about one lease. A give-back runs beside the heartbeats, never in their
//! way: its drain (a flush, the store awaited) may take longer than a lease, for example just
//! after PostgreSQL came back with a backlog, and the leases kept must be renewed meanwhile (the
//! one drained too: its last writes are fenced by it). A lease that was not renewed is lost. So is every lease
//! once no heartbeat has succeeded for a whole `lease`, for example while PostgreSQL is
//! unreachable: from then on the instance must not act for those partitions. At a graceful stop
//! it releases every lease and leaves the cluster, so the others take its partitions at their
//! next heartbeat and do not wait for the lease to run out.
//!
//! What is held is in [`Leases`]; the partition consumers (`super::consumers`) follow it. A
//! lease to give back is drained first ([`super::consumers::Consumers::give_back`]: what its
//! consumer applied is stored and acknowledged), then released.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use telemetry_store::Store;

use super::consumers::Consumers;
use telemetry_store::model::Lease;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The leases this instance holds, and counters of their changes.
#[derive(Debug, Default)]
pub struct Leases {
    held: Mutex<BTreeMap<u32, i64>>,
    /// When the leases held run out unless renewed: the start of the last successful heartbeat
    /// plus the lease (the database's expiry is at least this late).
    valid_until: Mutex<Option<Instant>>,
    /// Heartbeats that succeeded.
    pub renewals: AtomicU64,
    /// Partitions taken.
    pub taken: AtomicU64,
    /// Partitions lost (not renewed in time, or taken by another instance meanwhile).
    pub losses: AtomicU64,
    /// Partitions given back (above the fair share, or at a graceful stop).
    pub released: AtomicU64,
}

impl Leases {
    /// The leases held now, by partition: none once the last renewal's lease has run out (an
    /// instance paused past its lease holds nothing from the moment it resumes).
    pub fn held(&self) -> Vec<Lease> {
        if lock(&self.valid_until).is_none_or(|until| Instant::now() >= until) {
            return Vec::new();
        }
        self.held_as_recorded()
    }

    /// Whether `lease` (this partition, this epoch) is held now.
    pub fn holds(&self, lease: Lease) -> bool {
        self.held().contains(&lease)
    }

    fn held_as_recorded(&self) -> Vec<Lease> {
        lock(&self.held).iter().map(|(&partition, &epoch)| Lease { partition, epoch }).collect()
    }

    fn replace(&self, now: &[Lease]) -> usize {
        let mut held = lock(&self.held);
        let lost = held
            .iter()
            .filter(|&(partition, epoch)| {
                !now.iter().any(|lease| lease.partition == *partition && lease.epoch == *epoch)
            })
            .count();
        *held = now.iter().map(|lease| (lease.partition, lease.epoch)).collect();
        lost
    }

    fn remove(&self, lease: Lease) {
        lock(&self.held).remove(&lease.partition);
    }
}

/// What the heartbeat task needs.
#[derive(Clone, Debug)]
pub struct Ownership {
    /// This instance.
    pub instance_id: String,
    /// `cluster.partitions`.
    pub partitions: u32,
    /// `cluster.lease`.
    pub lease: Duration,
}

/// Heartbeats until `stop`, then releases every lease and leaves the cluster. A lease given
/// back is drained by `consumers` first.
pub async fn run(
    store: Arc<dyn Store>,
    ownership: Ownership,
    leases: Arc<Leases>,
    consumers: Option<Arc<Consumers>>,
    stop: CancellationToken,
) {
    let Some(cluster) = store.cluster() else {
        tracing::error!("the store has no cluster leases (cluster mode needs PostgreSQL)");
        return;
    };
    let mut interval = tokio::time::interval(ownership.lease / 3);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_success = Instant::now();
    // The give-backs under way (each a task: see the module documentation), by partition; and
    // what a heartbeat and the end of a give-back take in turn, so that a heartbeat that
    // started before a release was committed does not record its lease as held again.
    let mut giving_back: tokio::task::JoinSet<u32> = tokio::task::JoinSet::new();
    let mut partitions_given_back: BTreeSet<u32> = BTreeSet::new();
    let serial = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        while let Some(done) = giving_back.try_join_next() {
            if let Ok(partition) = done {
                partitions_given_back.remove(&partition);
            }
        }
        let turn = serial.clone().lock_owned().await;
        let started = Instant::now();
        match cluster
            .cluster_heartbeat(&ownership.instance_id, ownership.partitions, ownership.lease)
            .await
        {
            Ok(heartbeat) => {
                last_success = started;
                *lock(&leases.valid_until) = Some(started + ownership.lease);
                leases.renewals.fetch_add(1, Ordering::Relaxed);
                let lost = leases.replace(&heartbeat.held);
                if lost > 0 {
                    leases.losses.fetch_add(lost as u64, Ordering::Relaxed);
                    tracing::warn!(lost, "partition leases lost");
                }
                if !heartbeat.taken.is_empty() {
                    leases.taken.fetch_add(heartbeat.taken.len() as u64, Ordering::Relaxed);
                    let partitions: Vec<u32> =
                        heartbeat.taken.iter().map(|lease| lease.partition).collect();
                    tracing::info!(?partitions, "partitions taken");
                }
                let extra = heartbeat.held.len().saturating_sub(heartbeat.share as usize);
                for &lease in heartbeat.held.iter().rev().take(extra) {
                    if partitions_given_back.insert(lease.partition) {
                        let release = release(
                            store.clone(),
                            ownership.clone(),
                            leases.clone(),
                            consumers.clone(),
                            lease,
                            serial.clone(),
                        );
                        giving_back.spawn(async move {
                            release.await;
                            lease.partition
                        });
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cluster heartbeat failed");
                if last_success.elapsed() >= ownership.lease {
                    let lost = leases.replace(&[]);
                    if lost > 0 {
                        leases.losses.fetch_add(lost as u64, Ordering::Relaxed);
                        tracing::warn!(lost, "partition leases lost: no heartbeat for a lease");
                    }
                }
            }
        }
        drop(turn);
    }
    while giving_back.join_next().await.is_some() {}
    for lease in leases.held_as_recorded() {
        release(
            store.clone(),
            ownership.clone(),
            leases.clone(),
            consumers.clone(),
            lease,
            serial.clone(),
        )
        .await;
    }
    if let Err(error) = cluster.leave_cluster(&ownership.instance_id).await {
        tracing::warn!(%error, "leaving the cluster failed; the lease runs out instead");
    }
}

/// Gives `lease` back: drains its partition, then releases it in the store, in `serial`'s turn
/// (not during a heartbeat).
async fn release(
    store: Arc<dyn Store>,
    ownership: Ownership,
    leases: Arc<Leases>,
    consumers: Option<Arc<Consumers>>,
    lease: Lease,
    serial: Arc<tokio::sync::Mutex<()>>,
) {
    let Some(cluster) = store.cluster() else { return };
    if let Some(consumers) = &consumers {
        consumers.give_back(lease.partition).await;
    }
    let turn = serial.lock().await;
    leases.remove(lease);
    let released = cluster.release_lease(&ownership.instance_id, lease).await;
    drop(turn);
    match released {
        Ok(()) => {
            leases.released.fetch_add(1, Ordering::Relaxed);
            tracing::info!(partition = lease.partition, "partition given back");
        }
        Err(error) => {
            tracing::warn!(%error, partition = lease.partition, "giving a partition back failed; its lease runs out instead")
        }
    }
    if let Some(consumers) = &consumers {
        consumers.given_back(lease.partition);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
