//! A restart in the middle of calls (issue 9): after a graceful stop and after a SIGKILL alike,
//! the stats that an SFU sends after the restart for participants who joined before it are
//! stored (not counted `without_worker`), and their later leave produces the events and webhooks
//! it would have without the restart: `participant_left` for a participant whose connection came
//! up, `participant_connection_aborted` for one whose never did, and a participant holding two
//! guards leaves only when both are released. A late sample after a leave before the restart
//! is stored too (the closed worker is restored closed until its reap). The room open at the
//! restart counts in `livekit_room_total` again, and its end observes its duration.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ADMIN, Binary, TestApp, TestData, TestReceiver, endpoint_config};

const ROOM: &str = "RM_restart";

fn room() -> Value {
    json!({ "sid": ROOM, "name": "restart" })
}

fn participant(sid: &str) -> Value {
    json!({ "sid": sid, "identity": format!("{sid}-identity") })
}

/// Before the restart: alice joins under two guards and connects, with a published video track;
/// bob joins and never connects; carol joins and leaves.
fn before() -> Vec<Value> {
    vec![
        json!({ "nodeId": "sfu-1", "roomStarted": { "room": room() } }),
        json!({ "nodeId": "sfu-1", "participantJoined": { "room": room(), "participant": participant("PA_alice") } }),
        json!({ "nodeId": "sfu-1", "participantActive": { "room": room(), "participant": participant("PA_alice"), "guard": "media" } }),
        json!({ "nodeId": "sfu-1", "trackPublished": { "room": room(), "participantId": "PA_alice", "identity": "PA_alice-identity",
            "track": { "sid": "TR_video", "type": "VIDEO", "source": "CAMERA", "mimeType": "video/VP8" } } }),
        json!({ "nodeId": "sfu-1", "participantJoined": { "room": room(), "participant": participant("PA_bob") } }),
        json!({ "nodeId": "sfu-1", "participantJoined": { "room": room(), "participant": participant("PA_carol") } }),
        json!({ "nodeId": "sfu-1", "participantLeft": { "room": room(), "participant": participant("PA_carol") } }),
    ]
}

/// A time as protobuf JSON writes it (RFC 3339).
fn rfc3339(millis: i64) -> Value {
    serde_json::to_value(telemetry_core::UnixMillis(millis).to_timestamp()).expect("a timestamp")
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// After the restart: alice's upstream video for the last 5 seconds, then the leaves (alice's two
/// guards, bob's) and the room's end.
fn after() -> (Vec<Value>, Vec<Value>) {
    let now = now_millis();
    let stats = vec![json!({ "nodeId": "sfu-1", "trackStats": {
        "roomId": ROOM, "roomName": "restart",
        "key": { "streamType": "UPSTREAM", "participantId": "PA_alice", "trackId": "TR_video",
                 "trackSource": "CAMERA", "trackType": "VIDEO", "track": true },
        "stat": { "streams": [ { "primaryBytes": "625000", "primaryPackets": 500,
                                 "startTime": rfc3339(now - 5000), "endTime": rfc3339(now) } ] } } })];
    let leaves = vec![
        json!({ "nodeId": "sfu-1", "participantLeft": { "room": room(), "participant": participant("PA_alice") } }),
        json!({ "nodeId": "sfu-1", "participantLeft": { "room": room(), "participant": participant("PA_bob") } }),
        json!({ "nodeId": "sfu-1", "participantLeft": { "room": room(), "participant": participant("PA_alice"), "guard": "media" } }),
        json!({ "nodeId": "sfu-1", "roomEnded": { "room": room() } }),
    ];
    (stats, leaves)
}

/// The HTTP side of a running service, in process or as the real binary.
struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(base: String) -> Self {
        Self { base, http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TestApp::token(ADMIN))
            .json(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200, "POST {path}");
        response.json().await.unwrap_or(Value::Null)
    }

    async fn ingest(&self, calls: Vec<Value>) {
        let count = calls.len();
        let answer = self.post("/v1/telemetry", &json!({ "calls": calls })).await;
        assert_eq!(answer["accepted"], count, "{answer}");
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TestApp::token(ADMIN))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.json().await.expect("json")
    }

    async fn metrics(&self) -> String {
        crate::support::metrics_text(&self.http, &format!("{}/metrics", self.base)).await
    }
}

