//! A real, private PostgreSQL server for tests, run from PostgreSQL's own binaries.
//!
//! # Use
//!
//! Most tests share one server per test process and take a database of their own on it:
//!
//! ```ignore
//! use telemetry_test_support::postgres::PgServer;
//!
//! // postgres://postgres@127.0.0.1:<port>/test_<pid>_<n>
//! let url = PgServer::shared().create_database()?;
//! ```
//!
//! A test that makes the database fail starts a server of its own, which only it can stop:
//!
//! ```ignore
//! let mut server = PgServer::builder().fast().start()?;
//! let url = server.create_database()?;
//! server.stop()?;    // fast shutdown: connections are refused, the port stays the server's
//! server.restart()?; // same port, same data
//! server.kill()?;    // SIGKILL of the postmaster; `restart` then runs crash recovery
//! ```
//!
//! # What a server is
//!
//! - A temporary folder (`telemetry-pg-*` in the system's temporary directory, mode 0700)
//!   holding the data folder (`data`, made by `initdb -U postgres --auth=trust -E UTF8
//!   --locale=C.UTF-8`, or `--locale=C` where that locale is missing), the Unix socket folder
//!   (`run`) and the server's log (`postgres.log`, see [`PgServer::log`]).
//! - `postgres` listening on 127.0.0.1 only, on a port that was free (bound on `127.0.0.1:0`
//!   first; another port is tried when the server finds it taken), with `max_connections=300`.
//!   The port stays the server's across [`PgServer::stop`] and [`PgServer::restart`]: no other
//!   server of this process takes it meanwhile (another process could, and the restart would
//!   then fail, naming the port in the log).
//!   `fsync` and `synchronous_commit` keep their defaults (on): the service's durability is
//!   tested against this server. [`PgServerBuilder::fast`] turns `fsync` and
//!   `full_page_writes` off for tests that do not care.
//! - Trusted logins for the user `postgres`, over TCP and the socket: a URL needs no password.
//!
//! The server is ready when its `postmaster.pid` says so (as `pg_ctl -w` checks), and a start
//! that takes longer than the timeout (30 seconds unless [`PgServerBuilder::start_timeout`])
//! fails with the server's log in the error.
//!
//! # Root
//!
//! PostgreSQL refuses to run as root. When the test process is root, the temporary folder is
//! given (`chown`) to the `postgres` system user (created by Debian's `postgresql` package), so
//! that user can enter it (its parent, `/tmp` or `$TMPDIR`, must let it through), and the server
//! binaries (`initdb`, `postgres`) run as that user and its group, with no supplementary groups:
//! the child process switches user itself before it runs the binary
//! (`std::os::unix::process::CommandExt::{uid, gid}`), so the postmaster is the direct child of
//! the test process, with no `runuser` or `su` in between to forward signals. Clients
//! (`createdb`, `psql`) connect over TCP as the database user `postgres` and run as whoever the
//! test process is. When the test process is not root, everything runs as its user.
//!
//! # Lifetime
//!
//! Dropping a [`PgServer`] stops the server (fast shutdown) and removes its folder. The server
//! does not outlive the test process either way: a watchdog process stops it and removes the
//! folder once the test process has gone (see `watchdog.rs`), which is also what ends the
//! [`PgServer::shared`] server, since statics are never dropped.
//!
//! # Missing binaries
//!
//! The binaries are `TELEMETRY_TEST_PG_BINDIR`'s, else those of the highest version under
//! `/usr/lib/postgresql/<version>/bin`, else those in `pg_config --bindir`. When there are none,
//! starting a server fails with an error that says to `apt-get install postgresql` (which
//! `cargo xtask test` does, through `tools/setup-postgres.sh`): tests that need PostgreSQL fail
//! rather than skip.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::postgres::binaries::ServerUser;

mod binaries;
mod watchdog;

#[cfg(test)]
mod tests;

/// The database user every server trusts, and its superuser.
pub const USER: &str = "postgres";

/// How long a start (or restart) may take before it fails: `initdb` and the first start take
/// about a second alone, and the tests of a workspace share two cores.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown may take before the postmaster is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a starting or stopping server is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Client environment variables that would redirect or alter `createdb` and `psql`.
const CLIENT_VARIABLES: [&str; 12] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGDATA",
];

