//! The embedded store: one SQLite file (bundled SQLite, WAL), written by one thread that commits
//! whatever writes are waiting in one transaction (group commit), and read through a small pool
//! of connections on tokio's blocking threads, so no SQLite call ever runs on the async runtime.
//!
//! Durability: with `synchronous = "full"` (the default) a write returns only after the WAL is
//! synced, so it survives a process kill and a power loss; `"normal"` survives a process kill.
//!
//! Claims and attempt records go through the writer thread too, committed with the writes
//! waiting beside them; SQLite serialises writers, so a claim's choice of queue heads cannot race
//! another claim.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use parking_lot_shim::Mutex;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use telemetry_core::UnixMillis;
use telemetry_core::rates::RateCell;
use tokio::sync::oneshot;

use crate::model::{
    AdapterStateRecord, AttemptRecord, AttemptRow, ClaimRequest, ClaimToken, Claimed,
    ClaimedDelivery, ConfiguredEndpoints, DeliveriesQuery, DeliveryRecord, DeliveryStatus,
    EndpointRecord, EndpointSource, EventRecord, EventsQuery, IssueRecord, IssuesQuery,
    NodeRoomsRecord, NodeSummary, OpenRoomRecord, OutboxCounts, OutgoingWebhook, Page,
    ParticipantRow, ParticipantState, PendingDelivery, Projection, PruneCounts, QualityRecord,
    RateCellRecord, ReplayQuery, RoomCursor, RoomDetail, RoomSummary, RoomsQuery, Signing,
    StatsQuery, StatsWindowRecord, StoreCounts, StoredEvent, TrackRow, WorkerRecord, WriteBatch,
    WriteReceipt, count_from_stored, stored_count,
};
use crate::{AnalyticsStore, Backend, EndpointStore, Outbox, Store, StoreError};
use telemetry_core::quality::IssueKind;
use telemetry_core::{Direction, StreamKind, WebhookSubject};

/// `std::sync::Mutex` with poisoning ignored: a panic while holding the pool lock leaves the pool
/// in a usable state (it only holds idle connections).
mod parking_lot_shim {
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// The migrations, in order; `PRAGMA user_version` records how many are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_analytics.sql"),
    include_str!("../migrations/sqlite/0002_webhooks.sql"),
    include_str!("../migrations/sqlite/0003_claims.sql"),
    include_str!("../migrations/sqlite/0004_workers.sql"),
    include_str!("../migrations/sqlite/0005_adapter_states.sql"),
    include_str!("../migrations/sqlite/0006_quality.sql"),
    include_str!("../migrations/sqlite/0007_room_webhooks.sql"),
    include_str!("../migrations/sqlite/0008_closed_workers.sql"),
    include_str!("../migrations/sqlite/0009_worker_quality.sql"),
    include_str!("../migrations/sqlite/0010_event_keys.sql"),
    include_str!("../migrations/sqlite/0011_webhook_message_keys.sql"),
    include_str!("../migrations/sqlite/0012_write_marks.sql"),
];

/// Most rows one pruning transaction removes from a table before it commits and starts the next,
/// so that the writer thread never waits long behind it.
const PRUNE_BATCH: i64 = 5_000;

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let transient = matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::CannotOpen
            )
        );
        if transient {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Database(Box::new(error))
        }
    }
}

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;

/// Idle read connections kept.
const MAX_IDLE_READERS: usize = 4;

/// How writes reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Synced at every commit: survives power loss.
    #[default]
    Full,
    /// Synced at checkpoints: survives a process crash, may lose the last commits on power loss.
    Normal,
}

/// Where and how to open the store.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file; its folder is created if missing.
    pub path: PathBuf,
    /// How writes reach the disk.
    pub synchronous: Synchronous,
    /// The WAL pages at which a checkpoint copies them into the database, on the checkpointer
    /// thread ([`CHECKPOINT_PAGES`] by default; the writer does it itself at four times as
    /// many, if the checkpointer falls behind).
    pub checkpoint_pages: u32,
}

/// The default of [`SqliteConfig::checkpoint_pages`].
pub const CHECKPOINT_PAGES: u32 = 10_000;

impl SqliteConfig {
    /// The default file in `data_dir`: `telemetry.sqlite3`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("telemetry.sqlite3"),
            synchronous: Synchronous::Full,
            checkpoint_pages: CHECKPOINT_PAGES,
        }
    }
}

/// What the writer thread does, each answered on its own channel.
enum Operation {
    Write(Box<WriteBatch>, oneshot::Sender<Result<WriteReceipt, StoreError>>),
    Claim(ClaimRequest, oneshot::Sender<Result<Claimed, StoreError>>),
    Record(Vec<AttemptRecord>, oneshot::Sender<Result<Vec<bool>, StoreError>>),
}

struct WriteRequest {
    operation: Operation,
}

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    config: SqliteConfig,
    /// Requests to the writer thread; dropping it (in `close`) ends the thread after it has
    /// committed everything already sent.
    writer: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// The checkpointer thread; it ends when the writer's connection closes.
    checkpointer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Notified when deliveries were created or requeued.
    outbox_changed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("WriteRequest").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database and migrates it.
    ///
    /// # Errors
    ///
    /// Fails if the folder cannot be created or the database cannot be opened or migrated.
    pub fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        if let Some(parent) = config.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| StoreError::Database(Box::new(error)))?;
        }
        let mut connection = open_connection(&config)?;
        // The writer's savepoints (one per request of a group) keep the original of every page
        // they change in a statement journal, which SQLite spills to a temporary file past 64 KiB:
        // 33,106 of the 93,737 page writes of the ingest benchmark went to such files. In memory,
        // a journal holds at most one group's changed pages.
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints run on a thread of their own, so that no commit, which requests wait on,
        // carries one (13.5 % of the writer's time in the ingest benchmark at `--rooms 300`,
        // and a commit now and then slower by a whole checkpoint). A checkpoint copies each page
        // changed since the last one into the database once, however often the WAL holds it:
        // every 10,000 pages (40 MiB) rather than SQLite's 1,000, the indexes' hot pages are
        // copied less often (the ingest benchmark's checkpoint writes fell from 10,685 pages to
        // 4,431). Under steady writes the WAL does not restart after the checkpointer's copy (a
        // restart needs every frame copied when a write transaction begins, and the writer keeps
        // appending), so the file grows to the writer's backstop of four times that, which
        // restarts it (BENCHMARKS.md, "third session").
        let checkpointer_connection = open_connection(&config)?;
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let pages = i32::try_from(config.checkpoint_pages.max(1)).unwrap_or(i32::MAX);
        connection.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, in_wal: i32| {
            if in_wal >= pages.saturating_mul(4) {
                // The checkpointer is behind: the WAL must not grow without bound. The hook runs
                // after the commit took effect, and SQLite hands an error it returns to the
                // committing statement: a write that is stored would be answered as failed. A
                // checkpoint that cannot run now (the checkpointer's own in progress: busy) is
                // tried again at the next commit.
                if let Err(error) = wal.checkpoint() {
                    tracing::debug!(%error, in_wal, "the writer's backstop checkpoint did not run");
                }
            } else if in_wal >= pages {
                // Full: a wake-up is pending already.
                let _ = wake.try_send(());
            }
            Ok(())
        }))?;
        let checkpointer_thread = std::thread::Builder::new()
            .name("sqlite-checkpointer".to_owned())
            .spawn(move || checkpointer_loop(&checkpointer_connection, &woken))
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        migrate(&mut connection)?;
        let (sender, receiver) = mpsc::channel::<WriteRequest>();
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn({
                let synchronous = config.synchronous;
                move || writer_loop(connection, synchronous, receiver)
            })
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        Ok(Self {
            config,
            writer: Mutex::new(Some(sender)),
            writer_thread: Mutex::new(Some(writer_thread)),
            checkpointer_thread: Mutex::new(Some(checkpointer_thread)),
            readers: Arc::new(Mutex::new(Vec::new())),
            outbox_changed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Returns the database file.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Stops the writer after it has committed every write already sent, and waits for it.
    pub fn close_blocking(&self) {
        drop(self.writer.lock().take());
        if let Some(thread) = self.writer_thread.lock().take() {
            let _ = thread.join();
        }
        // The writer's connection is closed: the checkpointer's wake-ups are gone, and it ends.
        if let Some(thread) = self.checkpointer_thread.lock().take() {
            let _ = thread.join();
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let connection = readers.lock().pop();
            let connection = match connection {
                Some(connection) => connection,
                None => open_connection(&config)?,
            };
            let result = f(&connection);
            let mut idle = readers.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Database(Box::new(error)))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close_blocking();
    }
}

impl SqliteStore {
    /// Sends an operation to the writer thread and waits for its answer.
    async fn submit<T>(
        &self,
        operation: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Operation,
    ) -> Result<T, StoreError> {
        let (done, result) = oneshot::channel();
        {
            let writer = self.writer.lock();
            let writer = writer.as_ref().ok_or(StoreError::Closed)?;
            writer
                .send(WriteRequest { operation: operation(done) })
                .map_err(|_| StoreError::Closed)?;
        }
        result.await.map_err(|_| StoreError::Closed)?
    }
}

fn open_connection(config: &SqliteConfig) -> Result<Connection, StoreError> {
    let connection = Connection::open(&config.path)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", synchronous_pragma(config.synchronous))?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // rusqlite caches 16 prepared statements by default; the writer alone runs more than 30
    // distinct ones (events, projections, webhooks, claims, records), and with 16 each group
    // commit evicted and compiled most of them again: a third of the writer's instructions.
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The query planner stability guarantee: a statement's plan does not depend on the values
    // bound to it. Without it, a statement whose WHERE could match a partial index (the outbox's
    // `WHERE status = 'pending'` indexes) asks to be compiled again at every new binding, which
    // cost a quarter of every instruction the service ran delivering webhooks. The queries name
    // their partial indexes' conditions literally, so the plans stay the same.
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(connection)
}

/// The checkpointer thread: whenever the writer's commits leave [`SqliteConfig::checkpoint_pages`]
/// or more pages in the WAL, copies them into the database (`PASSIVE`: it never waits for the
/// writer or a reader, and copies what no reader still needs). It ends when the writer's
/// connection closes, which drops its wake-ups.
fn checkpointer_loop(connection: &Connection, woken: &mpsc::Receiver<()>) {
    while woken.recv().is_ok() {
        match connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok(_) => {}
            // Another connection checkpoints (the writer past its backstop, or another process
            // sharing the file): the next wake-up tries again.
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DatabaseBusy => {}
            Err(error) => tracing::warn!(%error, "checkpoint failed; the next commit tries again"),
        }
    }
}

