//! The durable webhook load harness: the real service in process (HTTP ingest, the core, the
//! pipeline writing the outbox with every commit synced, the dispatcher claiming every delivery
//! and recording every attempt) delivering signed webhooks to a local receiver, for 1 and 16
//! endpoints and 1 and 1000 rooms (the resource keys: one request in flight per endpoint and
//! room), on SQLite and on PostgreSQL (a private server this harness starts, `fsync` on) in one
//! run.
//!
//! Two measurements per case:
//! - burst: every call ingested at once; webhook deliveries per second until the last one
//!   arrives, against a baseline measured in the same run: the same number of requests, bodies
//!   of the same size, posted to the same receiver by a plain client at the concurrency the
//!   dispatcher may use (so the ratio is the cost of durability, signing and ordering);
//! - paced: calls ingested at a steady rate below capacity; p50 and p99 from sending the ingest
//!   call to the webhook's arrival.
//!
//! And one small-request workload (`S`), calls arriving as an SFU sends them: 16 clients, each
//! sending lifecycle requests of 1 to 4 calls (rooms of 10 participants starting, joining,
//! becoming active, leaving and ending; 22 webhooks a room) one after the other, to one
//! endpoint; deliveries per second from the first request to the last first arrival, p50 and
//! p99 from sending a call's request to its webhook's first arrival, the order of first arrivals
//! per room checked against call order, the ratio to Svix's 1,070 webhooks/s (DESIGN.md), and
//! the same requests ingested with no endpoint (what ingest alone takes).
//!
//! Run with `cargo bench -p telemetry-server --features bench --bench webhook_load`
//! (`-- --webhooks 4000 --rate 200` to change the load, `--only 16,1000` for one burst case,
//! `--only S` for the small-request workload alone (`--clients 16 --small-rooms 200`),
//! `--store postgres` for one backend).

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

/// The allocator of the `rtc-telemetry` binary, so that what is measured is the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use telemetry_server::app::App;
use telemetry_server::config::{self, FlagOverrides};

const SECRET: &str = "bench-webhook-secret-0123456789abcdef";