/// Ports held by this process's servers, running or stopped, so no other server here takes
/// one while its own server is down.
static RESERVED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The number in the next database's name, unique in this process.
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// Why a PostgreSQL server could not be found, started, stopped or used.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No folder holds PostgreSQL's binaries.
    #[error(
        "PostgreSQL's binaries (`initdb`, `postgres`, `createdb`, `psql`) were not found (looked in {searched}); install them with `apt-get install postgresql` (`cargo xtask test` does), or set `TELEMETRY_TEST_PG_BINDIR` to their folder"
    )]
    BinariesNotFound {
        /// Where they were looked for.
        searched: String,
    },
    /// The test process is root and there is no `postgres` system user to run the server as.
    #[error(
        "PostgreSQL refuses to run as root and there is no `postgres` system user to run it as; `apt-get install postgresql` creates one"
    )]
    NoPostgresUser,
    /// An operating-system call failed.
    #[error("cannot {action}")]
    Io {
        /// What was being done.
        action: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// One of PostgreSQL's programs failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote, standard output then standard error.
        output: String,
    },
    /// The server exited while starting.
    #[error("the PostgreSQL server exited while starting ({status}); its log:\n{log}")]
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// The server's log.
        log: String,
    },
    /// The server did not become ready in time (and was killed).
    #[error("the PostgreSQL server was not ready within {timeout:?}; its log:\n{log}")]
    StartTimeout {
        /// The time it had.
        timeout: Duration,
        /// The server's log.
        log: String,
    },
    /// A fast shutdown did not finish in time (and the server was killed).
    #[error(
        "the PostgreSQL server did not stop within {timeout:?} and was killed; its log:\n{log}"
    )]
    StopTimeout {
        /// The time it had.
        timeout: Duration,
        /// The server's log.
        log: String,
    },
}

/// Options of a server, then [`PgServerBuilder::start`].
#[derive(Debug, Clone)]
pub struct PgServerBuilder {
    settings: Vec<(String, String)>,
    start_timeout: Duration,
}

/// A PostgreSQL server that belongs to this test process; see the [module docs](self).
///
/// Stopping, restarting and killing take `&mut self`, so only a server of one's own
/// ([`PgServer::start`]), never the [`PgServer::shared`] one, can be made to fail.
#[derive(Debug)]
pub struct PgServer {
    bin_dir: PathBuf,
    server_user: Option<ServerUser>,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    settings: Vec<(String, String)>,
    start_timeout: Duration,
    /// The running postmaster; `None` while stopped or killed.
    postmaster: Option<Child>,
    /// The watchdog (`watchdog.rs`). Its stdin pipe is held until drop: the pipe closing is
    /// its signal to stop the server and remove the folder. Drop kills it first, then stops
    /// the server itself.
    watchdog: Child,
    /// The temporary folder, removed on drop (declared last: dropped after the server stops).
    folder: TempDir,
}

// === impl PgServerBuilder ===

impl PgServerBuilder {
    /// Turns `fsync` and `full_page_writes` off: faster writes, no durability across an
    /// operating-system crash (a killed server still recovers).
    pub fn fast(self) -> Self {
        self.setting("fsync", "off").setting("full_page_writes", "off")
    }

    /// Passes `-c name=value` to the server, after (and so over) the defaults.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// How long a start or restart may take (30 seconds unless set).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Creates the folder, runs `initdb` and starts the server, returning once it accepts
    /// connections.
    ///
    /// # Errors
    ///
    /// [`PgError::BinariesNotFound`] without PostgreSQL's binaries, [`PgError::NoPostgresUser`]
    /// as root without a `postgres` user, and the failures of `initdb` or of the server's start
    /// (with its log).
    pub fn start(self) -> Result<PgServer, PgError> {
        let bin_dir = binaries::find_bin_dir()?;
        let server_user = binaries::server_user()?;
        let folder = tempfile::Builder::new()
            .prefix("telemetry-pg-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|source| io("create a temporary folder", source))?;
        let data_dir = folder.path().join("data");
        let socket_dir = folder.path().join("run");
        let log_path = folder.path().join("postgres.log");
        std::fs::create_dir(&socket_dir)
            .map_err(|source| io(format!("create `{}`", socket_dir.display()), source))?;
        File::create(&log_path)
            .map_err(|source| io(format!("create `{}`", log_path.display()), source))?;
        if let Some(user) = server_user {
            for path in [folder.path(), &socket_dir, &log_path] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(
                    |source| {
                        io(format!("give `{}` to the `postgres` user", path.display()), source)
                    },
                )?;
            }
        }
        // From here on the folder goes with this process, whatever happens to it.
        let watchdog = watchdog::spawn(&data_dir, folder.path())?;
        let mut server = PgServer {
            bin_dir,
            server_user,
            data_dir,
            socket_dir,
            log_path,
            port: 0,
            settings: self.settings,
            start_timeout: self.start_timeout,
            postmaster: None,
            watchdog,
            folder,
        };
        server.initdb()?;
        server.launch(PortChoice::Free)?;
        Ok(server)
    }
}

