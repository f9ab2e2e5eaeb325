//! The SQLite backend: the conformance suite against database files in temporary folders, and
//! what only this backend does (its schema version, its file).

use std::sync::Arc;

use async_trait::async_trait;

use crate::conformance::{Database, Harness};
use crate::sqlite::{SqliteConfig, SqliteStore};
use crate::{AnalyticsStore as _, Store};

struct SqliteHarness;

struct SqliteDatabase {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for SqliteHarness {
    async fn database(&self) -> Box<dyn Database> {
        Box::new(SqliteDatabase { dir: tempfile::tempdir().expect("tempdir") })
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(SqliteConfig::in_dir(self.dir.path())).expect("open"))
    }
}

crate::conformance_tests!(SqliteHarness);

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(SqliteStore::open(SqliteConfig::in_dir(dir.path())).expect("open"));
    let connection =
        rusqlite::Connection::open(dir.path().join("telemetry.sqlite3")).expect("open");
    connection.pragma_update(None, "user_version", 99).expect("pragma");
    drop(connection);
    let error = SqliteStore::open(SqliteConfig::in_dir(dir.path())).expect_err("refused");
    assert!(error.to_string().contains("newer version"), "{error}");
}

#[tokio::test]
async fn events_stored_before_event_keys_keep_their_positions_and_are_keyed_by_their_ids() {
    // A database as the version before migration 10 left it: three events stored, the last of
    // them (the highest position handed out) pruned since.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SqliteConfig::in_dir(dir.path());
    let mut connection = rusqlite::Connection::open(&config.path).expect("open");
    super::migrate_to(&mut connection, 9).expect("migrations 1 to 9");
    let in_one_room =
        |index| crate::model::EventRecord { room_sid: "RM_0".into(), ..bulky_event(index) };
    for index in 0..3 {
        let event = in_one_room(index);
        connection
            .execute(
                "INSERT INTO events (id, type, at_ms, room_sid, room_name, participant_sid, \
                 participant_identity, track_sid, node_id, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    event.id,
                    event.event_type,
                    event.at.0,
                    event.room_sid,
                    event.room_name,
                    event.participant_sid,
                    event.participant_identity,
                    event.track_sid,
                    event.node_id,
                    event.payload
                ],
            )
            .expect("an event of the old schema");
    }
    connection.execute("DELETE FROM events WHERE position = 3", []).expect("prune one");
    drop(connection);

    let store = SqliteStore::open(config).expect("migrated");
    // A new event gets the next position, never a pruned one's; an old event written again (a
    // replay of a derived id) is still stored once: its key is its id.
    let new = crate::model::EventRecord { key: "r-new".into(), ..in_one_room(9) };
    let batch = crate::model::WriteBatch { events: vec![new], ..Default::default() };
    store.write(batch).await.expect("write");
    let batch = crate::model::WriteBatch { events: vec![in_one_room(0)], ..Default::default() };
    store.write(batch).await.expect("write again");
    assert_eq!(store.counts().await.expect("counts").events, 3);
    let events = store
        .room_events(crate::model::EventsQuery {
            room_sid: "RM_0".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events");
    let positions: Vec<i64> = events.items.iter().map(|event| event.position).collect();
    assert_eq!(positions, [1, 2, 4]);
    store.close().await;
}

#[tokio::test]
async fn webhooks_stored_before_message_keys_keep_their_deliveries_ids_and_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SqliteConfig::in_dir(dir.path());
    let mut connection = rusqlite::Connection::open(&config.path).expect("open");
    connection.pragma_update(None, "foreign_keys", "ON").expect("foreign keys");
    super::migrate_to(&mut connection, 10).expect("migrations 1 to 10");
    connection
        .execute_batch(crate::conformance::WEBHOOKS_BEFORE_MESSAGE_KEYS)
        .expect("webhooks of the old schema");
    drop(connection);

    let store = SqliteStore::open(config.clone()).expect("migrated");
    crate::conformance::webhooks_stored_before_message_keys_keep_their_deliveries(&store).await;
    store.close().await;
    let connection = super::open_connection(&config).expect("open");
    let violations: i64 = connection
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |row| row.get(0))
        .expect("foreign key check");
    assert_eq!(violations, 0);
    let leftovers: i64 = connection
        .query_row(
            "SELECT (SELECT COUNT(*) FROM sqlite_master WHERE name GLOB '*_by_id') \
             + (SELECT COUNT(*) FROM sqlite_sequence WHERE name GLOB '*_by_id')",
            [],
            |row| row.get(0),
        )
        .expect("leftovers");
    assert_eq!(leftovers, 0, "the old tables are gone");
}