/// How many prepared statements each connection keeps: more than any connection runs.
const STATEMENT_CACHE: usize = 256;

fn synchronous_pragma(synchronous: Synchronous) -> &'static str {
    match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    }
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    migrate_to(connection, MIGRATIONS.len())
}

/// Applies the first `count` migrations not applied yet, as [`migrate`] applies them all (tests
/// make the database of an earlier version with it).
fn migrate_to(connection: &mut Connection, count: usize) -> Result<(), StoreError> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied)
        .map_err(|_| StoreError::Corrupt("negative `user_version`".to_owned()))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has {applied} migrations applied, this build knows {}: it was written by a newer version",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS[..count].iter().enumerate().skip(applied) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
    }
    Ok(())
}

/// The writer thread: takes whatever requests wait and commits them in one transaction.
///
/// A group holding a write is committed as `synchronous` says (synced, with the default
/// `full`): a write is acknowledged calls. A group of claims and attempt records only is
/// committed without waiting for the disk (`NORMAL`): a crash of the machine may lose the last of
/// them, which makes their deliveries again (at least once, as after any crash), and never
/// reorders them, as the WAL is one file written in order and the next synced commit syncs every
/// commit before it.
fn writer_loop(
    mut connection: Connection,
    synchronous: Synchronous,
    requests: mpsc::Receiver<WriteRequest>,
) {
    let mut current = synchronous;
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let holds_writes =
            group.iter().any(|request| matches!(request.operation, Operation::Write(..)));
        let wanted = if holds_writes { synchronous } else { Synchronous::Normal };
        let mut refused = None;
        if wanted != current {
            match connection.pragma_update(None, "synchronous", synchronous_pragma(wanted)) {
                Ok(()) => current = wanted,
                // A group that cannot be made as durable as configured is not committed.
                Err(error) if holds_writes => refused = Some(error),
                // Claims and records committed synced: slower, nothing else.
                Err(_) => {}
            }
        }
        let results = match refused {
            Some(error) => group.iter().map(|_| Err(shared_error(&error))).collect(),
            None => commit_group(&mut connection, &group),
        };
        for (request, result) in group.into_iter().zip(results) {
            match (request.operation, result) {
                (Operation::Write(_, done), result) => {
                    let _ = done.send(result.map(|answer| match answer {
                        Answer::Written(receipt) => receipt,
                        _ => unreachable!("a write is answered with a receipt"),
                    }));
                }
                (Operation::Claim(_, done), result) => {
                    let _ = done.send(result.map(|answer| match answer {
                        Answer::Claimed(claimed) => claimed,
                        _ => unreachable!("a claim is answered with claims"),
                    }));
                }
                (Operation::Record(_, done), result) => {
                    let _ = done.send(result.map(|answer| match answer {
                        Answer::Recorded(recorded) => recorded,
                        _ => unreachable!("a record is answered with flags"),
                    }));
                }
            }
        }
    }
}

/// Commits every request of `group` in one transaction, each under its own savepoint, so a
/// failing batch is rolled back alone.
/// The answer to one operation.
enum Answer {
    Written(WriteReceipt),
    Claimed(Claimed),
    Recorded(Vec<bool>),
}

fn commit_group(
    connection: &mut Connection,
    group: &[WriteRequest],
) -> Vec<Result<Answer, StoreError>> {
    // Immediate: the write lock is taken at the start, so a transaction that reads before it
    // writes (a claim) waits for another process's writer instead of failing.
    let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(transaction) => transaction,
        Err(error) => return group.iter().map(|_| Err(shared_error(&error))).collect(),
    };
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        let result = (|| {
            transaction.execute_batch("SAVEPOINT batch")?;
            let answer = match &request.operation {
                Operation::Write(batch, _) => apply(&transaction, batch).map(Answer::Written),
                Operation::Claim(claim, _) => claim_heads(&transaction, claim).map(Answer::Claimed),
                Operation::Record(attempts, _) => attempts
                    .iter()
                    .map(|attempt| record_attempt(&transaction, attempt))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Answer::Recorded),
            };
            match answer {
                Ok(answer) => {
                    transaction.execute_batch("RELEASE batch")?;
                    Ok(answer)
                }
                Err(error) => {
                    transaction.execute_batch("ROLLBACK TO batch; RELEASE batch")?;
                    Err(error)
                }
            }
        })();
        results.push(result);
    }
    match transaction.commit() {
        Ok(()) => results,
        Err(error) => group.iter().map(|_| Err(shared_error(&error))).collect(),
    }
}

/// A copy of a transaction-wide error for each request of the group.
fn shared_error(error: &rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string().into())
}

fn apply(transaction: &Transaction<'_>, batch: &WriteBatch) -> Result<WriteReceipt, StoreError> {
    let mut receipt = WriteReceipt::default();
    if let Some(mark) = &batch.mark {
        // Moves the writer's mark, or finds that this write was committed before.
        let moved = transaction
            .prepare_cached(
                "INSERT INTO write_marks (writer, number, at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (writer) DO UPDATE SET number = excluded.number, at_ms = excluded.at_ms \
                 WHERE write_marks.number < excluded.number",
            )?
            .execute(params![mark.writer, stored_count(mark.number), mark.at.0])?;
        if moved == 0 {
            receipt.repeated = true;
            return Ok(receipt);
        }
    }
    // The nodes this batch heard from, with the latest time it has of each.
    let mut seen: Vec<(&str, UnixMillis)> = Vec::new();
    for event in &batch.events {
        insert_event(transaction, event)?;
        if !event.node_id.is_empty() {
            seen.push((&event.node_id, event.at));
        }
    }
    for window in &batch.stats {
        insert_window(transaction, window)?;
        if !window.node_id.is_empty() {
            seen.push((&window.node_id, window.end));
        }
    }
    for rooms in &batch.node_rooms {
        upsert_node_rooms(transaction, rooms)?;
    }
    for cell in &batch.rate_cells {
        add_rate_cell(transaction, cell)?;
        seen.push((&cell.node_id, UnixMillis::from_secs(cell.second)));
    }
    for webhook in &batch.webhooks {
        insert_webhook(transaction, webhook, &mut receipt)?;
    }
    for issue in IssueRecord::deciding(&batch.issues) {
        upsert_issue(transaction, issue)?;
    }
    let (kept, reaped) = WorkerRecord::last_states(&batch.workers);
    for worker in kept {
        upsert_worker(transaction, worker)?;
    }
    for worker in reaped {
        transaction
            .prepare_cached("DELETE FROM live_workers WHERE room_id = ?1 AND participant_id = ?2")?
            .execute(params![worker.room_id, worker.participant_id])?;
    }
    // After the workers: a state is kept only with its own worker's record.
    for quality in QualityRecord::last_states(&batch.quality) {
        transaction
            .prepare_cached(
                "UPDATE live_workers SET quality = ?4 \
                 WHERE room_id = ?1 AND participant_id = ?2 AND created_at_ms = ?3",
            )?
            .execute(params![
                quality.room_id,
                quality.participant_id,
                quality.created_at.0,
                quality.tracks_text(),
            ])?;
    }
    seen.sort_unstable();
    let mut previous: Option<(&str, UnixMillis)> = None;
    for (node, at) in seen.into_iter().rev() {
        // Sorted descending: the first entry of each node has its latest time.
        if previous.is_none_or(|(previous_node, _)| previous_node != node) {
            touch_node(transaction, node, at)?;
        }
        previous = Some((node, at));
    }
    Ok(receipt)
}

