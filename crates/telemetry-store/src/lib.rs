//! The analytics store of rtc-telemetry: the [`Store`] trait the service writes to and queries,
//! its model ([`model`]), and [`sqlite::SqliteStore`], the embedded default.
//!
//! The trait speaks in the model's records and queries only; nothing SQLite-specific crosses it,
//! so a PostgreSQL implementation can sit beside this one.

pub mod model;
pub mod sqlite;

use async_trait::async_trait;
use telemetry_core::UnixMillis;
use telemetry_core::rates::RateCell;

use crate::model::{
    AttemptRow, DeliveriesQuery, DeliveryRecord, EndpointRecord, EventsQuery, NodeSummary,
    OutboxCounts, Page, PendingDelivery, PruneCounts, ReplayQuery, RoomCursor, RoomDetail,
    RoomSummary, RoomsQuery, StatsQuery, StatsWindowRecord, StoreCounts, StoredEvent, WriteBatch,
    WriteReceipt,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// Stored data could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(error))
    }
}

/// The analytics store.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Writes a batch atomically. Concurrent writes may be committed in one transaction; each
    /// call returns once its batch is durable, with the deliveries it created.
    async fn write(&self, batch: WriteBatch) -> Result<WriteReceipt, StoreError>;

    /// Lists rooms, newest first.
    async fn rooms(&self, query: RoomsQuery) -> Result<Page<RoomSummary, RoomCursor>, StoreError>;

    /// Returns a room with its participants and tracks.
    async fn room(&self, sid: &str) -> Result<Option<RoomDetail>, StoreError>;

    /// Lists a room's events in call order.
    async fn room_events(&self, query: EventsQuery) -> Result<Page<StoredEvent, i64>, StoreError>;

    /// Returns stats windows, by track, direction and start.
    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsWindowRecord>, StoreError>;

    /// Lists the nodes seen, with their latest room states.
    async fn nodes(&self) -> Result<Vec<NodeSummary>, StoreError>;

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
    /// their age).
    async fn prune(&self, before: UnixMillis) -> Result<PruneCounts, StoreError>;

    /// Every pending delivery, in id order, with its message (for the dispatcher at start).
    async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError>;

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

    /// Makes a delivery pending again, due at `now` (its schedule restarts); returns it, or `None`
    /// if there is no such delivery or it is already pending.
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

    /// Lists webhook endpoints.
    async fn endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError>;

    /// Creates or replaces an endpoint.
    async fn put_endpoint(&self, endpoint: EndpointRecord) -> Result<(), StoreError>;

    /// Deletes an endpoint; its pending deliveries become dead (kept, replayable only if it is
    /// created again). Returns it, if it existed.
    async fn delete_endpoint(
        &self,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<EndpointRecord>, StoreError>;

    /// Counts deliveries by status.
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;
}
