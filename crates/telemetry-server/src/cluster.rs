//! Cluster mode (`cluster.enabled`): several instances over one NATS JetStream stream and one
//! PostgreSQL database (DESIGN.md, "Backends and cluster mode").
//!
//! What is built: **ingest through JetStream.** HTTP and gRPC ingest decode and validate a
//! request as without the cluster, then publish its accepted calls, grouped by partition
//! ([`partition`]), one message per partition (split where a message would exceed the server's
//! `max_payload`), and answer once JetStream has acknowledged every publish. With an
//! `Idempotency-Key`, each message's `Nats-Msg-Id` is derived from the API key, the key, the
//! partition and the chunk, so a retry of the same request (to any instance, within the stream's
//! 10-minute duplicate window) stores nothing twice. The stream is created at start if missing
//! (file storage), and carries the partition count in its metadata: an instance configured with
//! another count refuses to start, naming `cluster.partitions`.
//!
//! **Partition ownership** ([`leases`]): leases with epochs in PostgreSQL, spread evenly over the
//! live instances, renewed every `cluster.lease / 3`, given back at a graceful stop; shown by
//! `GET /v1/cluster` ([`status`]).
//!
//! **Processing** ([`consumers`]): for every partition it holds, the instance takes the partition
//! over (its rooms' workers restored from the store as of the partition's stored offset),
//! consumes the partition's subject in stream order from after that offset (a durable pull
//! consumer per partition and epoch), applies each call to its core with the message's stream
//! sequence and the call's index as its origin, and acknowledges a message only once what it
//! caused is stored.
//!
//! **Fenced writes** ([`fencing`]): a partition's outputs are written only while this instance
//! holds its lease at the epoch it consumed them under, checked in the write's own transaction;
//! each flush is a checkpoint that stores every partition's offset with its windows and workers.

pub mod consumers;
pub mod fencing;
pub mod lag;
pub mod leases;
pub mod partition;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use prost::Message as _;
use telemetry_proto::v1;

use crate::config::ClusterConfig;
use crate::error::{ApiError, ErrorCode};

/// How long JetStream keeps message ids for deduplication: DESIGN.md's idempotency window.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The stream metadata key holding the partition count.
pub const PARTITIONS_METADATA: &str = "rtc_telemetry_partitions";

/// Room left in a message for its headers (the message id) under the server's `max_payload`.
const HEADER_ROOM: usize = 1024;

/// The connection to NATS and the stream.
#[derive(Clone, Debug)]
pub struct Cluster {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    subject_prefix: String,
    partitions: u32,
    /// This instance's place among the others: its id, the partition count and the lease.
    pub ownership: leases::Ownership,
    /// The partition leases this instance holds.
    pub leases: Arc<leases::Leases>,
    /// Messages published and acknowledged: stored, and duplicates of stored ones.
    published: Arc<[AtomicU64; 2]>,
    /// What the partition consumers did.
    pub consumed: Arc<consumers::Counters>,
    /// How this instance's writes are fenced by its leases.
    pub fencing: Arc<fencing::Fencing>,
    /// The held partitions' consumer lag, read by [`lag::run`].
    pub lag: Arc<lag::ConsumerLag>,
}

