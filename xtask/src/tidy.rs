//! Repository checks that keep docs and structure honest: every Rust module starts with a `//!`
//! comment, the pure-logic crates (the core and the Janus adapter) never depend on an async
//! runtime, no module of the core below the service imports from it, and the simulator
//! generates calls without sending them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Returns every problem found.
pub(crate) fn check(root: &Path) -> Result<(), Vec<String>> {
    let mut problems = module_docs(root);
    for krate in PURE_CRATES {
        problems.extend(has_no_runtime(root, krate));
    }
    problems.extend(core_modules_below_service(root));
    problems.extend(simulator_does_no_io(root));
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("target" | "node_modules" | "gen")
            ) {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn module_docs(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    rust_files(&root.join("fuzz"), &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let first = text.lines().find(|line| !line.trim().is_empty())?;
            (!first.starts_with("//!")).then(|| {
                format!("{}: the module does not start with a `//!` comment", path.display())
            })
        })
        .collect()
}

/// The crates that are pure logic: no IO, no async runtime.
const PURE_CRATES: &[&str] = &["telemetry-core", "telemetry-janus"];

fn has_no_runtime(root: &Path, krate: &str) -> Vec<String> {
    let output = Command::new("cargo")
        .args(["tree", "--quiet", "--edges", "normal", "-p", krate, "-i", "tokio"])
        .current_dir(root)
        .output();
    match output {
        Ok(output) if String::from_utf8_lossy(&output.stdout).trim().is_empty() => Vec::new(),
        Ok(output) => vec![format!(
            "{krate} depends on tokio; it is pure logic and must not need an async runtime:\n{}",
            String::from_utf8_lossy(&output.stdout)
        )],
        Err(error) => vec![format!("cannot run `cargo tree`: {error}")],
    }
}

/// The core's modules that sit above `service` and may use it: the crate root and `api` (LiveKit's
/// method names over the service). Every other module (`metrics`, `workers`, `nodes`, ...) is used
/// by the service and must not import from it, so the core has no circle.
const ABOVE_SERVICE: [&str; 3] = ["lib.rs", "api.rs", "service.rs"];

fn core_modules_below_service(root: &Path) -> Vec<String> {
    let source = root.join("crates/telemetry-core/src");
    let mut files = Vec::new();
    rust_files(&source, &mut files);
    files
        .into_iter()
        .filter(|path| {
            let relative = path.strip_prefix(&source).unwrap_or(path);
            !relative.starts_with("service")
                && !ABOVE_SERVICE.iter().any(|above| relative == Path::new(above))
        })
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            text.contains("crate::service").then(|| {
                format!(
                    "{}: imports from `crate::service`; only {ABOVE_SERVICE:?} may, the core's other modules are below it",
                    path.display()
                )
            })
        })
        .collect()
}

/// What the simulator must not depend on: it generates calls, and the server's `simulate` and
/// `demo` commands send them.
const NOT_FOR_THE_SIMULATOR: [&str; 4] = ["telemetry-server", "telemetry-store", "reqwest", "axum"];

fn simulator_does_no_io(root: &Path) -> Vec<String> {
    let output = Command::new("cargo")
        .args(["tree", "--quiet", "--edges", "normal", "-p", "telemetry-sim"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(root)
        .output();
    match output {
        Ok(output) if output.status.success() => {
            let tree = String::from_utf8_lossy(&output.stdout);
            tree.lines()
                .filter_map(|line| line.split(' ').next())
                .filter(|name| NOT_FOR_THE_SIMULATOR.contains(name))
                .map(|name| {
                    format!("telemetry-sim depends on `{name}`; the simulator must do no IO")
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        }
        Ok(output) => vec![format!(
            "`cargo tree -p telemetry-sim` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )],
        Err(error) => vec![format!("cannot run `cargo tree`: {error}")],
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repository_is_tidy() {
        let root = crate::root();
        if let Err(problems) = super::check(&root) {
            panic!("{}", problems.join("\n"));
        }
    }
}