/// A write whose commit passes the writer's WAL backstop while another connection is in the
/// middle of a checkpoint is committed, and must be answered so. The backstop's checkpoint then
/// finds the checkpoint lock taken (`SQLITE_BUSY`); SQLite hands whatever the WAL hook returns
/// to the committing statement as `SQLITE_ERROR` after the commit took effect, so a hook that
/// passes that on fails a write that was stored (seen under the `store_keys` benchmark's load,
/// where the checkpointer thread was the other connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_answered_written_when_its_backstop_checkpoint_finds_another_running() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WAITING: AtomicBool = AtomicBool::new(false);
    static RELEASED: AtomicBool = AtomicBool::new(false);
    let dir = tempfile::tempdir().expect("tempdir");
    // Migrated first, then opened with a backstop at 4 WAL pages: every write below passes it.
    SqliteStore::open(SqliteConfig::in_dir(dir.path())).expect("open").close().await;
    let config = SqliteConfig { checkpoint_pages: 1, ..SqliteConfig::in_dir(dir.path()) };
    let store = SqliteStore::open(config.clone()).expect("open");
    // Another connection takes the checkpoint lock and keeps it: a FULL checkpoint takes it,
    // then waits in its busy handler for the writer lock, which a third connection holds.
    let holder = super::open_connection(&config).expect("open");
    holder.execute_batch("BEGIN IMMEDIATE").expect("the writer lock");
    let checkpointing = {
        let config = config.clone();
        std::thread::spawn(move || {
            let mut connection = super::open_connection(&config).expect("open");
            connection
                .busy_handler(Some(|_| {
                    WAITING.store(true, Ordering::SeqCst);
                    while !RELEASED.load(Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    false
                }))
                .expect("busy handler");
            connection
                .query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))
                .expect("checkpoint");
        })
    };
    while !WAITING.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    holder.execute_batch("ROLLBACK").expect("the writer lock released");

    let mut written = Vec::new();
    for index in 0..3 {
        let batch = crate::model::WriteBatch {
            events: (index * 4..index * 4 + 4).map(bulky_event).collect(),
            ..Default::default()
        };
        written.push(store.write(batch).await.map(|_| ()).map_err(|error| error.to_string()));
    }
    RELEASED.store(true, Ordering::SeqCst);
    checkpointing.join().expect("the checkpoint");
    assert_eq!(written, vec![Ok(()), Ok(()), Ok(())], "each write was committed");
    assert_eq!(store.counts().await.expect("counts").events, 12);
    store.close().await;
}

/// A write that fails (here refused by a trigger) fails alone, whether grouped with others or
/// not, and leaves its writer's mark where it was: the same write, once it can be written, is
/// written, not taken for a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_leaves_its_mark_where_it_was() {
    use crate::model::{EventRecord, WriteBatch, WriteMark};
    use telemetry_core::UnixMillis;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SqliteConfig::in_dir(dir.path());
    let store = SqliteStore::open(config.clone()).expect("open");
    super::open_connection(&config)
        .expect("open")
        .execute_batch(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON events WHEN NEW.payload = 'bad' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .expect("trigger");
    let batch = |index: usize, payload: &str| WriteBatch {
        events: vec![EventRecord {
            payload: payload.to_owned(),
            ..EventRecord::from_event(&telemetry_core::proto::AnalyticsEvent {
                id: format!("AE_{index}"),
                room_id: "RM_1".into(),
                ..Default::default()
            })
        }],
        mark: Some(WriteMark { writer: format!("w{index}"), number: 1, at: UnixMillis(1) }),
        ..WriteBatch::default()
    };
    let (first, bad, third) = tokio::join!(
        store.write(batch(0, "{}")),
        store.write(batch(1, "bad")),
        store.write(batch(2, "{}")),
    );
    assert!(first.is_ok() && third.is_ok(), "{first:?} {third:?}");
    let error = bad.expect_err("refused").to_string();
    assert!(error.contains("refused by the test"), "{error}");
    let receipt = store.write(batch(1, "{}")).await.expect("written");
    assert!(!receipt.repeated, "the refused write's mark did not move: {receipt:?}");
    assert!(store.write(batch(2, "{}")).await.expect("answered").repeated);
    assert_eq!(store.counts().await.expect("counts").events, 3);
    store.close().await;
}