impl Cluster {
    /// Connects to `cluster.nats_url` and creates the stream if it is missing.
    ///
    /// # Errors
    ///
    /// NATS unreachable or without JetStream (naming `cluster.nats_url`), or a stream made for
    /// another partition count (naming `cluster.partitions`) or other subjects.
    pub async fn connect(
        config: &ClusterConfig,
        instance_id: &str,
        publish_timeout: Duration,
    ) -> anyhow::Result<Cluster> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name("rtc-telemetry")
            .connect(config.nats_url.as_str())
            .await
            .with_context(|| {
                format!(
                    "config key `cluster.nats_url`: cannot connect to NATS at `{}`",
                    config.nats_url
                )
            })?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(publish_timeout);
        let cluster = Cluster {
            client,
            jetstream,
            stream: config.stream.clone(),
            subject_prefix: config.subject_prefix.clone(),
            partitions: config.partitions,
            ownership: leases::Ownership {
                instance_id: instance_id.to_owned(),
                partitions: config.partitions,
                lease: config.lease,
            },
            leases: Arc::default(),
            published: Arc::default(),
            consumed: Arc::default(),
            fencing: Arc::new(fencing::Fencing::new(instance_id, config.partitions)),
            lag: Arc::default(),
        };
        cluster.ensure_stream(&config.stream).await?;
        Ok(cluster)
    }

    async fn ensure_stream(&self, name: &str) -> anyhow::Result<()> {
        let subjects = format!("{}.*", self.subject_prefix);
        let wanted = jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.clone()],
            storage: jetstream::stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            metadata: [(PARTITIONS_METADATA.to_owned(), self.partitions.to_string())].into(),
            ..Default::default()
        };
        let mut stream = self.jetstream.get_or_create_stream(wanted).await.with_context(|| {
            format!("config key `cluster.stream`: cannot get or create the JetStream stream `{name}` (is JetStream enabled on the server, `nats-server -js`?)")
        })?;
        let info = stream.info().await.context("reading the JetStream stream's configuration")?;
        let stored = info.config.metadata.get(PARTITIONS_METADATA).cloned().unwrap_or_default();
        if stored != self.partitions.to_string() {
            anyhow::bail!(
                "config key `cluster.partitions`: {} here, but the stream `{name}` was made for {stored:?} partitions; the count is fixed for the life of a stream (every instance must use {stored:?}, or start a new stream)",
                self.partitions
            );
        }
        if !info.config.subjects.contains(&subjects) {
            anyhow::bail!(
                "config key `cluster.subject_prefix`: the stream `{name}` holds subjects {:?}, not `{subjects}`",
                info.config.subjects
            );
        }
        if info.config.duplicate_window < DUPLICATE_WINDOW {
            anyhow::bail!(
                "config key `cluster.stream`: the stream `{name}` deduplicates message ids for {:?}, less than the {DUPLICATE_WINDOW:?} an `Idempotency-Key` is honoured",
                info.config.duplicate_window
            );
        }
        Ok(())
    }

    /// Whether the connection to NATS is up now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Cluster mode's metric families (`crate::metrics::cluster_families`).
    pub fn metric_families(&self) -> Vec<telemetry_core::metrics::MetricFamily> {
        let leases = &self.leases;
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut families = crate::metrics::cluster_families(
            leases.held().len(),
            [
                count(&leases.renewals),
                count(&leases.taken),
                count(&leases.losses),
                count(&leases.released),
            ],
            [count(&self.published[0]), count(&self.published[1])],
            [
                count(&self.consumed.applied),
                count(&self.consumed.redelivered),
                count(&self.consumed.acknowledged),
            ],
            count(&self.consumed.refused_calls),
        );
        families.extend(crate::metrics::consumer_lag_families(&self.lag.readings()));
        families
    }

    /// Publishes `calls` (each already validated, with `at` and `nodeId` set), grouped by
    /// partition in their order, and waits for JetStream to acknowledge every message.
    /// `message_id` (from an `Idempotency-Key`, scoped by the API key) makes the publishes
    /// idempotent within the duplicate window.
    ///
    /// # Errors
    ///
    /// `Unavailable` (with `Retry-After`) if NATS is unreachable or a publish is not
    /// acknowledged: the caller must send the request again (with its `Idempotency-Key`, to take
    /// effect once), as some of its messages may have been stored.
    pub async fn publish(
        &self,
        calls: Vec<v1::TelemetryCall>,
        message_id: Option<&str>,
    ) -> Result<Published, ApiError> {
        if !self.is_connected() {
            return Err(unavailable("NATS is unreachable; nothing was accepted, try again"));
        }
        let max_payload = self.client.server_info().max_payload.saturating_sub(HEADER_ROOM).max(1);
        let mut by_partition: BTreeMap<u32, Vec<v1::TelemetryCall>> = BTreeMap::new();
        for call in calls {
            by_partition
                .entry(partition::partition_of(&call, self.partitions))
                .or_default()
                .push(call);
        }
        let mut acks = Vec::new();
        for (partition, calls) in by_partition {
            for (chunk, body) in chunks(calls, max_payload).into_iter().enumerate() {
                let mut publish = jetstream::message::PublishMessage::build().payload(body.into());
                if let Some(id) = message_id {
                    publish = publish.message_id(format!("{id}:{partition}:{chunk}"));
                }
                let subject = partition::subject(&self.subject_prefix, partition);
                let ack = self.jetstream.send_publish(subject, publish).await.map_err(|error| {
                    tracing::warn!(%error, partition, "publishing to JetStream failed");
                    unavailable("publishing to JetStream failed; send the request again (with its `Idempotency-Key` to take effect once)")
                })?;
                acks.push(ack);
            }
        }
        let mut published = Published::default();
        for ack in
            futures::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future))
                .await
        {
            let ack = ack.map_err(|error| {
                tracing::warn!(%error, "JetStream did not acknowledge a publish");
                unavailable("JetStream did not acknowledge the calls; send the request again (with its `Idempotency-Key` to take effect once)")
            })?;
            published.messages += 1;
            if ack.duplicate {
                published.duplicates += 1;
            }
        }
        self.published[0]
            .fetch_add((published.messages - published.duplicates) as u64, Ordering::Relaxed);
        self.published[1].fetch_add(published.duplicates as u64, Ordering::Relaxed);
        Ok(published)
    }
}

