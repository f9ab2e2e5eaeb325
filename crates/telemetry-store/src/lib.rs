//! The analytics store of rtc-telemetry: the store contract the service writes to and queries,
//! its typed model ([`model`]), and two backends behind features: [`sqlite`] (embedded, the
//! default) and [`postgres`] (a shared server, for several instances).
//!
//! The contract is three traits, composed into [`Store`]:
//! - [`AnalyticsStore`]: atomic writes of what the core produced, and the query routes' reads;
//! - [`Outbox`]: the webhook outbox, with the claim protocol that lets several dispatchers
//!   share one database (see [`Outbox::claim`]);
//! - [`EndpointStore`]: webhook endpoints, and which instance's configuration lists which.
//!
//! The traits speak in the model's records and queries only; no backend type crosses them, and
//! rules that hold for every backend (state transitions, requeue rules, page cursors, u64
//! saturation) live once in [`model`]. [`conformance`] is the suite every backend passes.
//! [`open`] opens the backend a [`StoreConfig`] names.

pub mod model;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use telemetry_core::UnixMillis;
use telemetry_core::rates::RateCell;

use crate::model::{
    AdapterStateRecord, AttemptRecord, AttemptRow, ClaimRequest, ClaimToken, Claimed,
    ConfiguredEndpoints, DeliveriesQuery, DeliveryRecord, EndpointRecord, EventsQuery, IssueRecord,
    IssuesQuery, NodeSummary, OpenRoomRecord, OutboxCounts, Page, PendingDelivery, PruneCounts,
    QualityRecord, ReplayQuery, RoomCursor, RoomDetail, RoomSummary, RoomsQuery, StatsQuery,
    StatsWindowRecord, StoreCounts, StoredEvent, WorkerRecord, WriteBatch, WriteReceipt,
};

/// A boxed error from a backend's driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now (connection refused or lost, a timeout, the server
    /// shutting down, a serialization failure): the same operation may succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The database refused the operation (a constraint, a bad statement): retrying the same
    /// operation fails the same way.
    #[error("database error: {0}")]
    Database(#[source] BoxError),
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// Stored data could not be read back, or the schema is not one this build knows.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same operation may succeed if tried again later: the consumer and the
    /// dispatcher retry these with backoff, and ingest answers 503 while they last.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Which backend a store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite store.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The name used in the configuration (`store.backend`).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Which store to open, and how.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded SQLite store.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteConfig),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresConfig),
}

/// Opens (creating and migrating if needed) the store `config` names.
///
/// # Errors
///
/// Fails if the database cannot be reached, opened or migrated, or was written by a newer
/// version.
pub async fn open(config: StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        #[cfg(feature = "sqlite")]
        StoreConfig::Sqlite(config) => {
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(config))
                .await
                .map_err(|error| StoreError::Database(Box::new(error)))??;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreConfig::Postgres(config) => Ok(Arc::new(postgres::PostgresStore::open(config).await?)),
    }
}

/// The analytics side: atomic writes of the core's outputs, and the reads of the query API.
#[async_trait]
pub trait AnalyticsStore: Send + Sync + std::fmt::Debug {
    /// Writes a batch atomically. Concurrent writes may be committed in one transaction; each
    /// call returns once its batch is committed (durable), with what it created.
    async fn write(&self, batch: WriteBatch) -> Result<WriteReceipt, StoreError>;

    /// Lists rooms, newest first.
    async fn rooms(&self, query: RoomsQuery) -> Result<Page<RoomSummary, RoomCursor>, StoreError>;

    /// Returns a room with its participants and tracks.
    async fn room(&self, sid: &str) -> Result<Option<RoomDetail>, StoreError>;

    /// Lists a room's events in call order.
    async fn room_events(&self, query: EventsQuery) -> Result<Page<StoredEvent, i64>, StoreError>;

    /// Returns stats windows, by track, direction and start.
    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsWindowRecord>, StoreError>;

    /// Lists quality issues, by start then id.
    async fn issues(&self, query: IssuesQuery) -> Result<Vec<IssueRecord>, StoreError>;

    /// Lists the nodes seen, with their latest room states.
    async fn nodes(&self) -> Result<Vec<NodeSummary>, StoreError>;

    /// Lists the open stats workers kept (the last state written of each, if open), by room and
    /// participant: what a service restores at start.
    async fn live_workers(&self) -> Result<Vec<WorkerRecord>, StoreError>;