fn insert_webhook(
    transaction: &Transaction<'_>,
    webhook: &OutgoingWebhook,
    receipt: &mut WriteReceipt,
) -> Result<(), StoreError> {
    let message = &webhook.message;
    let rendered = &message.webhook;
    let subject = &rendered.subject;
    let inserted = transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO webhook_messages (id, event, event_id, resource_key, room_sid, room_name, payload, \
             created_at_ms, participant_sid, participant_identity, track_sid, egress_id, ingress_id, key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            rendered.id,
            rendered.event,
            message.event_id,
            rendered.resource_key,
            subject.room_sid,
            subject.room_name,
            rendered.body,
            message.created_at.0,
            subject.participant_sid,
            subject.participant_identity,
            subject.track_sid,
            subject.egress_id,
            subject.ingress_id,
            message.key,
        ])?;
    if inserted == 0 {
        return Ok(());
    }
    for endpoint_id in &webhook.endpoint_ids {
        transaction
            .prepare_cached(
                "INSERT INTO webhook_deliveries (message_key, message_id, endpoint_id, resource_key, event, status, attempts, \
                 retry_base, next_attempt_at_ms, created_at_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, 0, ?6, ?6, ?6)",
            )?
            .execute(params![
                message.key,
                rendered.id,
                endpoint_id,
                rendered.resource_key,
                rendered.event,
                message.created_at.0
            ])?;
        receipt.deliveries += 1;
    }
    Ok(())
}

/// Records one attempt if its claim is still the delivery's current one; returns whether it did.
fn record_attempt(
    transaction: &Transaction<'_>,
    attempt: &AttemptRecord,
) -> Result<bool, StoreError> {
    let transition = attempt.transition();
    // Fenced: only the current claimant of a pending delivery moves it on (one made dead
    // meanwhile, its endpoint deleted, stays so; one claimed again after its lease ran out
    // belongs to the new claimant). The claim is released.
    let updated = transaction
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = ?2, attempts = MAX(attempts, ?3), next_attempt_at_ms = ?4, \
             last_status_code = ?5, last_error = ?6, delivered_at_ms = COALESCE(?7, delivered_at_ms), updated_at_ms = ?8, \
             claimed_by = NULL, claim_expires_at_ms = NULL \
             WHERE id = ?1 AND status = 'pending' AND claimed_by = ?9 AND claim_epoch = ?10",
        )?
        .execute(params![
            attempt.delivery_id,
            transition.status.as_str(),
            attempt.attempt,
            transition.next_attempt_at.map(|at| at.0),
            attempt.status_code,
            attempt.error,
            transition.delivered_at.map(|at| at.0),
            attempt.finished_at().0,
            attempt.claim.owner,
            attempt.claim.epoch,
        ])?;
    if updated == 0 {
        return Ok(false);
    }
    transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO webhook_attempts (delivery_id, attempt, started_at_ms, duration_ms, status_code, error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            attempt.delivery_id,
            attempt.attempt,
            attempt.started_at.0,
            attempt.duration_ms,
            attempt.status_code,
            attempt.error,
        ])?;
    Ok(true)
}

/// Claims, per endpoint asked for, its due queue heads that no live claim holds, lowest ids first.
/// A head is also refused while another delivery of its key holds a live claim: a requeued
/// delivery can have a lower id than one of its key in flight, and waits for it.
/// The due, unclaimed heads of an endpoint's queues (`?1` endpoint, `?2` now, `?3` how many),
/// found through the partial index `webhook_deliveries_queue`.
const CLAIM_HEADS: &str = "SELECT d.id, d.claim_epoch + 1 FROM (SELECT MIN(q.id) AS id FROM webhook_deliveries q \
                     WHERE q.endpoint_id = ?1 AND q.status = 'pending' GROUP BY q.resource_key) h \
                 JOIN webhook_deliveries d ON d.id = h.id \
                 WHERE d.next_attempt_at_ms <= ?2 AND (d.claimed_by IS NULL OR d.claim_expires_at_ms <= ?2) \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries c WHERE c.endpoint_id = d.endpoint_id \
                     AND c.resource_key = d.resource_key AND c.status = 'pending' AND c.claimed_by IS NOT NULL \
                     AND c.id != d.id AND c.claim_expires_at_ms > ?2) \
                 ORDER BY d.id LIMIT ?3";

/// A head's run: the pending deliveries after head `?1` in its queue (at most `?2`), each with
/// whether it is due and free at `?3`.
const CLAIM_RUN: &str = "SELECT f.id, f.claim_epoch + 1, f.next_attempt_at_ms <= ?3 \
                         AND (f.claimed_by IS NULL OR f.claim_expires_at_ms <= ?3) \
                     FROM webhook_deliveries h JOIN webhook_deliveries f ON f.endpoint_id = h.endpoint_id \
                         AND f.resource_key = h.resource_key AND f.status = 'pending' AND f.id > h.id \
                     WHERE h.id = ?1 ORDER BY f.id LIMIT ?2";

/// When an endpoint's next pending delivery falls due after `?2`.
const NEXT_DUE: &str = "SELECT MIN(next_attempt_at_ms) FROM webhook_deliveries \
                 WHERE endpoint_id = ?1 AND status = 'pending' AND next_attempt_at_ms > ?2";

fn claim_heads(
    transaction: &Transaction<'_>,
    request: &ClaimRequest,
) -> Result<Claimed, StoreError> {
    let mut claimed = Claimed::default();
    let expires_at = request.expires_at();
    for (endpoint_id, slots) in &request.slots {
        if *slots == 0 {
            continue;
        }
        let heads: Vec<(i64, i64)> = transaction
            .prepare_cached(CLAIM_HEADS)?
            .query_map(params![endpoint_id, request.now.0, i64::from(*slots)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut queues: Vec<Vec<(i64, i64)>> = Vec::with_capacity(heads.len());
        for (head, epoch) in heads {
            // The head's run: the pending deliveries after it in its queue, while due and free.
            let followers: Vec<(i64, i64, bool)> = transaction
                .prepare_cached(CLAIM_RUN)?
                .query_map(
                    params![head, i64::from(request.run.saturating_sub(1)), request.now.0],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )?
                .collect::<Result<_, _>>()?;
            let mut queue = vec![(head, epoch)];
            queue.extend(
                followers
                    .into_iter()
                    .take_while(|(_, _, free)| *free)
                    .map(|(id, epoch, _)| (id, epoch)),
            );
            queues.push(queue);
        }
        for (id, epoch) in queues.into_iter().flatten() {
            transaction
                .prepare_cached(
                    "UPDATE webhook_deliveries SET claimed_by = ?2, claim_expires_at_ms = ?3, claim_epoch = ?4 \
                     WHERE id = ?1",
                )?
                .execute(params![id, request.owner, expires_at.0, epoch])?;
            let delivery = transaction
                .prepare_cached(&format!(
                    "SELECT {PENDING_COLUMNS} FROM webhook_deliveries d \
                     JOIN webhook_messages m ON m.key = d.message_key WHERE d.id = ?1"
                ))?
                .query_row(params![id], pending_from_row)?;
            claimed.deliveries.push(ClaimedDelivery {
                delivery,
                claim: ClaimToken { owner: request.owner.clone(), epoch },
                expires_at,
            });
        }
        let next_due: Option<i64> = transaction
            .prepare_cached(NEXT_DUE)?
            .query_row(params![endpoint_id, request.now.0], |row| row.get(0))?;
        if let Some(due) = next_due.map(UnixMillis) {
            claimed.next_due = Some(claimed.next_due.map_or(due, |next| next.min(due)));
        }
    }
    Ok(claimed)
}

/// Runs `f` in an immediate write transaction on a connection of the read pool (for rare writes
/// that need an answer: requeues, endpoint changes, pruning). SQLite serialises it with the
/// writer thread's transactions.
fn write_transaction<T>(
    connection: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    match f(connection) {
        Ok(value) => {
            connection.execute_batch("COMMIT")?;
            Ok(value)
        }
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Makes delivery `?1` pending again, due at `?2`, its schedule restarting: unless it is
/// pending already (see [`DeliveryStatus::can_requeue`]), or its endpoint is gone.
const REQUEUE_DELIVERY: &str = "UPDATE webhook_deliveries SET status = 'pending', retry_base = attempts, \
     next_attempt_at_ms = ?2, updated_at_ms = ?2, claimed_by = NULL, claim_expires_at_ms = NULL \
     WHERE id = ?1 AND status != 'pending' AND endpoint_id IN (SELECT id FROM webhook_endpoints)";

/// Runs `update` (parameters: the delivery's id, `now`) and returns the delivery as pending, or
/// `None` if the update changed nothing.
fn update_pending(
    connection: &Connection,
    update: &str,
    id: i64,
    now: UnixMillis,
) -> Result<Option<PendingDelivery>, StoreError> {
    if connection.prepare_cached(update)?.execute(params![id, now.0])? == 0 {
        return Ok(None);
    }
    Ok(connection
        .prepare_cached(&format!(
            "SELECT {PENDING_COLUMNS} FROM webhook_deliveries d \
             JOIN webhook_messages m ON m.key = d.message_key WHERE d.id = ?1"
        ))?
        .query_row(params![id], pending_from_row)
        .optional()?)
}

const PENDING_COLUMNS: &str = "d.id, d.message_id, d.endpoint_id, d.resource_key, d.event, m.payload, d.attempts, \
     d.retry_base, COALESCE(d.next_attempt_at_ms, d.created_at_ms), d.created_at_ms, m.room_sid, m.room_name, \
     m.participant_sid, m.participant_identity, m.track_sid, m.egress_id, m.ingress_id";

fn pending_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PendingDelivery> {
    Ok(PendingDelivery {
        id: row.get(0)?,
        message_id: row.get(1)?,
        endpoint_id: row.get(2)?,
        resource_key: row.get(3)?,
        event: row.get(4)?,
        payload: row.get(5)?,
        attempts: row.get(6)?,
        retry_base: row.get(7)?,
        next_attempt_at: UnixMillis(row.get(8)?),
        created_at: UnixMillis(row.get(9)?),
        subject: WebhookSubject {
            room_sid: row.get(10)?,
            room_name: row.get(11)?,
            participant_sid: row.get(12)?,
            participant_identity: row.get(13)?,
            track_sid: row.get(14)?,
            egress_id: row.get(15)?,
            ingress_id: row.get(16)?,
        },
    })
}

/// Reads a stored enum name, failing the row if it is not one `parse` knows.
fn parse_column<T>(
    row: &rusqlite::Row<'_>,
    index: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown stored value `{text}`").into(),
        )
    })
}

const DELIVERY_COLUMNS: &str = "id, message_id, event, endpoint_id, resource_key, status, attempts, last_status_code, \
     last_error, created_at_ms, next_attempt_at_ms, delivered_at_ms";

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status = parse_column(row, 5, DeliveryStatus::parse)?;
    let pending = status == DeliveryStatus::Pending;
    Ok(DeliveryRecord {
        id: row.get(0)?,
        message_id: row.get(1)?,
        event: row.get(2)?,
        endpoint_id: row.get(3)?,
        resource_key: row.get(4)?,
        status,
        attempts: row.get(6)?,
        last_status_code: row.get(7)?,
        last_error: row.get(8)?,
        created_at: UnixMillis(row.get(9)?),
        next_attempt_at: if pending { optional_millis(row.get(10)?) } else { None },
        delivered_at: optional_millis(row.get(11)?),
    })
}

