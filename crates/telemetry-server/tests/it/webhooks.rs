//! Durable webhook delivery end to end: every webhook reaches its endpoints signed, in order per
//! room, through failures (5xx, 429 with Retry-After, hangs, refused connections, 4xx), ends
//! delivered or dead (never dropped), and dead ones are delivered by retry or replay.

use std::time::Duration;

use serde_json::{Value, json};
use telemetry_proto::v1;

use crate::support::{
    ADMIN, Answer, FAST_RETRIES, Lifecycle, READER, ROOM, TestApp, TestReceiver, endpoint_config,
    wait_for_api,
};

const SECRET: &str = "webhook-secret-0123456789abcdef0123";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The webhooks the test lifecycle produces, in order.
const LIFECYCLE_WEBHOOKS: [&str; 9] = [
    "room_started",
    "participant_joined",
    "participant_joined",
    "track_published",
    "participant_connection_aborted",
    "track_unpublished",
    "participant_left",
    "participant_left",
    "room_finished",
];

fn events(received: &[crate::support::Received]) -> Vec<String> {
    received.iter().map(|r| r.json()["event"].as_str().unwrap_or("").to_owned()).collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
        as i64
}

async fn ingest_lifecycle(app: &TestApp) {
    let (status, body) =
        app.ingest_protobuf(&v1::TelemetryBatch { calls: Lifecycle::new().calls() }).await;
    assert_eq!(status, 200, "{body}");
}

