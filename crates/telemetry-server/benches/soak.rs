//! The soak benchmark (issue 9): the real service in process, with its default configuration
//! and one webhook endpoint (a local receiver answering 200), fed the simulator's traffic in real
//! time at a fixed rate for `--minutes` (10 by default), on SQLite or on PostgreSQL (a private
//! server this harness starts, `fsync` on). Every minute it prints one row: the process's
//! resident set (`VmRSS`), its open files (`/proc/self/fd`), the database's size (the files in
//! the data folder; PostgreSQL's `pg_database_size`), the ingest requests' and the webhooks'
//! (ingest request sent to first arrival) p50 and p99 over that minute, and the deliveries
//! pending. The first minute is the warm-up; flat from the second to the last is the goal.
//!
//! The traffic is `telemetry_sim::generate`'s, in overlapping generations: every
//! `--cycle-seconds / 2` a generation of `--rooms` rooms of `--participants` starts (its own seed,
//! its own node id among two), runs `--cycle-seconds` of simulated time (rooms start, participants
//! join, publish, subscribe, report stats every 5 s, mute, resume, leave; the rooms end) and ends,
//! so that after the first half cycle every minute holds the same mix of traffic. Each
//! generation is sent by its own client, its calls in order, each request holding the calls of
//! one simulated instant and sent at that instant of wall-clock time (the calls' times are real
//! times). The calls are generated before the service starts, by this binary run again as a
//! child process (`--generate`), into files read as they are sent, so that this process's memory
//! holds only the service and the harness.
//!
//! Run with `cargo bench -p telemetry-server --features bench --bench soak -- --store sqlite`
//! (`--store postgres`; without `--store`, SQLite then PostgreSQL in one process;
//! `--minutes 10 --rooms 50 --participants 8 --cycle-seconds 120` are the defaults).

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

/// The allocator of the `rtc-telemetry` binary, so that what is measured is the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::Value;
use telemetry_core::{Clock as _, SystemClock, UnixMillis};
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;
use telemetry_server::app::App;
use telemetry_server::config::{self, FlagOverrides};
use telemetry_sim::{SimulateArgs, generate};
use telemetry_test_support::postgres::PgServer;

const SECRET: &str = "bench-webhook-secret-0123456789abcdef";
/// Calls one request holds at most (the simulator's default batch size).
const MAX_BATCH: usize = 500;
/// A webhook not arrived this long after its call was sent is counted as lost to the harness
/// (and forgotten, so that the harness's own memory stays flat).
const FORGET_AFTER: Duration = Duration::from_secs(300);

struct Options {
    minutes: u64,
    rooms: u32,
    participants: u32,
    cycle_seconds: u64,
    /// Only this backend.
    store: Option<String>,
    /// Child mode: generate the traffic into this folder and exit.
    generate: Option<PathBuf>,
    /// Child mode: when the first generation starts (Unix milliseconds).
    start_ms: i64,
}