fn endpoint_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRecord> {
    let list = |text: String| serde_json::from_str::<Vec<String>>(&text).unwrap_or_default();
    Ok(EndpointRecord {
        id: row.get(0)?,
        url: row.get(1)?,
        signing: parse_column(row, 2, Signing::parse)?,
        api_key: row.get(3)?,
        secret: row.get(4)?,
        include_events: list(row.get(5)?),
        exclude_events: list(row.get(6)?),
        enabled: row.get(7)?,
        source: parse_column(row, 8, EndpointSource::parse)?,
        created_at: UnixMillis(row.get(9)?),
    })
}

const ENDPOINT_COLUMNS: &str = "id, url, signing, api_key, secret, include_events, exclude_events, enabled, source, created_at_ms";

fn insert_event(transaction: &Transaction<'_>, event: &EventRecord) -> Result<(), StoreError> {
    let inserted = transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO events (key, id, type, at_ms, room_sid, room_name, participant_sid, \
             participant_identity, track_sid, node_id, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            event.key,
            event.id,
            event.event_type,
            event.at.0,
            event.room_sid,
            event.room_name,
            event.participant_sid,
            event.participant_identity,
            event.track_sid,
            event.node_id,
            event.payload,
        ])?;
    // A repeated event (the same key written twice) changes nothing.
    if inserted == 1 {
        for projection in &event.projections {
            project(transaction, projection)?;
        }
    }
    Ok(())
}

fn project(transaction: &Transaction<'_>, projection: &Projection) -> Result<(), StoreError> {
    match projection {
        Projection::RoomSeen { sid, name, at } => {
            transaction
                .prepare_cached(
                    "INSERT INTO rooms (sid, name, started_at_ms) VALUES (?1, ?2, ?3) ON CONFLICT (sid) DO UPDATE SET \
                     name = CASE WHEN rooms.name = '' THEN excluded.name ELSE rooms.name END, \
                     started_at_ms = CASE WHEN rooms.started_at_ms <= 0 THEN excluded.started_at_ms \
                         WHEN excluded.started_at_ms <= 0 THEN rooms.started_at_ms \
                         ELSE MIN(rooms.started_at_ms, excluded.started_at_ms) END",
                )?
                .execute(params![sid, name, at.0])?;
        }
        Projection::RoomEnded { sid, at } => {
            transaction
                .prepare_cached("UPDATE rooms SET ended_at_ms = ?2 WHERE sid = ?1")?
                .execute(params![sid, at.0])?;
        }
        Projection::ParticipantJoined { room_sid, sid, identity, at } => {
            transaction
                .prepare_cached(
                    "INSERT INTO participants (room_sid, sid, identity, joined_at_ms, state) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (room_sid, sid) DO UPDATE SET \
                     identity = CASE WHEN participants.identity = '' THEN excluded.identity ELSE participants.identity END, \
                     joined_at_ms = COALESCE(MIN(participants.joined_at_ms, excluded.joined_at_ms), participants.joined_at_ms, excluded.joined_at_ms)",
                )?
                .execute(params![room_sid, sid, identity, at.0, ParticipantState::Joined.as_str()])?;
        }
        Projection::ParticipantActive { room_sid, sid, identity, at } => {
            transaction
                .prepare_cached(
                    "INSERT INTO participants (room_sid, sid, identity, joined_at_ms, active_at_ms, state) \
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5) ON CONFLICT (room_sid, sid) DO UPDATE SET \
                     identity = CASE WHEN participants.identity = '' THEN excluded.identity ELSE participants.identity END, \
                     joined_at_ms = COALESCE(MIN(participants.joined_at_ms, excluded.joined_at_ms), participants.joined_at_ms, excluded.joined_at_ms), \
                     active_at_ms = COALESCE(MIN(participants.active_at_ms, excluded.active_at_ms), participants.active_at_ms, excluded.active_at_ms), \
                     left_at_ms = NULL, state = excluded.state",
                )?
                .execute(params![room_sid, sid, identity, at.0, ParticipantState::Active.as_str()])?;
        }
        Projection::ParticipantLeft { room_sid, sid, identity, at, aborted } => {
            let state =
                if *aborted { ParticipantState::Aborted } else { ParticipantState::Left }.as_str();
            transaction
                .prepare_cached(
                    "INSERT INTO participants (room_sid, sid, identity, left_at_ms, state) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (room_sid, sid) DO UPDATE SET \
                     identity = CASE WHEN participants.identity = '' THEN excluded.identity ELSE participants.identity END, \
                     left_at_ms = excluded.left_at_ms, state = excluded.state",
                )?
                .execute(params![room_sid, sid, identity, at.0, state])?;
        }
        Projection::TrackPublished {
            room_sid,
            sid,
            participant_sid,
            kind,
            source,
            mime_type,
            at,
        } => {
            transaction
                .prepare_cached(
                    "INSERT INTO tracks (room_sid, sid, participant_sid, kind, source, mime_type, published_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room_sid, sid) DO UPDATE SET \
                     participant_sid = excluded.participant_sid, kind = excluded.kind, source = excluded.source, \
                     mime_type = CASE WHEN excluded.mime_type = '' THEN tracks.mime_type ELSE excluded.mime_type END, \
                     published_at_ms = COALESCE(MIN(tracks.published_at_ms, excluded.published_at_ms), tracks.published_at_ms, excluded.published_at_ms), \
                     unpublished_at_ms = NULL",
                )?
                .execute(params![room_sid, sid, participant_sid, kind, source, mime_type, at.0])?;
        }
        Projection::TrackUnpublished { room_sid, sid, participant_sid, at } => {
            transaction
                .prepare_cached(
                    "INSERT INTO tracks (room_sid, sid, participant_sid, kind, source, mime_type, unpublished_at_ms) \
                     VALUES (?1, ?2, ?3, '', '', '', ?4) ON CONFLICT (room_sid, sid) DO UPDATE SET \
                     unpublished_at_ms = excluded.unpublished_at_ms",
                )?
                .execute(params![room_sid, sid, participant_sid, at.0])?;
        }
    }
    Ok(())
}

/// Writes an issue by [`IssueRecord`]'s merge rule.
fn upsert_issue(transaction: &Transaction<'_>, issue: &IssueRecord) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO issues (id, room_sid, room_name, participant_sid, participant_identity, track_sid, \
             direction, kind, value, threshold, started_at_ms, ended_at_ms, affected) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (id) DO UPDATE SET ended_at_ms = excluded.ended_at_ms, value = excluded.value, \
             affected = excluded.affected WHERE excluded.ended_at_ms IS NOT NULL AND issues.ended_at_ms IS NULL",
        )?
        .execute(params![
            issue.id,
            issue.room_sid,
            issue.room_name,
            issue.participant_sid,
            issue.participant_identity,
            issue.track_sid,
            issue.direction.as_str(),
            issue.kind.as_str(),
            issue.value,
            issue.threshold,
            issue.started_at.0,
            issue.ended_at.map(|at| at.0),
            issue.affected_text(),
        ])?;
    Ok(())
}

fn insert_window(
    transaction: &Transaction<'_>,
    window: &StatsWindowRecord,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO stats_windows (id, room_sid, room_name, participant_sid, participant_identity, \
             track_sid, direction, kind, mime, node_id, start_ms, end_ms, flushed_at_ms, covered_ms, bytes, packets, \
             packets_lost, avg_bps, peak_bps, resolution_ms, jitter_max, rtt_max, score, min_score, median_score, \
             nacks, plis, firs, frames, samples, invalid_samples, mos) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32)",
        )?
        .execute(params![
            window.id,
            window.room_sid,
            window.room_name,
            window.participant_sid,
            window.participant_identity,
            window.track_sid,
            window.direction.as_str(),
            window.kind.as_str(),
            window.mime,
            window.node_id,
            window.start.0,
            window.end.0,
            window.flushed_at.0,
            window.covered_ms,
            stored_count(window.bytes),
            stored_count(window.packets),
            stored_count(window.packets_lost),
            window.avg_bps,
            window.peak_bps,
            window.resolution_ms,
            window.jitter_max,
            window.rtt_max,
            f64::from(window.score),
            f64::from(window.min_score),
            f64::from(window.median_score),
            stored_count(window.nacks),
            stored_count(window.plis),
            stored_count(window.firs),
            stored_count(window.frames),
            window.samples,
            window.invalid_samples,
            window.mos,
        ])?;
    Ok(())
}