    /// Lists the quality detector states kept with open workers' records, by room and
    /// participant: what a service restores after the workers.
    async fn quality_states(&self) -> Result<Vec<QualityRecord>, StoreError>;

    /// Lists the rooms started and not ended (a `ROOM_CREATED` event stored, no end), by sid,
    /// each with the node of its `ROOM_CREATED` event: what a service restores for
    /// `livekit_room_total` and room durations.
    async fn open_rooms(&self) -> Result<Vec<OpenRoomRecord>, StoreError>;

    /// Keeps an ingest adapter's state for its key, unless a state of the same or a higher
    /// generation is kept already; returns whether it was kept.
    async fn put_adapter_state(&self, record: AdapterStateRecord) -> Result<bool, StoreError>;

    /// Lists the states kept for `adapter`, by key.
    async fn adapter_states(&self, adapter: &str) -> Result<Vec<AdapterStateRecord>, StoreError>;

    /// Returns a node's rate cells in `[from, to)`, by second.
    async fn node_rates(
        &self,
        node_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(i64, RateCell)>, StoreError>;

    /// Returns row counts.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// Removes what is older than `before`: events, stats windows, rate cells, rooms that ended
    /// before it, and delivered or dead webhook deliveries (pending ones are kept, whatever
    /// their age). Removes in batches, so that no transaction holds the database for long.
    async fn prune(&self, before: UnixMillis) -> Result<PruneCounts, StoreError>;
}

/// The webhook outbox.
///
/// **Claims.** A dispatcher sends only deliveries it has claimed. [`Outbox::claim`] hands out the
/// head of a queue (the pending delivery with the lowest id of its endpoint and resource key),
/// once due, and only while no live claim holds it or another delivery of its key (a requeued
/// delivery waits for its key's request in flight); a claim names its owner, expires after the
/// lease, and bumps the delivery's epoch (the head's run, claimed with it, is safe from other
/// claimants: none of it is a head while the head is pending). [`Outbox::record_attempts`]
/// records an attempt only
/// while the claim it was made under is the delivery's current one (same owner, same epoch, still
/// pending), and releases the claim. So, whatever the number of dispatchers on one database, a
/// key has one request in flight, its first attempts go in id order, and a dead dispatcher's
/// claims are taken over once their lease has run out.
#[async_trait]
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Claims due queue heads for `request.owner`: per endpoint of `request.slots`, at most its
    /// count of queues, lowest head ids first; with each head, up to `request.run - 1` of the
    /// pending deliveries after it in its queue, in id order, stopping at the first that is not
    /// due or is claimed. The claimant sends a queue's run one after the other, in order.
    async fn claim(&self, request: ClaimRequest) -> Result<Claimed, StoreError>;

    /// Releases these claims (a run cut short: the head is to be retried later, or its lease is
    /// running out), each only if it is still current; returns how many were.
    async fn release(&self, claims: Vec<(i64, ClaimToken)>) -> Result<u64, StoreError>;

    /// Records attempts, each under the claim it was made with; returns, per attempt, whether it
    /// was recorded (false: the claim was no longer current, and nothing was written for it).
    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<Vec<bool>, StoreError>;

    /// Releases every claim `owner` holds (a dispatcher stopping with attempts abandoned):
    /// those deliveries can be claimed again at once. Returns how many.
    async fn release_claims(&self, owner: &str) -> Result<u64, StoreError>;

    /// A wake-up for dispatchers: notified after a commit that created or requeued deliveries
    /// (in this process, and from other processes where the backend can tell). Polling
    /// [`Outbox::claim`] stays the source of truth; this only shortens the wait.
    fn outbox_changed(&self) -> Arc<tokio::sync::Notify>;

    /// Lists deliveries, newest first.
    async fn deliveries(
        &self,
        query: DeliveriesQuery,
    ) -> Result<Page<DeliveryRecord, i64>, StoreError>;

    /// Returns a delivery with every attempt.
    async fn delivery(
        &self,
        id: i64,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRow>)>, StoreError>;

    /// Makes a finished delivery pending again, due at `now` (its schedule restarts); returns
    /// it, or `None` if there is no such delivery, it is pending already, or its endpoint is gone.
    async fn requeue(
        &self,
        id: i64,
        now: UnixMillis,
    ) -> Result<Option<PendingDelivery>, StoreError>;

    /// Brings a pending delivery's next attempt forward to `now`; returns it, or `None` if there is
    /// no such pending delivery.
    async fn expedite(
        &self,
        id: i64,
        now: UnixMillis,
    ) -> Result<Option<PendingDelivery>, StoreError>;

