//! The end-to-end ingest load harness: the real service in process (HTTP, the core, the pipeline,
//! SQLite with every commit synced, then PostgreSQL on a private server with `fsync` on) on
//! loopback, fed the simulator's traffic by concurrent clients, against the rate at which the
//! same batches are merely decoded, measured in the same run. Run with
//! `cargo bench -p telemetry-server --features bench --bench ingest_load`
//! (`-- --clients 16 --rooms 200` to change the load, `--store sqlite` for one backend,
//! `--runs 5` for more runs of each).
//!
//! The machines this runs on are shared, and their speed changes within seconds: so each run of
//! the service has its own prost baseline, measured just before it, and the ratio reported is the
//! median over the runs of each run's ratio.

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

/// The allocator of the `rtc-telemetry` binary, so that what is measured is the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::cpu_seconds;
use prost::Message as _;
use telemetry_core::{Clock as _, SystemClock};
use telemetry_proto::v1;
use telemetry_server::app::App;
use telemetry_server::config::{self, FlagOverrides};
use telemetry_sim::{SimulateArgs, generate};

struct Options {
    clients: usize,
    rooms: u32,
    participants: u32,
    batch: usize,
    synchronous: String,
    /// Runs of the service on each backend, each with its own baseline.
    runs: usize,
    /// Only this backend.
    store: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        clients: 8,
        rooms: 60,
        participants: 8,
        batch: 500,
        synchronous: "full".to_owned(),
        runs: 3,
        store: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--clients" => options.clients = value.parse().unwrap_or(options.clients),
            "--rooms" => options.rooms = value.parse().unwrap_or(options.rooms),
            "--participants" => {
                options.participants = value.parse().unwrap_or(options.participants)
            }
            "--batch" => options.batch = value.parse().unwrap_or(options.batch),
            "--synchronous" => options.synchronous = value,
            "--runs" => options.runs = value.parse().unwrap_or(options.runs).max(1),
            "--store" => options.store = Some(value),
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction) as usize]
}

