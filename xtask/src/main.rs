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
        _ => Err("usage: cargo xtask <test|tidy|codegen [--check]|fuzz [--seconds N] [--dev] [target...]>\n  test     set up what the tests need (conformance tools, browser, PostgreSQL), then run every test\n  tidy     repository checks (module docs, dependency direction, generated code current)\n  codegen  regenerate crates/telemetry-proto/src/gen\n  fuzz     build the cargo-fuzz targets of fuzz/ and run each (or those named) for N seconds (default 5)".to_owned()),
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
/// installing the official receivers they check against), and the tests against PostgreSQL
/// (after installing it where it is missing): the service's end-to-end suite runs twice, on
/// SQLite and on PostgreSQL; then a short run of every fuzz target.
fn test() -> Result<(), String> {
    let root = root();
    tidy::check(&root).map_err(|problems| problems.join("\n"))?;
    codegen::run(&root, true)?;
    run(Command::new("bash").arg("tools/setup-conformance.sh").current_dir(&root))?;
    run(Command::new("bash").arg("tools/setup-browser.sh").current_dir(&root))?;
    run(Command::new("bash").arg("tools/setup-postgres.sh").current_dir(&root))?;
    let with_tools = |command: &mut Command| {
        command
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
    // The service's end-to-end suite again, on PostgreSQL.
    let mut on_postgres = Command::new("cargo");
    on_postgres
        .args(["test", "-p", "telemetry-server", "--test", "it"])
        .env("TELEMETRY_TEST_STORE", "postgres");
    with_tools(&mut on_postgres);
    run(&mut on_postgres)?;
    // A few seconds of every fuzz target, unoptimised: a cold unoptimised build of the targets
    // takes half the CPU time of an optimised one (8 against 17.5 minutes), which matters more
    // here than the executions a short run makes (about 1,300 against 20,000 in 5 seconds for
    // ingest_json). Long runs build optimised (`cargo xtask fuzz --seconds N`).
    fuzz::fuzz(&root, fuzz::DEFAULT_SECONDS, fuzz::Build { dev: true }, &[])?;
    Ok(())
}

fn run(command: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {command:?}");
    let status = command.status().map_err(|error| format!("cannot start {command:?}: {error}"))?;
    if status.success() { Ok(()) } else { Err(format!("{command:?} failed with {status}")) }
}