fn upsert_node_rooms(
    transaction: &Transaction<'_>,
    rooms: &NodeRoomsRecord,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO nodes (node_id, first_seen_ms, last_seen_ms, rooms_sequence, rooms_at_ms, rooms_payload) \
             VALUES (?1, ?2, ?2, ?3, ?2, ?4) ON CONFLICT (node_id) DO UPDATE SET \
             first_seen_ms = MIN(nodes.first_seen_ms, excluded.first_seen_ms), \
             last_seen_ms = MAX(nodes.last_seen_ms, excluded.last_seen_ms), \
             rooms_sequence = CASE WHEN nodes.rooms_at_ms IS NULL OR excluded.rooms_at_ms >= nodes.rooms_at_ms \
                 THEN excluded.rooms_sequence ELSE nodes.rooms_sequence END, \
             rooms_payload = CASE WHEN nodes.rooms_at_ms IS NULL OR excluded.rooms_at_ms >= nodes.rooms_at_ms \
                 THEN excluded.rooms_payload ELSE nodes.rooms_payload END, \
             rooms_at_ms = MAX(COALESCE(nodes.rooms_at_ms, excluded.rooms_at_ms), excluded.rooms_at_ms)",
        )?
        .execute(params![rooms.node_id, rooms.at.0, stored_count(rooms.sequence), rooms.payload])?;
    Ok(())
}

fn upsert_worker(transaction: &Transaction<'_>, worker: &WorkerRecord) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO live_workers (room_id, participant_id, room_name, identity, node_id, created_at_ms, connected, guards, closed_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (room_id, participant_id) DO UPDATE SET \
             room_name = excluded.room_name, identity = excluded.identity, node_id = excluded.node_id, \
             created_at_ms = excluded.created_at_ms, connected = excluded.connected, guards = excluded.guards, \
             closed_at_ms = excluded.closed_at_ms, \
             quality = CASE WHEN live_workers.created_at_ms = excluded.created_at_ms THEN live_workers.quality END",
        )?
        .execute(params![
            worker.room_id,
            worker.participant_id,
            worker.room_name,
            worker.identity,
            worker.node_id,
            worker.created_at.0,
            worker.connected,
            worker.guards_text(),
            worker.closed_at.map(|at| at.0),
        ])?;
    Ok(())
}

/// Adds a cell to the stored one of its node and second, each counter saturating at `i64::MAX`
/// (SQLite's integer `+` would turn into a float past it, which no reader accepts).
fn add_rate_cell(transaction: &Transaction<'_>, cell: &RateCellRecord) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO node_rate_cells (node_id, second, bytes_in, bytes_out, packets_in, packets_out) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (node_id, second) DO UPDATE SET \
             bytes_in = CASE WHEN bytes_in > 9223372036854775807 - excluded.bytes_in \
                 THEN 9223372036854775807 ELSE bytes_in + excluded.bytes_in END, \
             bytes_out = CASE WHEN bytes_out > 9223372036854775807 - excluded.bytes_out \
                 THEN 9223372036854775807 ELSE bytes_out + excluded.bytes_out END, \
             packets_in = CASE WHEN packets_in > 9223372036854775807 - excluded.packets_in \
                 THEN 9223372036854775807 ELSE packets_in + excluded.packets_in END, \
             packets_out = CASE WHEN packets_out > 9223372036854775807 - excluded.packets_out \
                 THEN 9223372036854775807 ELSE packets_out + excluded.packets_out END",
        )?
        .execute(params![
            cell.node_id,
            cell.second,
            stored_count(cell.cell.bytes_in),
            stored_count(cell.cell.bytes_out),
            stored_count(cell.cell.packets_in),
            stored_count(cell.cell.packets_out),
        ])?;
    Ok(())
}

fn touch_node(transaction: &Transaction<'_>, node: &str, at: UnixMillis) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO nodes (node_id, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?2) \
             ON CONFLICT (node_id) DO UPDATE SET first_seen_ms = MIN(nodes.first_seen_ms, excluded.first_seen_ms), \
             last_seen_ms = MAX(nodes.last_seen_ms, excluded.last_seen_ms)",
        )?
        .execute(params![node, at.0])?;
    Ok(())
}

fn optional_millis(value: Option<i64>) -> Option<UnixMillis> {
    value.map(UnixMillis)
}

fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

const ROOM_COLUMNS: &str = "r.sid, r.name, r.started_at_ms, r.ended_at_ms, \
     (SELECT COUNT(*) FROM participants p WHERE p.room_sid = r.sid), \
     (SELECT COUNT(*) FROM tracks t WHERE t.room_sid = r.sid AND t.published_at_ms IS NOT NULL)";