fn main() -> anyhow::Result<()> {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let args = SimulateArgs {
        rooms: options.rooms,
        participants: options.participants,
        duration: Duration::from_secs(600),
        ..SimulateArgs::default()
    };
    let calls = generate(&args, SystemClock.now());
    let batches: Vec<v1::TelemetryBatch> = calls
        .chunks(options.batch)
        .map(|chunk| v1::TelemetryBatch { calls: chunk.to_vec() })
        .collect();
    let encoded: Vec<Vec<u8>> = batches.iter().map(|batch| batch.encode_to_vec()).collect();
    let json: Vec<Vec<u8>> =
        batches.iter().map(|batch| serde_json::to_vec(batch).expect("json")).collect();
    let total = calls.len();
    let stats = calls
        .iter()
        .filter(|call| matches!(call.call, Some(v1::telemetry_call::Call::TrackStats(_))))
        .count();
    println!(
        "| load | {total} calls ({stats} trackStats) in {} batches of {}; {:.1} MiB protobuf, {:.1} MiB JSON |",
        batches.len(),
        options.batch,
        encoded.iter().map(Vec::len).sum::<usize>() as f64 / 1048576.0,
        json.iter().map(Vec::len).sum::<usize>() as f64 / 1048576.0
    );

    // Baselines: the same batches only decoded, best of three.
    let decode_rate = |decode: &dyn Fn() -> usize| {
        (0..3)
            .map(|_| {
                let started = Instant::now();
                let decoded = decode();
                decoded as f64 / started.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max)
    };
    let prost_decode = || {
        encoded
            .iter()
            .map(|bytes| v1::TelemetryBatch::decode(bytes.as_slice()).expect("decode").calls.len())
            .sum()
    };
    let prost_rate = decode_rate(&prost_decode);
    let json_rate = decode_rate(&|| {
        json.iter()
            .map(|bytes| {
                serde_json::from_slice::<v1::TelemetryBatch>(bytes).expect("decode").calls.len()
            })
            .sum()
    });
    println!(
        "| baseline | prost decodes {prost_rate:.0} calls/s; serde_json (pbjson) decodes {json_rate:.0} calls/s |"
    );

    // The service, fed over HTTP by concurrent clients: on SQLite, then on PostgreSQL.
    let postgres = if options.store.as_deref().is_none_or(|store| store == "postgres") {
        Some(telemetry_test_support::postgres::PgServer::start()?)
    } else {
        None
    };
    for store in ["sqlite", "postgres"] {
        if options.store.as_deref().is_some_and(|only| only != store) {
            continue;
        }
        let mut ratios = Vec::new();
        for run in 1..=options.runs {
            let store_run = format!("{store}, run {run}");
            let prost_now = decode_rate(&prost_decode);
            let dir = tempfile::tempdir()?;
            let file = format!(
                "[stats]\nflush_interval = \"1h\"\n[store]\nsynchronous = \"{}\"\n",
                options.synchronous
            );
            let flags = FlagOverrides {
                data_dir: Some(dir.path().to_path_buf()),
                dev: true,
                ..FlagOverrides::default()
            };
            let environment = match (store, &postgres) {
                ("postgres", Some(server)) => vec![
                    ("RTC_TELEMETRY_STORE__BACKEND".to_owned(), "postgres".to_owned()),
                    ("RTC_TELEMETRY_STORE__URL".to_owned(), server.create_database()?),
                ],
                _ => Vec::new(),
            };
            let config = config::load(Some(("bench", &file)), &environment, &flags)?;
            let (service_rate, latencies, stored) = runtime.block_on(async {
                let app = App::build(config).await?;
                let state = app.state();
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let url = format!("http://{}/v1/telemetry", http.local_addr()?);
                let stop = tokio_util::sync::CancellationToken::new();
                let server = tokio::spawn(app.run(http, grpc, stop.clone().cancelled_owned()));
                let token =
                    telemetry_server::auth::mint_token("devkey", "secret", Duration::from_secs(3600))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                let client = reqwest::Client::new();
                let queue = Arc::new(tokio::sync::Mutex::new(encoded.clone().into_iter()));
                let started = Instant::now();
                let cpu_started = cpu_seconds();
                let mut workers = Vec::new();
                for _ in 0..options.clients {
                    let (queue, client, url, token) =
                        (queue.clone(), client.clone(), url.clone(), token.clone());
                    workers.push(tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        loop {
                            let Some(body) = queue.lock().await.next() else { break };
                            let sent = Instant::now();
                            let response = client
                                .post(&url)
                                .bearer_auth(&token)
                                .header("content-type", "application/x-protobuf")
                                .body(body)
                                .send()
                                .await
                                .expect("request");
                            assert!(response.status().is_success(), "{}", response.status());
                            let _ = response.bytes().await;
                            latencies.push(sent.elapsed());
                        }
                        latencies
                    }));
                }
                let mut latencies = Vec::new();
                for worker in workers {
                    latencies.extend(worker.await?);
                }
                // Stats samples are stored when flushed: count that flush in.
                let flushed = client
                    .post(url.replace("/v1/telemetry", "/v1/flush"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                assert!(flushed.status().is_success());
                let elapsed = started.elapsed();
                let (user, system) = cpu_seconds();
                let (user, system) = (user - cpu_started.0, system - cpu_started.1);
                let cpu = user + system;
                let counts = telemetry_store::AnalyticsStore::counts(state.store.as_ref()).await?;
                // What the core did with every sample (recorded, or why not), from /metrics.
                let metrics =
                    client.get(url.replace("/v1/telemetry", "/metrics")).send().await?.text().await?;
                let outcomes: Vec<String> = metrics
                    .lines()
                    .filter_map(|line| {
                        line.strip_prefix("rtc_telemetry_stats_samples_total{outcome=\"")
                    })
                    .map(|rest| rest.replacen("\"} ", " ", 1))
                    .collect();
                println!("| samples ({store_run}) | {} |", outcomes.join(", "));
                // How much of the run the pipeline's consumer spent in store writes: acknowledged
                // lifecycle calls wait for them, one write at a time.
                let metric = |name: &str| -> f64 {
                    metrics
                        .lines()
                        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                        .unwrap_or(0.0)
                };
                let (writes, writing) = (
                    metric("rtc_telemetry_store_write_seconds_count"),
                    metric("rtc_telemetry_store_write_seconds_sum"),
                );
                println!(
                    "| writes ({store_run}) | {writes:.0} store writes, {:.1} ms each on average; writing {:.0} % of the run |",
                    writing * 1000.0 / writes.max(1.0),
                    writing * 100.0 / elapsed.as_secs_f64()
                );
                stop.cancel();
                server.await??;
                latencies.sort_unstable();
                println!(
                    "| cpu ({store_run}) | {cpu:.2} CPU-s ({user:.2} user, {system:.2} system) in {:.2} s: {:.2} cores busy in this process; {:.2} µs of CPU per call |",
                    elapsed.as_secs_f64(),
                    cpu / elapsed.as_secs_f64(),
                    cpu * 1e6 / total as f64
                );
                anyhow::Ok((total as f64 / elapsed.as_secs_f64(), latencies, counts))
            })?;
            let durability = if store == "sqlite" {
                format!("SQLite synchronous={}", options.synchronous)
            } else {
                "PostgreSQL fsync=on, synchronous_commit=on".to_owned()
            };
            println!(
                "| service ({store_run}) | {service_rate:.0} calls/s accepted and stored ({} clients, HTTP protobuf, {durability}); request p50 {:.1} ms, p99 {:.1} ms |",
                options.clients,
                percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
                percentile(&latencies, 0.99).as_secs_f64() * 1000.0
            );
            println!(
                "| stored ({store_run}) | {} events, {} stats windows holding {} samples |",
                stored.events, stored.stats_windows, stored.samples
            );
            ratios.push(service_rate / prost_now);
            println!(
                "| ratio ({store_run}) | stored rate / prost decode rate just before ({prost_now:.0} calls/s) = {:.3}; / JSON decode rate = {:.3} |",
                service_rate / prost_now,
                service_rate / json_rate
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "| ratio ({store}) | median of {} runs: stored rate / prost decode rate = **{:.3}** (runs: {}) |",
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios.iter().map(|ratio| format!("{ratio:.3}")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}
