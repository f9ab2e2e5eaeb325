//! Where PostgreSQL's binaries are, and which user runs the server ones: PostgreSQL refuses to
//! run as root, so under root they run as the `postgres` system user.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::postgres::PgError;

/// The environment variable that names the folder holding `initdb`, `postgres`, `createdb` and
/// `psql`, ahead of every other place.
pub(crate) const BINDIR_VARIABLE: &str = "TELEMETRY_TEST_PG_BINDIR";

/// Where Debian installs each PostgreSQL version (`<root>/<version>/bin`).
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The binaries every server needs; a folder without one of them is not a candidate.
const REQUIRED: [&str; 4] = ["initdb", "postgres", "createdb", "psql"];

/// Finds PostgreSQL's binary folder: `TELEMETRY_TEST_PG_BINDIR` if set, else the highest
/// version under `/usr/lib/postgresql` that has them, else `pg_config --bindir`.
pub(crate) fn find_bin_dir() -> Result<PathBuf, PgError> {
    find_bin_dir_in(std::env::var_os(BINDIR_VARIABLE), Path::new(DEBIAN_ROOT), pg_config_bindir)
}

/// [`find_bin_dir`] with its inputs passed in, for tests.
pub(crate) fn find_bin_dir_in(
    variable: Option<OsString>,
    debian_root: &Path,
    pg_config: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, PgError> {
    if let Some(variable) = variable.filter(|value| !value.is_empty()) {
        let bin_dir = PathBuf::from(variable);
        return if has_binaries(&bin_dir) {
            Ok(bin_dir)
        } else {
            Err(PgError::BinariesNotFound {
                searched: format!("`{BINDIR_VARIABLE}` = `{}`", bin_dir.display()),
            })
        };
    }
    if let Some(bin_dir) = highest_version(debian_root) {
        return Ok(bin_dir);
    }
    if let Some(bin_dir) = pg_config().filter(|bin_dir| has_binaries(bin_dir)) {
        return Ok(bin_dir);
    }
    Err(PgError::BinariesNotFound {
        searched: format!(
            "`{}/<version>/bin`, `pg_config --bindir`; `{BINDIR_VARIABLE}` is not set",
            debian_root.display()
        ),
    })
}

/// The `bin` folder of the highest version under `root` that has the binaries.
fn highest_version(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .flatten()
        .filter_map(|entry| {
            let version = parse_version(entry.file_name().to_str()?)?;
            let bin_dir = entry.path().join("bin");
            has_binaries(&bin_dir).then_some((version, bin_dir))
        })
        .max_by(|(left, _), (right, _)| left.cmp(right))
        .map(|(_, bin_dir)| bin_dir)
}

/// Parses a version folder's name (`15`, `9.6`) into numbers that compare as versions.
pub(crate) fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn has_binaries(bin_dir: &Path) -> bool {
    REQUIRED.iter().all(|name| bin_dir.join(name).is_file())
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| PathBuf::from(trimmed))
}

/// The user the server binaries run as when this process is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Returns `None` when this process is not root (the server binaries run as this process's
/// user), else the `postgres` system user they run as.
pub(crate) fn server_user() -> Result<Option<ServerUser>, PgError> {
    if effective_uid()? != 0 {
        return Ok(None);
    }
    let uid = id_of("-u").ok_or(PgError::NoPostgresUser)?;
    let gid = id_of("-g").ok_or(PgError::NoPostgresUser)?;
    Ok(Some(ServerUser { uid, gid }))
}

/// This process's effective user id: the owner of `/proc/self`, else what `id -u` says.
fn effective_uid() -> Result<u32, PgError> {
    if let Ok(metadata) = std::fs::metadata("/proc/self") {
        return Ok(metadata.uid());
    }
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|source| PgError::Io { action: "run `id -u`".to_owned(), source })?;
    String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|_| PgError::Io {
        action: "learn this process's user id".to_owned(),
        source: std::io::Error::other("`id -u` printed no number"),
    })
}

/// The `postgres` user's uid (`-u`) or gid (`-g`), through `id` (so NSS is honoured).
fn id_of(flag: &str) -> Option<u32> {
    let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}
