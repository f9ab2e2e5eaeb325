//! The PostgreSQL store: a database that several instances of the service share.
//!
//! - **Connections.** A deadpool pool of tokio-postgres connections (no TLS) serves reads,
//!   claims, attempt records and the rare writes that need an answer (requeues, endpoints,
//!   pruning); one more connection, outside the pool, listens for other instances' wake-ups
//!   (see `listener.rs`). Opening fails within [`CONNECT_TIMEOUT`] with
//!   [`StoreError::Unavailable`] when the server cannot be reached. The server ends a session
//!   of ours that keeps a transaction open while sending nothing for
//!   [`IDLE_IN_TRANSACTION_TIMEOUT`], so that a paused process cannot hold its locks for good.
//! - **Writes.** One writer task commits whatever [`crate::AnalyticsStore::write`] calls are
//!   waiting in one transaction (group commit, as SQLite's writer thread does); a write that
//!   fails is rolled back to its savepoint and fails alone. Each call returns once its
//!   transaction has committed. Writes become a few multi-row statements (`unnest` of arrays)
//!   pipelined on the connection (see `writer.rs`).
//! - **Schema.** Versioned migrations (`migrations/postgres/`), recorded in `schema_migrations`
//!   and applied at start in one transaction that holds an advisory lock, so that instances
//!   starting together migrate once; a database migrated by a newer build is refused.
//! - **Claims** hand out queue heads with `FOR UPDATE SKIP LOCKED`; why two claimants can never
//!   both hold a key is explained in `outbox.rs`.
//! - **Errors.** Connection failures, timeouts, server shutdowns, serialization failures and
//!   deadlocks are [`StoreError::Unavailable`] (transient); everything else is
//!   [`StoreError::Database`].
//!
//! Nothing here is shared with the SQLite backend: the rules both apply come from
//! [`crate::model`].

mod analytics;
mod cluster;
mod endpoints;
mod listener;
mod outbox;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::{Backend, BoxError, Store, StoreError};

/// How long connecting to the server (TCP, then the start-up handshake) may take before it
/// fails as unavailable: long enough for a server across a data centre under load, short enough
/// that a service pointed at a dead address says so at once rather than hanging.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the server lets a session of ours keep a transaction open while we send nothing
/// (PostgreSQL's `idle_in_transaction_session_timeout`), unless the URL's `options` set it. A
/// process paused in the middle of a write (SIGSTOP, a frozen VM, a stop-the-world stall) would
/// otherwise hold its locks for as long as it stays paused: in cluster mode the lease rows of its
/// partitions (locked `FOR SHARE` by a fenced write), which no other instance could then take,
/// and the ordered-inserts lock, which every instance's writes wait for. The server ends such a
/// session and rolls its transaction back; the paused writer retries once resumed, and its
/// fence then refuses what it no longer holds. Our transactions send their statements back to
/// back, so a gap this long means the process is not running.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a free pooled connection before it fails as unavailable. Calls
/// queue for connections under load; a wait this long means the database is stuck.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The `application_name` connections report (in `pg_stat_activity`), unless the URL sets one.
const APPLICATION_NAME: &str = "rtc-telemetry";

/// The migrations, in order: version `n` is the `n`th.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_schema.sql"),
    include_str!("../migrations/postgres/0002_workers.sql"),
    include_str!("../migrations/postgres/0003_adapter_states.sql"),
    include_str!("../migrations/postgres/0004_cluster.sql"),
    include_str!("../migrations/postgres/0005_quality.sql"),
    include_str!("../migrations/postgres/0006_partition_offsets.sql"),
    include_str!("../migrations/postgres/0007_room_webhooks.sql"),
    include_str!("../migrations/postgres/0008_closed_workers.sql"),
    include_str!("../migrations/postgres/0009_worker_quality.sql"),
    include_str!("../migrations/postgres/0010_event_keys.sql"),
    include_str!("../migrations/postgres/0011_webhook_message_keys.sql"),
    include_str!("../migrations/postgres/0012_write_marks.sql"),
];