// === impl PgServer ===

impl PgServer {
    /// A builder with the defaults: `fsync` on, `max_connections=300`, a 30-second start
    /// timeout.
    pub fn builder() -> PgServerBuilder {
        PgServerBuilder {
            settings: vec![
                ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
                ("max_connections".to_owned(), "300".to_owned()),
            ],
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }

    /// Starts a server of one's own with the defaults (see [`PgServer::builder`]).
    ///
    /// # Errors
    ///
    /// As [`PgServerBuilder::start`].
    pub fn start() -> Result<PgServer, PgError> {
        Self::builder().start()
    }

    /// The server of this test process, started on first use with the defaults and stopped
    /// by its watchdog when the process ends. Each test takes a database of its own on it
    /// ([`PgServer::create_database`]).
    ///
    /// # Panics
    ///
    /// When the server cannot start, with the error's message (which says how to install
    /// PostgreSQL when it is missing). The next call tries again.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| match PgServer::start() {
            Ok(server) => server,
            Err(error) => panic!("cannot start the shared PostgreSQL server for tests: {error}"),
        })
    }

    /// Creates a database with a name unique in this process (`test_<pid>_<n>`) and returns
    /// its URL (see [`PgServer::url`]).
    ///
    /// # Errors
    ///
    /// When `createdb` fails (for example while the server is stopped).
    pub fn create_database(&self) -> Result<String, PgError> {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let mut createdb = self.client_command("createdb");
        createdb.arg(&name);
        run(&mut createdb)?;
        Ok(self.url(&name))
    }

    /// Runs `sql` in `database` with `psql` (`ON_ERROR_STOP`, unaligned, tuples only) and
    /// returns what it printed: one row a line, columns separated by `|`.
    ///
    /// # Errors
    ///
    /// When `psql` fails, with its output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PgError> {
        let mut psql = self.client_command("psql");
        psql.args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"]).args([
            "--set",
            "ON_ERROR_STOP=1",
            "--dbname",
            database,
            "--command",
            sql,
        ]);
        run(&mut psql)
    }

    /// The URL of `database` on this server: `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The port the server listens on (on 127.0.0.1), kept across stops and restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far (every start of it), to show when a test fails.
    pub fn log(&self) -> String {
        read_log(&self.log_path, 0)
    }

    /// The server's data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The folder of the PostgreSQL binaries this server runs (`pg_dump` and friends are
    /// there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Whether the postmaster is running (it was started and has not been stopped, killed,
    /// or died).
    pub fn is_running(&mut self) -> bool {
        match self.postmaster.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    /// Stops the server with a fast shutdown (SIGINT: sessions are ended, their transactions
    /// rolled back, a checkpoint written) and waits until it has exited. The port stays the
    /// server's. Does nothing when it is not running.
    ///
    /// # Errors
    ///
    /// [`PgError::StopTimeout`] when it takes more than 30 seconds (the server is then
    /// killed), or when it cannot be signalled.
    pub fn stop(&mut self) -> Result<(), PgError> {
        let Some(mut postmaster) = self.postmaster.take() else { return Ok(()) };
        if let Ok(Some(_)) = postmaster.try_wait() {
            return Ok(());
        }
        // The postmaster is this process's child and not yet waited for, so its pid is still
        // its own even if it has just exited.
        let mut kill = Command::new("/bin/sh");
        kill.args(["-c", "kill -s INT \"$1\"", "sh", &postmaster.id().to_string()]);
        if let Err(error) = run(&mut kill) {
            let _ = postmaster.kill();
            let _ = postmaster.wait();
            return Err(error);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match postmaster.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Ok(None) => {
                    let _ = postmaster.kill();
                    let _ = postmaster.wait();
                    return Err(PgError::StopTimeout { timeout: STOP_TIMEOUT, log: self.log() });
                }
                Err(source) => return Err(io("wait for the PostgreSQL server to stop", source)),
            }
        }
    }

    /// Starts the server again on the same port and data folder (stopping it first if it
    /// runs) and waits until it accepts connections. After [`PgServer::kill`] this is crash
    /// recovery.
    ///
    /// # Errors
    ///
    /// As [`PgServer::stop`], and when the server does not start in time (with its log).
    pub fn restart(&mut self) -> Result<(), PgError> {
        self.stop()?;
        self.launch(PortChoice::Same)
    }

    /// Kills the postmaster with SIGKILL, as a crash would, and waits until it is gone; its
    /// backends end on their own moments later. Does nothing when it is not running.
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent.
    pub fn kill(&mut self) -> Result<(), PgError> {
        let Some(mut postmaster) = self.postmaster.take() else { return Ok(()) };
        postmaster.kill().map_err(|source| io("kill the PostgreSQL server", source))?;
        postmaster.wait().map_err(|source| io("wait for the killed PostgreSQL server", source))?;
        Ok(())
    }

    /// Runs `initdb`, with the `C.UTF-8` locale or, where that is missing, `C`.
    fn initdb(&self) -> Result<(), PgError> {
        let attempt = |locale: &str| {
            let mut initdb = self.server_command("initdb");
            initdb
                .arg("--pgdata")
                .arg(&self.data_dir)
                .args(["--username", USER, "--auth=trust", "--encoding=UTF8"])
                .arg(format!("--locale={locale}"))
                // The folder does not outlive the test process: its creation need not be
                // flushed to disk. The server's own settings are not affected.
                .arg("--no-sync");
            run(&mut initdb)
        };
        match attempt("C.UTF-8") {
            Ok(_) => Ok(()),
            // `initdb: error: invalid locale name "C.UTF-8"`.
            Err(PgError::Command { output, .. }) if output.contains("invalid locale name") => {
                // initdb removes a data folder it created when it fails.
                if self.data_dir.exists() {
                    std::fs::remove_dir_all(&self.data_dir).map_err(|source| {
                        io(format!("remove `{}`", self.data_dir.display()), source)
                    })?;
                }
                attempt("C").map(drop)
            }
            Err(error) => Err(error),
        }
    }

    /// Starts the postmaster and waits until it is ready; a start that fails because the port
    /// (or, after a kill, the old server's shared memory) is still taken is tried again until
    /// the start timeout, on a new free port when `port` says so.
    fn launch(&mut self, port: PortChoice) -> Result<(), PgError> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if port == PortChoice::Free {
                self.port = reserve_free_port(self.port)?;
            }
            match self.spawn_postmaster(deadline)? {
                Launch::Ready(postmaster) => {
                    self.postmaster = Some(postmaster);
                    return Ok(());
                }
                Launch::Taken(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Launch::Taken(error) => return Err(error),
            }
        }
    }

    fn spawn_postmaster(&self, deadline: Instant) -> Result<Launch, PgError> {
        let log_start =
            std::fs::metadata(&self.log_path).map(|metadata| metadata.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(|source| io(format!("open `{}`", self.log_path.display()), source))?;
        let log_for_stdout =
            log.try_clone().map_err(|source| io("duplicate the log's file handle", source))?;
        let mut postgres = self.server_command("postgres");
        postgres
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.socket_dir.display()));
        for (name, value) in &self.settings {
            postgres.arg("-c").arg(format!("{name}={value}"));
        }
        postgres.stdout(log_for_stdout).stderr(log);
        let mut postmaster = postgres.spawn().map_err(|source| {
            io(format!("start `{}`", self.bin_dir.join("postgres").display()), source)
        })?;
        loop {
            match postmaster.try_wait() {
                Ok(Some(status)) => {
                    let this_start = read_log(&self.log_path, log_start);
                    let error = PgError::Exited { status, log: self.log() };
                    // "could not bind IPv4 address ...: Address already in use", or "pre-existing
                    // shared memory block ... is still in use" while a killed server's backends
                    // are ending.
                    return if this_start.contains("already in use")
                        || this_start.contains("still in use")
                    {
                        Ok(Launch::Taken(error))
                    } else {
                        Err(error)
                    };
                }
                Ok(None) => {}
                Err(source) => {
                    let _ = postmaster.kill();
                    let _ = postmaster.wait();
                    return Err(io("wait for the PostgreSQL server to start", source));
                }
            }
            if is_ready(&self.data_dir, postmaster.id()) {
                return Ok(Launch::Ready(postmaster));
            }
            if Instant::now() >= deadline {
                let _ = postmaster.kill();
                let _ = postmaster.wait();
                return Err(PgError::StartTimeout { timeout: self.start_timeout, log: self.log() });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// A command for a server binary: run as the `postgres` user under root, in the folder.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .current_dir(self.folder.path())
            .env("HOME", self.folder.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some(user) = self.server_user {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    /// A command for a client binary, connected to this server as `postgres` over TCP.
    fn client_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        for variable in CLIENT_VARIABLES {
            command.env_remove(variable);
        }
        command
            .env("LC_ALL", "C")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--username", USER])
            // Logins are trusted: a password prompt (on the terminal) would be a bug, not a wait.
            .arg("--no-password")
            .stdin(Stdio::null());
        command
    }
}

impl Drop for PgServer {
    /// Kills the watchdog, stops the server (fast shutdown), frees the port; the folder goes
    /// with the `TempDir` field.
    fn drop(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // A stop that fails has killed the server: nothing is left to do.
        let _ = self.stop();
        release_port(self.port);
    }
}

/// Whether a start may pick a new port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortChoice {
    Free,
    Same,
}

/// How one start of the postmaster went, when it did not fail for good.
#[derive(Debug)]
enum Launch {
    Ready(Child),
    /// The port or the old server's shared memory was taken: worth another try.
    Taken(PgError),
}

/// Whether the postmaster `pid` has written `ready` into its `postmaster.pid` (line 8, since
/// PostgreSQL 10: it listens and accepts connections).
fn is_ready(data_dir: &Path, pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else { return false };
    let mut lines = text.lines();
    let pid_matches = lines.next().and_then(|line| line.trim().parse::<u32>().ok()) == Some(pid);
    pid_matches && lines.nth(6).is_some_and(|status| status.trim() == "ready")
}

/// Picks a port that 127.0.0.1 can bind now and no other server of this process holds, and
/// holds it (giving `previous` back).
fn reserve_free_port(previous: u16) -> Result<u16, PgError> {
    let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    let reserved = reserved.get_or_insert_with(HashSet::new);
    reserved.remove(&previous);
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|source| io("bind a port on 127.0.0.1", source))?;
        let port = listener
            .local_addr()
            .map_err(|source| io("read the address of a port on 127.0.0.1", source))?
            .port();
        if reserved.insert(port) {
            return Ok(port);
        }
    }
    Err(io("find a free port on 127.0.0.1", std::io::Error::other("every port tried is held")))
}

fn release_port(port: u16) {
    let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(reserved) = reserved.as_mut() {
        reserved.remove(&port);
    }
}

/// The log from byte `start` on, lossily decoded (never fails: it is for error messages).
fn read_log(path: &Path, start: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path)
        .and_then(|mut file| file.seek(SeekFrom::Start(start)).map(|_| file))
        .and_then(|mut file| file.read_to_end(&mut bytes));
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => format!("(cannot read `{}`: {error})", path.display()),
    }
}

/// Runs `command` and returns its standard output, or an error with all it wrote.
fn run(command: &mut Command) -> Result<String, PgError> {
    let output = command.output().map_err(|source| io(format!("run {command:?}"), source))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err(PgError::Command {
        command: format!("{command:?}"),
        status: output.status,
        output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
    })
}

fn io(action: impl Into<String>, source: std::io::Error) -> PgError {
    PgError::Io { action: action.into(), source }
}
