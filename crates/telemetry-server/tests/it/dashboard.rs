//! The dashboard: `GET /v1/overview` and the page's files over the real application, and the
//! browser test.
//!
//! The browser test runs when `TELEMETRY_TEST_BROWSER=1` (set by `cargo xtask test`, after
//! `tools/setup-browser.sh` installed Debian's Chromium and `playwright-core`). It starts the
//! application, feeds it with the simulator (rooms that ended, and rooms still running) and with
//! a running room in trouble (a publisher's lossy uplink that opened and closed an issue, a
//! subscriber's jittery downlink whose issue is still open; names with markup in them), lets
//! the webhook deliveries to a failing receiver go dead, then runs `tools/browser/dashboard.mjs`,
//! which drives Chromium through sign-in, overview (with the open issues and the single-instance
//! note, and the cluster panel on a cluster's answers routed to the page), rooms, a room and its
//! track charts, the room in trouble (its report, its issues on the timeline and the charts), a
//! node and the webhooks page (retrying a dead delivery), compares what the page shows with what
//! the API answers, and saves screenshots in `target/dashboard-screenshots/`. The cluster-mode
//! test runs the script's cluster step against a real instance in cluster mode. Without the
//! variable both are skipped (the cluster test checks the API's answers only), so a bare
//! `cargo test` passes on a machine without a browser.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use telemetry_proto::v1;
use telemetry_server::simulate;
use telemetry_sim::SimulateArgs;

use crate::support::{ADMIN, INGESTER, Lifecycle, READER, TestApp, TestData};