/// What the restarted service must show after the calls of [`after`]. After a SIGKILL
/// (`killed`), a webhook sent just before the kill, whose attempt the dead process could not
/// record, is sent again (at least once): each webhook is then counted once, by its id.
async fn check_after_restart(client: &Client, receiver: &TestReceiver, killed: bool) {
    let (stats, leaves) = after();
    client.ingest(stats).await;
    client.post("/v1/flush", &json!({})).await;
    let metrics = client.metrics().await;
    assert!(
        metrics.contains("rtc_telemetry_stats_samples_total{outcome=\"without_worker\"} 0"),
        "the sample found alice's restored worker:\n{metrics}"
    );
    let series =
        client.get(&format!("/v1/stats?roomSid={ROOM}&participantSid=PA_alice&from=0")).await;
    let series = series["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["direction"], "upstream");
    assert_eq!(series[0]["windows"][0]["bytes"], 625_000);

    // The room is open on its node again, and its end observes its duration.
    assert_eq!(metric(&metrics, "livekit_room_total{node_id=\"sfu-1\""), Some(1.0), "{metrics}");
    client.ingest(leaves).await;
    let ended = client.metrics().await;
    assert_eq!(metric(&ended, "livekit_room_total{node_id=\"sfu-1\""), Some(0.0), "{ended}");
    let duration = "livekit_room_duration_seconds_count{node_id=\"sfu-1\"";
    assert_eq!(metric(&ended, duration), Some(1.0), "{ended}");
    let took = metric(&ended, "livekit_room_duration_seconds_sum{node_id=\"sfu-1\"");
    assert!(took.is_some_and(|took| (0.0..600.0).contains(&took)), "{took:?}");
    let events = client.get(&format!("/v1/rooms/{ROOM}/events?limit=100")).await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|event| event["type"].as_str())
        .filter(|kind| kind.starts_with("PARTICIPANT_LEFT") || kind.contains("ABORTED"))
        .collect();
    assert_eq!(
        types,
        [
            "PARTICIPANT_CONNECTION_ABORTED", // carol, before the restart: never connected
            "PARTICIPANT_LEFT",               // alice's first guard
            "PARTICIPANT_CONNECTION_ABORTED", // bob, never connected
            "PARTICIPANT_LEFT",               // alice's second guard
        ],
        "{events}"
    );
    let detail = client.get(&format!("/v1/rooms/{ROOM}")).await;
    assert!(detail["room"]["endedAt"].is_string(), "{detail}");
    let states: Vec<(&str, &str)> = detail["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| (p["sid"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("PA_alice", "left"), ("PA_bob", "aborted"), ("PA_carol", "aborted")]);
    // The webhooks say the same, in call order.
    let received = receiver
        .wait_for(Duration::from_secs(20), |received| {
            received.iter().any(|r| r.json()["event"] == "room_finished")
        })
        .await;
    let mut seen = std::collections::HashSet::new();
    let left: Vec<(String, String)> = received
        .iter()
        .map(|r| r.json())
        .filter(|w| !killed || seen.insert(w["id"].as_str().unwrap_or_default().to_owned()))
        .filter(|w| {
            w["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("participant_") && e != "participant_joined")
        })
        .map(|w| {
            (
                w["event"].as_str().unwrap().to_owned(),
                w["participant"]["sid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pair = |event: &str, sid: &str| (event.to_owned(), sid.to_owned());
    assert_eq!(
        left,
        [
            pair("participant_connection_aborted", "PA_carol"),
            pair("participant_left", "PA_alice"),
            pair("participant_connection_aborted", "PA_bob"),
            pair("participant_left", "PA_alice"),
        ]
    );
    let live_gauge = metrics.lines().find(|line| line.starts_with("rtc_telemetry_stats_workers "));
    assert!(
        live_gauge.is_some_and(|line| !line.ends_with(" 0")),
        "{live_gauge:?}: restored workers"
    );
}

/// The value of the first sample of `metrics` whose line starts with `prefix`.
fn metric(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn endpoint(receiver: &TestReceiver) -> String {
    endpoint_config(&receiver.url("/hook"), "livekit", "webhook-secret-0123456789abcdef0123")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_carries_on_the_calls_in_progress() {
    let receiver = TestReceiver::start().await;
    let extra = endpoint(&receiver);
    let app = TestApp::start_in(TestData::new(), &extra).await;
    Client::new(app.url("")).ingest(before()).await;
    let data = app.stop().await;
    let app = TestApp::start_in(data, &extra).await;
    check_after_restart(&Client::new(app.url("")), &receiver, false).await;
}

/// A sample arriving after its participant's leave, across a graceful restart, is stored (issue
/// 10): the store keeps carol's closed worker until its reap (`worker_cleanup_wait`, 180 s here),
/// the restart restores it closed, and it collects her late sample, as without the restart,
/// with no leave reported again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_sample_after_a_leave_across_a_graceful_restart_is_stored() {
    let app = TestApp::start_in(TestData::new(), "").await;
    Client::new(app.url("")).ingest(before()).await;
    let data = app.stop().await;
    let app = TestApp::start_in(data, "").await;
    let client = Client::new(app.url(""));
    let now = now_millis();
    client
        .ingest(vec![json!({ "nodeId": "sfu-1", "trackStats": {
            "roomId": ROOM, "roomName": "restart",
            "key": { "streamType": "UPSTREAM", "participantId": "PA_carol", "trackId": "TR_carol",
                     "trackSource": "CAMERA", "trackType": "VIDEO", "track": true },
            "stat": { "streams": [ { "primaryBytes": "4000", "primaryPackets": 4,
                                     "startTime": rfc3339(now - 1000), "endTime": rfc3339(now) } ] } } })])
        .await;
    client.post("/v1/flush", &json!({})).await;
    let metrics = client.metrics().await;
    assert!(
        metrics.contains("rtc_telemetry_stats_samples_total{outcome=\"without_worker\"} 0"),
        "the late sample found carol's restored closed worker:\n{metrics}"
    );
    let series =
        client.get(&format!("/v1/stats?roomSid={ROOM}&participantSid=PA_carol&from=0")).await;
    let series = series["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["windows"][0]["bytes"], 4000);
    let events = client.get(&format!("/v1/rooms/{ROOM}/events?limit=100")).await;
    let aborted = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["type"] == "PARTICIPANT_CONNECTION_ABORTED")
        .count();
    assert_eq!(aborted, 1, "carol's leave once: {events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_carries_on_the_calls_in_progress() {
    let receiver = TestReceiver::start().await;
    let data = TestData::new();
    let config = format!(
        "[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n[stats]\nflush_interval = \"1h\"\n\
         [webhooks]\nrequest_timeout = \"2s\"\nclaim_lease = \"3s\"\n{}",
        ADMIN.0,
        ADMIN.1,
        endpoint(&receiver)
    );
    let config_path = data.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");
    let binary = Binary::start(&data, &config_path);
    // Acknowledged means committed: the kill comes right after the answer.
    Client::new(binary.url("")).ingest(before()).await;
    binary.signal("KILL");
    let (status, _) = binary.wait().await;
    assert!(!status.success());
    // The killed instance's claims on the first webhooks run out after the 3 s lease; the new one
    // (another instance id) then delivers them.
    let binary = Binary::start(&data, &config_path);
    check_after_restart(&Client::new(binary.url("")), &receiver, true).await;
}

/// The quality endpoint's configuration: the receiver's, with the quality webhooks included.
fn quality_endpoint(receiver: &TestReceiver) -> String {
    format!(
        "{}include_events = [\"quality_degraded\", \"quality_recovered\"]\n",
        endpoint_config(&receiver.url("/hook"), "livekit", "webhook-secret-0123456789abcdef0123")
    )
}

/// Dave's upstream audio over `[start, start + 5 s)`, 20 % of its packets lost if `lossy`.
fn audio_sample(start: i64, lossy: bool) -> Value {
    json!({ "nodeId": "sfu-1", "trackStats": {
        "roomId": ROOM, "roomName": "restart",
        "key": { "streamType": "UPSTREAM", "participantId": "PA_dave", "trackId": "TR_audio",
                 "trackSource": "MICROPHONE", "trackType": "AUDIO", "track": true },
        "stat": { "score": 4.5, "streams": [ { "primaryBytes": "25000", "primaryPackets": 200,
                                 "packetsLost": if lossy { 50 } else { 0 },
                                 "startTime": rfc3339(start), "endTime": rfc3339(start + 5000) } ] } } })
}

/// Before the restart: dave joins, publishes audio and sends 20 s of it with 20 % loss from
/// `base`: its `packet_loss` issue opens (after 10 s) and is open at the restart.
fn lossy_before(base: i64) -> Vec<Value> {
    let mut calls = vec![
        json!({ "nodeId": "sfu-1", "roomStarted": { "room": room() } }),
        json!({ "nodeId": "sfu-1", "participantJoined": { "room": room(), "participant": participant("PA_dave") } }),
        json!({ "nodeId": "sfu-1", "participantActive": { "room": room(), "participant": participant("PA_dave") } }),
        json!({ "nodeId": "sfu-1", "trackPublished": { "room": room(), "participantId": "PA_dave", "identity": "PA_dave-identity",
            "track": { "sid": "TR_audio", "type": "AUDIO", "source": "MICROPHONE", "mimeType": "audio/opus" } } }),
    ];
    calls.extend((0..4).map(|n| audio_sample(base + n * 5000, true)));
    calls
}

/// The issue open before the restart: its id.
async fn open_issue(client: &Client) -> String {
    let open = client.get("/v1/issues?open=true").await;
    let issues = open["issues"].as_array().expect("issues");
    assert_eq!(issues.len(), 1, "{open}");
    assert_eq!(issues[0]["kind"], "packet_loss");
    issues[0]["id"].as_str().expect("an id").to_owned()
}

/// After the restart: 15 s of clean audio close the issue that was open, with its id, its start
/// and the start of the first clean sample as its end; one `QUALITY_ISSUE_STARTED` and one
/// `QUALITY_ISSUE_ENDED` event, and its two webhooks (each id counted once).
async fn check_closed_after_restart(client: &Client, receiver: &TestReceiver, id: &str, base: i64) {
    client.ingest((4..7).map(|n| audio_sample(base + n * 5000, false)).collect()).await;
    assert_eq!(client.get("/v1/issues?open=true").await["issues"], json!([]), "closed");
    let all = client.get(&format!("/v1/issues?roomSid={ROOM}")).await;
    let issues = all["issues"].as_array().expect("issues");
    assert_eq!(issues.len(), 1, "one issue, not a second one: {all}");
    assert_eq!(issues[0]["id"], id);
    assert_eq!(issues[0]["startedAt"], rfc3339(base));
    assert_eq!(issues[0]["endedAt"], rfc3339(base + 20_000));
    let events = client.get(&format!("/v1/rooms/{ROOM}/events?limit=100")).await;
    let quality: Vec<(&str, &str)> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["type"].as_str().is_some_and(|t| t.starts_with("QUALITY_ISSUE")))
        .map(|event| {
            (event["type"].as_str().expect("type"), event["issue"]["id"].as_str().expect("id"))
        })
        .collect();
    assert_eq!(quality, [("QUALITY_ISSUE_STARTED", id), ("QUALITY_ISSUE_ENDED", id)], "{events}");
    let received = receiver
        .wait_for(Duration::from_secs(20), |received| {
            received.iter().any(|r| r.json()["event"] == "quality_recovered")
        })
        .await;
    let mut seen = std::collections::HashSet::new();
    let hooks: Vec<(String, String)> = received
        .iter()
        .map(|r| r.json())
        .filter(|w| seen.insert(w["id"].as_str().unwrap_or_default().to_owned()))
        .filter(|w| w["event"].as_str().is_some_and(|e| e.starts_with("quality_")))
        .map(|w| {
            let event = w["event"].as_str().unwrap_or_default().to_owned();
            (event, w["issue"]["id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let pair = |event: &str| (event.to_owned(), id.to_owned());
    assert_eq!(hooks, [pair("quality_degraded"), pair("quality_recovered")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_open_at_a_graceful_restart_is_closed_after_it_with_its_id() {
    let receiver = TestReceiver::start().await;
    let extra = quality_endpoint(&receiver);
    let base = (now_millis() - 120_000) / 1000 * 1000;
    let app = TestApp::start_in(TestData::new(), &extra).await;
    let client = Client::new(app.url(""));
    client.ingest(lossy_before(base)).await;
    let id = open_issue(&client).await;
    let data = app.stop().await;
    let app = TestApp::start_in(data, &extra).await;
    check_closed_after_restart(&Client::new(app.url("")), &receiver, &id, base).await;
}

/// A bad run under way at a graceful restart, 5 s of loss where `open_after` is 10 s: the
/// detectors' state the shutdown's flush stored comes back with dave's worker, so the issue
/// opens from the run's first sample, as without the restart (not from the first sample after
/// it), and closes as the one above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_run_under_way_at_a_graceful_restart_opens_its_issue_from_its_first_sample() {
    let receiver = TestReceiver::start().await;
    let extra = quality_endpoint(&receiver);
    let base = (now_millis() - 120_000) / 1000 * 1000;
    let app = TestApp::start_in(TestData::new(), &extra).await;
    let client = Client::new(app.url(""));
    let mut calls = lossy_before(base);
    calls.truncate(5);
    client.ingest(calls).await;
    assert_eq!(client.get("/v1/issues").await["issues"], json!([]), "not open yet");
    let data = app.stop().await;
    let app = TestApp::start_in(data, &extra).await;
    let client = Client::new(app.url(""));
    client.ingest((1..4).map(|n| audio_sample(base + n * 5000, true)).collect()).await;
    let id = open_issue(&client).await;
    check_closed_after_restart(&client, &receiver, &id, base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_open_at_a_sigkill_is_closed_after_the_restart_with_its_id() {
    let receiver = TestReceiver::start().await;
    let data = TestData::new();
    let config = format!(
        "[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n[stats]\nflush_interval = \"1h\"\n\
         [webhooks]\nrequest_timeout = \"2s\"\nclaim_lease = \"3s\"\n{}",
        ADMIN.0,
        ADMIN.1,
        quality_endpoint(&receiver)
    );
    let config_path = data.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");
    let base = (now_millis() - 120_000) / 1000 * 1000;
    let binary = Binary::start(&data, &config_path);
    let client = Client::new(binary.url(""));
    // Acknowledged means committed: the issue is stored open when the kill comes.
    client.ingest(lossy_before(base)).await;
    let id = open_issue(&client).await;
    binary.signal("KILL");
    let (status, _) = binary.wait().await;
    assert!(!status.success());
    let binary = Binary::start(&data, &config_path);
    check_closed_after_restart(&Client::new(binary.url("")), &receiver, &id, base).await;
}
