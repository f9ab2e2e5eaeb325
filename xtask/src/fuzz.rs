//! `cargo xtask fuzz [--seconds N] [--dev] [target...]`: builds the cargo-fuzz targets of
//! `fuzz/` (installing cargo-fuzz if `cargo fuzz` is missing) and runs each for N seconds,
//! failing on the first crash.
//!
//! cargo-fuzz needs nightly flags (`-Z`, sanitizer coverage); `RUSTC_BOOTSTRAP=1` lets the
//! stable toolchain take them. Targets are built once for all, optimised, with debug assertions
//! and overflow checks (what they look for), without a sanitizer (the project forbids `unsafe`,
//! and AddressSanitizer would lengthen the build of every dependency), with 16 codegen units so
//! a cold build stays shorter; `--dev` builds them unoptimised instead. Each run reads its seeds
//! from `fuzz/corpus/<target>/` (and `fuzz/dict/<target>.dict` when there is one) and writes
//! what it finds to `fuzz/target/corpus/<target>/`, so the committed seeds stay as they are; a
//! crash is written to `fuzz/artifacts/<target>/`.

use std::path::Path;
use std::process::Command;

use crate::run;

/// Seconds each target runs when `--seconds` is not given.
pub(crate) const DEFAULT_SECONDS: u64 = 5;

/// Parses the arguments after `fuzz` and runs.
pub(crate) fn command(root: &Path, args: &[String]) -> Result<(), String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut dev = false;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .ok_or("--seconds needs a whole number of seconds")?;
            }
            "--dev" => dev = true,
            flag if flag.starts_with('-') => return Err(format!("unknown flag `{flag}`")),
            target => targets.push(target.to_owned()),
        }
    }
    fuzz(root, seconds, Build { dev }, &targets)
}

/// How the targets are built.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Build {
    /// Unoptimised: a cold build takes less, a run does fewer executions.
    pub(crate) dev: bool,
}

/// Builds the targets and runs each of `targets` (every target if empty) for `seconds`.
pub(crate) fn fuzz(
    root: &Path,
    seconds: u64,
    build: Build,
    targets: &[String],
) -> Result<(), String> {
    let dir = root.join("fuzz");
    ensure_cargo_fuzz()?;
    let all = list(&dir)?;
    let targets: Vec<String> = if targets.is_empty() { all.clone() } else { targets.to_vec() };
    if let Some(unknown) = targets.iter().find(|target| !all.contains(target)) {
        return Err(format!("no fuzz target `{unknown}`; the targets are {}", all.join(", ")));
    }
    let flags = build_flags(build);
    let started = std::time::Instant::now();
    run(cargo_fuzz(&dir).arg("build").args(&flags))?;
    eprintln!("xtask: fuzz targets built in {:.0?}", started.elapsed());
    for target in &targets {
        let work = dir.join("target/corpus").join(target);
        std::fs::create_dir_all(&work)
            .map_err(|error| format!("cannot create {}: {error}", work.display()))?;
        let mut command = cargo_fuzz(&dir);
        command.args(["run"]).args(&flags).arg(target).arg(&work);
        let seeds = dir.join("corpus").join(target);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command.arg("--").arg(format!("-max_total_time={seconds}")).arg("-timeout=10");
        let dict = dir.join("dict").join(format!("{target}.dict"));
        if dict.is_file() {
            command.arg(format!("-dict={}", dict.display()));
        }
        run(&mut command).map_err(|error| {
            format!(
                "{error}\nfuzz target `{target}` failed; the input is in fuzz/artifacts/{target}/. \
                 Reproduce with `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {} {target} artifacts/{target}/<file>`",
                flags.join(" ")
            )
        })?;
    }
    Ok(())
}

/// The build flags, the same for `build` and `run` so the run reuses the build.
fn build_flags(build: Build) -> Vec<String> {
    let mut flags: Vec<String> =
        ["--sanitizer", "none", "--debug-assertions"].map(str::to_owned).to_vec();
    if build.dev {
        flags.push("--dev".to_owned());
    } else {
        flags.extend(["--codegen-units", "16"].map(str::to_owned));
    }
    flags
}

fn cargo_fuzz(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.arg("fuzz").env("RUSTC_BOOTSTRAP", "1").current_dir(dir);
    command
}

/// The targets, as `cargo fuzz list` names them.
fn list(dir: &Path) -> Result<Vec<String>, String> {
    let output = cargo_fuzz(dir)
        .arg("list")
        .output()
        .map_err(|error| format!("cannot run `cargo fuzz list`: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo fuzz list` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
}

/// Installs cargo-fuzz (its locked dependencies) when `cargo fuzz` is missing.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if present {
        return Ok(());
    }
    run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}
