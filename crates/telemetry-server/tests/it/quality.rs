//! Call quality end to end: a publisher's lossy uplink, reported over HTTP as samples, becomes one
//! upstream issue listing its two subscribers, as `QUALITY_ISSUE_STARTED`/`ENDED` events in the
//! room's events, as `quality_degraded`/`quality_recovered` webhooks to the endpoint that
//! includes them (and to no other), verified by LiveKit's receivers when the conformance tools
//! are set up, in `GET /v1/issues`, and in the room's report, whose figures match the stored
//! windows and whose webhook counts match the deliveries made; the `room_report` webhook carries
//! the report the API serves for the finished room. A simulated lossy uplink (`simulate
//! --trouble`) gives the same: one upstream issue per troubled track, its subscribers affected;
//! a simulated bad downlink is one downstream issue per track the subscriber receives, and no
//! upstream one. In both runs every quality webhook is its event's issue, the `room_report`
//! webhook comes once and is the API's report, whose figures are every participant's stored
//! windows', and LiveKit's receivers accept them all. A report lost to a SIGKILL between the
//! room's end and the report is made at the next start. Also the routes' bad parameters.

use std::time::Duration;

use serde_json::{Value, json};
use telemetry_core::UnixMillis;
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;
use telemetry_sim::SimulateArgs;

use crate::receivers::{run_receiver, tools};
use crate::support::{ADMIN, TestApp, TestReceiver, endpoint_config, wait_for_api};

const SECRET: &str = "webhook-secret-0123456789abcdef0123";
const ROOM_SID: &str = "RM_quality01";
const PUBLISHER: &str = "PA_pub";
const SUBSCRIBERS: [&str; 2] = ["PA_sub1", "PA_sub2"];
const TRACK: &str = "TR_mic";

fn time(millis: i64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).expect("after 1970")),
    )
    .to_string()
}

fn room() -> Value {
    json!({ "sid": ROOM_SID, "name": "quality" })
}

fn participant(sid: &str) -> Value {
    json!({ "sid": sid, "identity": format!("{sid}-id") })
}

/// One audio sample over `[start, end)` ms: 50 packets a second, 20 % lost while `lossy`.
fn sample(participant_id: &str, stream_type: &str, start: i64, end: i64, lossy: bool) -> Value {
    let packets = (end - start) / 20;
    let lost = if lossy { packets / 5 } else { 0 };
    json!({ "at": time(end), "trackStats": {
        "roomId": ROOM_SID, "roomName": "quality",
        "key": { "participantId": participant_id, "trackId": TRACK, "streamType": stream_type,
                 "track": true, "trackType": "AUDIO", "trackSource": "MICROPHONE" },
        "stat": { "mime": "audio/opus", "score": 4.2, "streams": [{
            "primaryPackets": packets - lost, "primaryBytes": ((packets - lost) * 80).to_string(),
            "packetsLost": lost, "jitter": 4000, "rtt": 60,
            "startTime": time(start), "endTime": time(end) }] } } })
}

