//! The SQLite backend: the conformance suite against database files in temporary folders, and
//! what only this backend does (its schema version, its file).

use std::sync::Arc;

use async_trait::async_trait;

use crate::Store;
use crate::conformance::{Database, Harness};
use crate::sqlite::{SqliteConfig, SqliteStore};

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
