//! The cluster load harness (issue 10, point 8): calls stored per second by one, two and three
//! cluster instances on this machine beside a single instance without the cluster (PostgreSQL
//! backend), in one run on one private PostgreSQL server (`fsync` on) and one private
//! `nats-server -js`; the CPU each component used (instances, NATS, PostgreSQL, the clients);
//! then the failover time of a SIGKILLed instance. Every instance is the real `rtc-telemetry`
//! binary, a process of its own, fed the simulator's traffic over HTTP by concurrent clients.
//! Run with `cargo bench -p telemetry-server --features bench --bench cluster_load`
//! (`-- --rooms 40 --participants 8 --clients 8 --lease 3` to change it).

// A benchmark report is printed: that is its output.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use async_nats::jetstream;
use futures::TryStreamExt as _;
use prost::Message as _;
use telemetry_core::{Clock as _, SystemClock};
use telemetry_proto::v1;
use telemetry_server::cluster::partition::{consumer_prefix, fnv1a_32, partition_of, room_key};
use telemetry_sim::{SimulateArgs, generate};
use telemetry_test_support::nats::NatsServer;
use telemetry_test_support::postgres::PgServer;

const PARTITIONS: u32 = 12;
const KEY: (&str, &str) = ("bench-key", "bench-secret-0123456789abcdef0123");

struct Options {
    clients: usize,
    rooms: u32,
    participants: u32,
    batch: usize,
    lease_secs: u64,
}

