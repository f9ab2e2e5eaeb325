//! Graceful shutdown of the real binary: SIGTERM during simulated load loses no accepted call.
//! Every lifecycle call the service accepted is a stored event, and every stats sample it
//! accepted is counted in a stored window.

use std::time::Duration;

use crate::support::{ADMIN, Binary, TestData};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_no_accepted_call() {
    let data = TestData::new();
    // The test configuration as a file, so the binary reads it as a user would. Quality
    // detection is off: the simulator's bad spells would add issue events beside the events of
    // the calls, which this test counts one for one.
    let config = format!(
        "[stats]\nflush_interval = \"1h\"\n[quality]\nenabled = false\n[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n",
        ADMIN.0, ADMIN.1
    );
    let config_path = data.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");
    let binary = Binary::start(&data, &config_path);

    let args = telemetry_sim::SimulateArgs {
        url: binary.url(""),
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
    binary.signal("TERM");
    let summary = simulation.await.expect("join").expect("simulation");
    let (status, log) = binary.wait().await;
    assert!(status.success(), "the service exited with {status}: {log}");
    assert!(summary.accepted > 1000, "load was running when SIGTERM came: {summary:?}");
    assert!(summary.unsent > 0, "SIGTERM came before the end of the simulation: {summary:?}");

    let store = data.open_store().await;
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
