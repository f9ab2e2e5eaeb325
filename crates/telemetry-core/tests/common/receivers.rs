//! Finding and running the webhook receivers we did not write (`tools/conformance/*`): LiveKit's
//! `WebhookReceiver` in Python and Node, and the Standard Webhooks library. Shared by the core's
//! conformance tests and the server's end-to-end ones (`#[path]`-included by both).
//!
//! The receivers are installed by `tools/setup-conformance.sh` (`cargo xtask test` runs it).
//! The tests that use them run when `TELEMETRY_TEST_CONFORMANCE=1`; they then find the venv's
//! Python through `TELEMETRY_TEST_PYTHON` and the scripts and `node_modules` through
//! `TELEMETRY_TEST_CONFORMANCE_DIR` (defaults: `tools/.venv/bin/python` and `tools/conformance`),
//! and fail if a tool is missing. Without the variable they are skipped.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub(crate) const SETUP_HINT: &str = "run tools/setup-conformance.sh (or `cargo xtask test`)";

pub(crate) struct Tools {
    pub(crate) python: PathBuf,
    pub(crate) dir: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tools when the conformance tests are enabled; `None` (after saying so) when skipped.
pub(crate) fn tools() -> Option<Tools> {
    if std::env::var("TELEMETRY_TEST_CONFORMANCE").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set TELEMETRY_TEST_CONFORMANCE=1 to check against the official receivers"
        );
        return None;
    }
    let root = workspace_root();
    let from_env = |name: &str, default: PathBuf| {
        std::env::var_os(name).filter(|value| !value.is_empty()).map_or(default, PathBuf::from)
    };
    // Absolute (a child's relative program path is ambiguous once its directory is set), but
    // not canonical: the venv's `python` is a symlink that must stay the venv's.
    let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
    let tools = Tools {
        python: absolute(from_env("TELEMETRY_TEST_PYTHON", root.join("tools/.venv/bin/python"))),
        dir: absolute(from_env("TELEMETRY_TEST_CONFORMANCE_DIR", root.join("tools/conformance"))),
    };
    let required = [
        ("the venv's Python (TELEMETRY_TEST_PYTHON)", tools.python.clone()),
        ("verify_livekit.py", tools.dir.join("verify_livekit.py")),
        ("verify_livekit.mjs", tools.dir.join("verify_livekit.mjs")),
        ("verify_standard.py", tools.dir.join("verify_standard.py")),
        ("npm package livekit-server-sdk", tools.dir.join("node_modules/livekit-server-sdk")),
    ];
    for (what, path) in required {
        assert!(path.exists(), "{what} is missing at {}: {SETUP_HINT}", path.display());
    }
    Some(tools)
}

/// Runs one receiver script over every case at once and returns its results, in case order.
pub(crate) fn run_receiver(
    program: &Path,
    script: &Path,
    dir: &Path,
    cases: &[Value],
) -> Vec<Value> {
    let mut child = Command::new(program)
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot start {}: {error}: {SETUP_HINT}", program.display())
        });
    // The scripts read all of stdin before writing anything, so this cannot deadlock.
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&serde_json::to_vec(cases).expect("cases serialize"))
        .expect("write the cases");
    let output = child.wait_with_output().expect("wait for the receiver");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {} failed with {}: {stderr}\n{SETUP_HINT} if a package is missing",
        program.display(),
        script.display(),
        output.status
    );
    let results: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON result per line"))
        .collect();
    assert_eq!(results.len(), cases.len(), "one result per case; stderr: {stderr}");
    for (case, result) in cases.iter().zip(&results) {
        assert_eq!(case["name"], result["name"], "results in case order");
    }
    results
}