struct Options {
    webhooks: usize,
    batch: usize,
    rate: f64,
    paced_seconds: f64,
    /// Only this burst case (`endpoints,rooms`).
    only: Option<(usize, usize)>,
    /// Only the small-request workload (`--only S`).
    only_small: bool,
    /// Clients of the small-request workload.
    clients: usize,
    /// Rooms of the small-request workload.
    small_rooms: usize,
    /// Only this backend.
    store: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        webhooks: 4000,
        batch: 100,
        rate: 200.0,
        paced_seconds: 10.0,
        only: None,
        only_small: false,
        clients: 16,
        small_rooms: 200,
        store: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--webhooks" => options.webhooks = value.parse().unwrap_or(options.webhooks),
            "--batch" => options.batch = value.parse().unwrap_or(options.batch),
            "--rate" => options.rate = value.parse().unwrap_or(options.rate),
            "--paced-seconds" => {
                options.paced_seconds = value.parse().unwrap_or(options.paced_seconds)
            }
            "--store" => options.store = Some(value),
            "--clients" => options.clients = value.parse().unwrap_or(options.clients),
            "--small-rooms" => options.small_rooms = value.parse().unwrap_or(options.small_rooms),
            "--only" if value.eq_ignore_ascii_case("s") => options.only_small = true,
            "--only" => {
                options.only = value
                    .split_once(',')
                    .and_then(|(e, r)| Some((e.parse().ok()?, r.parse().ok()?)));
            }
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

/// A local endpoint answering 200 at once, recording each webhook's first arrival by endpoint
/// (path) and call number (the participant's identity).
#[derive(Clone, Default)]
struct Receiver {
    arrivals: Arc<Mutex<HashMap<(String, usize), Instant>>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    async fn start(&self) -> anyhow::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let receiver = self.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: bytes::Bytes| {
            let receiver = receiver.clone();
            async move {
                let at = Instant::now();
                receiver.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let webhook: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(call) = webhook["participant"]["identity"]
                    .as_str()
                    .and_then(|id| id.strip_prefix('c')?.parse().ok())
                {
                    receiver
                        .arrivals
                        .lock()
                        .expect("lock")
                        .entry((uri.path().to_owned(), call))
                        .or_insert(at);
                }
                axum::http::StatusCode::OK
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(address)
    }

    fn arrived(&self) -> usize {
        self.arrivals.lock().expect("lock").len()
    }
}

/// Call `index`: a participant joining room `index % rooms` (one `participant_joined` webhook).
fn call(index: usize, rooms: usize) -> Value {
    let room = index % rooms;
    json!({ "participantActive": {
        "room": { "sid": format!("RM_bench{room:05}"), "name": format!("bench-{room}") },
        "participant": { "sid": format!("PA_bench{index:08}"), "identity": format!("c{index}") },
    } })
}

struct Service {
    url: String,
    token: String,
    client: reqwest::Client,
    stop: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Service {
    /// The service on SQLite, or on a new database of `postgres`.
    async fn start(
        receiver: std::net::SocketAddr,
        endpoints: usize,
        postgres: Option<&telemetry_test_support::postgres::PgServer>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let environment = match postgres {
            Some(server) => vec![
                ("RTC_TELEMETRY_STORE__BACKEND".to_owned(), "postgres".to_owned()),
                ("RTC_TELEMETRY_STORE__URL".to_owned(), server.create_database()?),
            ],
            None => Vec::new(),
        };
        let mut file =
            "[stats]\nflush_interval = \"1h\"\n[store]\nsynchronous = \"full\"\n".to_owned();
        for endpoint in 0..endpoints {
            file.push_str(&format!(
                "[[webhooks.endpoints]]\nurl = \"http://{receiver}/e{endpoint}\"\nsigning = \"livekit\"\napi_key = \"devkey\"\nsecret = \"{SECRET}\"\n"
            ));
        }
        let flags = FlagOverrides {
            data_dir: Some(dir.path().to_path_buf()),
            dev: true,
            ..FlagOverrides::default()
        };
        let config = config::load(Some(("bench", &file)), &environment, &flags)?;
        let app = App::build(config).await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/telemetry", http.local_addr()?);
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(app.run(http, grpc, stop.clone().cancelled_owned()));
        let token =
            telemetry_server::auth::mint_token("devkey", "secret", Duration::from_secs(3600))
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        Ok(Self { url, token, client: reqwest::Client::new(), stop, server, _dir: dir })
    }

    async fn ingest(&self, calls: Vec<Value>) {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({ "calls": calls }))
            .send()
            .await
            .expect("ingest");
        assert!(response.status().is_success(), "{}", response.status());
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.server.await?
    }
}

async fn wait_for(receiver: &Receiver, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while receiver.arrived() < count {
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {count} webhooks arrived",
            receiver.arrived()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction) as usize]
}

/// The plain-client baseline: `requests` POSTs of `body` to the receiver, `concurrency` at once.
async fn baseline(
    address: std::net::SocketAddr,
    requests: usize,
    concurrency: usize,
    body: &str,
) -> f64 {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (client, next, body) = (client.clone(), next.clone(), body.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let response = client
                        .post(format!("http://{address}/baseline{worker}"))
                        .header("content-type", "application/webhook+json")
                        .header("authorization", "x".repeat(400))
                        .body(body.clone())
                        .send()
                        .await
                        .expect("baseline request");
                    assert!(response.status().is_success());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("baseline worker");
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

/// Participants per room of the small-request workload.
const ROOM_SIZE: usize = 10;
/// Rooms a client of the small-request workload runs at once (their calls interleaved).
const ROOMS_AT_ONCE: usize = 4;
/// Svix's rate on this machine kind (DESIGN.md, "Performance targets"), webhooks per second.
const SVIX_RATE: f64 = 1070.0;

/// The calls of room `room` of the small-request workload in call order, each with the key of
/// the webhook it makes (`event|room name|identity`), if it makes one: `roomStarted`, each
/// participant's `participantJoined` and `participantActive` (`participant_joined`), each
/// participant's `participantLeft`, `roomEnded`; 32 calls and 22 webhooks.
fn room_calls(room: usize) -> Vec<(Value, Option<String>)> {
    let name = format!("small-{room:05}");
    let room_json = json!({ "sid": format!("RM_small{room:05}"), "name": name });
    let participant = |index: usize| json!({ "sid": format!("PA_s{room:05}p{index:02}"), "identity": format!("u{index}") });
    let mut calls = vec![(
        json!({ "roomStarted": { "room": room_json } }),
        Some(format!("room_started|{name}|")),
    )];
    for index in 0..ROOM_SIZE {
        let body = json!({ "room": room_json, "participant": participant(index) });
        calls.push((json!({ "participantJoined": body }), None));
        calls.push((
            json!({ "participantActive": body }),
            Some(format!("participant_joined|{name}|u{index}")),
        ));
    }
    for index in 0..ROOM_SIZE {
        let body = json!({ "room": room_json, "participant": participant(index) });
        calls.push((
            json!({ "participantLeft": body }),
            Some(format!("participant_left|{name}|u{index}")),
        ));
    }
    calls.push((
        json!({ "roomEnded": { "room": room_json } }),
        Some(format!("room_finished|{name}|")),
    ));
    calls
}

/// One ingest request of the small-request workload: its calls and the keys of the webhooks
/// they make.
struct SmallRequest {
    calls: Vec<Value>,
    webhooks: Vec<String>,
}

/// The requests of client `client` of `clients`: its rooms (`client`, `client + clients`, ...),
/// [`ROOMS_AT_ONCE`] at a time with their calls interleaved, cut into requests of 1 to 4 calls
/// (a seeded draw, so every run sends the same requests).
fn client_requests(client: usize, clients: usize, rooms: usize) -> Vec<SmallRequest> {
    use rand::{RngExt as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64 + 1);
    let own: Vec<usize> = (client..rooms).step_by(clients).collect();
    let mut stream = Vec::new();
    for group in own.chunks(ROOMS_AT_ONCE) {
        let mut sequences: Vec<_> =
            group.iter().map(|&room| room_calls(room).into_iter()).collect();
        loop {
            let before = stream.len();
            for sequence in &mut sequences {
                stream.extend(sequence.next());
            }
            if stream.len() == before {
                break;
            }
        }
    }
    let mut requests = Vec::new();
    let mut calls = stream.into_iter().peekable();
    while calls.peek().is_some() {
        let size = rng.random_range(1..=4usize);
        let (calls, webhooks): (Vec<Value>, Vec<Option<String>>) =
            calls.by_ref().take(size).unzip();
        requests.push(SmallRequest { calls, webhooks: webhooks.into_iter().flatten().collect() });
    }
    requests
}

/// A local endpoint answering 200 at once that records each webhook's first arrival by its key
/// (`event|room name|identity`), with an arrival number (the order arrivals were seen in).
#[derive(Clone, Default)]
struct LifecycleReceiver {
    arrivals: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
    next: Arc<AtomicU64>,
}

impl LifecycleReceiver {
    async fn start(&self) -> anyhow::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let receiver = self.clone();
        let app = axum::Router::new().fallback(move |body: bytes::Bytes| {
            let receiver = receiver.clone();
            async move {
                let at = Instant::now();
                let number = receiver.next.fetch_add(1, Ordering::Relaxed);
                let webhook: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let key = format!(
                    "{}|{}|{}",
                    webhook["event"].as_str().unwrap_or_default(),
                    webhook["room"]["name"].as_str().unwrap_or_default(),
                    webhook["participant"]["identity"].as_str().unwrap_or_default()
                );
                receiver.arrivals.lock().expect("lock").entry(key).or_insert((number, at));
                axum::http::StatusCode::OK
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(address)
    }

    fn arrived(&self) -> usize {
        self.arrivals.lock().expect("lock").len()
    }
}

/// What the small-request workload's clients did: when each webhook's call was sent (by key),
/// each request's latency, and when the first request went out.
struct SmallRun {
    sent: HashMap<String, Instant>,
    request_latencies: Vec<Duration>,
    requests: usize,
    calls: usize,
    started: Instant,
    /// When the last request was answered.
    ingested: Instant,
}

/// Sends every client's requests, each client one request after the other.
async fn run_small_clients(service: &Service, clients: usize, rooms: usize) -> SmallRun {
    let plans: Vec<Vec<SmallRequest>> =
        (0..clients).map(|client| client_requests(client, clients, rooms)).collect();
    let requests = plans.iter().map(Vec::len).sum();
    let calls = plans.iter().flatten().map(|request| request.calls.len()).sum();
    let started = Instant::now();
    let tasks: Vec<_> = plans
        .into_iter()
        .map(|plan| {
            let (client, url, token) =
                (service.client.clone(), service.url.clone(), service.token.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut latencies = Vec::with_capacity(plan.len());
                for request in plan {
                    let at = Instant::now();
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "calls": request.calls }))
                        .send()
                        .await
                        .expect("ingest");
                    assert!(response.status().is_success(), "{}", response.status());
                    latencies.push(at.elapsed());
                    sent.extend(request.webhooks.into_iter().map(|key| (key, at)));
                }
                (sent, latencies)
            })
        })
        .collect();
    let mut run = SmallRun {
        sent: HashMap::new(),
        request_latencies: Vec::new(),
        requests,
        calls,
        started,
        ingested: started,
    };
    for task in tasks {
        let (sent, latencies) = task.await.expect("client");
        run.sent.extend(sent);
        run.request_latencies.extend(latencies);
    }
    run.ingested = Instant::now();
    run.request_latencies.sort_unstable();
    run
}

/// The consumer's store writes so far, from `/metrics`: (writes, seconds writing, outputs stored).
async fn store_writes(service: &Service) -> anyhow::Result<(f64, f64, f64)> {
    let metrics = service
        .client
        .get(service.url.replace("/v1/telemetry", "/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((
        value("rtc_telemetry_store_write_seconds_count"),
        value("rtc_telemetry_store_write_seconds_sum"),
        value("rtc_telemetry_stored_outputs_total"),
    ))
}

/// The small-request workload on one backend: one row of its table.
async fn small_workload(
    options: &Options,
    store: &str,
    postgres: Option<&telemetry_test_support::postgres::PgServer>,
) -> anyhow::Result<()> {
    let (clients, rooms) = (options.clients, options.small_rooms);
    let expected: HashMap<String, (usize, usize)> = (0..rooms)
        .flat_map(|room| {
            room_calls(room)
                .into_iter()
                .filter_map(|(_, key)| key)
                .enumerate()
                .map(move |(order, key)| (key, (room, order)))
        })
        .collect();
    let total = expected.len();

    // Ingest alone: the same requests to a service with no endpoint.
    let receiver = LifecycleReceiver::default();
    let address = receiver.start().await?;
    let service = Service::start(address, 0, postgres).await?;
    let cpu_before = common::cpu_seconds();
    let alone = run_small_clients(&service, clients, rooms).await;
    let cpu_alone = common::cpu_seconds();
    let cpu_alone = (cpu_alone.0 - cpu_before.0) + (cpu_alone.1 - cpu_before.1);
    let (writes, _, _) = store_writes(&service).await?;
    service.stop().await?;
    let alone_seconds = alone.ingested.duration_since(alone.started).as_secs_f64();

    // With one endpoint, end to end.
    let service = Service::start(address, 1, postgres).await?;
    let (writes_before, seconds_before, outputs_before) = store_writes(&service).await?;
    let cpu_before = common::cpu_seconds();
    let run = run_small_clients(&service, clients, rooms).await;
    let (writes_after, seconds_after, outputs_after) = store_writes(&service).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while receiver.arrived() < total {
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {total} webhooks arrived",
            receiver.arrived()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu_after = common::cpu_seconds();
    let cpu_delivered = (cpu_after.0 - cpu_before.0) + (cpu_after.1 - cpu_before.1);
    service.stop().await?;
    let arrivals = receiver.arrivals.lock().expect("lock").clone();
    let missing = expected.keys().filter(|key| !arrivals.contains_key(*key)).count();
    anyhow::ensure!(missing == 0, "{missing} expected webhooks did not arrive");
    let last = expected.keys().map(|key| arrivals[key].1).max().unwrap_or(run.started);
    let rate = total as f64 / last.duration_since(run.started).as_secs_f64();
    let mut latencies: Vec<Duration> =
        expected.keys().map(|key| arrivals[key].1.duration_since(run.sent[key])).collect();
    latencies.sort_unstable();
    // Per room, the first arrivals in arrival order must be in call order.
    let mut by_room: Vec<Vec<(u64, usize)>> = vec![Vec::new(); rooms];
    for (key, (room, order)) in &expected {
        by_room[*room].push((arrivals[key].0, *order));
    }
    for arrived in &mut by_room {
        arrived.sort_unstable();
    }
    let out_of_order = by_room
        .iter()
        .filter(|arrived| arrived.windows(2).any(|pair| pair[0].1 > pair[1].1))
        .count();

    let body =
        serde_json::to_string(&json!({ "event": "participant_joined", "id": "EV_0123456789ab",
        "room": { "sid": "RM_small00000", "name": "small-00000" },
        "participant": { "sid": "PA_s00000p00", "identity": "u0" }, "createdAt": "1700000000" }))?;
    let concurrency = rooms.min(128);
    let plain = baseline(address, total, concurrency, &body).await;

    let ingest_seconds = run.ingested.duration_since(run.started).as_secs_f64();
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let consumer_writes = writes_after - writes_before;
    println!(
        "| {store} | {clients} | {rooms} | {} requests, {} calls, {total} webhooks | {rate:.0} | {:.2} | {:.1} ms | {:.1} ms | {} of {rooms} rooms in order | {:.0} calls/s ({:.0} requests/s), request p50 {:.1} ms, p99 {:.1} ms | {:.0} calls/s ({:.0} requests/s; {writes:.0} store writes), request p50 {:.1} ms, p99 {:.1} ms | {consumer_writes:.0} writes while ingesting, mean {:.1} ms, {:.1} outputs each | {plain:.0} ({concurrency} at once) |",
        run.requests,
        run.calls,
        rate / SVIX_RATE,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        rooms - out_of_order,
        run.calls as f64 / ingest_seconds,
        run.requests as f64 / ingest_seconds,
        ms(percentile(&run.request_latencies, 0.5)),
        ms(percentile(&run.request_latencies, 0.99)),
        alone.calls as f64 / alone_seconds,
        alone.requests as f64 / alone_seconds,
        ms(percentile(&alone.request_latencies, 0.5)),
        ms(percentile(&alone.request_latencies, 0.99)),
        (seconds_after - seconds_before) * 1000.0 / consumer_writes.max(1.0),
        (outputs_after - outputs_before) / consumer_writes.max(1.0),
    );
    println!(
        "| {store} CPU (this process: clients, service, receiver) | with the endpoint: {cpu_delivered:.2} CPU-s, {:.0} µs per delivered webhook, {:.2} cores busy | ingest alone: {cpu_alone:.2} CPU-s, {:.0} µs per request, {:.2} cores busy |",
        cpu_delivered * 1e6 / total as f64,
        cpu_delivered / last.duration_since(run.started).as_secs_f64(),
        cpu_alone * 1e6 / alone.requests as f64,
        cpu_alone / alone_seconds,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // PostgreSQL as a user runs it: durable commits.
    let postgres = if options.store.as_deref().is_none_or(|store| store == "postgres") {
        Some(telemetry_test_support::postgres::PgServer::start()?)
    } else {
        None
    };
    if !options.only_small {
        println!(
            "| store | endpoints | rooms | burst: deliveries/s | baseline: plain POSTs/s | ratio | paced: rate | p50 ingest→delivery | p99 |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
    }
    let cases = [(1, 1), (1, 1000), (16, 1), (16, 1000)];
    let stores = ["sqlite", "postgres"];
    for (store, (endpoints, rooms)) in
        stores.iter().flat_map(|store| cases.iter().map(move |case| (*store, *case)))
    {
        if options.only_small
            || options.only.is_some_and(|only| only != (endpoints, rooms))
            || options.store.as_deref().is_some_and(|only| only != store)
        {
            continue;
        }
        let server = if store == "postgres" { postgres.as_ref() } else { None };
        runtime.block_on(async {
            let receiver = Receiver::default();
            let address = receiver.start().await?;
            let service = Service::start(address, endpoints, server).await?;

            // Burst.
            let total = options.webhooks;
            let started = Instant::now();
            let batches: Vec<Vec<Value>> =
                (0..total).map(|index| call(index, rooms)).collect::<Vec<_>>().chunks(options.batch).map(<[Value]>::to_vec).collect();
            for batch in batches {
                service.ingest(batch).await;
            }
            wait_for(&receiver, total * endpoints, Duration::from_secs(600)).await;
            let burst = (total * endpoints) as f64 / started.elapsed().as_secs_f64();

            // Paced: batches of 10 calls at `rate` calls per second.
            let first = total;
            let count = (options.rate * options.paced_seconds) as usize / 10 * 10;
            let mut sent_at = HashMap::new();
            let interval = Duration::from_secs_f64(10.0 / options.rate);
            let mut ticker = tokio::time::interval(interval);
            for batch in 0..count / 10 {
                ticker.tick().await;
                let indices: Vec<usize> = (first + batch * 10..first + batch * 10 + 10).collect();
                let now = Instant::now();
                for &index in &indices {
                    sent_at.insert(index, now);
                }
                service.ingest(indices.iter().map(|&index| call(index, rooms)).collect()).await;
            }
            wait_for(&receiver, (total + count) * endpoints, Duration::from_secs(600)).await;
            let mut latencies: Vec<Duration> = receiver
                .arrivals
                .lock()
                .expect("lock")
                .iter()
                .filter_map(|((_, index), at)| sent_at.get(index).map(|sent| at.duration_since(*sent)))
                .collect();
            latencies.sort_unstable();
            service.stop().await?;

            // The baseline, on the same receiver: bodies the size of a webhook, at the
            // concurrency the dispatcher may use (one per endpoint and room, at most 128 per
            // endpoint and 512 in all).
            let body = serde_json::to_string(&json!({ "event": "participant_joined", "id": "EV_0123456789ab",
                "room": { "sid": "RM_bench00000", "name": "bench-0" },
                "participant": { "sid": "PA_bench00000000", "identity": "c0" }, "createdAt": "1700000000" }))?;
            let concurrency = (endpoints * rooms.min(128)).min(512);
            let plain = baseline(address, total * endpoints, concurrency, &body).await;
            println!(
                "| {store} | {endpoints} | {rooms} | {burst:.0} | {plain:.0} ({concurrency} at once) | {:.3} | {:.0} calls/s × {endpoints} | {:.1} ms | {:.1} ms |",
                burst / plain,
                options.rate,
                percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
                percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            );
            anyhow::Ok(())
        })?;
    }

    // The small-request workload, unless one burst case was asked for.
    if options.only.is_none() {
        println!();
        println!(
            "| store | clients | rooms | load | deliveries/s | × Svix | p50 ingest→delivery | p99 | per-room order | ingest with the endpoint | ingest alone (no endpoint) | consumer's store writes | baseline: plain POSTs/s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for store in stores {
            if options.store.as_deref().is_some_and(|only| only != store) {
                continue;
            }
            let server = if store == "postgres" { postgres.as_ref() } else { None };
            runtime.block_on(small_workload(&options, store, server))?;
        }
    }
    Ok(())
}
