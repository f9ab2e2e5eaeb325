//! What the store's keys cost as they are made against keys written at random, on a store that
//! already holds a realistic history: the writes of lifecycle calls (each an analytics event and
//! a webhook message with one delivery, as a call with one endpoint stores), in the consumer's
//! batch size, after a prefill of the same.
//!
//! Three ways of keying, rotated on fresh stores in the same run: **drawn** keys
//! (`EventRecord::drawn_key`, as the pipeline keys the events and messages of calls: each lands
//! beside the previous one in the indexes of keys); **random messages** (events drawn, webhook
//! messages keyed by their random `EV_` ids, as before migration 11); and **random** keys (events
//! keyed by their random `AE_` ids too, as before migration 10: each lands on a random page of
//! those indexes). Everything else is alike, ids included. The ratios are the cost of writing
//! keys at random, which grows with the history a store keeps (retention is days).
//!
//! `cargo bench -p telemetry-server --features bench --bench store_keys -- [--store sqlite|postgres]
//! [--prefill 200000] [--batches 300] [--calls 48] [--rounds 3]`. Both backends commit durably
//! (SQLite `synchronous = full`, PostgreSQL's defaults), as a user runs them.

// A benchmark's report is its standard output.
#![allow(clippy::print_stdout)]

mod common;

use std::time::Instant;

use telemetry_core::ids::IdGenerator;
use telemetry_core::{RenderedWebhook, UnixMillis, WebhookSubject};
use telemetry_store::Store;
use telemetry_store::model::{
    EndpointRecord, EndpointSource, EventRecord, OutgoingWebhook, Signing, WebhookMessage,
    WriteBatch,
};

struct Options {
    store: Option<String>,
    prefill: u64,
    batches: u64,
    calls: u64,
    rounds: u32,
}

fn options() -> Options {
    let mut options = Options { store: None, prefill: 200_000, batches: 300, calls: 48, rounds: 3 };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--store" => options.store = Some(value),
            "--prefill" => options.prefill = value.parse().unwrap_or(options.prefill),
            "--batches" => options.batches = value.parse().unwrap_or(options.batches),
            "--calls" => options.calls = value.parse().unwrap_or(options.calls),
            "--rounds" => options.rounds = value.parse().unwrap_or(options.rounds),
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Keys {
    Drawn,
    RandomMessages,
    Random,
}

/// Makes the records of lifecycle calls, one after the other.
struct Calls {
    keys: Keys,
    ids: IdGenerator,
    boot: u64,
    sequence: u64,
}

impl Calls {
    fn new(keys: Keys) -> Self {
        Self { keys, ids: IdGenerator::from_os(), boot: rand::random(), sequence: 0 }
    }

    /// The next `count` calls' records, about rooms of 10 participants.
    fn batch(&mut self, count: u64) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for _ in 0..count {
            self.sequence += 1;
            let room = self.sequence / 40;
            let event_id = self.ids.next_id("AE_");
            let webhook_id = self.ids.next_id("EV_");
            let (event_key, message_key) = match self.keys {
                Keys::Drawn => {
                    let key = EventRecord::drawn_key(self.boot, self.sequence);
                    (key.clone(), key)
                }
                Keys::RandomMessages => {
                    (EventRecord::drawn_key(self.boot, self.sequence), webhook_id.clone())
                }
                Keys::Random => (event_id.clone(), webhook_id.clone()),
            };
            let at = UnixMillis(1_700_000_000_000 + self.sequence as i64);
            let subject = WebhookSubject {
                room_sid: format!("RM_{room:012}"),
                room_name: format!("room-{room}"),
                participant_sid: format!("PA_{:012}", self.sequence / 4),
                participant_identity: format!("user-{}", self.sequence / 4),
                ..WebhookSubject::default()
            };
            batch.events.push(EventRecord {
                key: event_key,
                id: event_id.clone(),
                event_type: "PARTICIPANT_JOINED".to_owned(),
                at,
                room_sid: subject.room_sid.clone(),
                room_name: subject.room_name.clone(),
                participant_sid: subject.participant_sid.clone(),
                participant_identity: subject.participant_identity.clone(),
                track_sid: String::new(),
                node_id: "sfu-1".to_owned(),
                payload: format!("{{\"id\":\"{event_id}\",\"padding\":\"{}\"}}", "x".repeat(400)),
                projections: Vec::new(),
            });
            let webhook = RenderedWebhook {
                id: webhook_id.clone(),
                event: "participant_joined".to_owned(),
                resource_key: subject.room_name.clone(),
                body: format!("{{\"id\":\"{webhook_id}\",\"padding\":\"{}\"}}", "x".repeat(500)),
                subject,
            };
            let message =
                WebhookMessage { key: message_key, ..WebhookMessage::new(webhook, event_id, at) };
            batch.webhooks.push(OutgoingWebhook { message, endpoint_ids: vec!["WE_a".to_owned()] });
        }
        batch
    }
}