/// The advisory lock (`pg_advisory_xact_lock`) held while migrating. Any constant works as long
/// as every build uses the same one; this is "rtctelem" in ASCII.
const MIGRATION_LOCK: i64 = 0x7274_6374_656c_656d;

/// The advisory lock held by every transaction that inserts events or webhook deliveries, from
/// before it takes its first id until it commits. Ids (event positions, delivery ids) are then
/// taken in commit order across every instance on the database, so a reader that sees an id
/// also sees every lower one: event pages never skip an event committed late, and a claimant
/// never sees a queue's second delivery before its first (see `outbox.rs`). Public so that
/// tools can watch how busy it is (`pg_locks`): it is what the instances of a cluster share.
pub const ORDERED_INSERTS_LOCK: i64 = MIGRATION_LOCK + 1;

/// The advisory lock that serialises changes to endpoints and their listings across instances,
/// so that an instance deleting endpoints no live instance lists never misses a listing another
/// instance is committing.
const ENDPOINTS_LOCK: i64 = MIGRATION_LOCK + 2;

/// The advisory lock that keeps requeues (retry, replay) and claims apart: claims hold it shared,
/// a requeue exclusively. A requeue makes a finished delivery pending again, possibly below a
/// delivery of its key that is claimed; a claim that began before the requeue committed could
/// otherwise see the requeued delivery as a head while missing a claim committing beside it
/// (see `outbox.rs`).
const REQUEUE_LOCK: i64 = MIGRATION_LOCK + 3;

/// The channel on which commits that create or requeue deliveries notify every instance.
const OUTBOX_CHANNEL: &str = "rtc_telemetry_outbox";

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// The database: `postgres://user[:password]@host[:port]/database[?options]` (libpq's URL
    /// form; tokio-postgres's key-value form works too).
    pub url: String,
    /// Most pooled connections this store opens; the listener takes one more.
    pub max_connections: usize,
}

/// The PostgreSQL store.
#[derive(Debug)]
pub struct PostgresStore {
    pool: Pool,
    /// Set by `close`: every later call fails with [`StoreError::Closed`].
    closed: AtomicBool,
    /// Write requests to the writer task; taken (dropped) by `close`, which ends the task once
    /// it has committed everything already sent.
    writer: Mutex<Option<mpsc::UnboundedSender<writer::WriteRequest>>>,
    /// The writer task, awaited by `close`.
    writer_task: Mutex<Option<JoinHandle<()>>>,
    /// Dropped by `close` (or with the store) to stop the listener task.
    stop_listener: Mutex<Option<watch::Sender<()>>>,
    /// The listener task, awaited by `close`.
    listener_task: Mutex<Option<JoinHandle<()>>>,
    /// Notified when deliveries were created or requeued, here or (through LISTEN) elsewhere.
    outbox_changed: Arc<Notify>,
}

impl PostgresStore {
    /// Connects, migrates the database, and starts the writer and the listener.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached within [`CONNECT_TIMEOUT`];
    /// [`StoreError::Corrupt`] if the database was migrated by a newer version;
    /// [`StoreError::Database`] if the URL is invalid or a migration fails.
    pub async fn open(config: PostgresConfig) -> Result<Self, StoreError> {
        let pg_config = connection_config(&config.url)?;
        let target = describe_target(&pg_config);
        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        let mut client = pool.get().await.map_err(|error| {
            let cause = Failure::from(error).into_store();
            match cause {
                StoreError::Unavailable(source) => {
                    StoreError::Unavailable(Box::new(ConnectError { target, source }))
                }
                other => other,
            }
        })?;
        migrate(&mut client).await.map_err(Failure::into_store)?;
        drop(client);

        let outbox_changed = Arc::new(Notify::new());
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer_task = tokio::spawn(writer::run(pool.clone(), receiver));
        let (stop_listener, stopped) = watch::channel(());
        let listener_task = tokio::spawn(listener::run(pg_config, outbox_changed.clone(), stopped));
        Ok(Self {
            pool,
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(sender)),
            writer_task: Mutex::new(Some(writer_task)),
            stop_listener: Mutex::new(Some(stop_listener)),
            listener_task: Mutex::new(Some(listener_task)),
            outbox_changed,
        })
    }

    /// A pooled connection, unless the store is closed.
    async fn client(&self) -> Result<deadpool_postgres::Object, Failure> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Failure::Store(StoreError::Closed));
        }
        Ok(self.pool.get().await?)
    }

    /// Wakes the dispatchers of this process waiting on [`crate::Outbox::outbox_changed`]
    /// (other processes are woken by the `NOTIFY` of the commit).
    fn wake_dispatchers(&self) {
        wake(&self.outbox_changed);
    }
}