    /// Makes every delivery that `query` selects pending again, due at `now`; returns them.
    async fn replay(
        &self,
        query: ReplayQuery,
        now: UnixMillis,
    ) -> Result<Vec<PendingDelivery>, StoreError>;

    /// Counts deliveries by status.
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// Counts by status the deliveries of the webhooks about room `room_sid` (the webhook counts
    /// of its report).
    async fn room_outbox_counts(&self, room_sid: &str) -> Result<OutboxCounts, StoreError>;
}

/// Webhook endpoints.
///
/// Endpoints from a configuration file are *listed* by the instances whose configuration names
/// them; an instance refreshes its listing while it runs. A configured endpoint is deleted only
/// once no live instance lists it, so an instance never deletes an endpoint that another
/// instance's configuration lists.
#[async_trait]
pub trait EndpointStore: Send + Sync + std::fmt::Debug {
    /// Lists webhook endpoints, oldest first.
    async fn endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError>;

    /// Creates or replaces an endpoint (its `created_at` is kept if it exists).
    async fn put_endpoint(&self, endpoint: EndpointRecord) -> Result<(), StoreError>;

    /// Deletes an endpoint; its pending deliveries become dead (kept, replayable only if it is
    /// created again). Returns it, if it existed.
    async fn delete_endpoint(
        &self,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<EndpointRecord>, StoreError>;

    /// Lists `configured.endpoints` for `configured.instance_id` (created or updated, the
    /// instance's listing replaced and refreshed), forgets the listings of instances not seen
    /// for `configured.liveness_ms`, and deletes configured endpoints no live instance lists.
    /// Returns the ids deleted.
    async fn sync_configured_endpoints(
        &self,
        configured: ConfiguredEndpoints,
    ) -> Result<Vec<String>, StoreError>;

    /// Removes `instance_id`'s listing (a graceful stop): its endpoints stay until the next sync
    /// of an instance that does not list them.
    async fn unlist_instance(&self, instance_id: &str) -> Result<(), StoreError>;
}

/// Cluster mode's coordination: the instances sharing the database and the leases of the
/// JetStream stream's partitions (PostgreSQL only: [`Store::cluster`]). Times are the database
/// server's, so the instances' clocks do not matter.
#[async_trait]
pub trait ClusterStore: Send + Sync + std::fmt::Debug {
    /// One heartbeat of `instance`, in one transaction: records it alive now; renews for `lease`
    /// every lease it holds that has not expired (an expired one is lost, even if nobody took
    /// it: taking it again bumps its epoch); computes its fair share of `partitions` among the
    /// instances seen within `lease` ([`model::fair_share`]); and, while it holds fewer, takes
    /// free or expired partitions (lowest first, each with its epoch + 1). It gives nothing
    /// back: the caller releases extras ([`ClusterStore::release_lease`]) once it has stopped
    /// working on them.
    async fn cluster_heartbeat(
        &self,
        instance: &str,
        partitions: u32,
        lease: std::time::Duration,
    ) -> Result<model::Heartbeat, StoreError>;

    /// Gives a lease back (it expires now), if `instance` still holds it at `epoch`.
    async fn release_lease(&self, instance: &str, lease: model::Lease) -> Result<(), StoreError>;

    /// The stream sequence up to which `partition`'s outputs are stored (written with a fenced
    /// write, [`model::Fence::offset`]), and the epoch that wrote it; `None` if none was.
    async fn partition_offset(&self, partition: u32) -> Result<Option<(i64, u64)>, StoreError>;

    /// Removes `instance` (a graceful stop, after releasing its leases).
    async fn leave_cluster(&self, instance: &str) -> Result<(), StoreError>;

    /// Every instance seen within `recent`, with the partitions it holds now, by id.
    async fn cluster_instances(
        &self,
        recent: std::time::Duration,
    ) -> Result<Vec<model::InstanceRecord>, StoreError>;
}

/// The whole store: analytics, outbox and endpoints, on one database.
#[async_trait]
pub trait Store: AnalyticsStore + Outbox + EndpointStore {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Cluster mode's leases, where the backend has them (PostgreSQL).
    fn cluster(&self) -> Option<&dyn ClusterStore> {
        None
    }

    /// Checks that the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Commits every write already sent, then closes the store: later calls fail with
    /// [`StoreError::Closed`].
    async fn close(&self);
}
