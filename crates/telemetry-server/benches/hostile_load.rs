//! Resident memory under hostile volumes of caller-chosen ids (issue 9): the real service in
//! process on SQLite, with its default configuration, fed over HTTP 200,000 distinct rooms
//! (`roomStarted`), 200,000 distinct participants who join and never leave, and 200,000 distinct
//! node ids (a `trackStats` call each, claiming a 5-minute interval); the process's resident set (`VmRSS`) and its peak
//! (`VmHWM`) after each phase, with what the limits refused. Run with
//! `cargo bench -p telemetry-server --features bench --bench hostile_load`
//! (`-- --ids 200000 --clients 4`).

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

/// The allocator of the `rtc-telemetry` binary, so that what is measured is the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use telemetry_server::app::App;
use telemetry_server::config::{self, FlagOverrides};

const BATCH: usize = 5000;

fn option(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A time as protobuf JSON writes it.
fn rfc3339(millis: i64) -> String {
    match serde_json::to_value(telemetry_core::UnixMillis(millis).to_timestamp()) {
        Ok(Value::String(text)) => text,
        other => panic!("a timestamp renders as a string, not {other:?}"),
    }
}

/// The body of request `batch` of `phase`, written straight as JSON text: the load generator runs
/// in the measured process, so it builds one request at a time and keeps nothing.
fn body(phase: &str, batch: usize, ids: usize, now: i64) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut text = String::from("{\"calls\":[");
    for n in batch * BATCH..((batch + 1) * BATCH).min(ids) {
        if n > batch * BATCH {
            text.push(',');
        }
        let _ = match phase {
            // Each sample claims the longest interval ingest accepts (5 min): the most node-rate
            // cells one sample can make.
            "nodes" => write!(
                text,
                r#"{{"nodeId":"hostile-node-{n:037}","trackStats":{{"roomId":"RM_none","key":{{"streamType":"UPSTREAM","participantId":"PA_none","trackId":"TR_none","trackSource":"CAMERA","trackType":"VIDEO","track":true}},"stat":{{"streams":[{{"primaryBytes":"1000","primaryPackets":1,"startTime":"{}","endTime":"{}"}}]}}}}}}"#,
                rfc3339(now - 300_000),
                rfc3339(now)
            ),
            "rooms" => write!(
                text,
                r#"{{"nodeId":"sfu-1","roomStarted":{{"room":{{"sid":"RM_{n:012}","name":"hostile-room-{n}"}}}}}}"#
            ),
            _ => write!(
                text,
                r#"{{"nodeId":"sfu-1","participantJoined":{{"room":{{"sid":"RM_{:012}","name":"hostile-room-{}"}},"participant":{{"sid":"PA_{n:012}","identity":"hostile-user-{n}"}}}}}}"#,
                n / 10,
                n / 10
            ),
        };
    }
    text.push_str("]}");
    text.into_bytes()
}

fn main() -> anyhow::Result<()> {
    let ids = option("--ids", 200_000);
    let clients = option("--clients", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let flags =
        FlagOverrides { data_dir: Some(dir.path().to_path_buf()), dev: true, ..Default::default() };
    let config = config::load(None, &[], &flags)?;
    println!(
        "| limits | max_nodes {}, max_participants {}, max_open_rooms {} (defaults) |",
        config.limits.max_nodes, config.limits.max_participants, config.limits.max_open_rooms
    );
    runtime.block_on(async {
        let app = App::build(config).await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", http.local_addr()?);
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(app.run(http, grpc, stop.clone().cancelled_owned()));
        let token =
            telemetry_server::auth::mint_token("devkey", "secret", Duration::from_secs(3600))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let client = reqwest::Client::new();
        let (rss, _) = memory();
        println!("| phase | calls | accepted | rejected | seconds | VmRSS after | VmHWM (peak) |");
        println!("|---|---|---|---|---|---|---|");
        println!("| started | | | | | {rss:.0} MiB | |");
        // The legitimate node's calls first: once hostile node ids fill `limits.max_nodes`, a
        // new node is refused until one has been idle for `limits.node_idle_timeout`.
        for phase in ["rooms", "participants", "nodes"] {
            let now = telemetry_core::Clock::now(&telemetry_core::SystemClock).0;
            let queue = Arc::new(std::sync::Mutex::new(0..ids.div_ceil(BATCH)));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (queue, client, base, token, phase) =
                    (queue.clone(), client.clone(), base.clone(), token.clone(), phase.to_owned());
                tasks.push(tokio::spawn(async move {
                    let (mut accepted, mut rejected) = (0, 0);
                    loop {
                        let Some(batch) = queue.lock().expect("queue").next() else { break };
                        let body = body(&phase, batch, ids, now);
                        let answer: Value = client
                            .post(format!("{base}/v1/telemetry"))
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .expect("request")
                            .json()
                            .await
                            .expect("an answer");
                        accepted += answer["accepted"].as_u64().expect("accepted");
                        rejected += answer["rejectedCount"].as_u64().unwrap_or(0);
                    }
                    (accepted, rejected)
                }));
            }
            let (mut accepted, mut rejected) = (0, 0);
            for task in tasks {
                let (a, r) = task.await?;
                accepted += a;
                rejected += r;
            }
            let seconds = started.elapsed().as_secs_f64();
            let (rss, peak) = memory();
            println!(
                "| {phase} | {ids} | {accepted} | {rejected} | {seconds:.1} | {rss:.0} MiB | {peak:.0} MiB |"
            );
        }
        let metrics = client.get(format!("{base}/metrics")).send().await?.text().await?;
        for line in metrics.lines().filter(|line| {
            line.starts_with("rtc_telemetry_limit_refusals_total")
                || line.starts_with("rtc_telemetry_live")
                || line.starts_with("rtc_telemetry_stats_workers ")
        }) {
            println!("| metric | `{line}` |");
        }
        stop.cancel();
        server.await??;
        anyhow::Ok(())
    })?;
    Ok(())
}
