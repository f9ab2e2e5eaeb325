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
//! Run with `cargo bench -p telemetry-server --features bench --bench webhook_load`
//! (`-- --webhooks 4000 --rate 200` to change the load, `--only 16,1000` for one case,
//! `--store postgres` for one backend).

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
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
    /// Only this case (`endpoints,rooms`).
    only: Option<(usize, usize)>,
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

fn main() -> anyhow::Result<()> {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // PostgreSQL as a user runs it: durable commits.
    let postgres = if options.store.as_deref().is_none_or(|store| store == "postgres") {
        Some(telemetry_test_support::postgres::PgServer::start()?)
    } else {
        None
    };
    println!(
        "| store | endpoints | rooms | burst: deliveries/s | baseline: plain POSTs/s | ratio | paced: rate | p50 ingest→delivery | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cases = [(1, 1), (1, 1000), (16, 1), (16, 1000)];
    let stores = ["sqlite", "postgres"];
    for (store, (endpoints, rooms)) in
        stores.iter().flat_map(|store| cases.iter().map(move |case| (*store, *case)))
    {
        if options.only.is_some_and(|only| only != (endpoints, rooms))
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
    Ok(())
}