fn room_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RoomSummary> {
    Ok(RoomSummary {
        sid: row.get(0)?,
        name: row.get(1)?,
        started_at: UnixMillis(row.get(2)?),
        ended_at: optional_millis(row.get(3)?),
        num_participants: count_from_stored(row.get(4)?),
        num_tracks: count_from_stored(row.get(5)?),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.lock().is_none() {
            return Err(StoreError::Closed);
        }
        self.read(|connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        let writer = self.writer.lock().take();
        let thread = self.writer_thread.lock().take();
        let checkpointer = self.checkpointer_thread.lock().take();
        let _ = tokio::task::spawn_blocking(move || {
            drop(writer);
            if let Some(thread) = thread {
                let _ = thread.join();
            }
            if let Some(thread) = checkpointer {
                let _ = thread.join();
            }
        })
        .await;
    }
}

#[async_trait]
impl AnalyticsStore for SqliteStore {
    async fn write(&self, batch: WriteBatch) -> Result<WriteReceipt, StoreError> {
        if batch.is_empty() {
            return Ok(WriteReceipt::default());
        }
        let receipt = self.submit(|done| Operation::Write(Box::new(batch), done)).await?;
        if receipt.deliveries > 0 {
            self.wake_dispatchers();
        }
        Ok(receipt)
    }

    async fn rooms(&self, query: RoomsQuery) -> Result<Page<RoomSummary, RoomCursor>, StoreError> {
        self.read(move |connection| {
            let mut sql = format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE 1 = 1");
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            match query.active {
                Some(true) => sql.push_str(" AND r.ended_at_ms IS NULL"),
                Some(false) => sql.push_str(" AND r.ended_at_ms IS NOT NULL"),
                None => {}
            }
            if let Some(name) = &query.name_contains {
                sql.push_str(" AND r.name LIKE ? ESCAPE '\\'");
                values.push(like_pattern(name).into());
            }
            if let Some(after) = &query.after {
                sql.push_str(" AND (r.started_at_ms, r.sid) < (?, ?)");
                values.push(after.started_at.0.into());
                values.push(after.sid.clone().into());
            }
            sql.push_str(" ORDER BY r.started_at_ms DESC, r.sid DESC LIMIT ?");
            values.push(i64::from(query.limit.saturating_add(1)).into());
            let mut statement = connection.prepare_cached(&sql)?;
            let items = statement
                .query_map(rusqlite::params_from_iter(values), room_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, query.limit, |last| RoomCursor {
                started_at: last.started_at,
                sid: last.sid.clone(),
            }))
        })
        .await
    }

    async fn room(&self, sid: &str) -> Result<Option<RoomDetail>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |connection| {
            let room = connection
                .prepare_cached(&format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.sid = ?1"))?
                .query_row(params![sid], room_from_row)
                .optional()?;
            let Some(room) = room else { return Ok(None) };
            let participants = connection
                .prepare_cached(
                    "SELECT sid, identity, joined_at_ms, active_at_ms, left_at_ms, state FROM participants \
                     WHERE room_sid = ?1 ORDER BY COALESCE(joined_at_ms, active_at_ms, left_at_ms), sid",
                )?
                .query_map(params![sid], |row| {
                    Ok(ParticipantRow {
                        sid: row.get(0)?,
                        identity: row.get(1)?,
                        joined_at: optional_millis(row.get(2)?),
                        active_at: optional_millis(row.get(3)?),
                        left_at: optional_millis(row.get(4)?),
                        state: parse_column(row, 5, ParticipantState::parse)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let tracks = connection
                .prepare_cached(
                    "SELECT sid, participant_sid, kind, source, mime_type, published_at_ms, unpublished_at_ms \
                     FROM tracks WHERE room_sid = ?1 ORDER BY COALESCE(published_at_ms, unpublished_at_ms), sid",
                )?
                .query_map(params![sid], |row| {
                    Ok(TrackRow {
                        sid: row.get(0)?,
                        participant_sid: row.get(1)?,
                        kind: row.get(2)?,
                        source: row.get(3)?,
                        mime_type: row.get(4)?,
                        published_at: optional_millis(row.get(5)?),
                        unpublished_at: optional_millis(row.get(6)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(RoomDetail { room, participants, tracks }))
        })
        .await
    }

    async fn room_events(&self, query: EventsQuery) -> Result<Page<StoredEvent, i64>, StoreError> {
        self.read(move |connection| {
            let mut sql =
                "SELECT position, type, payload FROM events WHERE room_sid = ?".to_owned();
            let mut values: Vec<rusqlite::types::Value> = vec![query.room_sid.clone().into()];
            if let Some(event_type) = &query.event_type {
                sql.push_str(" AND type = ?");
                values.push(event_type.clone().into());
            }
            if let Some(after) = query.after {
                sql.push_str(" AND position > ?");
                values.push(after.into());
            }
            sql.push_str(" ORDER BY position LIMIT ?");
            values.push(i64::from(query.limit.saturating_add(1)).into());
            let mut statement = connection.prepare_cached(&sql)?;
            let items = statement
                .query_map(rusqlite::params_from_iter(values), |row| {
                    Ok(StoredEvent {
                        position: row.get(0)?,
                        event_type: row.get(1)?,
                        payload: row.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, query.limit, |last| last.position))
        })
        .await
    }

    async fn issues(&self, query: IssuesQuery) -> Result<Vec<IssueRecord>, StoreError> {
        self.read(move |connection| {
            let mut sql = "SELECT id, room_sid, room_name, participant_sid, participant_identity, track_sid, direction, \
                 kind, value, threshold, started_at_ms, ended_at_ms, affected FROM issues WHERE 1 = 1"
                .to_owned();
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            match query.open {
                Some(true) => sql.push_str(" AND ended_at_ms IS NULL"),
                Some(false) => sql.push_str(" AND ended_at_ms IS NOT NULL"),
                None => {}
            }
            if let Some(room_sid) = &query.room_sid {
                sql.push_str(" AND room_sid = ?");
                values.push(room_sid.clone().into());
            }
            if let Some(kind) = query.kind {
                sql.push_str(" AND kind = ?");
                values.push(kind.as_str().to_owned().into());
            }
            if let Some(from) = query.from {
                sql.push_str(" AND (ended_at_ms IS NULL OR ended_at_ms > ?)");
                values.push(from.0.into());
            }
            if let Some(to) = query.to {
                sql.push_str(" AND started_at_ms < ?");
                values.push(to.0.into());
            }
            sql.push_str(" ORDER BY started_at_ms, id LIMIT ?");
            values.push(i64::from(query.limit).into());
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(values), |row| {
                    Ok((
                        IssueRecord {
                            id: row.get(0)?,
                            room_sid: row.get(1)?,
                            room_name: row.get(2)?,
                            participant_sid: row.get(3)?,
                            participant_identity: row.get(4)?,
                            track_sid: row.get(5)?,
                            direction: parse_column(row, 6, Direction::parse)?,
                            kind: parse_column(row, 7, IssueKind::parse)?,
                            value: row.get(8)?,
                            threshold: row.get(9)?,
                            started_at: UnixMillis(row.get(10)?),
                            ended_at: row.get::<_, Option<i64>>(11)?.map(UnixMillis),
                            affected: Vec::new(),
                        },
                        row.get::<_, String>(12)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut issue, affected)| {
                    issue.affected = IssueRecord::affected_from_text(&affected)?;
                    Ok(issue)
                })
                .collect()
        })
        .await
    }

    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsWindowRecord>, StoreError> {
        self.read(move |connection| {
            let mut sql = "SELECT id, room_sid, room_name, participant_sid, participant_identity, track_sid, direction, \
                 kind, mime, node_id, start_ms, end_ms, flushed_at_ms, covered_ms, bytes, packets, packets_lost, avg_bps, \
                 peak_bps, resolution_ms, jitter_max, rtt_max, score, min_score, median_score, nacks, plis, firs, frames, \
                 samples, invalid_samples, mos FROM stats_windows WHERE 1 = 1"
                .to_owned();
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            let direction = query.direction.map(|direction| direction.as_str().to_owned());
            for (column, value) in [
                ("room_sid", &query.room_sid),
                ("participant_sid", &query.participant_sid),
                ("track_sid", &query.track_sid),
                ("direction", &direction),
            ] {
                if let Some(value) = value {
                    sql.push_str(&format!(" AND {column} = ?"));
                    values.push(value.clone().into());
                }
            }
            if let Some(from) = query.from {
                sql.push_str(" AND end_ms > ?");
                values.push(from.0.into());
            }
            if let Some(to) = query.to {
                sql.push_str(" AND start_ms < ?");
                values.push(to.0.into());
            }
            sql.push_str(" ORDER BY track_sid, direction, participant_sid, start_ms LIMIT ?");
            values.push(i64::from(query.limit).into());
            let mut statement = connection.prepare_cached(&sql)?;
            let windows = statement
                .query_map(rusqlite::params_from_iter(values), |row| {
                    Ok(StatsWindowRecord {
                        id: row.get(0)?,
                        room_sid: row.get(1)?,
                        room_name: row.get(2)?,
                        participant_sid: row.get(3)?,
                        participant_identity: row.get(4)?,
                        track_sid: row.get(5)?,
                        direction: parse_column(row, 6, Direction::parse)?,
                        kind: parse_column(row, 7, StreamKind::parse)?,
                        mime: row.get(8)?,
                        node_id: row.get(9)?,
                        start: UnixMillis(row.get(10)?),
                        end: UnixMillis(row.get(11)?),
                        flushed_at: UnixMillis(row.get(12)?),
                        covered_ms: row.get(13)?,
                        bytes: count_from_stored(row.get(14)?),
                        packets: count_from_stored(row.get(15)?),
                        packets_lost: count_from_stored(row.get(16)?),
                        avg_bps: row.get(17)?,
                        peak_bps: row.get(18)?,
                        resolution_ms: row.get(19)?,
                        jitter_max: row.get(20)?,
                        rtt_max: row.get(21)?,
                        score: row.get::<_, f64>(22)? as f32,
                        min_score: row.get::<_, f64>(23)? as f32,
                        median_score: row.get::<_, f64>(24)? as f32,
                        nacks: count_from_stored(row.get(25)?),
                        plis: count_from_stored(row.get(26)?),
                        firs: count_from_stored(row.get(27)?),
                        frames: count_from_stored(row.get(28)?),
                        samples: row.get(29)?,
                        invalid_samples: row.get(30)?,
                        mos: row.get(31)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(windows)
        })
        .await
    }

    async fn live_workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        self.read(|connection| {
            let rows = connection
                .prepare_cached(
                    "SELECT room_id, participant_id, room_name, identity, node_id, created_at_ms, connected, guards, closed_at_ms \
                     FROM live_workers ORDER BY room_id, participant_id",
                )?
                .query_map([], |row| {
                    let closed_at = row.get::<_, Option<i64>>(8)?.map(UnixMillis);
                    Ok((
                        WorkerRecord {
                            room_id: row.get(0)?,
                            participant_id: row.get(1)?,
                            room_name: row.get(2)?,
                            identity: row.get(3)?,
                            node_id: row.get(4)?,
                            created_at: UnixMillis(row.get(5)?),
                            connected: row.get(6)?,
                            guards: Vec::new(),
                            open: closed_at.is_none(),
                            closed_at,
                            reaped: false,
                        },
                        row.get::<_, String>(7)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut worker, guards)| {
                    worker.guards = WorkerRecord::guards_from_text(&guards)?;
                    Ok(worker)
                })
                .collect()
        })
        .await
    }

    async fn open_rooms(&self) -> Result<Vec<OpenRoomRecord>, StoreError> {
        self.read(|connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT sid, name, started_at_ms, node_id FROM (SELECT r.sid, r.name, r.started_at_ms, \
                     (SELECT e.node_id FROM events e WHERE e.room_sid = r.sid AND e.type = 'ROOM_CREATED' \
                      ORDER BY e.position LIMIT 1) AS node_id \
                     FROM rooms r WHERE r.ended_at_ms IS NULL) WHERE node_id IS NOT NULL ORDER BY sid",
                )?
                .query_map([], |row| {
                    Ok(OpenRoomRecord {
                        sid: row.get(0)?,
                        name: row.get(1)?,
                        started_at: UnixMillis(row.get(2)?),
                        node_id: row.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn quality_states(&self) -> Result<Vec<QualityRecord>, StoreError> {
        self.read(|connection| {
            let rows = connection
                .prepare_cached(
                    "SELECT room_id, participant_id, room_name, created_at_ms, quality FROM live_workers \
                     WHERE quality IS NOT NULL AND closed_at_ms IS NULL ORDER BY room_id, participant_id",
                )?
                .query_map([], |row| {
                    Ok((
                        QualityRecord {
                            room_id: row.get(0)?,
                            participant_id: row.get(1)?,
                            room_name: row.get(2)?,
                            created_at: UnixMillis(row.get(3)?),
                            tracks: Vec::new(),
                        },
                        row.get::<_, String>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut record, tracks)| {
                    record.tracks = QualityRecord::tracks_from_text(&tracks)?;
                    Ok(record)
                })
                .collect()
        })
        .await
    }

    async fn put_adapter_state(&self, record: AdapterStateRecord) -> Result<bool, StoreError> {
        self.read(move |connection| {
            write_transaction(connection, |transaction| {
                let changed = transaction
                    .prepare_cached(
                        "INSERT INTO adapter_states (adapter, key, generation, state, updated_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (adapter, key) DO UPDATE SET generation = excluded.generation, \
                         state = excluded.state, updated_at_ms = excluded.updated_at_ms \
                         WHERE adapter_states.generation < excluded.generation",
                    )?
                    .execute(params![
                        record.adapter,
                        record.key,
                        record.generation,
                        record.state,
                        record.updated_at.0
                    ])?;
                Ok(changed > 0)
            })
        })
        .await
    }

    async fn adapter_states(&self, adapter: &str) -> Result<Vec<AdapterStateRecord>, StoreError> {
        let adapter = adapter.to_owned();
        self.read(move |connection| {
            let rows = connection
                .prepare_cached(
                    "SELECT adapter, key, generation, state, updated_at_ms FROM adapter_states \
                     WHERE adapter = ?1 ORDER BY key",
                )?
                .query_map(params![adapter], |row| {
                    Ok(AdapterStateRecord {
                        adapter: row.get(0)?,
                        key: row.get(1)?,
                        generation: row.get(2)?,
                        state: row.get(3)?,
                        updated_at: UnixMillis(row.get(4)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeSummary>, StoreError> {
        self.read(|connection| {
            let nodes = connection
                .prepare_cached(
                    "SELECT node_id, first_seen_ms, last_seen_ms, rooms_sequence, rooms_at_ms, rooms_payload \
                     FROM nodes ORDER BY node_id",
                )?
                .query_map([], |row| {
                    let node_id: String = row.get(0)?;
                    let rooms = match (row.get::<_, Option<i64>>(3)?, row.get::<_, Option<i64>>(4)?, row.get::<_, Option<String>>(5)?) {
                        (Some(sequence), Some(at), Some(payload)) => Some(NodeRoomsRecord {
                            node_id: node_id.clone(),
                            sequence: sequence as u64,
                            at: UnixMillis(at),
                            payload,
                        }),
                        _ => None,
                    };
                    Ok(NodeSummary {
                        node_id,
                        first_seen: UnixMillis(row.get(1)?),
                        last_seen: UnixMillis(row.get(2)?),
                        rooms,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(nodes)
        })
        .await
    }

    async fn node_rates(
        &self,
        node_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(i64, RateCell)>, StoreError> {
        let node_id = node_id.to_owned();
        self.read(move |connection| {
            let cells = connection
                .prepare_cached(
                    "SELECT second, bytes_in, bytes_out, packets_in, packets_out FROM node_rate_cells \
                     WHERE node_id = ?1 AND second >= ?2 AND second < ?3 ORDER BY second",
                )?
                .query_map(params![node_id, from.as_secs(), to.0.div_euclid(1000) + i64::from(to.0.rem_euclid(1000) != 0)], |row| {
                    Ok((
                        row.get(0)?,
                        RateCell {
                            bytes_in: count_from_stored(row.get(1)?),
                            bytes_out: count_from_stored(row.get(2)?),
                            packets_in: count_from_stored(row.get(3)?),
                            packets_out: count_from_stored(row.get(4)?),
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(cells)
        })
        .await
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.read(|connection| {
            let count = |sql: &str| -> Result<u64, StoreError> {
                Ok(connection.prepare_cached(sql)?.query_row([], |row| row.get::<_, i64>(0))? as u64)
            };
            Ok(StoreCounts {
                events: count("SELECT COUNT(*) FROM events")?,
                stats_windows: count("SELECT COUNT(*) FROM stats_windows")?,
                samples: count("SELECT COALESCE(SUM(samples), 0) FROM stats_windows")?,
                rooms: count("SELECT COUNT(*) FROM rooms")?,
                active_rooms: count("SELECT COUNT(*) FROM rooms WHERE ended_at_ms IS NULL")?,
                active_participants: count(
                    "SELECT COUNT(*) FROM participants p JOIN rooms r ON r.sid = p.room_sid \
                     WHERE r.ended_at_ms IS NULL AND p.state IN ('joined', 'active')",
                )?,
                published_tracks: count(
                    "SELECT COUNT(*) FROM tracks t JOIN rooms r ON r.sid = t.room_sid \
                     WHERE r.ended_at_ms IS NULL AND t.published_at_ms IS NOT NULL AND t.unpublished_at_ms IS NULL",
                )?,
                rate_cells: count("SELECT COUNT(*) FROM node_rate_cells")?,
            })
        })
        .await
    }

    async fn prune(&self, before: UnixMillis) -> Result<PruneCounts, StoreError> {
        // Pruning writes through a connection of its own rather than the writer's queue (SQLite
        // serialises writers, and WAL keeps readers going meanwhile), in batches of
        // `PRUNE_BATCH` rows a transaction, so the writer thread never waits long behind it.
        let mut counts = PruneCounts::default();
        let cutoff = before.0;
        let steps: [(&str, i64, fn(&mut PruneCounts) -> &mut u64); 9] = [
            (
                "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE at_ms < ?1 LIMIT ?2)",
                cutoff,
                |c| &mut c.events,
            ),
            (
                "DELETE FROM stats_windows WHERE rowid IN (SELECT rowid FROM stats_windows WHERE end_ms < ?1 LIMIT ?2)",
                cutoff,
                |c| &mut c.stats_windows,
            ),
            (
                "DELETE FROM node_rate_cells WHERE (node_id, second) IN (SELECT node_id, second FROM node_rate_cells WHERE second < ?1 LIMIT ?2)",
                before.as_secs(),
                |c| &mut c.rate_cells,
            ),
            (
                "DELETE FROM participants WHERE rowid IN (SELECT p.rowid FROM participants p JOIN rooms r ON r.sid = p.room_sid WHERE r.ended_at_ms < ?1 LIMIT ?2)",
                cutoff,
                |c| &mut c.participants,
            ),
            (
                "DELETE FROM tracks WHERE rowid IN (SELECT t.rowid FROM tracks t JOIN rooms r ON r.sid = t.room_sid WHERE r.ended_at_ms < ?1 LIMIT ?2)",
                cutoff,
                |c| &mut c.tracks,
            ),
            (
                "DELETE FROM rooms WHERE rowid IN (SELECT rowid FROM rooms WHERE ended_at_ms < ?1 LIMIT ?2)",
                cutoff,
                |c| &mut c.rooms,
            ),
            (
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE created_at_ms < ?1 AND status != 'pending' LIMIT ?2)",
                cutoff,
                |c| &mut c.deliveries,
            ),
            (
                "DELETE FROM webhook_messages WHERE rowid IN (SELECT rowid FROM webhook_messages m WHERE m.created_at_ms < ?1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_key = m.key) LIMIT ?2)",
                cutoff,
                |c| &mut c.messages,
            ),
            (
                "DELETE FROM write_marks WHERE writer IN (SELECT writer FROM write_marks WHERE at_ms < ?1 LIMIT ?2)",
                cutoff,
                |c| &mut c.write_marks,
            ),
        ];
        for (sql, bound, count) in steps {
            loop {
                let removed = self
                    .read(move |connection| {
                        write_transaction(connection, |transaction| {
                            let removed = transaction.execute(sql, params![bound, PRUNE_BATCH])?;
                            if sql.starts_with("DELETE FROM webhook_deliveries") {
                                // Attempts of deliveries no longer there.
                                transaction.execute(
                                    "DELETE FROM webhook_attempts WHERE delivery_id NOT IN \
                                     (SELECT id FROM webhook_deliveries)",
                                    [],
                                )?;
                            }
                            Ok(removed as u64)
                        })
                    })
                    .await?;
                *count(&mut counts) += removed;
                if removed < PRUNE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim(&self, request: ClaimRequest) -> Result<Claimed, StoreError> {
        if request.slots.iter().all(|(_, slots)| *slots == 0) {
            return Ok(Claimed::default());
        }
        self.submit(|done| Operation::Claim(request, done)).await
    }

    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<Vec<bool>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(|done| Operation::Record(attempts, done)).await
    }

    async fn release(&self, claims: Vec<(i64, ClaimToken)>) -> Result<u64, StoreError> {
        if claims.is_empty() {
            return Ok(0);
        }
        let released = self
            .read(move |connection| {
                write_transaction(connection, |transaction| {
                    let mut released = 0;
                    for (id, claim) in &claims {
                        released += transaction
                            .prepare_cached(
                                "UPDATE webhook_deliveries SET claimed_by = NULL, claim_expires_at_ms = NULL \
                                 WHERE id = ?1 AND status = 'pending' AND claimed_by = ?2 AND claim_epoch = ?3",
                            )?
                            .execute(params![id, claim.owner, claim.epoch])? as u64;
                    }
                    Ok(released)
                })
            })
            .await?;
        if released > 0 {
            self.wake_dispatchers();
        }
        Ok(released)
    }

    async fn release_claims(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        let released = self
            .read(move |connection| {
                write_transaction(connection, |transaction| {
                    Ok(transaction.execute(
                        "UPDATE webhook_deliveries SET claimed_by = NULL, claim_expires_at_ms = NULL \
                         WHERE claimed_by = ?1 AND status = 'pending'",
                        params![owner],
                    )? as u64)
                })
            })
            .await?;
        if released > 0 {
            self.wake_dispatchers();
        }
        Ok(released)
    }

    fn outbox_changed(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_changed.clone()
    }

    async fn deliveries(
        &self,
        query: DeliveriesQuery,
    ) -> Result<Page<DeliveryRecord, i64>, StoreError> {
        self.read(move |connection| {
            let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE 1 = 1");
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            let status = query.status.map(|status| status.as_str().to_owned());
            for (column, value) in
                [("endpoint_id", &query.endpoint_id), ("status", &status), ("event", &query.event)]
            {
                if let Some(value) = value {
                    sql.push_str(&format!(" AND {column} = ?"));
                    values.push(value.clone().into());
                }
            }
            if let Some(before) = query.before {
                sql.push_str(" AND id < ?");
                values.push(before.into());
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            values.push(i64::from(query.limit.saturating_add(1)).into());
            let items = connection
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(values), delivery_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, query.limit, |last| last.id))
        })
        .await
    }

    async fn delivery(
        &self,
        id: i64,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRow>)>, StoreError> {
        self.read(move |connection| {
            let delivery = connection
                .prepare_cached(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1"))?
                .query_row(params![id], delivery_from_row)
                .optional()?;
            let Some(delivery) = delivery else { return Ok(None) };
            let attempts = connection
                .prepare_cached(
                    "SELECT attempt, started_at_ms, duration_ms, status_code, error FROM webhook_attempts \
                     WHERE delivery_id = ?1 ORDER BY attempt",
                )?
                .query_map(params![id], |row| {
                    Ok(AttemptRow {
                        attempt: row.get(0)?,
                        started_at: UnixMillis(row.get(1)?),
                        duration_ms: row.get(2)?,
                        status_code: row.get(3)?,
                        error: row.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((delivery, attempts)))
        })
        .await
    }

    async fn requeue(
        &self,
        id: i64,
        now: UnixMillis,
    ) -> Result<Option<PendingDelivery>, StoreError> {
        let requeued = self
            .read(move |connection| {
                write_transaction(connection, |transaction| {
                    update_pending(transaction, REQUEUE_DELIVERY, id, now)
                })
            })
            .await?;
        if requeued.is_some() {
            self.wake_dispatchers();
        }
        Ok(requeued)
    }

    async fn expedite(
        &self,
        id: i64,
        now: UnixMillis,
    ) -> Result<Option<PendingDelivery>, StoreError> {
        let expedited = self
            .read(move |connection| {
                write_transaction(connection, |transaction| {
                    update_pending(
                        transaction,
                        "UPDATE webhook_deliveries SET next_attempt_at_ms = ?2, updated_at_ms = ?2 \
                         WHERE id = ?1 AND status = 'pending'",
                        id,
                        now,
                    )
                })
            })
            .await?;
        if expedited.is_some() {
            self.wake_dispatchers();
        }
        Ok(expedited)
    }

    async fn replay(
        &self,
        query: ReplayQuery,
        now: UnixMillis,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        self.read(move |connection| {
            write_transaction(connection, |transaction| {
                let ids: Vec<i64> = transaction
                    .prepare_cached(
                        "SELECT id FROM webhook_deliveries WHERE endpoint_id = ?1 AND status = ?2 \
                         AND created_at_ms >= ?3 AND created_at_ms < ?4 ORDER BY id",
                    )?
                    .query_map(
                        params![
                            query.endpoint_id,
                            query.status.as_str(),
                            query.since.0,
                            query.until.0
                        ],
                        |row| row.get(0),
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut requeued = Vec::with_capacity(ids.len());
                for id in ids {
                    requeued.extend(update_pending(transaction, REQUEUE_DELIVERY, id, now)?);
                }
                Ok(requeued)
            })
        })
        .await
        .inspect(|requeued| {
            if !requeued.is_empty() {
                self.wake_dispatchers();
            }
        })
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status",
            )?;
            outbox_counts_of(statement.query([])?)
        })
        .await
    }

    async fn room_outbox_counts(&self, room_sid: &str) -> Result<OutboxCounts, StoreError> {
        let room_sid = room_sid.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT d.status, COUNT(*) FROM webhook_messages m \
                 JOIN webhook_deliveries d ON d.message_key = m.key \
                 WHERE m.room_sid = ?1 GROUP BY d.status",
            )?;
            outbox_counts_of(statement.query([&room_sid])?)
        })
        .await
    }
}

/// Deliveries counted by status from rows of (status, count).
fn outbox_counts_of(mut rows: rusqlite::Rows<'_>) -> Result<OutboxCounts, StoreError> {
    let mut counts = OutboxCounts::default();
    while let Some(row) = rows.next()? {
        let count = count_from_stored(row.get(1)?);
        match parse_column(row, 0, DeliveryStatus::parse)? {
            DeliveryStatus::Pending => counts.pending = count,
            DeliveryStatus::Delivered => counts.delivered = count,
            DeliveryStatus::Dead => counts.dead = count,
        }
    }
    Ok(counts)
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        self.read(|connection| {
            let endpoints = connection
                .prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at_ms, id"
                ))?
                .query_map([], endpoint_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(endpoints)
        })
        .await
    }

    async fn put_endpoint(&self, endpoint: EndpointRecord) -> Result<(), StoreError> {
        self.read(move |connection| {
            write_transaction(connection, |transaction| upsert_endpoint(transaction, &endpoint))
        })
        .await
    }

    async fn delete_endpoint(
        &self,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |connection| {
            write_transaction(connection, |transaction| {
                let endpoint = transaction
                    .prepare_cached(&format!(
                        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1"
                    ))?
                    .query_row(params![id], endpoint_from_row)
                    .optional()?;
                if endpoint.is_some() {
                    remove_endpoint(transaction, &id, now)?;
                }
                Ok(endpoint)
            })
        })
        .await
    }

    async fn sync_configured_endpoints(
        &self,
        configured: ConfiguredEndpoints,
    ) -> Result<Vec<String>, StoreError> {
        self.read(move |connection| {
            write_transaction(connection, |transaction| sync_configured(transaction, &configured))
        })
        .await
    }

    async fn unlist_instance(&self, instance_id: &str) -> Result<(), StoreError> {
        let instance_id = instance_id.to_owned();
        self.read(move |connection| {
            write_transaction(connection, |transaction| {
                transaction.execute(
                    "DELETE FROM webhook_endpoint_listings WHERE instance_id = ?1",
                    params![instance_id],
                )?;
                Ok(())
            })
        })
        .await
    }
}

impl SqliteStore {
    /// Wakes the dispatchers waiting on [`Outbox::outbox_changed`].
    fn wake_dispatchers(&self) {
        self.outbox_changed.notify_waiters();
        self.outbox_changed.notify_one();
    }
}

fn sync_configured(
    transaction: &Connection,
    configured: &ConfiguredEndpoints,
) -> Result<Vec<String>, StoreError> {
    let now = configured.now.0;
    transaction.execute(
        "DELETE FROM webhook_endpoint_listings WHERE instance_id = ?1",
        params![configured.instance_id],
    )?;
    for endpoint in &configured.endpoints {
        upsert_endpoint(transaction, endpoint)?;
        transaction.execute(
            "INSERT OR REPLACE INTO webhook_endpoint_listings (instance_id, endpoint_id, seen_at_ms) \
             VALUES (?1, ?2, ?3)",
            params![configured.instance_id, endpoint.id, now],
        )?;
    }
    transaction.execute(
        "DELETE FROM webhook_endpoint_listings WHERE seen_at_ms < ?1",
        params![now.saturating_sub(configured.liveness_ms)],
    )?;
    let unlisted: Vec<String> = transaction
        .prepare_cached(
            "SELECT id FROM webhook_endpoints WHERE source = 'config' AND id NOT IN \
             (SELECT endpoint_id FROM webhook_endpoint_listings) ORDER BY id",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &unlisted {
        remove_endpoint(transaction, id, configured.now)?;
    }
    Ok(unlisted)
}

/// Creates or updates an endpoint, keeping its creation time.
fn upsert_endpoint(transaction: &Connection, endpoint: &EndpointRecord) -> Result<(), StoreError> {
    transaction.execute(
        "INSERT INTO webhook_endpoints (id, url, signing, api_key, secret, include_events, exclude_events, \
         enabled, source, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, signing = excluded.signing, \
         api_key = excluded.api_key, secret = excluded.secret, include_events = excluded.include_events, \
         exclude_events = excluded.exclude_events, enabled = excluded.enabled, source = excluded.source",
        params![
            endpoint.id,
            endpoint.url,
            endpoint.signing.as_str(),
            endpoint.api_key,
            endpoint.secret,
            serde_json::to_string(&endpoint.include_events).expect("a list of strings"),
            serde_json::to_string(&endpoint.exclude_events).expect("a list of strings"),
            endpoint.enabled,
            endpoint.source.as_str(),
            endpoint.created_at.0,
        ],
    )?;
    Ok(())
}

/// Deletes an endpoint and makes its pending deliveries dead; returns whether it existed.
fn remove_endpoint(
    transaction: &Connection,
    id: &str,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    if transaction.execute("DELETE FROM webhook_endpoints WHERE id = ?1", params![id])? == 0 {
        return Ok(false);
    }
    transaction.execute(
        "UPDATE webhook_deliveries SET status = 'dead', last_error = 'endpoint deleted', \
         next_attempt_at_ms = NULL, claimed_by = NULL, claim_expires_at_ms = NULL, updated_at_ms = ?2 \
         WHERE endpoint_id = ?1 AND status = 'pending'",
        params![id, now.0],
    )?;
    transaction
        .execute("DELETE FROM webhook_endpoint_listings WHERE endpoint_id = ?1", params![id])?;
    Ok(true)
}

#[cfg(test)]
mod tests;
