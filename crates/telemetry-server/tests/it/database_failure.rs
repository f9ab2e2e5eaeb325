//! The database fails: PostgreSQL unreachable at start is a clear error and a non-zero exit;
//! PostgreSQL lost while running makes readiness fail and ingest answer 503 instead of accepting
//! what it cannot store, loses nothing already acknowledged, and everything resumes by itself
//! when PostgreSQL is back. These tests start a PostgreSQL server of their own (they stop it), so
//! they run in the suite's PostgreSQL pass (`TELEMETRY_TEST_STORE=postgres`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use telemetry_test_support::postgres::PgServer;

use crate::support::{ADMIN, TestApp, TestData, backend};

fn postgres_pass() -> bool {
    if backend() == telemetry_store::Backend::Postgres {
        true
    } else {
        eprintln!("skipped: runs in the PostgreSQL pass (TELEMETRY_TEST_STORE=postgres)");
        false
    }
}

#[test]
fn an_unreachable_database_at_start_is_a_clear_error_and_a_failed_exit() {
    if !postgres_pass() {
        return;
    }
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rtc-telemetry"))
        .args(["serve", "--dev", "--http-bind", "127.0.0.1:0", "--grpc-bind", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RTC_TELEMETRY_STORE__BACKEND", "postgres")
        .env("RTC_TELEMETRY_STORE__URL", format!("postgres://postgres@127.0.0.1:{port}/nowhere"))
        .output()
        .expect("run the binary");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it must not start: {log}");
    assert!(log.contains("opening the store (PostgreSQL at"), "says what failed: {log}");
    assert!(log.contains("unavailable"), "says why: {log}");
    assert!(started.elapsed() < Duration::from_secs(60), "fails instead of hanging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_answers_503_loses_nothing_acknowledged_and_recovers() {
    if !postgres_pass() {
        return;
    }
    let mut server = PgServer::start().expect("a PostgreSQL server of the test's own");
    let url = server.create_database().expect("a database");
    let data = TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url) };
    // Requests accepted just before the loss wait at most this long for their commit, then are
    // answered 503 (accepted, not confirmed): the load goes on sooner.
    let app = TestApp::start_in(data, "[http]\nrequest_timeout = \"2s\"\n").await;
    let client = reqwest::Client::new();
    let readyz = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.map(|response| response.status().as_u16()).unwrap_or(0)
    };
    assert_eq!(readyz(client.clone(), app.url("/readyz")).await, 200);

    // Load: one lifecycle call per request, each a new room, counted when acknowledged.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acknowledged, refused, stop) = (acknowledged.clone(), refused.clone(), stop.clone());
        let (client, url, token) =
            (client.clone(), app.url("/v1/telemetry"), TestApp::token(ADMIN));
        tokio::spawn(async move {
            let mut room = 0u64;
            while !stop.load(Ordering::SeqCst) {
                room += 1;
                let body = json!({ "calls": [{ "roomStarted": { "room": {
                    "sid": format!("RM_failure{room:06}"), "name": format!("failure-{room}") } } }] });
                let status = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
                    .unwrap_or(0);
                match status {
                    200 => {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    503 => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("ingest answered {other}"),
                }
            }
            room
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_outage = acknowledged.load(Ordering::SeqCst);
    assert!(before_outage > 0, "load runs");

    let mut server = tokio::task::spawn_blocking(move || {
        server.stop().expect("stop PostgreSQL");
        server
    })
    .await
    .expect("join");
    // Within a few pings: not ready, and ingest refuses.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while readyz(client.clone(), app.url("/readyz")).await != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness still passes without the database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_before = refused.load(Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while refused.load(Ordering::SeqCst) == refused_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest still accepts without the database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = app.ingest_json(&json!({ "calls": [] })).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("store is unavailable"), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut server = tokio::task::spawn_blocking(move || {
        server.restart().expect("restart PostgreSQL");
        server
    })
    .await
    .expect("join");
    // Back by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while readyz(client.clone(), app.url("/readyz")).await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "not ready again after PostgreSQL is back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_outage = acknowledged.load(Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::SeqCst) < after_outage + 20 {
        assert!(tokio::time::Instant::now() < deadline, "ingest did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    load.await.expect("load");

    // Every acknowledged call is stored.
    let acknowledged = acknowledged.load(Ordering::SeqCst);
    let store = app.data.open_store().await;
    let counts = store.counts().await.expect("counts");
    assert!(
        counts.rooms >= acknowledged,
        "every acknowledged room is stored: {} stored, {acknowledged} acknowledged",
        counts.rooms
    );
    assert!(
        store.room("RM_refused").await.expect("room").is_none(),
        "a refused call takes no effect"
    );
    store.close().await;
    let rooms: Value = app.get_ok("/v1/rooms?limit=1").await;
    assert!(rooms["rooms"].as_array().is_some_and(|rooms| !rooms.is_empty()));
    app.stop().await;
    server.stop().expect("stop");
}

/// The ambiguous commit, end to end: the consumer's write of a node's rate cells commits, but
/// the connection is lost before the answer arrives (a proxy between the service and PostgreSQL
/// cuts it), so the write is answered failed and retried. The write's mark makes the retry write
/// nothing: every byte the node sent is in its rates once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_commit_answer_is_lost_counts_its_rates_once() {
    use telemetry_core::proto as lk;
    use telemetry_proto::v1;
    use telemetry_proto::v1::telemetry_call::Call as Member;
    use telemetry_test_support::proxy::LoseCommitAnswer;

    use crate::support::{Lifecycle, VIDEO};
    if !postgres_pass() {
        return;
    }
    // The node whose stats calls' rate cells are cut; the lifecycle's other calls come from
    // another, so only writes that hold those cells (or touch that node) carry its name.
    const NODE: &str = "sfu-answer-lost";
    let url = PgServer::shared().create_database().expect("a database");
    let (base, database) = url.rsplit_once('/').expect("a database name");
    let (host, port) = base.rsplit_once(':').expect("a port");
    let proxy = LoseCommitAnswer::start(port.parse().expect("port")).expect("proxy");
    let proxied = format!("{host}:{}/{database}", proxy.port());
    let data = TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(proxied) };
    let app = TestApp::start_in(data, "").await;

    let mut calls = Lifecycle::new().calls();
    let mut upstream = 0;
    for call in &mut calls {
        if let Some(Member::TrackStats(stats)) = &mut call.call {
            call.node_id = NODE.into();
            if stats.key.as_ref().is_some_and(|key| {
                key.stream_type == lk::StreamType::Upstream as i32 && key.track_id == VIDEO
            }) {
                let stat = stats.stat.as_ref().expect("stat");
                upstream += stat.streams.iter().map(|stream| stream.primary_bytes).sum::<u64>();
            }
        }
    }
    assert!(upstream > 0, "the lifecycle sends upstream stats");
    proxy.arm(NODE.as_bytes());
    let (status, body) = app.ingest_protobuf(&v1::TelemetryBatch { calls }).await;
    assert_eq!(status, 200, "{body}");

    // The write with the node's cells loses its answer, and is retried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let failures = app
            .metrics_text()
            .await
            .lines()
            .find_map(|line| line.strip_prefix("rtc_telemetry_store_write_failures_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if !proxy.armed() && failures >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no commit answer was lost");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A flush's outputs are stored after every earlier write, the retry included.
    app.flush().await;
    let rates = app.get_ok(&format!("/v1/nodes/{NODE}/rates?window=5s")).await;
    let points = rates["points"].as_array().expect("points");
    let total_in: f64 = points.iter().map(|p| p["bpsIn"].as_f64().unwrap_or(0.0) * 5.0 / 8.0).sum();
    assert!(
        (total_in - upstream as f64).abs() < 1.0,
        "every upstream byte once in the node rates: {total_in} of {upstream}"
    );
    app.stop().await;
}