/// Wakes every task waiting on `notify`, and the next one to wait if none is.
fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

/// Parses the URL and sets what the store needs: the connect timeout, the application name and
/// [`IDLE_IN_TRANSACTION_TIMEOUT`], unless the URL sets them.
fn connection_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg_config: tokio_postgres::Config = url
        .parse()
        .map_err(|error| StoreError::Database(format!("invalid PostgreSQL URL: {error}").into()))?;
    if pg_config.get_connect_timeout().is_none() {
        pg_config.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg_config.get_application_name().is_none() {
        pg_config.application_name(APPLICATION_NAME);
    }
    let options = pg_config.get_options().unwrap_or("").to_owned();
    if !options.contains("idle_in_transaction_session_timeout") {
        let timeout = format!(
            "-c idle_in_transaction_session_timeout={}",
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        );
        pg_config.options(
            options.split_whitespace().chain([timeout.as_str()]).collect::<Vec<_>>().join(" "),
        );
    }
    Ok(pg_config)
}

/// Where a configuration connects (hosts and ports, never the password), for messages.
fn describe_target(pg_config: &tokio_postgres::Config) -> String {
    let ports = pg_config.get_ports();
    let hosts: Vec<String> = pg_config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let database = pg_config.get_dbname().unwrap_or("");
    format!("{}/{database}", hosts.join(","))
}

/// The server could not be reached when the store was opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at `{target}`: {source}")]
struct ConnectError {
    target: String,
    #[source]
    source: BoxError,
}

/// Applies the migrations this database lacks, in one transaction holding [`MIGRATION_LOCK`]:
/// an instance that starts while another migrates waits for it, then finds nothing to do.
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), Failure> {
    migrate_to(client, MIGRATIONS.len()).await
}

/// Applies the first `count` migrations not applied yet, as [`migrate`] applies them all (tests
/// make the database of an earlier version with it).
async fn migrate_to(client: &mut tokio_postgres::Client, count: usize) -> Result<(), Failure> {
    let transaction = client.transaction().await?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version BIGINT PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: i64 = transaction
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await?
        .try_get(0)?;
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(Failure::Store(StoreError::Corrupt(format!(
            "the database is at schema version {applied}, this build knows {known}: it was written by a newer version"
        ))));
    }
    for (version, migration) in (1..).zip(&MIGRATIONS[..count]).skip(applied as usize) {
        transaction.batch_execute(migration).await?;
        transaction
            .execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(version as i64)])
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