/// The plan SQLite chooses for `sql` on a connection opened as the store opens its own.
fn query_plan(dir: &std::path::Path, sql: &str) -> String {
    let config = SqliteConfig::in_dir(dir);
    let connection = super::open_connection(&config).expect("open");
    let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
    // Values for the parameters: with the guarantee, they cannot change the plan.
    let parameters = vec![rusqlite::types::Null; statement.parameter_count()];
    let details: Vec<String> = statement
        .query_map(rusqlite::params_from_iter(parameters), |row| row.get::<_, String>(3))
        .expect("plan")
        .collect::<Result<_, _>>()
        .expect("plan rows");
    details.join("\n")
}

#[test]
fn claims_use_the_outbox_partial_indexes_with_plans_that_ignore_bound_values() {
    // The store's connections enable the query planner stability guarantee (so that binding a
    // new value never recompiles a statement); the claim's queries must still find their rows
    // through the partial indexes on pending deliveries, not by scanning the table.
    let dir = tempfile::tempdir().expect("tempdir");
    drop(SqliteStore::open(SqliteConfig::in_dir(dir.path())).expect("open"));
    let heads = query_plan(dir.path(), super::CLAIM_HEADS);
    assert!(heads.contains("webhook_deliveries_queue"), "{heads}");
    assert!(!heads.contains("SCAN d") && !heads.contains("SCAN q"), "{heads}");
    let run = query_plan(dir.path(), super::CLAIM_RUN);
    assert!(run.contains("webhook_deliveries_queue"), "{run}");
    let due = query_plan(dir.path(), super::NEXT_DUE);
    assert!(due.contains("webhook_deliveries_due"), "{due}");
    let config = SqliteConfig::in_dir(dir.path());
    let connection = super::open_connection(&config).expect("open");
    let qpsg = connection
        .db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
        .expect("db_config");
    assert!(qpsg, "connections enable the query planner stability guarantee");
}

/// An event of about 2 KiB, so that a few of them fill WAL pages.
fn bulky_event(index: usize) -> crate::model::EventRecord {
    crate::model::EventRecord {
        key: format!("AE_{index:012}"),
        id: format!("AE_{index:012}"),
        event_type: "PARTICIPANT_JOINED".to_owned(),
        at: telemetry_core::UnixMillis(1_700_000_000_000 + index as i64),
        room_sid: format!("RM_{}", index % 7),
        room_name: "room".to_owned(),
        participant_sid: format!("PA_{index}"),
        participant_identity: String::new(),
        track_sid: String::new(),
        node_id: "sfu-1".to_owned(),
        payload: "x".repeat(2048),
        projections: Vec::new(),
    }
}

/// The pages of WAL frames `wal` holds (its header is 32 bytes, each frame's 24).
fn wal_frames(wal: &std::path::Path, page_size: u64) -> u64 {
    std::fs::metadata(wal)
        .map_or(0, |metadata| metadata.len().saturating_sub(32) / (page_size + 24))
}

#[tokio::test]
async fn the_checkpointer_thread_copies_the_wal_into_the_database_without_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SqliteConfig { checkpoint_pages: 40, ..SqliteConfig::in_dir(dir.path()) };
    let database = config.path.clone();
    let wal = dir.path().join("telemetry.sqlite3-wal");
    let store = SqliteStore::open(config).expect("open");
    // The migrations may leave a WAL past 40 pages already: wait until their checkpoint, if
    // any, is over (the size holds for 300 ms).
    let size = || std::fs::metadata(&database).map_or(0, |metadata| metadata.len());
    let mut checkpointed = size();
    let mut unchanged = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = size();
        unchanged = if now == checkpointed { unchanged + 1 } else { 0 };
        checkpointed = now;
        if unchanged == 6 {
            break;
        }
    }
    let page_size = 4096;
    // Writes until the WAL holds at least 40 pages more, fewer than the 160 at which the writer
    // would checkpoint itself.
    let frames_before = wal_frames(&wal, page_size);
    let mut index = 0;
    while wal_frames(&wal, page_size) < frames_before + 40 {
        let batch = crate::model::WriteBatch {
            events: (index..index + 4).map(bulky_event).collect(),
            ..Default::default()
        };
        index += 4;
        store.write(batch).await.expect("write");
    }
    assert!(wal_frames(&wal, page_size) < frames_before + 160, "stays under the writer's own");
    // The database file grows only by checkpoints: the checkpointer's, woken by the commit that
    // passed 40 pages.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() <= checkpointed {
        assert!(std::time::Instant::now() < deadline, "no checkpoint within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // What was checkpointed reads back, and the store closes cleanly (the checkpointer ends).
    assert_eq!(store.counts().await.expect("counts").events, index as u64);
    store.close().await;
}
