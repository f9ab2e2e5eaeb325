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