fn options() -> Options {
    let mut options = Options {
        minutes: 10,
        rooms: 50,
        participants: 8,
        cycle_seconds: 120,
        store: None,
        generate: None,
        start_ms: 0,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--minutes" => options.minutes = value.parse().unwrap_or(options.minutes),
            "--rooms" => options.rooms = value.parse().unwrap_or(options.rooms),
            "--participants" => {
                options.participants = value.parse().unwrap_or(options.participants)
            }
            "--cycle-seconds" => {
                options.cycle_seconds = value.parse().unwrap_or(options.cycle_seconds)
            }
            "--store" => options.store = Some(value),
            "--generate" => options.generate = Some(PathBuf::from(value)),
            "--start-ms" => options.start_ms = value.parse().unwrap_or(options.start_ms),
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

/// The number of generations a run of `options.minutes` starts.
fn generations(options: &Options) -> u64 {
    (options.minutes * 60).div_ceil(options.cycle_seconds / 2)
}

/// The key of the webhook `call` makes, as the receiver computes it from the webhook
/// (`event|room sid|participant sid|track sid|egress id`), if it makes one.
fn webhook_key(call: &v1::TelemetryCall) -> Option<String> {
    let room_sid = |room: &Option<telemetry_core::proto::Room>| {
        room.as_ref().map(|room| room.sid.clone()).unwrap_or_default()
    };
    let key = |event: &str, room: String, participant: &str, track: &str, egress: &str| {
        format!("{event}|{room}|{participant}|{track}|{egress}")
    };
    match call.call.as_ref()? {
        Member::RoomStarted(c) => Some(key("room_started", room_sid(&c.room), "", "", "")),
        Member::RoomEnded(c) => Some(key("room_finished", room_sid(&c.room), "", "", "")),
        Member::ParticipantActive(c) if !c.is_migration => {
            Some(key("participant_joined", room_sid(&c.room), &c.participant.as_ref()?.sid, "", ""))
        }
        Member::ParticipantLeft(c) if c.should_send_event.unwrap_or(true) => {
            Some(key("participant_left", room_sid(&c.room), &c.participant.as_ref()?.sid, "", ""))
        }
        Member::TrackPublished(c) if c.should_send_event.unwrap_or(true) => Some(key(
            "track_published",
            room_sid(&c.room),
            &c.participant_id,
            &c.track.as_ref()?.sid,
            "",
        )),
        Member::TrackUnpublished(c) if c.should_send_event.unwrap_or(true) => Some(key(
            "track_unpublished",
            room_sid(&c.room),
            &c.participant_id,
            &c.track.as_ref()?.sid,
            "",
        )),
        Member::EgressStarted(c) => {
            Some(key("egress_started", String::new(), "", "", &c.info.as_ref()?.egress_id))
        }
        Member::EgressUpdated(c) => {
            Some(key("egress_updated", String::new(), "", "", &c.info.as_ref()?.egress_id))
        }
        Member::EgressEnded(c) => {
            Some(key("egress_ended", String::new(), "", "", &c.info.as_ref()?.egress_id))
        }
        _ => None,
    }
}

/// The key of a webhook as it arrives (see [`webhook_key`]); an aborted connection counts as a
/// `participant_left` (which of the two a leave makes depends on the worker, not the call).
fn arrived_key(webhook: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let mut event = text(&webhook["event"]);
    if event == "participant_connection_aborted" {
        event = "participant_left".to_owned();
    }
    let room =
        if event.starts_with("egress") { String::new() } else { text(&webhook["room"]["sid"]) };
    format!(
        "{event}|{room}|{}|{}|{}",
        text(&webhook["participant"]["sid"]),
        text(&webhook["track"]["sid"]),
        text(&webhook["egressInfo"]["egressId"])
    )
}

/// Child mode: writes each generation's requests to `generation-<n>`: per request its send time
/// (Unix milliseconds, 8 bytes), the length of its webhook keys (4 bytes), of its protobuf body
/// (4 bytes), then the keys (one a line) and the body.
fn write_generations(options: &Options, dir: &Path) -> anyhow::Result<()> {
    let half_ms = (options.cycle_seconds * 1000 / 2) as i64;
    for generation in 0..generations(options) {
        let start = UnixMillis(options.start_ms + generation as i64 * half_ms);
        let args = SimulateArgs {
            seed: generation + 1,
            rooms: options.rooms,
            participants: options.participants,
            duration: Duration::from_secs(options.cycle_seconds),
            node_id: format!("sfu-soak-{}", generation % 2),
            ..SimulateArgs::default()
        };
        let calls = generate(&args, start.plus_millis(2 * half_ms));
        let mut file =
            BufWriter::new(std::fs::File::create(dir.join(format!("generation-{generation}")))?);
        let at = |call: &v1::TelemetryCall| {
            call.at.as_ref().map_or(0, |at| at.seconds * 1000 + i64::from(at.nanos) / 1_000_000)
        };
        let mut rest = calls.as_slice();
        while let Some(first) = rest.first() {
            let send_at = at(first);
            let length = rest
                .iter()
                .take(MAX_BATCH)
                .position(|call| at(call) != send_at)
                .unwrap_or(rest.len().min(MAX_BATCH));
            let (batch, after) = rest.split_at(length);
            rest = after;
            let keys: Vec<String> = batch.iter().filter_map(webhook_key).collect();
            let keys = keys.join("\n");
            let body = v1::TelemetryBatch { calls: batch.to_vec() }.encode_to_vec();
            file.write_all(&send_at.to_le_bytes())?;
            file.write_all(&(keys.len() as u32).to_le_bytes())?;
            file.write_all(&(body.len() as u32).to_le_bytes())?;
            file.write_all(keys.as_bytes())?;
            file.write_all(&body)?;
        }
        file.flush()?;
    }
    Ok(())
}

/// One request read back from a generation's file.
struct Request {
    send_at: i64,
    keys: Vec<String>,
    body: Vec<u8>,
}

fn read_request(file: &mut BufReader<std::fs::File>) -> Option<Request> {
    let mut header = [0u8; 16];
    file.read_exact(&mut header).ok()?;
    let send_at = i64::from_le_bytes(header[0..8].try_into().ok()?);
    let keys_length = u32::from_le_bytes(header[8..12].try_into().ok()?) as usize;
    let body_length = u32::from_le_bytes(header[12..16].try_into().ok()?) as usize;
    let mut keys = vec![0u8; keys_length];
    file.read_exact(&mut keys).ok()?;
    let mut body = vec![0u8; body_length];
    file.read_exact(&mut body).ok()?;
    let keys = String::from_utf8(keys).ok()?;
    let keys = if keys.is_empty() { Vec::new() } else { keys.lines().map(str::to_owned).collect() };
    Some(Request { send_at, keys, body })
}

/// What happened during the current minute, taken by the reporter at each minute's end.
#[derive(Default)]
struct Window {
    requests: u64,
    calls: u64,
    rejected_calls: u64,
    /// Requests answered 429 or 503 (retried after `Retry-After`).
    refused: u64,
    ingest: Vec<Duration>,
    deliveries: u64,
    /// Arrivals without a call waiting for them (repeats, or webhooks the harness did not
    /// expect).
    unmatched: u64,
    webhook: Vec<Duration>,
}

/// The harness's shared state: the window, and the webhooks sent and not arrived yet.
#[derive(Default)]
struct Shared {
    window: Mutex<Window>,
    waiting: Mutex<HashMap<String, Instant>>,
}

fn percentile_ms(sorted: &[Duration], fraction: f64) -> String {
    if sorted.is_empty() {
        return "–".to_owned();
    }
    let value = sorted[((sorted.len() - 1) as f64 * fraction) as usize];
    format!("{:.1}", value.as_secs_f64() * 1000.0)
}

/// `VmRSS` of this process, in MiB.
fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map(Iterator::count).unwrap_or(0)
}

/// The database's size in MiB: the files of the data folder (SQLite: the database, its WAL and
/// shared-memory files), or PostgreSQL's `pg_database_size`.
fn database_mib(dir: &Path, postgres: Option<(&PgServer, &str)>) -> f64 {
    let bytes = match postgres {
        Some((server, database)) => server
            .psql(database, "SELECT pg_database_size(current_database())")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(0),
        None => std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or(0),
    };
    bytes as f64 / 1048576.0
}

/// Starts the receiver: answers 200, matches each arrival with its call's send time.
async fn start_receiver(shared: Arc<Shared>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().fallback(move |body: bytes::Bytes| {
        let shared = shared.clone();
        async move {
            let at = Instant::now();
            let webhook: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let sent = shared.waiting.lock().expect("lock").remove(&arrived_key(&webhook));
            let mut window = shared.window.lock().expect("lock");
            window.deliveries += 1;
            match sent {
                Some(sent) => window.webhook.push(at.duration_since(sent)),
                None => window.unmatched += 1,
            }
            axum::http::StatusCode::OK
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(address)
}

/// Sends one generation's requests at their times, until `end` (Unix milliseconds).
async fn send_generation(
    path: PathBuf,
    url: String,
    token: String,
    end: i64,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let mut file = BufReader::new(std::fs::File::open(path).expect("generation file"));
    while let Some(request) = read_request(&mut file) {
        if request.send_at >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = request.send_at - SystemClock.now().0;
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let calls = v1::TelemetryBatch::decode(request.body.as_slice())
            .map_or(0, |batch| batch.calls.len() as u64);
        let sent = Instant::now();
        {
            let mut waiting = shared.waiting.lock().expect("lock");
            for key in request.keys {
                waiting.entry(key).or_insert(sent);
            }
        }
        let mut refused = 0;
        let answer = loop {
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/x-protobuf")
                .body(request.body.clone())
                .send()
                .await
                .expect("ingest request");
            let status = response.status();
            if status.as_u16() == 429 || status.as_u16() == 503 {
                refused += 1;
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait.min(5))).await;
                continue;
            }
            assert!(status.is_success(), "ingest answered {status}");
            break response.json::<Value>().await.unwrap_or(Value::Null);
        };
        let took = sent.elapsed();
        let mut window = shared.window.lock().expect("lock");
        window.requests += 1;
        window.calls += calls;
        window.rejected_calls += answer["rejectedCount"].as_u64().unwrap_or(0);
        window.refused += refused;
        window.ingest.push(took);
    }
}

/// One soak run on one backend.
async fn soak(options: &Options, postgres: Option<&PgServer>) -> anyhow::Result<()> {
    // The traffic, generated by a child process into files.
    let traffic = tempfile::tempdir()?;
    let generation_started = Instant::now();
    let start_ms = SystemClock.now().0 + 30_000;
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["--generate", &traffic.path().display().to_string()])
        .args(["--start-ms", &start_ms.to_string()])
        .args(["--minutes", &options.minutes.to_string()])
        .args(["--rooms", &options.rooms.to_string()])
        .args(["--participants", &options.participants.to_string()])
        .args(["--cycle-seconds", &options.cycle_seconds.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "generating the traffic failed: {status}");
    println!(
        "generated {} generations of {} rooms × {} participants ({} s each, one every {} s) in {:.1} s",
        generations(options),
        options.rooms,
        options.participants,
        options.cycle_seconds,
        options.cycle_seconds / 2,
        generation_started.elapsed().as_secs_f64()
    );

    // The service with its defaults and one endpoint.
    let shared = Arc::new(Shared::default());
    let receiver = start_receiver(shared.clone()).await?;
    let data = tempfile::tempdir()?;
    let (environment, database) = match postgres {
        Some(server) => {
            let url = server.create_database()?;
            let database = url.rsplit('/').next().unwrap_or_default().to_owned();
            (
                vec![
                    ("RTC_TELEMETRY_STORE__BACKEND".to_owned(), "postgres".to_owned()),
                    ("RTC_TELEMETRY_STORE__URL".to_owned(), url),
                ],
                Some(database),
            )
        }
        None => (Vec::new(), None),
    };
    let file = format!(
        "[[webhooks.endpoints]]\nurl = \"http://{receiver}/soak\"\nsigning = \"livekit\"\napi_key = \"devkey\"\nsecret = \"{SECRET}\"\n"
    );
    let flags = FlagOverrides {
        data_dir: Some(data.path().to_path_buf()),
        dev: true,
        ..FlagOverrides::default()
    };
    let config = config::load(Some(("bench", &file)), &environment, &flags)?;
    let app = App::build(config).await?;
    let state = app.state();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/telemetry", http.local_addr()?);
    let stop_service = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run(http, grpc, stop_service.clone().cancelled_owned()));
    let token = telemetry_server::auth::mint_token("devkey", "secret", Duration::from_secs(7200))
        .map_err(|error| anyhow::anyhow!("{error}"))?;

    let end_ms = start_ms + options.minutes as i64 * 60_000;
    let stop_senders = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..generations(options))
        .map(|generation| {
            tokio::spawn(send_generation(
                traffic.path().join(format!("generation-{generation}")),
                url.clone(),
                token.clone(),
                end_ms,
                shared.clone(),
                stop_senders.clone(),
            ))
        })
        .collect();
    let wait = start_ms - SystemClock.now().0;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let postgres_database = postgres.zip(database.as_deref());
    let backend = match postgres {
        Some(_) => "PostgreSQL",
        None => "SQLite",
    };
    println!();
    println!(
        "| store | minute | calls | requests | ingest p50 | ingest p99 | deliveries | webhook p50 | webhook p99 | pending at the end | VmRSS | open files | database |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut totals = Window::default();
    let mut forgotten = 0;
    for minute in 1..=options.minutes {
        let wait = start_ms + minute as i64 * 60_000 - SystemClock.now().0;
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let mut window = std::mem::take(&mut *shared.window.lock().expect("lock"));
        let pending = telemetry_store::Outbox::outbox_counts(state.store.as_ref()).await?.pending;
        {
            let mut waiting = shared.waiting.lock().expect("lock");
            let before = waiting.len();
            waiting.retain(|_, sent| sent.elapsed() < FORGET_AFTER);
            forgotten += before - waiting.len();
        }
        // `psql` runs as a child process: off the runtime's own threads' duties meanwhile.
        let size = tokio::task::block_in_place(|| database_mib(data.path(), postgres_database));
        window.ingest.sort_unstable();
        window.webhook.sort_unstable();
        let label = if minute == 1 { format!("{minute} (warm-up)") } else { minute.to_string() };
        println!(
            "| {backend} | {label} | {} | {} | {} ms | {} ms | {} | {} ms | {} ms | {pending} | {:.0} MiB | {} | {:.1} MiB |",
            window.calls,
            window.requests,
            percentile_ms(&window.ingest, 0.5),
            percentile_ms(&window.ingest, 0.99),
            window.deliveries,
            percentile_ms(&window.webhook, 0.5),
            percentile_ms(&window.webhook, 0.99),
            resident_mib(),
            open_files(),
            size,
        );
        totals.requests += window.requests;
        totals.calls += window.calls;
        totals.rejected_calls += window.rejected_calls;
        totals.refused += window.refused;
        totals.deliveries += window.deliveries;
        totals.unmatched += window.unmatched;
    }

    // The senders stop at the end; then the outbox drains.
    stop_senders.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await?;
    }
    let drain_started = Instant::now();
    let mut pending = 0;
    while drain_started.elapsed() < Duration::from_secs(120) {
        pending = telemetry_store::Outbox::outbox_counts(state.store.as_ref()).await?.pending;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = std::mem::take(&mut *shared.window.lock().expect("lock"));
    let waiting = shared.waiting.lock().expect("lock").len();
    println!();
    println!(
        "{backend}: {} requests, {} calls ({} rejected, {} requests refused with 429/503), {} deliveries in the run and {} after it (pending after {:.1} s of draining: {pending}); {} arrivals unmatched, {} webhooks never arrived ({forgotten} forgotten after {} s, {waiting} still waiting at the end)",
        totals.requests,
        totals.calls,
        totals.rejected_calls,
        totals.refused,
        totals.deliveries,
        after.deliveries,
        drain_started.elapsed().as_secs_f64(),
        totals.unmatched + after.unmatched,
        forgotten + waiting,
        FORGET_AFTER.as_secs(),
    );
    stop_service.cancel();
    server.await??;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let options = options();
    if let Some(dir) = &options.generate {
        return write_generations(&options, dir);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let postgres = if options.store.as_deref().is_none_or(|store| store == "postgres") {
        Some(PgServer::start()?)
    } else {
        None
    };
    for store in ["sqlite", "postgres"] {
        if options.store.as_deref().is_some_and(|only| only != store) {
            continue;
        }
        let server = if store == "postgres" { postgres.as_ref() } else { None };
        runtime.block_on(soak(&options, server))?;
    }
    Ok(())
}
