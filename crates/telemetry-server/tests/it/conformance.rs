//! What the running service sends, checked by receivers we did not write: every webhook event
//! name the service produces is ingested, delivered over HTTP to a local receiver, and the
//! requests exactly as they arrived are handed to LiveKit's `WebhookReceiver` (Python
//! `livekit-api`, Node `livekit-server-sdk`) and to the Standard Webhooks library, which must
//! verify and parse each one, and reject it with a tampered body or the wrong secret. (Expired
//! signatures, which the service cannot be made to send, are checked in the core's
//! `tests/conformance.rs`.) Runs when `TELEMETRY_TEST_CONFORMANCE=1` (see `receivers`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use telemetry_core::webhook_names;
use telemetry_proto::v1;

use crate::receivers::{run_receiver, tools};
use crate::support::{ADMIN, Lifecycle, TestApp, TestReceiver, endpoint_config};

const SECRET: &str = "webhook-secret-0123456789abcdef0123";
const WRONG_SECRET: &str = "another-secret-0123456789abcdef0123";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// `whsec_` + base64 of "second-secret-for-the-checks-32b".
const WRONG_STANDARD_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLWNoZWNrcy0zMmI=";

/// The egress and ingress calls that complete the lifecycle's webhooks to every name.
fn egress_and_ingress() -> Value {
    let egress = |status: &str| json!({ "info": { "egressId": "EG_conformance1", "roomId": "RM_media", "roomName": "media", "status": status } });
    let ingress = |status: &str| {
        json!({ "info": { "ingressId": "IN_conformance1", "name": "obs", "roomName": "media",
                          "state": { "status": status, "roomId": "RM_media" } } })
    };
    json!({ "calls": [
        { "egressStarted": egress("EGRESS_STARTING") },
        { "egressUpdated": egress("EGRESS_ACTIVE") },
        { "egressEnded": egress("EGRESS_COMPLETE") },
        { "ingressStarted": ingress("ENDPOINT_PUBLISHING") },
        { "ingressEnded": ingress("ENDPOINT_INACTIVE") },
    ] })
}

/// One character of the body changed inside a string value, so it is still JSON.
fn tampered(body: &str) -> String {
    body.replacen("\"id\":\"EV_", "\"id\":\"EV_x", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_receivers_verify_and_parse_what_the_service_sends() {
    let Some(tools) = tools() else { return };
    let receiver = TestReceiver::start().await;
    let config = format!(
        "{}{}",
        endpoint_config(&receiver.url("/livekit"), "livekit", SECRET),
        endpoint_config(&receiver.url("/standard"), "standard", STANDARD_SECRET)
    );
    let app = TestApp::start_with(&config).await;
    let (status, body) =
        app.ingest_protobuf(&v1::TelemetryBatch { calls: Lifecycle::new().calls() }).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.ingest_json(&egress_and_ingress()).await;
    assert_eq!(status, 200, "{body}");
    let expected = 9 + 5;
    let received = receiver.wait_for(Duration::from_secs(15), |r| r.len() >= 2 * expected).await;
    app.stop().await;

    let livekit: Vec<_> = received.iter().filter(|r| r.path == "/livekit").collect();
    let standard: Vec<_> = received.iter().filter(|r| r.path == "/standard").collect();
    assert_eq!((livekit.len(), standard.len()), (expected, expected));
    let names: BTreeSet<String> =
        livekit.iter().map(|r| r.json()["event"].as_str().unwrap_or("").to_owned()).collect();
    let all: BTreeSet<String> = webhook_names::ALL.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(names, all, "every event name the service produces was sent");

    // LiveKit's receivers, Python and Node: each request as it arrived, then tampered, then
    // checked with the wrong secret.
    let mut cases = Vec::new();
    for request in &livekit {
        let authorization = request.headers["authorization"].to_str().expect("header").to_owned();
        let id = request.id();
        for (kind, body, secret) in [
            ("ok", request.body.clone(), SECRET),
            ("tampered", tampered(&request.body), SECRET),
            ("wrong-secret", request.body.clone(), WRONG_SECRET),
        ] {
            cases.push(json!({ "name": format!("{kind} {id}"), "body": body, "authorization": authorization,
                               "key": ADMIN.0, "secret": secret }));
        }
    }
    let node = std::path::Path::new("node");
    for (program, script) in
        [(tools.python.as_path(), "verify_livekit.py"), (node, "verify_livekit.mjs")]
    {
        let results = run_receiver(program, &tools.dir.join(script), &tools.dir, &cases);
        for ((case, result), request) in
            cases.iter().zip(&results).zip(livekit.iter().flat_map(|r| [r, r, r]))
        {
            let name = case["name"].as_str().expect("name");
            if name.starts_with("ok ") {
                let sent = request.json();
                assert_eq!(result["ok"], true, "{script} rejected {name}: {result}");
                assert_eq!(result["event"], sent["event"], "{script} {name}");
                assert_eq!(result["id"], sent["id"], "{script} {name}");
                assert_eq!(
                    result["roomSid"],
                    sent["room"]["sid"].as_str().unwrap_or(""),
                    "{script} {name}"
                );
                assert_eq!(
                    result["egressId"],
                    sent["egressInfo"]["egressId"].as_str().unwrap_or(""),
                    "{script} {name}"
                );
                assert_eq!(
                    result["ingressId"],
                    sent["ingressInfo"]["ingressId"].as_str().unwrap_or(""),
                    "{script} {name}"
                );
            } else {
                assert_eq!(result["ok"], false, "{script} accepted {name}: {result}");
            }
        }
    }

    // The Standard Webhooks library.
    let mut cases = Vec::new();
    for request in &standard {
        let header = |name: &str| request.headers[name].to_str().expect("header").to_owned();
        let headers = json!({ "webhook-id": header("webhook-id"), "webhook-timestamp": header("webhook-timestamp"),
                              "webhook-signature": header("webhook-signature") });
        let id = request.id();
        for (kind, body, secret) in [
            ("ok", request.body.clone(), STANDARD_SECRET),
            ("tampered", tampered(&request.body), STANDARD_SECRET),
            ("wrong-secret", request.body.clone(), WRONG_STANDARD_SECRET),
        ] {
            cases.push(json!({ "name": format!("{kind} {id}"), "body": body, "headers": headers, "secret": secret }));
        }
    }
    let results =
        run_receiver(&tools.python, &tools.dir.join("verify_standard.py"), &tools.dir, &cases);
    for (case, result) in cases.iter().zip(&results) {
        let name = case["name"].as_str().expect("name");
        let ok = name.starts_with("ok ");
        assert_eq!(result["ok"], ok, "verify_standard.py on {name}: {result}");
        if ok {
            assert_eq!(format!("ok {}", result["id"].as_str().unwrap_or("")), name);
        }
    }
}