// === impl Store ===

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn cluster(&self) -> Option<&dyn crate::ClusterStore> {
        Some(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        async {
            let client = self.client().await?;
            client.query_one("SELECT 1", &[]).await?;
            Ok(())
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // The writer commits what it was sent, then ends.
        drop(lock(&self.writer).take());
        let writer_task = lock(&self.writer_task).take();
        if let Some(task) = writer_task {
            let _ = task.await;
        }
        drop(lock(&self.stop_listener).take());
        let listener_task = lock(&self.listener_task).take();
        if let Some(task) = listener_task {
            let _ = task.await;
        }
        self.pool.close();
    }
}

/// Locks a mutex that only guards handles: a panic elsewhere cannot leave it inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === Errors ===

/// A failure inside the backend, turned into a [`StoreError`] at the contract's boundary by
/// [`Failure::into_store`], which decides whether it is transient.
#[derive(Debug)]
enum Failure {
    /// From the driver.
    Postgres(tokio_postgres::Error),
    /// From the pool.
    Pool(PoolError),
    /// Already decided.
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Failure::Postgres(error)
    }
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        Failure::Pool(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

impl Failure {
    /// The store error: transient ([`StoreError::Unavailable`]) or not.
    fn into_store(self) -> StoreError {
        match self {
            Failure::Postgres(error) => from_postgres(error),
            Failure::Pool(PoolError::Backend(error)) => from_postgres(error),
            Failure::Pool(error @ PoolError::Timeout(_)) => {
                StoreError::Unavailable(Box::new(error))
            }
            Failure::Pool(PoolError::Closed) => StoreError::Closed,
            Failure::Pool(error) => StoreError::Database(Box::new(error)),
            Failure::Store(error) => error,
        }
    }
}

/// Classifies a driver error: the connection (refused, lost, timed out), the server shutting
/// down or not accepting connections yet, a serialization failure or a deadlock are transient;
/// anything else (a constraint, a bad statement, a value that does not convert) is not.
fn from_postgres(error: tokio_postgres::Error) -> StoreError {
    if is_transient(&error) {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Database(Box::new(error))
    }
}

fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    // Without a SQLSTATE, the server did not answer: an IO error (refused, reset, timed out)
    // somewhere in the chain of causes means the connection failed.
    caused_by_io(error)
}

/// Whether `error` or one of its sources is an IO error.
fn caused_by_io(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<std::io::Error>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A copy of a group-wide error for each request of the group (the same kind, its message).
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(source) => StoreError::Unavailable(source.to_string().into()),
        StoreError::Database(source) => StoreError::Database(source.to_string().into()),
        StoreError::Closed => StoreError::Closed,
        StoreError::Corrupt(message) => StoreError::Corrupt(message.clone()),
    }
}

// === Building statements ===

/// A statement's parameters, numbered as they are added (for statements whose filters vary).
#[derive(Default)]
struct Parameters {
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Parameters {
    /// Adds a value; returns its placeholder (`$n`).
    fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    /// The values, as the driver takes them.
    fn as_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|value| &**value as &(dyn ToSql + Sync)).collect()
    }
}

// === Reading rows ===

/// A counter column (BIGINT) as a `u32`; out of range means the row was not written by this
/// store.
fn u32_column(row: &Row, index: usize) -> Result<u32, Failure> {
    let value: i64 = row.try_get(index)?;
    u32::try_from(value).map_err(|_| {
        Failure::Store(StoreError::Corrupt(format!(
            "column `{}` holds {value}, not a 32-bit count",
            row.columns()[index].name()
        )))
    })
}

/// An optional HTTP status column (INTEGER).
fn status_code_column(row: &Row, index: usize) -> Result<Option<u16>, Failure> {
    let value: Option<i32> = row.try_get(index)?;
    value
        .map(|code| {
            u16::try_from(code).map_err(|_| {
                Failure::Store(StoreError::Corrupt(format!("stored HTTP status `{code}`")))
            })
        })
        .transpose()
}

/// A stored enum name, parsed.
fn enum_column<T>(row: &Row, index: usize, parse: fn(&str) -> Option<T>) -> Result<T, Failure> {
    let text: &str = row.try_get(index)?;
    parse(text).ok_or_else(|| {
        Failure::Store(StoreError::Corrupt(format!(
            "unknown value `{text}` in column `{}`",
            row.columns()[index].name()
        )))
    })
}

#[cfg(test)]
mod tests;
