//! Two services on one database share the webhook outbox: endpoints that fail and recover get
//! every delivery, none twice while both services live, one request per room at a time and each
//! room's webhooks first arriving in call order, although both services claim and send; after one
//! is killed with SIGKILL, the other takes its claims over once their lease runs out and delivers
//! the rest. Runs on the suite's backend: two processes on one SQLite file, or on one PostgreSQL
//! database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ADMIN, Answer, Binary, TestApp, TestData, TestReceiver, endpoint_config};

const ROOMS: usize = 40;
/// Per room: `room_started`, `participant_joined` × 8, `room_finished`.
const STEPS: usize = 10;
const ENDPOINTS: [&str; 2] = ["/a", "/b"];

fn calls_of(room: usize) -> Vec<Value> {
    crate::support::room_calls("shared", room, STEPS)
}

fn room_and_step(webhook: &Value) -> (usize, usize) {
    let room = webhook["room"]["name"]
        .as_str()
        .and_then(|name| name.strip_prefix("shared-")?.parse().ok())
        .expect("a room of the test");
    let step = match webhook["event"].as_str() {
        Some("room_started") => 0,
        Some("room_finished") => STEPS - 1,
        _ => webhook["participant"]["identity"]
            .as_str()
            .and_then(|identity| identity.strip_prefix("user-")?.parse().ok())
            .expect("a participant of the test"),
    };
    (room, step)
}

async fn metric(client: &reqwest::Client, binary: &Binary, name: &str) -> f64 {
    let text = crate::support::metrics_text(client, &binary.url("/metrics")).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_on_one_database_deliver_everything_once_in_order() {
    let receiver = TestReceiver::start().await;
    // `/a` is down until told otherwise; `/b` is slow and fails one request in five. Every 2xx
    // answer is logged with its time.
    let a_down = Arc::new(AtomicBool::new(true));
    let requests = Arc::new(AtomicUsize::new(0));
    let successes: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    {
        let (a_down, requests, successes) = (a_down.clone(), requests.clone(), successes.clone());
        receiver.rule(move |path, body| {
            let n = requests.fetch_add(1, Ordering::SeqCst);
            let ok = match path {
                "/a" => !a_down.load(Ordering::SeqCst),
                _ => n % 5 != 0,
            };
            if ok {
                let id = body["id"].as_str().unwrap_or("").to_owned();
                successes.lock().expect("lock").push((path.to_owned(), id, Instant::now()));
            }
            Some(Answer::Slow(Duration::from_millis(15), if ok { 200 } else { 503 }))
        });
    }
    let data = TestData::new();
    let config = format!(
        "[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n\
         [webhooks]\nretry_schedule = [{}]\nrequest_timeout = \"1s\"\nclaim_lease = \"3s\"\n{}{}",
        ADMIN.0,
        ADMIN.1,
        vec!["\"200ms\""; 60].join(", "),
        endpoint_config(&receiver.url("/a"), "livekit", "webhook-secret-0123456789abcdef0123"),
        endpoint_config(&receiver.url("/b"), "standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    );
    let config_path = data.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");
    let first = Binary::start(&data, &config_path);
    let second = Binary::start(&data, &config_path);

    // Every room's calls in order, batch after acknowledged batch, alternating between the two
    // services: both create deliveries, and each room's are in call order in the database.
    let client = reqwest::Client::new();
    let token = TestApp::token(ADMIN);
    let mut calls: Vec<Value> = Vec::new();
    for step in 0..STEPS {
        for room in 0..ROOMS {
            calls.push(calls_of(room)[step].clone());
        }
    }
    for (index, batch) in calls.chunks(20).enumerate() {
        let service = if index % 2 == 0 { &first } else { &second };
        let response = client
            .post(service.url("/v1/telemetry"))
            .bearer_auth(&token)
            .json(&json!({ "calls": batch }))
            .send()
            .await
            .expect("ingest");
        assert_eq!(response.status(), 200, "batch {index}");
    }
    let total = ROOMS * STEPS;
    // `/b` gets some deliveries from both services; then `/a` recovers.
    receiver
        .wait_for(Duration::from_secs(60), |received| {
            received.iter().filter(|r| r.path == "/b").count() > total / 4
        })
        .await;
    a_down.store(false, Ordering::SeqCst);
    let delivered_of =
        |path: &str| successes.lock().expect("lock").iter().filter(|(p, _, _)| p == path).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered_of("/a") < total / 3 {
        assert!(Instant::now() < deadline, "`/a` did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claims_first = metric(&client, &first, "rtc_telemetry_webhook_claims_total").await;
    let claims_second = metric(&client, &second, "rtc_telemetry_webhook_claims_total").await;
    assert!(
        claims_first > 0.0 && claims_second > 0.0,
        "both services claimed deliveries: {claims_first}, {claims_second}"
    );

    // One service dies; the other delivers the rest, taking over its claims after the lease.
    first.signal("KILL");
    let killed_at = Instant::now();
    let _ = first.wait().await;
    receiver
        .wait_for(Duration::from_secs(90), |_| {
            let successes = successes.lock().expect("lock");
            ENDPOINTS.iter().all(|endpoint| {
                successes
                    .iter()
                    .filter(|(path, _, _)| path == endpoint)
                    .map(|(_, id, _)| id)
                    .collect::<BTreeSet<_>>()
                    .len()
                    == total
            })
        })
        .await;
    // Every success is logged after its request is recorded: read what was received now.
    let received = receiver.received();

    let successes = successes.lock().expect("lock").clone();
    let mut while_both_lived: HashMap<(String, String), usize> = HashMap::new();
    for (path, id, at) in &successes {
        if *at < killed_at {
            *while_both_lived.entry((path.clone(), id.clone())).or_default() += 1;
        }
    }
    let twice: Vec<_> = while_both_lived.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "delivered twice while both services lived: {twice:?}");
    assert_eq!(receiver.max_open_per_room(), 1, "one request per endpoint and room at a time");
    for endpoint in ENDPOINTS {
        // Per room, first arrivals in call order.
        let mut firsts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for request in received.iter().filter(|r| r.path == endpoint) {
            if seen.insert(request.id()) {
                let (room, step) = room_and_step(&request.json());
                firsts.entry(room).or_default().push(step);
            }
        }
        assert_eq!(firsts.len(), ROOMS, "{endpoint}: every room");
        for (room, order) in firsts {
            assert_eq!(
                order,
                (0..STEPS).collect::<Vec<_>>(),
                "{endpoint}: room {room} in call order"
            );
        }
    }
    // A delivery the killed service made but could not record is made again (at least once):
    // it may still be pending, between its attempts, for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let overview: Value = client
            .get(second.url("/v1/webhooks/deliveries?status=pending&limit=1"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .expect("json");
        if overview["deliveries"] == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries still pending: {overview}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.signal("TERM");
    let (status, log) = second.wait().await;
    assert!(status.success(), "{log}");
}
