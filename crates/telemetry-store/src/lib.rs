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
    EventsQuery, NodeSummary, Page, PruneCounts, RoomCursor, RoomDetail, RoomSummary, RoomsQuery,
    StatsQuery, StatsWindowRecord, StoreCounts, StoredEvent, WriteBatch,
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
    /// call returns once its batch is durable.
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

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

    /// Removes what is older than `before`: events, stats windows, rate cells, and rooms that
    /// ended before it.
    async fn prune(&self, before: UnixMillis) -> Result<PruneCounts, StoreError>;
}
