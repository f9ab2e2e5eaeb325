//! The outbox survives SIGKILL: the real binary is killed while thousands of webhook deliveries
//! are pending, some in flight, some waiting to be retried; after a restart on the same data
//! directory every webhook of every acknowledged call reaches every endpoint at least once, with
//! the id it had before the crash, and each room's webhooks arrive in call order at each
//! endpoint (counting each webhook's first arrival).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{ADMIN, Answer, Binary, TestApp, TestData, TestReceiver, endpoint_config};
use serde_json::{Value, json};

const ROOMS: usize = 300;
/// Per room: `room_started`, `participant_joined` × 8, `room_finished`.
const STEPS: usize = 10;
const ENDPOINTS: [&str; 2] = ["/a", "/b"];

/// The webhook's place in its room: 0 for `room_started`, the participant's number, `STEPS - 1`
/// for `room_finished`.
fn step(webhook: &Value) -> usize {
    match webhook["event"].as_str() {
        Some("room_started") => 0,
        Some("room_finished") => STEPS - 1,
        _ => webhook["participant"]["identity"]
            .as_str()
            .and_then(|identity| identity.strip_prefix("user-"))
            .and_then(|n| n.parse().ok())
            .expect("a participant webhook of the test"),
    }
}

fn calls_of(room: usize) -> Vec<Value> {
    crate::support::room_calls("crash", room, STEPS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_thousands_pending_loses_no_webhook() {
    let receiver = TestReceiver::start().await;
    // Before the crash: slow answers, and every third one a failure to retry.
    let counter = Arc::new(AtomicUsize::new(0));
    receiver.rule(move |_, _| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Some(Answer::Slow(Duration::from_millis(200), if n.is_multiple_of(3) { 503 } else { 200 }))
    });
    let data = TestData::new();
    // Enough attempts that nothing is dead by the end. A short claim lease: the restarted
    // service (a new instance id) takes over what the killed one had claimed once it runs out.
    let config = format!(
        "[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n\
         [webhooks]\nretry_schedule = [{}]\nrequest_timeout = \"2s\"\nclaim_lease = \"3s\"\n{}{}",
        ADMIN.0,
        ADMIN.1,
        vec!["\"300ms\""; 40].join(", "),
        endpoint_config(
            &receiver.url(ENDPOINTS[0]),
            "livekit",
            "webhook-secret-0123456789abcdef0123"
        ),
        endpoint_config(
            &receiver.url(ENDPOINTS[1]),
            "standard",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        ),
    );
    let config_path = data.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");

    let binary = Binary::start(&data, &config_path);
    let client = reqwest::Client::new();
    let token = TestApp::token(ADMIN);
    // Rooms interleaved, in batches of 500 calls: every room spans several batches.
    let mut calls: Vec<(usize, Value)> = Vec::new();
    for n in 0..STEPS {
        for room in 0..ROOMS {
            calls.push((room, calls_of(room)[n].clone()));
        }
    }
    let mut acknowledged: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (index, batch) in calls.chunks(500).enumerate() {
        let body =
            json!({ "calls": batch.iter().map(|(_, call)| call.clone()).collect::<Vec<_>>() });
        let response = client
            .post(binary.url("/v1/telemetry"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("ingest");
        assert_eq!(response.status(), 200, "batch {index}");
        acknowledged.extend((0..batch.len()).map(|i| (batch[i].0, (index * 500 + i) / ROOMS)));
    }
    assert_eq!(acknowledged.len(), ROOMS * STEPS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    binary.signal("KILL");
    let (status, _) = binary.wait().await;
    assert!(!status.success(), "killed: {status}");
    let before_restart = receiver.received().len();

    // What the crash left: thousands of deliveries still pending.
    let store = data.open_store().await;
    let outbox = store.outbox_counts().await.expect("outbox counts");
    assert!(outbox.pending >= 2000, "thousands pending at the crash: {outbox:?}");
    assert_eq!(
        outbox.pending + outbox.delivered + outbox.dead,
        (2 * ROOMS * STEPS) as u64,
        "{outbox:?}"
    );
    let messages: BTreeSet<String> = {
        let page = store
            .deliveries(telemetry_store::model::DeliveriesQuery {
                limit: 100_000,
                ..Default::default()
            })
            .await
            .expect("deliveries");
        page.items.iter().map(|delivery| delivery.message_id.clone()).collect()
    };
    store.close().await;
    assert_eq!(messages.len(), ROOMS * STEPS, "one message per webhook");

    // Restart on the same data; the endpoints now answer at once.
    receiver.clear_rules();
    let binary = Binary::start(&data, &config_path);
    let received = receiver
        .wait_for(Duration::from_secs(120), |received| {
            ENDPOINTS.iter().all(|endpoint| {
                received
                    .iter()
                    .filter(|r| r.path == *endpoint)
                    .map(|r| r.id())
                    .collect::<BTreeSet<_>>()
                    .len()
                    == ROOMS * STEPS
            })
        })
        .await;
    assert!(received.len() > before_restart, "delivery went on after the restart");
    eprintln!(
        "at the crash: {outbox:?}; requests before it {before_restart}, in all {} for {} webhooks",
        received.len(),
        2 * ROOMS * STEPS
    );

    for endpoint in ENDPOINTS {
        let mine: Vec<Value> =
            received.iter().filter(|r| r.path == endpoint).map(|r| r.json()).collect();
        // Every stored message, every acknowledged call, by the same id everywhere.
        let ids: BTreeSet<String> =
            mine.iter().map(|w| w["id"].as_str().unwrap_or("").to_owned()).collect();
        assert_eq!(ids, messages, "{endpoint}: every stored message id, none other");
        let arrived: BTreeSet<(usize, usize)> = mine
            .iter()
            .map(|w| {
                let room: usize = w["room"]["name"]
                    .as_str()
                    .and_then(|n| n.strip_prefix("crash-")?.parse().ok())
                    .expect("room");
                (room, step(w))
            })
            .collect();
        assert_eq!(arrived, acknowledged, "{endpoint}: every acknowledged call's webhook");
        // Per room, first arrivals in call order.
        let mut firsts: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for webhook in &mine {
            if seen.insert(webhook["id"].as_str().unwrap_or("").to_owned()) {
                let room: usize = webhook["room"]["name"]
                    .as_str()
                    .and_then(|n| n.strip_prefix("crash-")?.parse().ok())
                    .expect("room");
                firsts.entry(room).or_default().push(step(webhook));
            }
        }
        for (room, order) in firsts {
            assert_eq!(
                order,
                (0..STEPS).collect::<Vec<_>>(),
                "{endpoint}: room {room} in call order"
            );
        }
    }

    // And the outbox says so.
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let overview: Value = client
            .get(binary.url("/v1/webhooks/deliveries?status=pending&limit=1"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .expect("json");
        if overview["deliveries"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries still pending: {overview}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    binary.signal("TERM");
    let (status, log) = binary.wait().await;
    assert!(status.success(), "{log}");
}