fn endpoint() -> EndpointRecord {
    EndpointRecord {
        id: "WE_a".to_owned(),
        url: "http://127.0.0.1:9/".to_owned(),
        signing: Signing::Livekit,
        api_key: "key".to_owned(),
        secret: "secret".to_owned(),
        include_events: Vec::new(),
        exclude_events: Vec::new(),
        enabled: true,
        source: EndpointSource::Api,
        created_at: UnixMillis(0),
    }
}

/// One measurement: wall and CPU microseconds per call over the measured batches.
struct Measured {
    wall_us: f64,
    cpu_us: f64,
}

async fn measure(store: &dyn Store, keys: Keys, options: &Options) -> anyhow::Result<Measured> {
    store.put_endpoint(endpoint()).await?;
    let mut calls = Calls::new(keys);
    let mut left = options.prefill;
    while left > 0 {
        let count = left.min(1000);
        if let Err(error) = store.write(calls.batch(count)).await {
            anyhow::bail!("a prefill write failed with {left} calls to go: {error}");
        }
        left -= count;
    }
    // Made before the clock starts: only the store's work is timed.
    let batches: Vec<WriteBatch> =
        (0..options.batches).map(|_| calls.batch(options.calls)).collect();
    let (user, system) = common::cpu_seconds();
    let started = Instant::now();
    for batch in batches {
        store.write(batch).await?;
    }
    let wall = started.elapsed().as_secs_f64();
    let (user_after, system_after) = common::cpu_seconds();
    let calls = (options.batches * options.calls) as f64;
    Ok(Measured {
        wall_us: wall * 1e6 / calls,
        cpu_us: (user_after - user + system_after - system) * 1e6 / calls,
    })
}

fn main() -> anyhow::Result<()> {
    let options = options();
    if !std::env::args().any(|arg| arg == "--bench") {
        // Built by `cargo test --all-targets`: nothing to run there.
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let wants = |store: &str| options.store.as_deref().is_none_or(|only| only == store);
    let postgres = if wants("postgres") {
        Some(telemetry_test_support::postgres::PgServer::start()?)
    } else {
        None
    };
    println!(
        "| store | round | keys | prefill (calls) | measured | µs per call | CPU µs per call |\n|---|---|---|---|---|---|---|"
    );
    let mut ratios: Vec<(String, f64, f64)> = Vec::new();
    for store_name in ["sqlite", "postgres"].into_iter().filter(|store| wants(store)) {
        for round in 1..=options.rounds {
            // Rotated: each way goes first in one round of three.
            let mut orders = [Keys::Drawn, Keys::RandomMessages, Keys::Random];
            orders.rotate_left((round as usize - 1) % 3);
            let mut results = Vec::new();
            for keys in orders {
                let dir = tempfile::tempdir()?;
                let measured = runtime.block_on(async {
                    let store: std::sync::Arc<dyn Store> = match store_name {
                        "sqlite" => {
                            std::sync::Arc::new(telemetry_store::sqlite::SqliteStore::open(
                                telemetry_store::sqlite::SqliteConfig::in_dir(dir.path()),
                            )?)
                        }
                        _ => {
                            let server = postgres.as_ref().expect("started above");
                            let url = server.create_database()?;
                            std::sync::Arc::new(
                                telemetry_store::postgres::PostgresStore::open(
                                    telemetry_store::postgres::PostgresConfig {
                                        url,
                                        max_connections: 8,
                                    },
                                )
                                .await?,
                            )
                        }
                    };
                    let measured = measure(store.as_ref(), keys, &options).await;
                    store.close().await;
                    measured
                })?;
                println!(
                    "| {store_name} | {round} | {keys:?} | {} | {} batches of {} | {:.1} | {:.1} |",
                    options.prefill,
                    options.batches,
                    options.calls,
                    measured.wall_us,
                    measured.cpu_us
                );
                results.push((keys, measured));
            }
            let of = |keys| {
                results.iter().find(|(k, _)| *k == keys).map(|(_, m)| m.wall_us).unwrap_or(f64::NAN)
            };
            let drawn = of(Keys::Drawn);
            ratios.push((
                format!("{store_name} round {round}"),
                of(Keys::RandomMessages) / drawn,
                of(Keys::Random) / drawn,
            ));
        }
    }
    println!("\n| store, round | random messages ÷ drawn | random ÷ drawn |\n|---|---|---|");
    for (what, messages, both) in ratios {
        println!("| {what} | {messages:.2} | {both:.2} |");
    }
    Ok(())
}