const SETUP_HINT: &str = "run `bash tools/setup-browser.sh` (or `cargo xtask test`)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_counts_what_is_live_and_names_the_callers_roles() {
    let app = TestApp::start().await;
    // The room, three joins (one leaves again) and a published track; nobody else leaves yet.
    let calls: Vec<v1::TelemetryCall> = Lifecycle::new().calls().into_iter().take(9).collect();
    let (status, _) = app.ingest_protobuf(&v1::TelemetryBatch { calls }).await;
    assert_eq!(status, 200);

    let overview = app.get_ok("/v1/overview").await;
    assert_eq!(overview["activeRooms"], 1, "{overview}");
    assert_eq!(overview["activeParticipants"], 2, "{overview}");
    assert_eq!(overview["publishedTracks"], 1, "{overview}");
    assert!(overview["acceptedCalls"].as_u64().expect("a number") >= 9, "{overview}");
    assert_eq!(
        overview["webhooks"],
        serde_json::json!({ "pending": 0, "delivered": 0, "dead": 0 }),
        "no endpoint, no deliveries: {overview}"
    );
    assert_eq!(overview["principal"]["key"], READER.0);
    assert_eq!(overview["principal"]["roles"], serde_json::json!(["read"]));
    // Without the cluster: null, and the page asks nothing of `/v1/cluster`, which answers 404.
    assert_eq!(overview["cluster"], Value::Null, "{overview}");
    let (status, body) = app.get("/v1/cluster").await;
    assert_eq!(status, 404, "{body}");

    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("request").status().as_u16()
    };
    assert_eq!(status(app.client.get(app.url("/v1/overview"))).await, 401);
    assert_eq!(
        status(app.client.get(app.url("/v1/overview")).bearer_auth("not-a-token")).await,
        401
    );
    assert_eq!(
        status(app.client.get(app.url("/v1/overview")).bearer_auth(TestApp::token(INGESTER))).await,
        403
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_at_the_root_without_a_token() {
    let app = TestApp::start().await;
    let response = app.client.get(app.url("/")).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"].to_str().expect("ascii").contains("script-src 'self'")
    );
    let body = response.text().await.expect("body");
    assert!(body.contains("/assets/app.js"), "{body}");
    let response = app.client.get(app.url("/assets/app.js")).send().await.expect("request");
    assert_eq!(response.headers()["content-type"], "text/javascript; charset=utf-8");
    let missing = app.client.get(app.url("/assets/missing.js")).send().await.expect("request");
    assert_eq!(missing.status().as_u16(), 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_the_overview_names_the_instance_and_the_cluster_answers_its_partitions() {
    let nats = telemetry_test_support::nats::NatsServer::shared();
    let config = format!(
        "[cluster]\nenabled = true\nnats_url = \"{}\"\nstream = \"DASHBOARD\"\n\
         subject_prefix = \"dashboard.calls\"\npartitions = 4\ninstance_id = \"dash-a\"\n\
         lease = \"2s\"\n",
        nats.url()
    );
    let app = TestApp::start_in(TestData::on_postgres(), &config).await;
    // What the page needs to know that it runs in a cluster, and to draw every partition.
    let overview = app.get_ok("/v1/overview").await;
    assert_eq!(
        overview["cluster"],
        serde_json::json!({ "instanceId": "dash-a", "partitions": 4 }),
        "{overview}"
    );
    // The instances and partitions it draws: this one instance holds all four once its first
    // heartbeats took them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = app.get_ok("/v1/cluster").await;
        if status["instances"][0]["partitions"] == serde_json::json!([0, 1, 2, 3]) {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "the partitions are not held: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["partitions"], 4, "{status}");
    assert_eq!(status["instances"].as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status["instances"][0]["id"], "dash-a", "{status}");
    let last_seen = status["instances"][0]["lastSeen"].as_str().expect("lastSeen");
    assert!(humantime::parse_rfc3339_weak(last_seen).is_ok(), "{status}");
    // And the page draws them: the browser's step C, when the browser test runs.
    if std::env::var("TELEMETRY_TEST_BROWSER").as_deref() == Ok("1") {
        run_script(&tools(), &app, &[("DASHBOARD_CLUSTER", "1")]).await;
    }
    app.stop().await;
}

// --- The browser test ---

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Tools {
    chromium: PathBuf,
    script: PathBuf,
}

/// Finds Chromium, Node and `playwright-core`, or fails saying how to install them.
fn tools() -> Tools {
    let chromium = std::env::var_os("TELEMETRY_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "TELEMETRY_TEST_BROWSER=1 but there is no Chromium at `{}`: {SETUP_HINT}",
        chromium.display()
    );
    let browser = workspace_root().join("tools/browser");
    assert!(
        browser.join("node_modules/playwright-core/package.json").exists(),
        "TELEMETRY_TEST_BROWSER=1 but `tools/browser/node_modules/playwright-core` is missing: {SETUP_HINT}"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "TELEMETRY_TEST_BROWSER=1 but `node` does not run: install Node.js 20 or later, then {SETUP_HINT}"
    );
    Tools { chromium, script: browser.join("dashboard.mjs") }
}

/// A webhook receiver that answers 503 until `accept` is set, then 200.
struct Receiver {
    url: String,
    accept: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
}

async fn receiver() -> Receiver {
    let accept = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (flag, count) = (accept.clone(), received.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (flag, count) = (flag.clone(), count.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                if flag.load(Ordering::SeqCst) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { url, accept, received }
}

/// Feeds the application: rooms that ran and ended (the simulator over HTTP, as fast as the
/// service takes it), and rooms still running (a longer simulation cut off at now).
async fn feed(app: &TestApp) {
    let base = SimulateArgs {
        url: app.url(""),
        api_key: ADMIN.0.to_owned(),
        api_secret: ADMIN.1.to_owned(),
        speed: 0.0,
        quiet: true,
        ..SimulateArgs::default()
    };
    let ended = SimulateArgs {
        seed: 1,
        rooms: 2,
        participants: 3,
        duration: Duration::from_secs(120),
        ..base.clone()
    };
    let summary = simulate::run(ended).await.expect("simulate");
    assert!(summary.accepted > 0 && summary.rejected == 0, "{summary:?}");

    // Twelve minutes that end nine minutes from now: the first three are sent, so these rooms
    // are still running, with participants joined and tracks published.
    let running = SimulateArgs {
        seed: 2,
        rooms: 3,
        participants: 4,
        duration: Duration::from_secs(720),
        node_id: "sfu-sim-2".to_owned(),
        ..base
    };
    // They are sent 30 simulated seconds at a time with a flush after each, as a service with a
    // 30 s flush interval would store them: every series gets a window per 30 s to chart.
    let now = telemetry_core::Clock::now(&telemetry_core::SystemClock);
    let millis = |call: &v1::TelemetryCall| {
        call.at.as_ref().map_or(now.0, |at| at.seconds * 1000 + i64::from(at.nanos / 1_000_000))
    };
    let calls: Vec<v1::TelemetryCall> = telemetry_sim::generate(&running, now.plus_millis(540_000))
        .into_iter()
        .filter(|call| millis(call) <= now.0)
        .collect();
    let first = calls.first().map_or(now.0, millis);
    for part in calls.chunk_by(|a, b| (millis(a) - first) / 30_000 == (millis(b) - first) / 30_000)
    {
        for chunk in part.chunks(500) {
            let (status, body) =
                app.ingest_protobuf(&v1::TelemetryBatch { calls: chunk.to_vec() }).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["rejected"], serde_json::json!([]), "{body}");
        }
        app.flush().await;
    }
}

/// The room in trouble: its sid, and caller-chosen names with markup in them (the page must show
/// them as text).
const TROUBLE_ROOM: &str = "RM_trouble";
const TROUBLE_NAME: &str = "<img src=x data-injected=room> trouble";
const TROUBLE_PUBLISHER: (&str, &str) = ("PA_tpub", "<b data-injected=identity>ana</b>");
const TROUBLE_SUBSCRIBERS: [(&str, &str); 2] = [("PA_tsub1", "bo"), ("PA_tsub2", "cy")];
const TROUBLE_TRACK: &str = "TR_tmic";

fn rfc3339(millis: i64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).expect("after 1970")),
    )
    .to_string()
}

/// One Opus sample over `[start, end)` ms: 50 packets a second, `lost_pct` of them lost, jitter
/// `jitter_ms`.
fn trouble_sample(
    participant: &str,
    stream: &str,
    start: i64,
    end: i64,
    lost_pct: i64,
    jitter_ms: i64,
) -> Value {
    let packets = (end - start) / 20;
    let lost = packets * lost_pct / 100;
    serde_json::json!({ "at": rfc3339(end), "trackStats": {
        "roomId": TROUBLE_ROOM, "roomName": TROUBLE_NAME,
        "key": { "participantId": participant, "trackId": TROUBLE_TRACK, "streamType": stream,
                 "track": true, "trackType": "AUDIO", "trackSource": "MICROPHONE" },
        "stat": { "mime": "audio/opus", "score": 4.1, "streams": [{
            "primaryPackets": packets - lost, "primaryBytes": ((packets - lost) * 80).to_string(),
            "packetsLost": lost, "jitter": jitter_ms * 1000, "rtt": 70,
            "startTime": rfc3339(start), "endTime": rfc3339(end) }] } } })
}

/// Feeds a room still running, its 150 s up to now in samples every 5 s: the publisher's uplink
/// loses 20 % from 20 s to 70 s (its subscribers receive the loss: one upstream `packet_loss`
/// issue, opened and closed, two affected), and the first subscriber's downlink has 80 ms of
/// jitter from 100 s on (a downstream `jitter` issue, still open). Stored 30 s at a time with a
/// flush after each, so every series has windows to chart.
async fn feed_trouble(app: &TestApp) {
    let now = telemetry_core::Clock::now(&telemetry_core::SystemClock).0;
    let base = (now - 150_000) / 1000 * 1000;
    let room = serde_json::json!({ "sid": TROUBLE_ROOM, "name": TROUBLE_NAME });
    let everyone = std::iter::once(TROUBLE_PUBLISHER).chain(TROUBLE_SUBSCRIBERS);
    let mut calls =
        vec![serde_json::json!({ "at": rfc3339(base), "roomStarted": { "room": room } })];
    for (position, (sid, identity)) in everyone.enumerate() {
        let participant = serde_json::json!({ "sid": sid, "identity": identity });
        let joined = base + 200 * position as i64;
        calls.push(serde_json::json!({ "at": rfc3339(joined), "participantJoined": { "room": room, "participant": participant } }));
        calls.push(serde_json::json!({ "at": rfc3339(joined + 1200), "participantActive": { "room": room, "participant": participant } }));
    }
    calls.push(serde_json::json!({ "at": rfc3339(base + 2000), "trackPublished": { "room": room,
        "participantId": TROUBLE_PUBLISHER.0, "identity": TROUBLE_PUBLISHER.1,
        "track": { "sid": TROUBLE_TRACK, "type": "AUDIO", "mimeType": "audio/opus" } } }));
    let (status, body) = app.ingest_json(&serde_json::json!({ "calls": calls })).await;
    assert_eq!(status, 200, "{body}");
    for part in 0..5 {
        let mut calls = Vec::new();
        for step in part * 6..(part + 1) * 6 {
            let (start, end) = (base + step * 5000, base + (step + 1) * 5000);
            let offset = start - base;
            let loss = if (20_000..70_000).contains(&offset) { 20 } else { 0 };
            calls.push(trouble_sample(TROUBLE_PUBLISHER.0, "UPSTREAM", start, end, loss, 4));
            for (index, (sid, _)) in TROUBLE_SUBSCRIBERS.iter().enumerate() {
                let jitter = if index == 0 && offset >= 100_000 { 80 } else { 5 };
                calls.push(trouble_sample(sid, "DOWNSTREAM", start, end, loss, jitter));
            }
        }
        let (status, body) = app.ingest_json(&serde_json::json!({ "calls": calls })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rejected"], serde_json::json!([]), "{body}");
        app.flush().await;
    }
    let issues = app.get_ok(&format!("/v1/issues?roomSid={TROUBLE_ROOM}")).await;
    let kinds: Vec<(&str, &str, bool)> = issues["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|issue| {
            (
                issue["kind"].as_str().expect("kind"),
                issue["direction"].as_str().expect("direction"),
                issue.get("endedAt").is_some(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("packet_loss", "upstream", true), ("jitter", "downstream", false)],
        "the room in trouble: {issues}"
    );
}

/// Waits until no delivery is pending and one is dead, for the page to retry; says why not
/// otherwise (the browser test's webhook step then fails with its own message).
async fn wait_for_dead_deliveries(app: &TestApp) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, dead) = app.get("/v1/webhooks/deliveries?status=dead").await;
        if status == 404 {
            return Err("the webhook API answers 404".to_owned());
        }
        assert_eq!(status, 200, "{dead}");
        let (_, pending) = app.get("/v1/webhooks/deliveries?status=pending").await;
        let count = |body: &Value| body["deliveries"].as_array().map_or(0, Vec::len);
        if count(&dead) > 0 && count(&pending) == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "deliveries to a failing receiver are not dead after 15 s: {} pending, {} dead",
                count(&pending),
                count(&dead)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser_shows_what_the_api_answers() {
    if std::env::var("TELEMETRY_TEST_BROWSER").as_deref() != Ok("1") {
        eprintln!(
            "skipped: the dashboard's browser test runs with TELEMETRY_TEST_BROWSER=1, after \
             `bash tools/setup-browser.sh`; `cargo xtask test` does both"
        );
        return;
    }
    let tools = tools();
    let started = tokio::time::Instant::now();
    let receiver = receiver().await;
    // Two quick attempts, then dead; only `room_started`, so a few deliveries.
    let extra = format!(
        r#"
[webhooks]
retry_schedule = ["50ms"]
[[webhooks.endpoints]]
url = "{}"
signing = "livekit"
api_key = "{}"
secret = "{}"
include_events = ["room_started"]
"#,
        receiver.url, ADMIN.0, ADMIN.1
    );
    let app = TestApp::start_with(&extra).await;
    feed(&app).await;
    feed_trouble(&app).await;
    match wait_for_dead_deliveries(&app).await {
        Ok(()) => {
            assert!(receiver.received.load(Ordering::SeqCst) > 0, "the receiver saw no attempt");
        }
        Err(why) => eprintln!("dashboard: {why}; the browser test's webhook step will fail"),
    }
    // A retry from the page now succeeds.
    receiver.accept.store(true, Ordering::SeqCst);
    eprintln!("dashboard: fed in {:.1} s; starting the browser", started.elapsed().as_secs_f64());

    run_script(&tools, &app, &[("DASHBOARD_TROUBLE_ROOM", TROUBLE_ROOM)]).await;
    eprintln!("dashboard: browser test done in {:.1} s in all", started.elapsed().as_secs_f64());
    app.stop().await;
}

/// Runs `tools/browser/dashboard.mjs` against `app` with `extra` environment variables, and
/// fails unless every check of it passed (within 120 s).
async fn run_script(tools: &Tools, app: &TestApp, extra: &[(&str, &str)]) {
    let screenshots = workspace_root().join("target/dashboard-screenshots");
    let mut child = std::process::Command::new("node")
        .arg(&tools.script)
        .arg(app.url(""))
        .env("DASHBOARD_TOKEN", TestApp::token(ADMIN))
        .env("DASHBOARD_READER_TOKEN", TestApp::token(READER))
        .env("DASHBOARD_INGEST_TOKEN", TestApp::token(INGESTER))
        .env("DASHBOARD_SCREENSHOTS", &screenshots)
        .env("DASHBOARD_CHROMIUM", &tools.chromium)
        .envs(extra.iter().copied())
        .current_dir(workspace_root().join("tools/browser"))
        .spawn()
        .expect("start node");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser test did not finish within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("dashboard: screenshots in {}", screenshots.display());
    assert!(
        status.success(),
        "tools/browser/dashboard.mjs failed ({status}); see its output above"
    );
}
