//! The watchdog: a small `sh` process per server that stops the server and removes its folder
//! once the test process is gone, however it went (a panic, `exit`, SIGKILL, or a server in a
//! `static` that is never dropped).
//!
//! It waits on a pipe: the test process holds the write end (close-on-exec, so no other child
//! inherits it) and never writes, so `read` returns exactly when the kernel closes it, at the
//! test process's end. Then the watchdog reads the postmaster's pid from `postmaster.pid`
//! (so it follows restarts), asks for a fast shutdown (SIGINT), waits up to 10 seconds before
//! a SIGKILL, and removes the folder. While the server is alive and owned, the test process
//! kills the watchdog (SIGKILL) before stopping the server itself.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::postgres::PgError;

/// The watchdog, as a POSIX shell script; `$1` is the data folder, `$2` the folder to remove.
///
/// It ignores the signals a terminal or a test runner sends to the whole process group
/// (Ctrl-C among them): the test process dies of them, and the watchdog is what cleans up after
/// it. The postmaster is only signalled while `/proc/<pid>/comm` says it is a `postgres`, so a
/// stale `postmaster.pid` (after [`super::PgServer::kill`]) never hits a recycled pid.
const SCRIPT: &str = r#"
trap '' INT HUP QUIT TERM PIPE
data="$1"
folder="$2"
read -r _ignored
pidfile="$data/postmaster.pid"
if [ -r "$pidfile" ]; then
    read -r pid < "$pidfile"
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
        kill -INT "$pid" 2>/dev/null
        tries=0
        while [ -e "$pidfile" ] && kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 100 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        if [ -e "$pidfile" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
            kill -KILL "$pid" 2>/dev/null
            sleep 0.5
        fi
    fi
fi
rm -rf -- "$folder"
"#;

/// Starts the watchdog of the server whose data folder is `data_dir`, inside `folder`. The
/// returned child's stdin is the pipe: keep the child (and so the pipe) for the server's life.
pub(crate) fn spawn(data_dir: &Path, folder: &Path) -> Result<Child, PgError> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("telemetry-pg-watchdog")
        .arg(data_dir)
        .arg(folder)
        .stdin(Stdio::piped())
        // Nothing that reads this process's output may wait for the watchdog to finish.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| PgError::Io {
            action: "start the server's watchdog (`/bin/sh`)".to_owned(),
            source,
        })
}