async fn admin_post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(TestApp::token(ADMIN))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_arrives_signed_in_order_and_is_recorded() {
    let receiver = TestReceiver::start().await;
    let config = format!(
        "{FAST_RETRIES}{}{}",
        endpoint_config(&receiver.url("/livekit"), "livekit", SECRET),
        endpoint_config(&receiver.url("/standard"), "standard", STANDARD_SECRET)
    );
    let app = TestApp::start_with(&config).await;
    ingest_lifecycle(&app).await;
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 18).await;

    for (path, signing) in [("/livekit", "livekit"), ("/standard", "standard")] {
        let mine: Vec<_> = received.iter().filter(|r| r.path == path).cloned().collect();
        assert_eq!(events(&mine), LIFECYCLE_WEBHOOKS, "{path}: every webhook, in call order");
        for request in &mine {
            match signing {
                "livekit" => {
                    assert_eq!(request.headers["content-type"], "application/webhook+json");
                    let authorization = request.headers["authorization"].to_str().expect("header");
                    telemetry_core::signing::verify_livekit(
                        ADMIN.0,
                        SECRET,
                        request.body.as_bytes(),
                        authorization,
                        now_secs(),
                        60,
                    )
                    .expect("a LiveKit signature that verifies");
                }
                _ => {
                    let headers = telemetry_core::signing::StandardHeaders {
                        id: request.headers["webhook-id"].to_str().expect("id").to_owned(),
                        timestamp: request.headers["webhook-timestamp"]
                            .to_str()
                            .expect("timestamp")
                            .to_owned(),
                        signature: request.headers["webhook-signature"]
                            .to_str()
                            .expect("signature")
                            .to_owned(),
                    };
                    assert_eq!(headers.id, request.id(), "webhook-id is the event id");
                    telemetry_core::signing::verify_standard(
                        STANDARD_SECRET,
                        &headers,
                        request.body.as_bytes(),
                        now_secs(),
                        300,
                    )
                    .expect("a Standard Webhooks signature that verifies");
                }
            }
            assert!(request.id().starts_with("EV_"));
        }
    }
    // The same event ids go to both endpoints.
    let ids =
        |path: &str| received.iter().filter(|r| r.path == path).map(|r| r.id()).collect::<Vec<_>>();
    assert_eq!(ids("/livekit"), ids("/standard"));

    // Deliveries are listed delivered, with their attempt, and a WEBHOOK analytics event each.
    let deliveries = wait_for_api(
        &app,
        "/v1/webhooks/deliveries?status=delivered",
        Duration::from_secs(5),
        |body| body["deliveries"].as_array().is_some_and(|d| d.len() == 18),
    )
    .await;
    let first = &deliveries["deliveries"][0];
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["lastStatusCode"], 200);
    assert!(first["deliveredAt"].is_string());
    let detail =
        app.get_ok(&format!("/v1/webhooks/deliveries/{}", first["id"].as_str().expect("id"))).await;
    assert_eq!(detail["attempts"][0]["statusCode"], 200);
    let webhook_events = wait_for_api(
        &app,
        &format!("/v1/rooms/{ROOM}/events?type=WEBHOOK&limit=100"),
        Duration::from_secs(5),
        |body| body["events"].as_array().is_some_and(|e| e.len() == 18),
    )
    .await;
    assert_eq!(webhook_events["events"][0]["webhook"]["httpStatusCode"], 200);
    let nodes = app.get_ok("/v1/nodes").await;
    let nodes: Vec<&str> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["nodeId"].as_str())
        .collect();
    assert_eq!(
        nodes,
        ["sfu-test-1"],
        "the service that sends webhooks is not listed as an SFU node"
    );
    assert!(
        webhook_events["events"][0]["webhook"]["eventId"]
            .as_str()
            .is_some_and(|id| id.starts_with("EV_"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_then_success_deliver_the_same_id() {
    let receiver = TestReceiver::start().await;
    receiver.script(vec![Answer::Status(500), Answer::Status(503)]);
    let app = TestApp::start_with(&format!(
        "{FAST_RETRIES}{}",
        endpoint_config(&receiver.url("/hook"), "livekit", SECRET)
    ))
    .await;
    let (status, _) = app.ingest_json(&json!({ "calls": [{ "roomStarted": { "room": { "sid": "RM_retry", "name": "retry" } } }] })).await;
    assert_eq!(status, 200);
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 3).await;
    let ids: Vec<String> = received.iter().map(|r| r.id()).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "the same event id on every attempt: {ids:?}");
    let bodies: Vec<&str> = received.iter().map(|r| r.body.as_str()).collect();
    assert!(bodies.iter().all(|body| *body == bodies[0]), "the same bytes on every attempt");
    let deliveries =
        wait_for_api(&app, "/v1/webhooks/deliveries", Duration::from_secs(5), |body| {
            body["deliveries"][0]["status"] == "delivered"
        })
        .await;
    let delivery = &deliveries["deliveries"][0];
    assert_eq!(
        (delivery["attempts"].as_u64(), delivery["lastStatusCode"].as_u64()),
        (Some(3), Some(200))
    );
    let detail = app
        .get_ok(&format!("/v1/webhooks/deliveries/{}", delivery["id"].as_str().expect("id")))
        .await;
    let codes: Vec<u64> = detail["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(codes, [500, 503, 200]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let receiver = TestReceiver::start().await;
    receiver.script(vec![Answer::TooManyRequests(1)]);
    let app = TestApp::start_with(&format!(
        "{FAST_RETRIES}{}",
        endpoint_config(&receiver.url("/hook"), "livekit", SECRET)
    ))
    .await;
    let (status, _) = app.ingest_json(&json!({ "calls": [{ "roomStarted": { "room": { "sid": "RM_429", "name": "busy" } } }] })).await;
    assert_eq!(status, 200);
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 2).await;
    let waited = received[1].at.duration_since(received[0].at);
    assert!(
        waited >= Duration::from_millis(900),
        "waited {waited:?}: Retry-After 1 s, not the 100 ms of the schedule"
    );
    wait_for_api(&app, "/v1/webhooks/deliveries", Duration::from_secs(5), |body| {
        body["deliveries"][0]["status"] == "delivered"
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_room_delays_neither_other_rooms_nor_other_endpoints() {
    let receiver = TestReceiver::start().await;
    // Endpoint A hangs on everything about room "slow"; endpoint B answers everything.
    receiver.rule(|path, body| {
        (path == "/a" && body["room"]["name"] == "slow").then_some(Answer::Hang)
    });
    // A request timeout long enough that the others, if they are not held back, are all
    // delivered while the hung request is still open.
    let config = format!(
        "[webhooks]\nretry_schedule = [\"100ms\", \"200ms\", \"300ms\"]\nrequest_timeout = \"3s\"\n{}{}",
        endpoint_config(&receiver.url("/a"), "livekit", SECRET),
        endpoint_config(&receiver.url("/b"), "livekit", SECRET)
    );
    let app = TestApp::start_with(&config).await;
    let calls: Vec<Value> = (0..5)
        .flat_map(|i| {
            [
                json!({ "roomStarted": { "room": { "sid": format!("RM_slow{i}"), "name": "slow" } } }),
                json!({ "roomStarted": { "room": { "sid": format!("RM_fast{i}"), "name": format!("fast-{i}") } } }),
            ]
        })
        .collect();
    let (status, _) = app.ingest_json(&json!({ "calls": calls })).await;
    assert_eq!(status, 200);
    let received = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.path == "/b").count() == 10
                && r.iter().filter(|r| r.path == "/a" && r.json()["room"]["name"] != "slow").count()
                    == 5
        })
        .await;
    assert_eq!(
        receiver.hanging(),
        1,
        "every other room and endpoint was delivered while the hung request was still open"
    );
    // The hung room's first webhook was sent to A; the next ones wait behind it (its order).
    assert_eq!(
        received.iter().filter(|r| r.path == "/a" && r.json()["room"]["name"] == "slow").count(),
        1
    );
    // Its attempts time out and are retried.
    let slow = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.path == "/a" && r.json()["room"]["name"] == "slow").count() >= 2
        })
        .await;
    let slow_ids: Vec<String> = slow
        .iter()
        .filter(|r| r.path == "/a" && r.json()["room"]["name"] == "slow")
        .map(|r| r.id())
        .collect();
    assert_eq!(slow_ids[0], slow_ids[1], "a timed-out attempt is retried with the same message");
    let deliveries = wait_for_api(
        &app,
        "/v1/webhooks/deliveries?status=pending",
        Duration::from_secs(5),
        |body| {
            body["deliveries"].as_array().is_some_and(|d| {
                d.iter().any(|d| d["lastError"].as_str().is_some_and(|e| e.contains("timed out")))
            })
        },
    )
    .await;
    assert!(!deliveries["deliveries"].as_array().expect("deliveries").is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_and_4xx_answers_end_dead_never_delivered() {
    let receiver = TestReceiver::start().await;
    receiver.answer(Answer::Status(400));
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_url = format!("http://{}/hook", closed.local_addr().expect("addr"));
    drop(closed);
    let config = format!(
        "{FAST_RETRIES}{}{}",
        endpoint_config(&receiver.url("/bad-request"), "livekit", SECRET),
        endpoint_config(&closed_url, "livekit", SECRET)
    );
    let app = TestApp::start_with(&config).await;
    let (status, _) = app.ingest_json(&json!({ "calls": [{ "roomStarted": { "room": { "sid": "RM_dead", "name": "dead" } } }] })).await;
    assert_eq!(status, 200);
    let dead = wait_for_api(
        &app,
        "/v1/webhooks/deliveries?status=dead",
        Duration::from_secs(10),
        |body| body["deliveries"].as_array().is_some_and(|d| d.len() == 2),
    )
    .await;
    for delivery in dead["deliveries"].as_array().expect("deliveries") {
        assert_eq!(delivery["attempts"], 4, "every scheduled attempt was made: {delivery}");
        let error = delivery["lastError"].as_str().unwrap_or("");
        assert!(error.contains("HTTP 400") || error.contains("cannot connect"), "{delivery}");
    }
    assert_eq!(receiver.received().len(), 4, "a 4xx is never success: retried to the end");
    let delivered = app.get_ok("/v1/webhooks/deliveries?status=delivered").await;
    assert_eq!(delivered["deliveries"], json!([]));
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("livekit_webhook_dispatch_total{status=\"failure\",reason=\"\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("rtc_telemetry_webhook_outbox{status=\"dead\"} 2"), "{metrics}");
    assert!(metrics.contains("rtc_telemetry_webhook_attempts_total{result=\"http_4xx\"} 4"));
    assert!(metrics.contains("rtc_telemetry_webhook_attempts_total{result=\"connect\"} 4"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_past_its_schedule_gets_everything_by_retry_and_replay() {
    let receiver = TestReceiver::start().await;
    receiver.answer(Answer::Status(503));
    let app = TestApp::start_with(&format!(
        "{FAST_RETRIES}{}",
        endpoint_config(&receiver.url("/hook"), "livekit", SECRET)
    ))
    .await;
    let calls: Vec<Value> = (0..4)
        .map(
            |i| json!({ "roomStarted": { "room": { "sid": format!("RM_d{i}"), "name": "down" } } }),
        )
        .collect();
    let (status, _) = app.ingest_json(&json!({ "calls": calls })).await;
    assert_eq!(status, 200);
    let dead = wait_for_api(
        &app,
        "/v1/webhooks/deliveries?status=dead",
        Duration::from_secs(15),
        |body| body["deliveries"].as_array().is_some_and(|d| d.len() == 4),
    )
    .await;
    receiver.answer(Answer::Status(200));
    let before = receiver.received().len();

    // One by hand (the list is newest first: the last room's) ...
    let one = dead["deliveries"][0]["id"].as_str().expect("id").to_owned();
    let (status, body) =
        admin_post(&app, &format!("/v1/webhooks/deliveries/{one}/retry"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivery"]["status"], "pending");
    wait_for_api(&app, &format!("/v1/webhooks/deliveries/{one}"), Duration::from_secs(5), |body| {
        body["delivery"]["status"] == "delivered"
    })
    .await;

    // ... the rest by replaying the time range.
    let endpoints = app.get_ok("/v1/webhooks/endpoints").await;
    let endpoint = endpoints["endpoints"][0]["id"].as_str().expect("id").to_owned();
    let (status, body) =
        admin_post(&app, "/v1/webhooks/replay", &json!({ "endpointId": endpoint, "since": 0 }))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requeued"], 3);
    wait_for_api(
        &app,
        "/v1/webhooks/deliveries?status=delivered",
        Duration::from_secs(5),
        |body| body["deliveries"].as_array().is_some_and(|d| d.len() == 4),
    )
    .await;
    let received = receiver.received();
    let replayed: Vec<String> = received[before..]
        .iter()
        .map(|r| r.json()["room"]["sid"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        replayed,
        ["RM_d3", "RM_d0", "RM_d1", "RM_d2"],
        "the replay keeps the original order"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_room_order_holds_across_many_rooms_in_parallel() {
    let receiver = TestReceiver::start().await;
    // Every fifth request fails once: retries must not reorder a room.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    receiver.rule(move |_, _| {
        counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .is_multiple_of(5)
            .then_some(Answer::Status(500))
    });
    let app = TestApp::start_with(&format!(
        "{FAST_RETRIES}{}",
        endpoint_config(&receiver.url("/hook"), "livekit", SECRET)
    ))
    .await;
    let mut calls = Vec::new();
    for step in 0..6 {
        for room in 0..20 {
            let sid = format!("RM_order{room:02}");
            let participant =
                json!({ "sid": format!("PA_{room}_{step}"), "identity": format!("user-{step}") });
            calls.push(match step {
                0 => json!({ "roomStarted": { "room": { "sid": sid, "name": format!("order-{room}") } } }),
                5 => json!({ "roomEnded": { "room": { "sid": sid, "name": format!("order-{room}") } } }),
                _ => json!({ "participantActive": { "room": { "sid": sid, "name": format!("order-{room}") }, "participant": participant } }),
            });
        }
    }
    let (status, _) = app.ingest_json(&json!({ "calls": calls })).await;
    assert_eq!(status, 200);
    let received = receiver
        .wait_for(Duration::from_secs(20), |r| {
            let mut ids: Vec<String> = r.iter().map(|r| r.id()).collect();
            ids.sort();
            ids.dedup();
            ids.len() == 120
        })
        .await;
    for room in 0..20 {
        let name = format!("order-{room}");
        let mut firsts: Vec<String> = Vec::new();
        for request in received.iter().filter(|r| r.json()["room"]["name"] == name.as_str()) {
            let json = request.json();
            let step = match json["event"].as_str() {
                Some("room_started") => "0".to_owned(),
                Some("room_finished") => "5".to_owned(),
                _ => json["participant"]["identity"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("user-")
                    .to_owned(),
            };
            if !firsts.contains(&step) {
                firsts.push(step);
            }
        }
        assert_eq!(firsts, ["0", "1", "2", "3", "4", "5"], "room {room} in call order");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_filters_choose_the_events() {
    let receiver = TestReceiver::start().await;
    let config = format!(
        "{FAST_RETRIES}{}include_events = [\"room_started\"]\nexclude_events = [\"room_started\"]\n{}exclude_events = [\"room_started\"]\n",
        endpoint_config(&receiver.url("/include"), "livekit", SECRET),
        endpoint_config(&receiver.url("/exclude"), "livekit", SECRET)
    );
    let app = TestApp::start_with(&config).await;
    ingest_lifecycle(&app).await;
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 9).await;
    let include: Vec<String> =
        events(&received.iter().filter(|r| r.path == "/include").cloned().collect::<Vec<_>>());
    let exclude: Vec<String> =
        events(&received.iter().filter(|r| r.path == "/exclude").cloned().collect::<Vec<_>>());
    assert_eq!(include, ["room_started"], "include wins over exclude");
    assert_eq!(exclude, LIFECYCLE_WEBHOOKS[1..]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_managed_through_the_api() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::start_with(&format!(
        "{FAST_RETRIES}{}",
        endpoint_config(&receiver.url("/config"), "livekit", SECRET)
    ))
    .await;
    let (status, body) = admin_post(
        &app,
        "/v1/webhooks/endpoints",
        &json!({ "url": receiver.url("/api"), "signing": "standard", "secret": STANDARD_SECRET, "excludeEvents": ["room_finished"] }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created = body["endpoint"]["id"].as_str().expect("id").to_owned();
    assert!(created.starts_with("WE_"));
    assert!(body["endpoint"].get("secret").is_none(), "secrets are never returned");
    let listed = app.get_ok("/v1/webhooks/endpoints").await;
    let endpoints = listed["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 2);
    assert!(endpoints.iter().all(|endpoint| endpoint.get("secret").is_none()));
    let config_id = endpoints.iter().find(|e| e["source"] == "config").expect("the configured one")
        ["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Deliveries go to the new endpoint from now on.
    let (status, _) = app.ingest_json(&json!({ "calls": [{ "roomStarted": { "room": { "sid": "RM_api", "name": "api" } } }] })).await;
    assert_eq!(status, 200);
    receiver.wait_for(Duration::from_secs(5), |r| r.iter().any(|r| r.path == "/api")).await;

    for (body, field) in [
        (json!({ "url": "ftp://x", "secret": "s", "apiKey": "k" }), "`url`"),
        (json!({ "url": "http://127.0.0.1:1/x", "secret": "s" }), "`apiKey`"),
        (
            json!({ "url": "http://127.0.0.1:1/x", "signing": "standard", "secret": "plain" }),
            "`secret`",
        ),
        (
            json!({ "url": "http://127.0.0.1:1/x", "secret": "s", "apiKey": "k", "includeEvents": ["nope"] }),
            "`includeEvents`",
        ),
        (
            json!({ "url": "http://127.0.0.1:1/x", "secret": "s", "apiKey": "k", "colour": 1 }),
            "colour",
        ),
        (json!({ "url": "http://127.0.0.1:1/x" }), "secret"),
    ] {
        let (status, answer) = admin_post(&app, "/v1/webhooks/endpoints", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap_or("").contains(field),
            "{body}: {answer}"
        );
    }
    let reader = app
        .client
        .post(app.url("/v1/webhooks/endpoints"))
        .bearer_auth(TestApp::token(READER))
        .json(&json!({ "url": "http://127.0.0.1:1/x", "secret": "s", "apiKey": "k" }))
        .send()
        .await
        .expect("request");
    assert_eq!(reader.status().as_u16(), 403, "changing endpoints needs `admin`");

    let delete = |id: String| {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/webhooks/endpoints/{id}"));
        async move {
            client
                .delete(url)
                .bearer_auth(TestApp::token(ADMIN))
                .send()
                .await
                .expect("delete")
                .status()
                .as_u16()
        }
    };
    assert_eq!(delete(config_id).await, 409, "configured endpoints are changed in the file");
    assert_eq!(delete(created.clone()).await, 204);
    assert_eq!(delete(created).await, 404);
    assert_eq!(
        app.get_ok("/v1/webhooks/endpoints").await["endpoints"]
            .as_array()
            .expect("endpoints")
            .len(),
        1
    );

    for (path, expected) in [
        ("/v1/webhooks/deliveries?status=lost", "`status`"),
        ("/v1/webhooks/deliveries?event=room_exploded", "`event`"),
        ("/v1/webhooks/deliveries?limit=0", "`limit`"),
        ("/v1/webhooks/deliveries?cursor=zzz", "`cursor`"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}");
        assert!(
            body["error"]["message"].as_str().unwrap_or("").contains(expected),
            "{path}: {body}"
        );
    }
    let (status, _) = app.get("/v1/webhooks/deliveries/999999").await;
    assert_eq!(status, 404);
    let (status, _) = admin_post(&app, "/v1/webhooks/deliveries/999999/retry", &json!({})).await;
    assert_eq!(status, 404);
    let (status, body) =
        admin_post(&app, "/v1/webhooks/replay", &json!({ "endpointId": "WE_none", "since": 0 }))
            .await;
    assert_eq!(status, 404, "{body}");
    let endpoint = app.get_ok("/v1/webhooks/endpoints").await["endpoints"][0]["id"].clone();
    for (body, field) in [
        (json!({ "since": 0 }), "endpointId"),
        (json!({ "endpointId": endpoint }), "since"),
        (json!({ "endpointId": endpoint, "since": "yesterday" }), "`since`"),
        (json!({ "endpointId": endpoint, "since": 10, "until": 5 }), "`since`"),
        (json!({ "endpointId": endpoint, "since": 0, "status": "pending" }), "`status`"),
        (json!({ "endpointId": endpoint, "since": 0, "colour": 1 }), "colour"),
        (json!([1, 2]), "body"),
    ] {
        let (status, answer) = admin_post(&app, "/v1/webhooks/replay", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap_or("").contains(field),
            "{body}: {answer}"
        );
    }
    let not_json = app
        .client
        .post(app.url("/v1/webhooks/replay"))
        .bearer_auth(TestApp::token(ADMIN))
        .header("content-type", "application/json")
        .body("{since")
        .send()
        .await
        .expect("request");
    assert_eq!(not_json.status().as_u16(), 400);
    app.stop().await;
}