/// A room of one publisher and two subscribers, two minutes of samples every 5 s, the publisher's
/// uplink losing 20 % from 30 s to 80 s; then everyone leaves and the room ends.
fn calls(base: i64) -> Vec<Value> {
    let at = |offset_s: i64| time(base + offset_s * 1000);
    let mut calls = vec![json!({ "at": at(0), "roomStarted": { "room": room() } })];
    for sid in std::iter::once(PUBLISHER).chain(SUBSCRIBERS) {
        calls.push(json!({ "at": at(0), "participantJoined": { "room": room(), "participant": participant(sid) } }));
        calls.push(json!({ "at": at(0), "participantActive": { "room": room(), "participant": participant(sid) } }));
    }
    calls.push(json!({ "at": at(0), "trackPublished": { "room": room(), "participantId": PUBLISHER,
        "identity": "PA_pub-id", "track": { "sid": TRACK, "type": "AUDIO", "mimeType": "audio/opus" } } }));
    for step in 0..24 {
        let (start, end) = (base + step * 5000, base + (step + 1) * 5000);
        let lossy = (30_000..80_000).contains(&(start - base));
        calls.push(sample(PUBLISHER, "UPSTREAM", start, end, lossy));
        for sid in SUBSCRIBERS {
            calls.push(sample(sid, "DOWNSTREAM", start, end, lossy));
        }
    }
    for sid in std::iter::once(PUBLISHER).chain(SUBSCRIBERS) {
        calls.push(json!({ "at": at(121), "participantLeft": { "room": room(), "participant": participant(sid) } }));
    }
    calls.push(json!({ "at": at(122), "roomEnded": { "room": room() } }));
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_uplink_is_one_issue_in_events_webhooks_issues_and_the_report() {
    let receiver = TestReceiver::start().await;
    let config = format!(
        "{}include_events = [\"quality_degraded\", \"quality_recovered\", \"room_report\", \"room_started\"]\n{}",
        endpoint_config(&receiver.url("/quality"), "livekit", SECRET),
        endpoint_config(&receiver.url("/plain"), "livekit", SECRET)
    );
    let app = TestApp::start_with(&config).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let base = (now - 600_000) / 1000 * 1000;
    let (status, body) = app.ingest_json(&json!({ "calls": calls(base) })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"], json!([]), "{body}");
    app.flush().await;

    // The events: one start and one end of one upstream packet_loss issue.
    let events = app.get_ok(&format!("/v1/rooms/{ROOM_SID}/events?limit=200")).await;
    let quality: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["type"].as_str().is_some_and(|t| t.starts_with("QUALITY_ISSUE")))
        .collect();
    let types: Vec<&str> = quality.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["QUALITY_ISSUE_STARTED", "QUALITY_ISSUE_ENDED"], "{events}");
    let issue = &quality[1]["issue"];
    assert_eq!(issue["id"], quality[0]["issue"]["id"]);
    assert_eq!(issue["kind"], "packet_loss");
    assert_eq!(issue["direction"], "upstream");
    assert_eq!(issue["participantSid"], PUBLISHER);
    assert_eq!(issue["trackSid"], TRACK);
    assert_eq!(issue["threshold"], 5.0);
    assert_eq!(issue["value"], 20.0);
    assert_eq!(issue["affected"], json!(SUBSCRIBERS));
    let millis = |value: &Value| {
        let text = value.as_str().expect("a time");
        humantime::parse_rfc3339_weak(text)
            .expect("RFC 3339")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64
    };
    // In sample time: the start of the first lossy sample and of the first clean one.
    assert_eq!(millis(&issue["startedAt"]), base + 30_000);
    assert_eq!(millis(&issue["endedAt"]), base + 80_000);

    // The webhooks: to the endpoint that includes them, not to the other.
    let received = receiver
        .wait_for(Duration::from_secs(15), |r| {
            r.iter().filter(|r| r.path == "/quality").count() >= 3
                && r.iter().any(|r| r.path == "/plain" && r.json()["event"] == "room_finished")
        })
        .await;
    let quality_hooks: Vec<_> = received
        .iter()
        .filter(|r| r.json()["event"].as_str().is_some_and(|e| e.starts_with("quality_")))
        .collect();
    let names: Vec<(String, String)> = quality_hooks
        .iter()
        .map(|r| (r.path.clone(), r.json()["event"].as_str().expect("event").to_owned()))
        .collect();
    assert_eq!(
        names,
        [
            ("/quality".to_owned(), "quality_degraded".to_owned()),
            ("/quality".to_owned(), "quality_recovered".to_owned())
        ]
    );
    let recovered = quality_hooks[1].json();
    assert_eq!(recovered["issue"], *issue, "the webhook carries the event's issue");
    assert_eq!(recovered["room"]["sid"], ROOM_SID);
    assert_eq!(recovered["participant"]["sid"], PUBLISHER);
    assert_eq!(recovered["track"]["sid"], TRACK);
    assert!(recovered["id"].as_str().is_some_and(|id| id.starts_with("EV_")));

    // GET /v1/issues.
    let issues = app.get_ok(&format!("/v1/issues?roomSid={ROOM_SID}")).await;
    assert_eq!(issues["issues"].as_array().expect("issues").len(), 1, "{issues}");
    assert_eq!(issues["issues"][0]["id"], issue["id"]);
    assert_eq!(issues["issues"][0]["endedAt"], issue["endedAt"]);
    assert_eq!(issues["issues"][0]["affected"], issue["affected"]);
    assert_eq!(app.get_ok("/v1/issues?open=true").await["issues"], json!([]));
    assert_eq!(app.get_ok("/v1/issues?kind=jitter").await["issues"], json!([]));
    let later = time(base + 90_000);
    assert_eq!(app.get_ok(&format!("/v1/issues?from={later}")).await["issues"], json!([]));

    // The report, final, its figures those of the stored windows.
    let report =
        wait_for_api(&app, &format!("/v1/rooms/{ROOM_SID}/report"), Duration::from_secs(10), |r| {
            r["final"] == true
        })
        .await;
    let stats = app
        .get_ok(&format!(
            "/v1/stats?roomSid={ROOM_SID}&from={}&to={}",
            time(base - 60_000),
            time(base + 300_000)
        ))
        .await;
    let series = stats["series"].as_array().expect("series");
    let windows_of = |sid: &str, direction: &str| -> Vec<Value> {
        series
            .iter()
            .filter(|s| s["participantSid"] == sid && s["direction"] == direction)
            .flat_map(|s| s["windows"].as_array().expect("windows").clone())
            .collect()
    };
    let publisher = report["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["sid"] == PUBLISHER)
        .expect("the publisher")
        .clone();
    let windows = windows_of(PUBLISHER, "upstream");
    assert!(!windows.is_empty(), "{stats}");
    let sum = |field: &str| windows.iter().map(|w| w[field].as_u64().expect(field)).sum::<u64>();
    let (packets, lost) = (sum("packets"), sum("packetsLost"));
    assert_eq!(publisher["upstream"]["bytes"], sum("bytes"));
    let loss = publisher["upstream"]["lossPct"].as_f64().expect("loss");
    assert!((loss - lost as f64 * 100.0 / (packets + lost) as f64).abs() < 1e-9, "{publisher}");
    let moses: Vec<f64> =
        windows.iter().map(|w| w["mos"].as_f64().expect("audio has mos")).collect();
    let mos_min = moses.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(publisher["upstream"]["mosMin"].as_f64(), Some(mos_min));
    let mos_avg = moses.iter().sum::<f64>() / moses.len() as f64;
    assert!((publisher["upstream"]["mosAvg"].as_f64().expect("mosAvg") - mos_avg).abs() < 1e-9);
    assert!(mos_min < 4.0 && mos_avg > 1.0, "loss lowers the MOS of the windows it is in");
    assert_eq!(publisher["outcome"], "completed");
    assert_eq!(publisher["issues"][0]["id"], issue["id"]);
    assert_eq!(report["issues"].as_array().expect("issues").len(), 1);
    let subscriber = report["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["sid"] == SUBSCRIBERS[0])
        .expect("a subscriber")
        .clone();
    assert_eq!(subscriber["issues"][0]["id"], issue["id"], "an affected subscriber lists it");
    assert!(subscriber["downstream"]["bytes"].as_u64().expect("bytes") > 0);

    // The `room_report` webhook: to the endpoint that includes it only, after `room_finished`
    // on the room's key, carrying the API's report of the finished room (the webhook counts as
    // they were when it was made).
    let received = receiver
        .wait_for(Duration::from_secs(15), |r| r.iter().any(|r| r.json()["event"] == "room_report"))
        .await;
    let reports: Vec<_> =
        received.iter().filter(|r| r.json()["event"] == "room_report").cloned().collect();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].path, "/quality");
    let hook = reports[0].json();
    assert_eq!(hook["room"]["sid"], ROOM_SID);
    assert_eq!(hook["room"]["name"], "quality");
    let strip = |report: &Value| {
        let mut report = report.clone();
        report.as_object_mut().expect("an object").remove("webhooks");
        report
    };
    assert_eq!(strip(&hook["report"]), strip(&report), "the report the API serves");
    assert_eq!(hook["report"]["final"], true);

    // The report's webhook counts: every delivery of the room's webhooks, once all are made.
    let report =
        wait_for_api(&app, &format!("/v1/rooms/{ROOM_SID}/report"), Duration::from_secs(15), |r| {
            r["webhooks"]["pending"] == 0
        })
        .await;
    let received = receiver.received();
    let mut delivered: Vec<(String, String)> =
        received.iter().map(|r| (r.path.clone(), r.id())).collect();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(
        report["webhooks"],
        json!({ "delivered": delivered.len(), "pending": 0, "dead": 0 }),
        "{delivered:?}"
    );
    let counted = |counts: &Value| {
        ["delivered", "pending", "dead"].iter().map(|s| counts[s].as_u64().expect(s)).sum::<u64>()
    };
    assert_eq!(
        counted(&hook["report"]["webhooks"]),
        delivered.len() as u64 - 1,
        "the report's own webhook came after the ones it counts"
    );
    app.stop().await;

    // LiveKit's receivers, Python and Node, accept the quality and report webhooks as they
    // arrived.
    let Some(tools) = tools() else { return };
    let checked: Vec<_> = quality_hooks.iter().copied().chain(&reports).collect();
    let cases: Vec<Value> = checked
        .iter()
        .map(|request| {
            json!({ "name": format!("ok {}", request.id()), "body": request.body,
                    "authorization": request.headers["authorization"].to_str().expect("header"),
                    "key": ADMIN.0, "secret": SECRET })
        })
        .collect();
    for (program, script) in [
        (tools.python.as_path(), "verify_livekit.py"),
        (std::path::Path::new("node"), "verify_livekit.mjs"),
    ] {
        let results = run_receiver(program, &tools.dir.join(script), &tools.dir, &cases);
        assert_eq!(results.len(), checked.len(), "{script}");
        for (result, request) in results.iter().zip(&checked) {
            assert_eq!(result["ok"], true, "{script} rejected {}: {result}", request.body);
            assert_eq!(result["event"], request.json()["event"], "{script}");
            assert_eq!(result["roomSid"], ROOM_SID, "{script}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_of_the_quality_routes_are_400s_naming_them() {
    let app = TestApp::start().await;
    for (path, names) in [
        ("/v1/issues?open=maybe", "`open`"),
        ("/v1/issues?kind=loss", "`kind`"),
        ("/v1/issues?from=yesterday", "`from`"),
        ("/v1/issues?to=soon", "`to`"),
        ("/v1/issues?from=2000&to=1000", "`from`"),
        ("/v1/issues?limit=0", "`limit`"),
        ("/v1/issues?limit=100000", "`limit`"),
        ("/v1/issues?roomSid=RM_1&colour=red", "colour"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.to_string().contains(names), "{path}: {body}");
    }
    let (status, body) = app.get("/v1/rooms/RM_nowhere/report").await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

/// The time of `value`, an RFC 3339 text, in milliseconds.
fn millis_of(value: &Value) -> i64 {
    let text = value.as_str().expect("a time");
    humantime::parse_rfc3339_weak(text)
        .expect("RFC 3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// The endpoint of the simulated runs: every quality webhook and the room's report.
fn quality_endpoint(receiver: &TestReceiver) -> String {
    format!(
        "{}include_events = [\"quality_degraded\", \"quality_recovered\", \"room_report\"]\n",
        endpoint_config(&receiver.url("/quality"), "livekit", SECRET)
    )
}

/// A simulated run of `args` ending now, ingested over protobuf in chunks and flushed; returns
/// its calls, its start and end, the room's sid and the aimed trouble.
async fn simulate(
    app: &TestApp,
    args: &SimulateArgs,
) -> (Vec<v1::TelemetryCall>, i64, i64, String, telemetry_sim::AimedTrouble) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let end = UnixMillis(now / 1000 * 1000);
    let duration = i64::try_from(args.duration.as_millis()).expect("duration");
    let start = end.0 - duration;
    let target = telemetry_sim::World::new(args, UnixMillis(start)).troubles()[0].clone();
    let calls = telemetry_sim::generate(args, end);
    for chunk in calls.chunks(500) {
        let (status, body) =
            app.ingest_protobuf(&v1::TelemetryBatch { calls: chunk.to_vec() }).await;
        assert_eq!(status, 200, "{body}");
    }
    app.flush().await;
    let room_sid = calls
        .iter()
        .find_map(|call| match &call.call {
            Some(Member::RoomStarted(room)) => room.room.as_ref().map(|r| r.sid.clone()),
            _ => None,
        })
        .expect("a room");
    (calls, start, end.0, room_sid, target)
}

/// The participants whose downstream samples of `track` start in `[from, until)`, sorted.
fn receivers_of(calls: &[v1::TelemetryCall], track: &str, from: i64, until: i64) -> Vec<String> {
    let mut receivers: Vec<String> = calls
        .iter()
        .filter_map(|call| match &call.call {
            Some(Member::TrackStats(stats)) => Some(stats),
            _ => None,
        })
        .filter(|stats| {
            let key = stats.key.as_ref().expect("key");
            let stat = stats.stat.as_ref().expect("stat");
            let at = stat.streams.first().and_then(|s| s.start_time).map(|t| t.seconds * 1000);
            key.track_id == track
                && key.stream_type == telemetry_core::proto::StreamType::Downstream as i32
                && at.is_some_and(|at| (from..until).contains(&at))
        })
        .map(|stats| stats.key.as_ref().expect("key").participant_id.clone())
        .collect();
    receivers.sort_unstable();
    receivers.dedup();
    receivers
}

/// The start of the first and the end of the last of `participant`'s downstream samples of
/// `track` that start in `[from, until)`.
fn troubled_span(
    calls: &[v1::TelemetryCall],
    track: &str,
    participant: &str,
    from: i64,
    until: i64,
) -> (i64, i64) {
    let millis = |at: Option<pbjson_types::Timestamp>| {
        at.map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
    };
    let spans: Vec<(i64, i64)> = calls
        .iter()
        .filter_map(|call| match &call.call {
            Some(Member::TrackStats(stats)) => Some(stats),
            _ => None,
        })
        .filter(|stats| {
            let key = stats.key.as_ref().expect("key");
            key.track_id == track
                && key.participant_id == participant
                && key.stream_type == telemetry_core::proto::StreamType::Downstream as i32
        })
        .filter_map(|stats| {
            let stream = stats.stat.as_ref().expect("stat").streams.first()?;
            Some((millis(stream.start_time)?, millis(stream.end_time)?))
        })
        .filter(|(start, _)| (from..until).contains(start))
        .collect();
    let first = spans.iter().map(|span| span.0).min().expect("troubled samples");
    let last = spans.iter().map(|span| span.1).max().expect("troubled samples");
    (first, last)
}

/// The tracks whose downstream samples `participant` reported, sorted.
fn tracks_received_by(calls: &[v1::TelemetryCall], participant: &str) -> Vec<String> {
    let mut tracks: Vec<String> = calls
        .iter()
        .filter_map(|call| match &call.call {
            Some(Member::TrackStats(stats)) => stats.key.as_ref(),
            _ => None,
        })
        .filter(|key| {
            key.participant_id == participant
                && key.track
                && key.stream_type == telemetry_core::proto::StreamType::Downstream as i32
        })
        .map(|key| key.track_id.clone())
        .collect();
    tracks.sort_unstable();
    tracks.dedup();
    tracks
}

/// Every `QUALITY_ISSUE_*` event of the room, in order (all pages).
async fn quality_events(app: &TestApp, room_sid: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app.get_ok(&format!("/v1/rooms/{room_sid}/events?limit=1000{cursor}")).await;
        events.extend(
            page["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("QUALITY_ISSUE")))
                .cloned(),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return events,
        }
    }
}

/// `received` without the repeats of a webhook id (a retried delivery), in arrival order.
fn unique(received: Vec<crate::support::Received>) -> Vec<crate::support::Received> {
    let mut seen = std::collections::HashSet::new();
    received.into_iter().filter(|r| seen.insert(r.id())).collect()
}

/// Waits for the room's quality webhooks and checks them against its `QUALITY_ISSUE_*` events:
/// one `quality_degraded` per `QUALITY_ISSUE_STARTED` and one `quality_recovered` per
/// `QUALITY_ISSUE_ENDED`, each carrying its event's issue; returns them.
async fn quality_webhooks_match_events(
    receiver: &TestReceiver,
    events: &[Value],
    room_sid: &str,
) -> Vec<crate::support::Received> {
    let is_quality = |r: &crate::support::Received| {
        r.json()["event"].as_str().is_some_and(|e| e.starts_with("quality_"))
    };
    let received = receiver
        .wait_for(Duration::from_secs(20), |r| {
            r.iter().filter(|r| is_quality(r)).count() >= events.len()
        })
        .await;
    // A delivery retried would be received twice: one per webhook id.
    let hooks = unique(received.into_iter().filter(|r| is_quality(r)).collect());
    assert_eq!(hooks.len(), events.len(), "one webhook per quality event");
    let mut expected: Vec<(String, String, Value)> = events
        .iter()
        .map(|event| {
            let name = match event["type"].as_str() {
                Some("QUALITY_ISSUE_STARTED") => "quality_degraded",
                Some("QUALITY_ISSUE_ENDED") => "quality_recovered",
                other => panic!("not a quality event: {other:?}"),
            };
            let id = event["issue"]["id"].as_str().expect("issue id").to_owned();
            (id, name.to_owned(), event["issue"].clone())
        })
        .collect();
    let mut got: Vec<(String, String, Value)> = hooks
        .iter()
        .map(|hook| {
            let body = hook.json();
            assert_eq!(hook.path, "/quality");
            assert_eq!(body["room"]["sid"], room_sid);
            assert_eq!(body["participant"]["sid"], body["issue"]["participantSid"], "{body}");
            assert_eq!(body["track"]["sid"], body["issue"]["trackSid"], "{body}");
            let id = body["issue"]["id"].as_str().expect("issue id").to_owned();
            (id, body["event"].as_str().expect("event").to_owned(), body["issue"].clone())
        })
        .collect();
    let order =
        |a: &(String, String, Value), b: &(String, String, Value)| (&a.0, &a.1).cmp(&(&b.0, &b.1));
    expected.sort_by(order);
    got.sort_by(order);
    assert_eq!(got, expected, "each webhook is its event's issue");
    hooks
}

/// Waits for the room's final report and checks every participant's upstream and downstream
/// figures against its stored media windows; then waits for the `room_report` webhook, checks
/// that it is the only one and carries the report the API serves. Returns the report and the
/// webhook.
async fn report_matches_windows_and_webhook(
    app: &TestApp,
    receiver: &TestReceiver,
    room_sid: &str,
    (start, end): (i64, i64),
) -> (Value, crate::support::Received) {
    let report =
        wait_for_api(app, &format!("/v1/rooms/{room_sid}/report"), Duration::from_secs(10), |r| {
            r["final"] == true
        })
        .await;
    let participants = report["participants"].as_array().expect("participants");
    assert!(participants.len() >= 2, "{report}");
    for participant in participants {
        let sid = participant["sid"].as_str().expect("sid");
        for direction in ["upstream", "downstream"] {
            let stats = app
                .get_ok(&format!(
                    "/v1/stats?roomSid={room_sid}&participantSid={sid}&direction={direction}&from={}&to={}",
                    time(start - 60_000),
                    time(end + 60_000)
                ))
                .await;
            let windows: Vec<Value> = stats["series"]
                .as_array()
                .expect("series")
                .iter()
                .filter(|series| series["kind"] == "media")
                .flat_map(|series| series["windows"].as_array().expect("windows").clone())
                .collect();
            let figures = &participant[direction];
            let context = format!("{sid} {direction}: {figures}");
            let sum =
                |field: &str| windows.iter().map(|w| w[field].as_u64().expect(field)).sum::<u64>();
            assert_eq!(figures["bytes"], sum("bytes"), "{context}");
            let (packets, lost) = (sum("packets"), sum("packetsLost"));
            let loss = if packets + lost > 0 {
                lost as f64 * 100.0 / (packets + lost) as f64
            } else {
                0.0
            };
            let reported = figures["lossPct"].as_f64().expect("lossPct");
            assert!((reported - loss).abs() < 1e-9, "{context}");
            let peak =
                windows.iter().map(|w| w["peakBps"].as_f64().expect("peakBps")).fold(0.0, f64::max);
            assert_eq!(figures["peakBps"].as_f64(), Some(peak), "{context}");
            let moses: Vec<f64> = windows.iter().filter_map(|w| w["mos"].as_f64()).collect();
            match moses.iter().copied().reduce(f64::min) {
                Some(min) => {
                    assert_eq!(figures["mosMin"].as_f64(), Some(min), "{context}");
                    let avg = moses.iter().sum::<f64>() / moses.len() as f64;
                    let reported = figures["mosAvg"].as_f64().expect("mosAvg");
                    assert!((reported - avg).abs() < 1e-9, "{context}");
                }
                None => assert_eq!(figures["mosMin"], Value::Null, "{context}"),
            }
        }
    }
    let received = receiver
        .wait_for(Duration::from_secs(15), |r| r.iter().any(|r| r.json()["event"] == "room_report"))
        .await;
    // Every delivery of the room made: no second report can be on its way.
    wait_for_api(app, &format!("/v1/rooms/{room_sid}/report"), Duration::from_secs(15), |r| {
        r["webhooks"]["pending"] == 0
    })
    .await;
    let mut reports = unique(
        receiver.received().into_iter().filter(|r| r.json()["event"] == "room_report").collect(),
    );
    assert!(!received.is_empty());
    assert_eq!(reports.len(), 1, "one report per finished room");
    let hook = reports.remove(0);
    let body = hook.json();
    assert_eq!(body["room"]["sid"], room_sid);
    let strip = |report: &Value| {
        let mut report = report.clone();
        report.as_object_mut().expect("an object").remove("webhooks");
        report
    };
    assert_eq!(strip(&body["report"]), strip(&report), "the report the API serves");
    (report, hook)
}

/// LiveKit's receivers, Python and Node, accept `hooks` as they arrived (when the conformance
/// tools are set up).
fn livekit_receivers_accept(hooks: &[crate::support::Received], room_sid: &str) {
    let Some(tools) = tools() else { return };
    let cases: Vec<Value> = hooks
        .iter()
        .map(|request| {
            json!({ "name": format!("ok {}", request.id()), "body": request.body,
                    "authorization": request.headers["authorization"].to_str().expect("header"),
                    "key": ADMIN.0, "secret": SECRET })
        })
        .collect();
    for (program, script) in [
        (tools.python.as_path(), "verify_livekit.py"),
        (std::path::Path::new("node"), "verify_livekit.mjs"),
    ] {
        let results = run_receiver(program, &tools.dir.join(script), &tools.dir, &cases);
        assert_eq!(results.len(), hooks.len(), "{script}");
        for (result, request) in results.iter().zip(hooks) {
            assert_eq!(result["ok"], true, "{script} rejected {}: {result}", request.body);
            assert_eq!(result["event"], request.json()["event"], "{script}");
            assert_eq!(result["roomSid"], room_sid, "{script}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_lossy_uplink_is_one_upstream_issue_per_track_affecting_its_subscribers() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::start_with(&quality_endpoint(&receiver)).await;
    let args = SimulateArgs {
        seed: 7,
        rooms: 1,
        participants: 4,
        duration: Duration::from_secs(300),
        troubles: vec![telemetry_sim::parse_trouble("lossy-uplink@40s..100s").expect("valid")],
        ..SimulateArgs::default()
    };
    let (calls, start, end, room_sid, target) = simulate(&app, &args).await;

    // What the calls say: the target's tracks, and who received them while in trouble.
    let tracks: Vec<String> = calls
        .iter()
        .filter_map(|call| match &call.call {
            Some(Member::TrackPublished(p)) if p.participant_id == target.participant_sid => {
                p.track.as_ref().map(|t| t.sid.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 2, "audio and video");

    // One upstream packet_loss issue per troubled track, the subscribers affected, in its time.
    let issues = app.get_ok(&format!("/v1/issues?roomSid={room_sid}&kind=packet_loss")).await;
    let issues = issues["issues"].as_array().expect("issues").clone();
    for track in &tracks {
        let of_track: Vec<&Value> = issues
            .iter()
            .filter(|issue| {
                issue["trackSid"] == track.as_str()
                    && millis_of(&issue["startedAt"]) < start + 100_000
                    && millis_of(&issue["endedAt"]) > start + 40_000
            })
            .collect();
        assert_eq!(of_track.len(), 1, "{track}: {issues:?}");
        let issue = of_track[0];
        assert_eq!(issue["direction"], "upstream");
        assert_eq!(issue["participantSid"], target.participant_sid.as_str());
        let started = millis_of(&issue["startedAt"]) - start;
        let ended = millis_of(&issue["endedAt"]) - start;
        assert!((40_000..45_000).contains(&started), "{issue}");
        assert!((100_000..105_000).contains(&ended), "{issue}");
        let mut affected: Vec<String> = issue["affected"]
            .as_array()
            .expect("affected")
            .iter()
            .map(|sid| sid.as_str().expect("sid").to_owned())
            .collect();
        affected.sort_unstable();
        let receivers = receivers_of(&calls, track, start + 40_000, start + 100_000);
        assert!(!receivers.is_empty());
        assert_eq!(affected, receivers, "{issue}");
    }
    // Not once more per subscriber: no downstream loss issue of the troubled tracks.
    assert!(
        !issues.iter().any(|issue| issue["direction"] == "downstream"
            && tracks.iter().any(|track| issue["trackSid"] == track.as_str())
            && millis_of(&issue["startedAt"]) < start + 100_000
            && millis_of(&issue["endedAt"]) > start + 40_000),
        "{issues:?}"
    );

    // The events, the webhooks (one per event, its issue), and `GET /v1/issues` agree.
    let events = quality_events(&app, &room_sid).await;
    assert!(events.len() >= 4, "two issues opened and closed: {events:?}");
    let hooks = quality_webhooks_match_events(&receiver, &events, &room_sid).await;
    let all_issues = app.get_ok(&format!("/v1/issues?roomSid={room_sid}&limit=1000")).await;
    let mut listed: Vec<&str> = all_issues["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|issue| issue["id"].as_str().expect("id"))
        .collect();
    listed.sort_unstable();
    let mut started: Vec<&str> = events
        .iter()
        .filter(|event| event["type"] == "QUALITY_ISSUE_STARTED")
        .map(|event| event["issue"]["id"].as_str().expect("id"))
        .collect();
    started.sort_unstable();
    assert_eq!(listed, started, "every issue listed once");

    // The final report's figures are those of the stored windows, and its webhook the report.
    let (report, report_hook) =
        report_matches_windows_and_webhook(&app, &receiver, &room_sid, (start, end)).await;
    let participant = report["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["sid"] == target.participant_sid.as_str())
        .expect("the target")
        .clone();
    let loss = participant["upstream"]["lossPct"].as_f64().expect("lossPct");
    assert!(loss > 2.0, "a minute of 20 % loss in five: {loss}");
    let own: Vec<&Value> = participant["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter(|issue| issue["kind"] == "packet_loss" && issue["direction"] == "upstream")
        .collect();
    assert!(own.len() >= 2, "the participant's issues list its tracks' issues: {participant}");
    app.stop().await;

    let checked: Vec<_> = hooks.into_iter().chain([report_hook]).collect();
    livekit_receivers_accept(&checked, &room_sid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_bad_downlink_is_one_downstream_issue_per_received_track_and_none_upstream() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::start_with(&quality_endpoint(&receiver)).await;
    let args = SimulateArgs {
        seed: 7,
        rooms: 1,
        participants: 4,
        duration: Duration::from_secs(300),
        troubles: vec![telemetry_sim::parse_trouble("bad-downlink@40s..100s").expect("valid")],
        ..SimulateArgs::default()
    };
    let (calls, start, end, room_sid, target) = simulate(&app, &args).await;
    let troubled = |issue: &Value| {
        millis_of(&issue["startedAt"]) < start + 100_000
            && issue["endedAt"]
                .as_str()
                .is_none_or(|_| millis_of(&issue["endedAt"]) > start + 40_000)
    };

    // One downstream packet_loss issue on each track the target received in its trouble, the
    // target's own; the publishers' upstreams are fine.
    let received = tracks_received_by(&calls, &target.participant_sid);
    let received: Vec<&String> = received
        .iter()
        .filter(|track| {
            receivers_of(&calls, track, start + 40_000, start + 100_000)
                .contains(&target.participant_sid)
        })
        .collect();
    assert!(!received.is_empty(), "the target receives tracks in its trouble");
    let issues = app.get_ok(&format!("/v1/issues?roomSid={room_sid}&limit=1000")).await;
    let issues = issues["issues"].as_array().expect("issues").clone();
    for track in &received {
        let of_track: Vec<&Value> = issues
            .iter()
            .filter(|issue| {
                issue["trackSid"] == track.as_str()
                    && issue["kind"] == "packet_loss"
                    && troubled(issue)
            })
            .collect();
        assert_eq!(of_track.len(), 1, "{track}: {issues:?}");
        let issue = of_track[0];
        assert_eq!(issue["direction"], "downstream", "{issue}");
        assert_eq!(issue["participantSid"], target.participant_sid.as_str(), "{issue}");
        assert_eq!(issue["affected"], json!([]), "{issue}");
        // From the first troubled sample the target received of the track to the end of the
        // last (its subscription may start or end inside the trouble), within a sample.
        let (first, last) =
            troubled_span(&calls, track, &target.participant_sid, start + 40_000, start + 100_000);
        let started = millis_of(&issue["startedAt"]);
        let ended = millis_of(&issue["endedAt"]);
        assert!((first..first + 5_000).contains(&started), "{issue}: first at {first}");
        assert!((last - 5_000..=last + 5_000).contains(&ended), "{issue}: last until {last}");
    }
    assert!(
        !issues.iter().any(|issue| issue["direction"] == "upstream" && troubled(issue)),
        "a subscriber's downlink is no publisher's issue: {issues:?}"
    );
    assert!(
        issues
            .iter()
            .filter(|issue| troubled(issue))
            .all(|issue| issue["participantSid"] == target.participant_sid.as_str()),
        "nobody else's: {issues:?}"
    );

    // The events and the webhooks agree; the report is its windows' and its webhook's.
    let events = quality_events(&app, &room_sid).await;
    assert!(events.len() >= 2 * received.len(), "{events:?}");
    let hooks = quality_webhooks_match_events(&receiver, &events, &room_sid).await;
    let (report, report_hook) =
        report_matches_windows_and_webhook(&app, &receiver, &room_sid, (start, end)).await;
    let participant = report["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["sid"] == target.participant_sid.as_str())
        .expect("the target")
        .clone();
    assert!(participant["downstream"]["lossPct"].as_f64().expect("lossPct") > 1.0, "{participant}");
    app.stop().await;

    let checked: Vec<_> = hooks.into_iter().chain([report_hook]).collect();
    livekit_receivers_accept(&checked, &room_sid);
}

/// The report of a room whose process was killed after the room's end was stored and before its
/// report was (the report waits for a flush, and the killed process never flushes): the next
/// start reports it, once, the report the API serves; a later start does not report it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_lost_to_a_sigkill_after_the_room_s_end_is_made_at_the_next_start() {
    let receiver = TestReceiver::start().await;
    let endpoint = format!(
        "{}include_events = [\"room_report\", \"room_finished\"]\n",
        endpoint_config(&receiver.url("/quality"), "livekit", SECRET)
    );
    let data = crate::support::TestData::new();
    let config = format!(
        "[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n\
         [stats]\nflush_interval = \"1h\"\n[webhooks]\nrequest_timeout = \"2s\"\nclaim_lease = \"3s\"\n{endpoint}",
        ADMIN.0, ADMIN.1
    );
    let config_path = data.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");
    let binary = crate::support::Binary::start(&data, &config_path);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let base = (now - 600_000) / 1000 * 1000;
    let mut calls = calls(base);
    let ended = calls.pop().expect("roomEnded");
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client.post(binary.url(path)).bearer_auth(TestApp::token(ADMIN)).json(&body).send()
    };
    // The room's samples stored, then its end: acknowledged means committed.
    let answer = post("/v1/telemetry", json!({ "calls": calls })).await.expect("ingest");
    assert_eq!(answer.status().as_u16(), 200);
    let answer = post("/v1/flush", json!({})).await.expect("flush");
    assert_eq!(answer.status().as_u16(), 200);
    let answer = post("/v1/telemetry", json!({ "calls": [ended] })).await.expect("ingest");
    assert_eq!(answer.status().as_u16(), 200);
    // `room_finished` is out: the room's end is stored. Its report waits for the next flush.
    receiver
        .wait_for(Duration::from_secs(15), |r| {
            r.iter().any(|r| r.json()["event"] == "room_finished")
        })
        .await;
    binary.signal("KILL");
    let (status, _) = binary.wait().await;
    assert!(!status.success());
    assert!(
        !receiver.received().iter().any(|r| r.json()["event"] == "room_report"),
        "no report before the kill"
    );

    // The next start finds the room without its report and makes it after its first flush.
    let app = TestApp::start_in(data, &endpoint).await;
    app.flush().await;
    receiver
        .wait_for(Duration::from_secs(15), |r| r.iter().any(|r| r.json()["event"] == "room_report"))
        .await;
    let report =
        wait_for_api(&app, &format!("/v1/rooms/{ROOM_SID}/report"), Duration::from_secs(15), |r| {
            r["final"] == true && r["webhooks"]["pending"] == 0
        })
        .await;
    let reports = unique(
        receiver.received().into_iter().filter(|r| r.json()["event"] == "room_report").collect(),
    );
    assert_eq!(reports.len(), 1);
    let hook = reports[0].json();
    assert_eq!(hook["room"]["sid"], ROOM_SID);
    let strip = |report: &Value| {
        let mut report = report.clone();
        report.as_object_mut().expect("an object").remove("webhooks");
        report
    };
    assert_eq!(strip(&hook["report"]), strip(&report), "the report the API serves");
    let publisher = report["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["sid"] == PUBLISHER)
        .expect("the publisher")
        .clone();
    assert!(publisher["upstream"]["bytes"].as_u64().expect("bytes") > 0, "{publisher}");
    assert_eq!(report["issues"].as_array().expect("issues").len(), 1, "{report}");

    // A later start has nothing to report.
    let data = app.stop().await;
    let app = TestApp::start_in(data, &endpoint).await;
    app.flush().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = app.get_ok("/v1/webhooks/deliveries?event=room_report").await;
    assert_eq!(deliveries["deliveries"].as_array().expect("deliveries").len(), 1, "{deliveries}");
    let reports = unique(
        receiver.received().into_iter().filter(|r| r.json()["event"] == "room_report").collect(),
    );
    assert_eq!(reports.len(), 1);
    app.stop().await;
    livekit_receivers_accept(&reports, ROOM_SID);
}
