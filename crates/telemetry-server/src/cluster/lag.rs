//! The consumer lag of the partitions this instance holds (`rtc_telemetry_cluster_consumer_lag`
//! and `rtc_telemetry_cluster_consumer_redelivered`, labelled by partition).
//!
//! A small task, off the hot path: every [`POLL_INTERVAL`] it reads the JetStream consumer info
//! of each partition whose lease this instance holds (the durable consumer
//! `rtc-telemetry-p<partition>-e<epoch>` of [`super::consumers`]) and keeps, per partition, the messages
//! not yet delivered plus those delivered and not yet acknowledged (the lag: what the owner
//! still has to store), and how many of the unacknowledged ones were delivered more than once.
//! A partition no longer held is dropped from the readings at the next poll; a failed reading
//! keeps the previous one (the server's answer is what counts, and a lag that vanished while
//! NATS is unreachable would read as "caught up").

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use telemetry_store::model::Lease;

/// How often the consumer info is read: often enough to watch a backlog drain, rare enough to be
/// nothing next to the messages themselves (one request per held partition).
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What JetStream says of one partition's consumer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionLag {
    /// Messages of the partition not yet delivered, plus delivered and not yet acknowledged.
    pub lag: u64,
    /// Of the unacknowledged, messages delivered more than once.
    pub redelivered: u64,
}

impl PartitionLag {
    /// The reading of a consumer's info.
    pub fn of(info: &jetstream::consumer::Info) -> Self {
        PartitionLag {
            lag: info.num_pending + info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
        }
    }
}

/// The latest readings, by partition (only partitions held at the last poll).
#[derive(Debug, Default)]
pub struct ConsumerLag {
    readings: Mutex<BTreeMap<u32, PartitionLag>>,
}

impl ConsumerLag {
    /// The latest reading of each partition held.
    pub fn readings(&self) -> BTreeMap<u32, PartitionLag> {
        self.readings.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Keeps the readings of `held` partitions only, updated with `read` (a held partition
    /// without a new reading keeps its last one, if any).
    fn update(&self, held: &[u32], read: BTreeMap<u32, PartitionLag>) {
        let mut readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        readings.retain(|partition, _| held.contains(partition));
        readings.extend(read);
    }
}

/// Reads the consumer lag of the partitions held every [`POLL_INTERVAL`] until `stop`.
pub async fn run(cluster: Cluster, stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream: Option<jetstream::stream::Stream> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leases = cluster.leases.held();
        let held: Vec<u32> = leases.iter().map(|lease| lease.partition).collect();
        let mut read = BTreeMap::new();
        if !held.is_empty() && cluster.is_connected() {
            if stream.is_none() {
                match cluster.jetstream.get_stream(&cluster.stream).await {
                    Ok(found) => stream = Some(found),
                    Err(error) => tracing::debug!(%error, "cannot read the stream for the lag"),
                }
            }
            if let Some(found) = &stream {
                for &Lease { partition, epoch } in &leases {
                    match found
                        .consumer_info(super::partition::consumer_name(partition, epoch))
                        .await
                    {
                        Ok(info) => {
                            read.insert(partition, PartitionLag::of(&info));
                        }
                        // Not created yet (a lease just taken), or NATS is going away.
                        Err(error) => {
                            tracing::debug!(%error, partition, "cannot read the consumer's lag");
                        }
                    }
                }
            }
        }
        cluster.lag.update(&held, read);
    }
}

#[cfg(test)]
mod tests;
