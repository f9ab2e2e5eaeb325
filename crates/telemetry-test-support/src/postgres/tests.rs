//! Unit tests of finding PostgreSQL's binaries; the server itself is tested in `tests/it/`.

use std::path::{Path, PathBuf};

use crate::postgres::PgError;
use crate::postgres::binaries::{find_bin_dir_in, parse_version};

/// Makes `<root>/<version>/bin` with (fake) binaries, all of them or all but `initdb`.
fn fake_version(root: &Path, version: &str, complete: bool) -> PathBuf {
    let bin_dir = root.join(version).join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    for name in ["initdb", "postgres", "createdb", "psql"] {
        if complete || name != "initdb" {
            std::fs::write(bin_dir.join(name), "").unwrap();
        }
    }
    bin_dir
}

#[test]
fn versions_compare_as_numbers() {
    assert!(parse_version("10") > parse_version("9.6"));
    assert!(parse_version("16") > parse_version("15"));
    assert_eq!(parse_version("main"), None);
}

#[test]
fn the_highest_complete_version_wins() {
    let root = tempfile::tempdir().unwrap();
    fake_version(root.path(), "9.6", true);
    let fifteen = fake_version(root.path(), "15", true);
    fake_version(root.path(), "16", false);
    std::fs::create_dir_all(root.path().join("common")).unwrap();
    let found = find_bin_dir_in(None, root.path(), || panic!("pg_config is not needed")).unwrap();
    assert_eq!(found, fifteen);
}

#[test]
fn the_variable_comes_first_and_must_hold_the_binaries() {
    let root = tempfile::tempdir().unwrap();
    fake_version(root.path(), "15", true);
    let chosen = fake_version(root.path(), "custom", true);
    let found = find_bin_dir_in(Some(chosen.clone().into()), root.path(), || None).unwrap();
    assert_eq!(found, chosen);

    let empty = tempfile::tempdir().unwrap();
    let error = find_bin_dir_in(Some(empty.path().into()), root.path(), || None).unwrap_err();
    assert!(matches!(error, PgError::BinariesNotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("TELEMETRY_TEST_PG_BINDIR"), "{error}");
}

#[test]
fn pg_config_is_the_last_resort() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let bin_dir = fake_version(elsewhere.path(), "x", true);
    let found = find_bin_dir_in(None, root.path(), || Some(bin_dir.clone())).unwrap();
    assert_eq!(found, bin_dir);
}

#[test]
fn without_binaries_the_error_says_how_to_install_them() {
    let root = tempfile::tempdir().unwrap();
    fake_version(root.path(), "15", false);
    let error = find_bin_dir_in(None, root.path(), || None).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains(&root.path().display().to_string()), "{message}");
}