fn options() -> Options {
    let mut options = Options { clients: 8, rooms: 40, participants: 8, batch: 500, lease_secs: 3 };
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
            "--lease" => options.lease_secs = value.parse().unwrap_or(options.lease_secs),
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

/// CPU seconds of process `pid` (user + system), with its waited-for children's when `children`.
fn process_cpu(pid: u32, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime, cutime, cstime are fields 14 to 17, 12 to 15 after the name; 100 ticks/s.
    let own = ticks(11) + ticks(12);
    (if children { own + ticks(13) + ticks(14) } else { own }) / 100.0
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of the PostgreSQL server: the postmaster with its ended backends, and the live
/// ones.
fn postgres_cpu(postmaster: u32) -> f64 {
    let live: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(postmaster))
        .map(|pid| process_cpu(pid, false))
        .sum();
    process_cpu(postmaster, true) + live
}

/// The first line of a pid file.
fn pid_in(file: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(file)?;
    Ok(text.lines().next().unwrap_or("").trim().parse()?)
}

/// One `rtc-telemetry serve` process.
struct Instance {
    child: Child,
    http: String,
    _dir: tempfile::TempDir,
}

impl Instance {
    /// Starts the binary with `section` added to its configuration and waits until it serves.
    fn start(database_url: &str, section: &str) -> anyhow::Result<Instance> {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[stats]\nflush_interval = \"1h\"\n[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n{section}",
                KEY.0, KEY.1
            ),
        )?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtc-telemetry"))
            .args(["serve", "--http-bind", "127.0.0.1:0", "--grpc-bind", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RTC_TELEMETRY_STORE__BACKEND", "postgres")
            .env("RTC_TELEMETRY_STORE__URL", database_url)
            .env("RTC_TELEMETRY_LOG", "warn,telemetry_server::app=info")
            .stderr(Stdio::piped())
            .spawn()?;
        let mut log = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut line = String::new();
        let http = loop {
            line.clear();
            if log.read_line(&mut line)? == 0 {
                anyhow::bail!("the instance exited before serving");
            }
            if let Some(rest) = line.split("http=").nth(1) {
                break rest.split_whitespace().next().unwrap_or("").to_owned();
            }
        };
        // Keep draining the log so that the instance never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        Ok(Instance { child, http, _dir: dir })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_section(nats_url: &str, run: &str, id: &str, lease_secs: u64) -> String {
    format!(
        "[cluster]\nenabled = true\nnats_url = \"{nats_url}\"\nstream = \"BENCH_{run}\"\nsubject_prefix = \"bench{run}.calls\"\npartitions = {PARTITIONS}\ninstance_id = \"{id}\"\nlease = \"{lease_secs}s\"\n"
    )
}

/// Waits until every partition is held, spread over `ids` (at most one apart).
async fn wait_for_spread(
    client: &reqwest::Client,
    token: &str,
    instance: &Instance,
    ids: &[String],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let status: serde_json::Value =
            client.get(instance.url("/v1/cluster")).bearer_auth(token).send().await?.json().await?;
        let mut held = Vec::new();
        let mut shares = Vec::new();
        for entry in status["instances"].as_array().into_iter().flatten() {
            let partitions: Vec<u64> = entry["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            if ids.iter().any(|id| entry["id"] == id.as_str()) {
                shares.push(partitions.len());
            } else if !partitions.is_empty() {
                shares.push(usize::MAX);
            }
            held.extend(partitions);
        }
        held.sort_unstable();
        let fair = PARTITIONS as usize / ids.len();
        if held == (0..u64::from(PARTITIONS)).collect::<Vec<_>>()
            && shares.len() == ids.len()
            && shares.iter().all(|&share| share == fair || share == fair + 1)
        {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "no spread: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Messages of `stream` not yet acknowledged by its partition consumers (`None` while a
/// consumer does not exist yet).
async fn unacknowledged(context: &jetstream::Context, stream: &str) -> Option<u64> {
    let stream = context.get_stream(stream).await.ok()?;
    let infos: Vec<_> = stream.consumers().try_collect().await.ok()?;
    let mut total = 0;
    for partition in 0..PARTITIONS {
        // Each holder consumes through its own consumer (`<prefix>-e<epoch>`) and deletes its
        // predecessors' when it takes the lease.
        let prefix = format!("{}-e", consumer_prefix(partition));
        let info = infos.iter().find(|info| info.name.starts_with(&prefix))?;
        total += info.num_pending + info.num_ack_pending as u64;
    }
    Some(total)
}

/// Sends each client's batches, in order, round robin over `urls`, the clients concurrently
/// (as SFU nodes do: each sends its own rooms' calls in order); the request latencies.
async fn send(
    client: &reqwest::Client,
    token: &str,
    urls: &[String],
    clients: &[Vec<Vec<u8>>],
) -> anyhow::Result<Vec<Duration>> {
    let mut workers = Vec::new();
    for (number, batches) in clients.iter().enumerate() {
        let (batches, client, token, urls) =
            (batches.clone(), client.clone(), token.to_owned(), urls.to_vec());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for (index, body) in batches.into_iter().enumerate() {
                let sent = Instant::now();
                let response = client
                    .post(&urls[(number + index) % urls.len()])
                    .bearer_auth(&token)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "{}", response.status());
                let _ = response.bytes().await;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    latencies.sort_unstable();
    Ok(latencies)
}

/// Samples, every 10 ms until `stop`, whether a transaction holds the store's ordered-inserts
/// lock (the one section every instance's event and webhook writes pass through one at a
/// time); the share of samples in which one did.
async fn lock_busy(url: String, stop: Arc<tokio::sync::Notify>) -> anyhow::Result<f64> {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let lock = telemetry_store::postgres::ORDERED_INSERTS_LOCK;
    // An advisory lock on a bigint key shows its high half as `classid`, its low as `objid`.
    let (high, low) = (i64::from((lock >> 32) as u32), i64::from(lock as u32));
    let query = client
        .prepare(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = $1 AND objid::bigint = $2",
        )
        .await?;
    let (mut samples, mut busy) = (0_u64, 0_u64);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        let held: i64 = client.query_one(&query, &[&high, &low]).await?.get(0);
        samples += 1;
        busy += u64::from(held > 0);
    }
    Ok(busy as f64 / samples.max(1) as f64)
}

/// What one configuration measured.
struct Run {
    label: String,
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// CPU seconds: instances, NATS, PostgreSQL, the clients (this process).
    cpu: [f64; 4],
    stored: String,
    /// Share of the run in which the ordered-inserts lock was held.
    lock_busy: f64,
}

struct Setup {
    postgres: PgServer,
    postmaster: u32,
    nats: NatsServer,
    nats_pid: u32,
    /// Each client's batches, in the order it sends them.
    batches: Vec<Vec<Vec<u8>>>,
    calls: usize,
    lease_secs: u64,
}

impl Setup {
    fn cpu(&self, instances: &[Instance]) -> [f64; 4] {
        [
            instances.iter().map(|instance| process_cpu(instance.pid(), false)).sum(),
            process_cpu(self.nats_pid, false),
            postgres_cpu(self.postmaster),
            common::cpu_seconds().0 + common::cpu_seconds().1,
        ]
    }

    /// Stores every call with `count` cluster instances, or one instance without the cluster
    /// (`count == 0`).
    async fn run(&self, count: usize, run: &str) -> anyhow::Result<Run> {
        let database = self.postgres.create_database()?;
        let name = database.rsplit('/').next().unwrap_or("").to_owned();
        let client = reqwest::Client::new();
        let token = telemetry_server::auth::mint_token(KEY.0, KEY.1, Duration::from_secs(3600))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let ids: Vec<String> = (0..count).map(|n| format!("i{n}")).collect();
        let instances: Vec<Instance> = if count == 0 {
            vec![Instance::start(&database, "")?]
        } else {
            ids.iter()
                .map(|id| {
                    Instance::start(
                        &database,
                        &cluster_section(&self.nats.url(), run, id, self.lease_secs),
                    )
                })
                .collect::<anyhow::Result<_>>()?
        };
        let context = jetstream::new(async_nats::connect(self.nats.url()).await?);
        if count > 0 {
            wait_for_spread(&client, &token, &instances[0], &ids).await?;
        }
        let urls: Vec<String> =
            instances.iter().map(|instance| instance.url("/v1/telemetry")).collect();

        let cpu_before = self.cpu(&instances);
        let stop = Arc::new(tokio::sync::Notify::new());
        let sampler = tokio::spawn(lock_busy(self.postgres.url(&name), stop.clone()));
        let started = Instant::now();
        let latencies = send(&client, &token, &urls, &self.batches).await?;
        // Stored: every stats window flushed and, in the cluster, every message acknowledged
        // (a message is acknowledged once what it caused is in PostgreSQL).
        loop {
            for instance in &instances {
                let flushed =
                    client.post(instance.url("/v1/flush")).bearer_auth(&token).send().await?;
                anyhow::ensure!(flushed.status().is_success(), "flush: {}", flushed.status());
            }
            if count == 0 || unacknowledged(&context, &format!("BENCH_{run}")).await == Some(0) {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not stored in 10 min");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let cpu_after = self.cpu(&instances);
        stop.notify_one();
        let lock_busy = sampler.await??;
        let stored = self.postgres.psql(
            &name,
            "SELECT (SELECT count(*) FROM events) || ' events, ' || (SELECT coalesce(sum(samples), 0) FROM stats_windows) || ' samples in windows'",
        )?;
        drop(instances);
        Ok(Run {
            label: if count == 0 {
                "1 instance, no cluster".to_owned()
            } else {
                format!("{count} cluster instance{}", if count == 1 { "" } else { "s" })
            },
            rate: self.calls as f64 / elapsed.as_secs_f64(),
            p50: latencies[latencies.len() / 2],
            p99: latencies[(latencies.len() - 1) * 99 / 100],
            cpu: std::array::from_fn(|n| cpu_after[n] - cpu_before[n]),
            stored: stored.trim().to_owned(),
            lock_busy,
        })
    }

    /// Three instances; one SIGKILLed: how long until its partitions are held by the others,
    /// and until a call published to each of them after the kill is stored.
    async fn failover(&self) -> anyhow::Result<(Duration, Duration)> {
        let database = self.postgres.create_database()?;
        let client = reqwest::Client::new();
        let token = telemetry_server::auth::mint_token(KEY.0, KEY.1, Duration::from_secs(3600))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let ids: Vec<String> = (0..3).map(|n| format!("f{n}")).collect();
        let mut instances: Vec<Instance> = ids
            .iter()
            .map(|id| {
                Instance::start(
                    &database,
                    &cluster_section(&self.nats.url(), "failover", id, self.lease_secs),
                )
            })
            .collect::<anyhow::Result<_>>()?;
        wait_for_spread(&client, &token, &instances[0], &ids).await?;
        let mut victim = instances.pop().expect("three instances");
        victim.child.kill()?;
        victim.child.wait()?;
        let killed = Instant::now();
        // Rooms whose calls land on every partition, sent to the survivors after the kill.
        let mut rooms: Vec<(String, v1::TelemetryCall)> = Vec::new();
        for n in 0.. {
            if rooms.len() == PARTITIONS as usize {
                break;
            }
            let sid = format!("RM_failover{n:04}");
            let room = telemetry_core::proto::Room {
                sid: sid.clone(),
                name: sid.clone(),
                ..Default::default()
            };
            let call = v1::TelemetryCall {
                at: Some(SystemClock.now().to_timestamp()),
                node_id: "sfu-failover".into(),
                call: Some(v1::telemetry_call::Call::RoomStarted(v1::RoomCall {
                    room: Some(room),
                })),
            };
            let partition = partition_of(&call, PARTITIONS);
            if rooms.iter().all(|(_, other)| partition_of(other, PARTITIONS) != partition) {
                rooms.push((sid, call));
            }
        }
        let batch =
            v1::TelemetryBatch { calls: rooms.iter().map(|(_, call)| call.clone()).collect() };
        let posted = client
            .post(instances[0].url("/v1/telemetry"))
            .bearer_auth(&token)
            .header("content-type", "application/x-protobuf")
            .body(batch.encode_to_vec())
            .send()
            .await?;
        anyhow::ensure!(posted.status().is_success(), "{}", posted.status());
        wait_for_spread(&client, &token, &instances[0], &ids[..2]).await?;
        let moved = killed.elapsed();
        loop {
            let mut stored = 0;
            for (sid, _) in &rooms {
                let events: serde_json::Value = client
                    .get(instances[0].url(&format!("/v1/rooms/{sid}/events")))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                if events["events"].as_array().is_some_and(|events| !events.is_empty()) {
                    stored += 1;
                }
            }
            if stored == rooms.len() {
                return Ok((moved, killed.elapsed()));
            }
            anyhow::ensure!(killed.elapsed() < Duration::from_secs(120), "not stored in 2 min");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let args = SimulateArgs {
        rooms: options.rooms,
        participants: options.participants,
        duration: Duration::from_secs(300),
        ..SimulateArgs::default()
    };
    let calls = generate(&args, SystemClock.now());
    // Each room's calls go to one client (by the partition rule's hash), in the order the
    // simulator made them; calls without a room go to the first.
    let mut per_client: Vec<Vec<v1::TelemetryCall>> = vec![Vec::new(); options.clients.max(1)];
    for call in &calls {
        let client =
            room_key(call).map_or(0, |key| fnv1a_32(key.as_bytes()) as usize) % per_client.len();
        per_client[client].push(call.clone());
    }
    let batches: Vec<Vec<Vec<u8>>> = per_client
        .iter()
        .map(|calls| {
            calls
                .chunks(options.batch)
                .map(|chunk| v1::TelemetryBatch { calls: chunk.to_vec() }.encode_to_vec())
                .collect()
        })
        .collect();
    println!(
        "| load | {} calls in {} batches of up to {}, {} clients each sending its rooms' calls in order; {PARTITIONS} partitions, lease {} s |",
        calls.len(),
        batches.iter().map(Vec::len).sum::<usize>(),
        options.batch,
        options.clients,
        options.lease_secs
    );
    let postgres = PgServer::start()?;
    let postmaster = pid_in(&postgres.data_dir().join("postmaster.pid"))?;
    let nats = NatsServer::start()?;
    let nats_pid = pid_in(&nats.folder().join("nats.pid"))?;
    let setup = Setup {
        postgres,
        postmaster,
        nats,
        nats_pid,
        batches,
        calls: calls.len(),
        lease_secs: options.lease_secs,
    };
    runtime.block_on(async {
        let mut runs = Vec::new();
        for count in [0, 1, 2, 3] {
            let run = setup.run(count, &format!("r{count}")).await?;
            let [instances, nats, postgres, clients] = run.cpu;
            let per_call = |cpu: f64| cpu * 1e6 / setup.calls as f64;
            println!(
                "| {} | {:.0} calls/s stored; request p50 {:.1} ms, p99 {:.1} ms; CPU µs per call: instances {:.1}, NATS {:.1}, PostgreSQL {:.1}, clients {:.1}, total {:.1}; ordered-inserts lock held {:.0} % of the time; {} |",
                run.label,
                run.rate,
                run.p50.as_secs_f64() * 1e3,
                run.p99.as_secs_f64() * 1e3,
                per_call(instances),
                per_call(nats),
                per_call(postgres),
                per_call(clients),
                per_call(instances + nats + postgres + clients),
                run.lock_busy * 100.0,
                run.stored
            );
            runs.push(run);
        }
        let base = &runs[0];
        let total = |run: &Run| run.cpu.iter().sum::<f64>();
        for run in &runs[1..] {
            println!(
                "| ratio | {}: stored rate / no cluster {:.2}; CPU per call / no cluster {:.2} |",
                run.label,
                run.rate / base.rate,
                total(run) / total(base)
            );
        }
        let (moved, stored) = setup.failover().await?;
        println!(
            "| failover | SIGKILL of 1 of 3 instances (lease {} s): its partitions held by the others after {:.2} s; a call published to each of them after the kill stored after {:.2} s |",
            setup.lease_secs,
            moved.as_secs_f64(),
            stored.as_secs_f64()
        );
        anyhow::Ok(())
    })?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("| machine load at the end | {} |", load.trim());
    Ok(())
}
