//! Graceful shutdown of the real binary: SIGTERM during simulated load loses no accepted call.
//! Every lifecycle call the service accepted is a stored event, and every stats sample it
//! accepted is counted in a stored window.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use telemetry_store::Store as _;
use telemetry_store::sqlite::{SqliteConfig, SqliteStore};

use crate::support::{ADMIN, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_no_accepted_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The test configuration as a file, so the binary reads it as a user would.
    let _ = test_config(dir.path(), "");
    let config = format!(
        "[stats]\nflush_interval = \"1h\"\n[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n",
        ADMIN.0, ADMIN.1
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtc-telemetry"))
        .args(["serve", "--http-bind", "127.0.0.1:0", "--grpc-bind", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(dir.path())
        .env("RTC_TELEMETRY_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    // Find the HTTP address in the log, then keep draining the log so the child never blocks.
    let mut log = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let mut seen = String::new();
    let http = loop {
        line.clear();
        assert!(
            log.read_line(&mut line).expect("log") > 0,
            "the service exited before serving: {seen}"
        );
        seen.push_str(&line);
        if let Some(rest) = line.split("http=").nth(1) {
            break rest.split_whitespace().next().expect("address").to_owned();
        }
    };
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut log, &mut rest);
        rest
    });

    let args = telemetry_server::simulate::SimulateArgs {
        url: format!("http://{http}"),
        api_key: ADMIN.0.to_owned(),
        api_secret: ADMIN.1.to_owned(),
        rooms: 12,
        participants: 8,
        duration: Duration::from_secs(3600),
        speed: 0.0,
        batch_size: 200,
        ..Default::default()
    };
    let simulation = tokio::spawn(telemetry_server::simulate::run(args));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let summary = simulation.await.expect("join").expect("simulation");
    let status =
        tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    let log = drain.join().expect("log");
    assert!(status.success(), "the service exited with {status}: {log}");
    assert!(summary.accepted > 1000, "load was running when SIGTERM came: {summary:?}");
    assert!(summary.unsent > 0, "SIGTERM came before the end of the simulation: {summary:?}");

    let store = SqliteStore::open(SqliteConfig::in_dir(dir.path())).expect("open the store");
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        counts.events, summary.accepted_events,
        "every accepted lifecycle call is a stored event: {summary:?}"
    );
    assert_eq!(
        counts.samples, summary.accepted_stats,
        "every accepted sample is in a stored window: {summary:?}"
    );
}