/// The base of the `Nats-Msg-Id`s of a request's messages: the API key, the `Idempotency-Key`
/// and the message's place in a gRPC stream (0 over HTTP); [`Cluster::publish`] appends each
/// message's partition and chunk. (An API key holds no `:`-free guarantee, so the parts are
/// length-prefixed: no two different triples give the same id.)
pub fn message_id(api_key: &str, idempotency_key: &str, stream_index: usize) -> String {
    format!("{}:{api_key}:{idempotency_key}:{stream_index}", api_key.len())
}

/// What a publish did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Messages acknowledged.
    pub messages: usize,
    /// Of them, messages JetStream already held (a repeated `Idempotency-Key`).
    pub duplicates: usize,
}

/// `calls` encoded as `TelemetryBatch`es of at most `max_bytes` each (a single call larger than
/// that goes alone; the server refuses it and the request fails whole).
fn chunks(calls: Vec<v1::TelemetryCall>, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut batch = v1::TelemetryBatch::default();
    let mut size = 0;
    for call in calls {
        // The field tag (1 byte) and the length prefix (at most 10 bytes) of a repeated message.
        let added = call.encoded_len() + 11;
        if !batch.calls.is_empty() && size + added > max_bytes {
            bodies.push(std::mem::take(&mut batch).encode_to_vec());
            size = 0;
        }
        size += added;
        batch.calls.push(call);
    }
    if !batch.calls.is_empty() {
        bodies.push(batch.encode_to_vec());
    }
    bodies
}

fn unavailable(message: &'static str) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, message).retry_after(1)
}

/// `GET /v1/cluster` (role `read`): the instances seen within the last three leases, each with
/// the partitions it holds now and its last heartbeat, and the partition count:
/// `{"instances": [{"id", "partitions": [n...], "lastSeen"}], "partitions": N}`.
///
/// # Errors
///
/// 401, 403; 404 without the cluster; 503 while the store is unavailable.
pub async fn status(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    principal: Result<crate::auth::Principal, ApiError>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    principal?.require(crate::config::Role::Read)?;
    let (Some(cluster), Some(store)) = (&state.cluster, state.store.cluster()) else {
        return Err(ApiError::not_found("cluster mode is off (`cluster.enabled`)"));
    };
    let instances = store.cluster_instances(cluster.ownership.lease * 3).await?;
    let instances: Vec<serde_json::Value> = instances
        .into_iter()
        .map(|instance| {
            serde_json::json!({
                "id": instance.id,
                "partitions": instance.partitions,
                "lastSeen": crate::api::rfc3339(instance.last_seen),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "instances": instances, "partitions": cluster.partitions })))
}
