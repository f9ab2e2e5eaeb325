//! The PostgreSQL backend: the conformance suite against a real server (one per test process,
//! from `telemetry-test-support`, a database per test), and what only this backend does: its
//! schema versions, concurrent migrations, failing fast when the server is unreachable, and
//! wake-ups across instances through LISTEN/NOTIFY.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use telemetry_core::{RenderedWebhook, UnixMillis, WebhookSubject};
use telemetry_test_support::postgres::PgServer;
use telemetry_test_support::proxy::LoseCommitAnswer;
use tokio_postgres::NoTls;

use crate::conformance::{Database, Harness};
use crate::model::{
    EndpointRecord, EndpointSource, EventRecord, OutgoingWebhook, Projection, Signing,
    WebhookMessage, WriteBatch, WriteMark,
};
use crate::postgres::writer::{WriteRequest, commit_group};
use crate::postgres::{
    CONNECT_TIMEOUT, IDLE_IN_TRANSACTION_TIMEOUT, PostgresConfig, PostgresStore,
};
use crate::{AnalyticsStore, EndpointStore, Outbox, Store, StoreError};

struct PostgresHarness;

struct PostgresDatabase {
    url: String,
}

/// A fresh database on the test process's server.
async fn create_database() -> String {
    tokio::task::spawn_blocking(|| PgServer::shared().create_database())
        .await
        .expect("createdb task")
        .expect("a fresh database")
}

/// An enabled endpoint for every event.
fn endpoint(id: &str) -> EndpointRecord {
    EndpointRecord {
        id: id.into(),
        url: "http://127.0.0.1:9/".into(),
        signing: Signing::Livekit,
        api_key: "key".into(),
        secret: "secret".into(),
        include_events: Vec::new(),
        exclude_events: Vec::new(),
        enabled: true,
        source: EndpointSource::Api,
        created_at: UnixMillis(0),
    }
}

fn config(url: &str) -> PostgresConfig {
    PostgresConfig { url: url.to_owned(), max_connections: 8 }
}

#[async_trait]
impl Harness for PostgresHarness {
    async fn database(&self) -> Box<dyn Database> {
        Box::new(PostgresDatabase { url: create_database().await })
    }
}

#[async_trait]
impl Database for PostgresDatabase {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(PostgresStore::open(config(&self.url)).await.expect("open"))
    }
}

crate::conformance_tests!(PostgresHarness);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_version_is_refused() {
    let url = create_database().await;
    PostgresStore::open(config(&url)).await.expect("open").close().await;
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
        .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
        .await
        .expect("insert");
    let error = PostgresStore::open(config(&url)).await.expect_err("refused");
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    assert!(error.to_string().contains("written by a newer version"), "{error}");
}

/// A fresh database with the first `version` migrations applied (the schema of an earlier
/// version), and a client of it.
async fn database_at_version(version: usize) -> (String, tokio_postgres::Client) {
    let url = create_database().await;
    let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    super::migrate_to(&mut client, version).await.expect("the earlier migrations");
    (url, client)
}

/// Events stored before migration 10 are keyed by their ids: written again (a replay of a
/// derived id), one is still stored once, and a new event with the same id under a key of its own
/// is stored beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_before_event_keys_are_keyed_by_their_ids() {
    let (url, mut client) = database_at_version(9).await;
    let transaction = client.transaction().await.expect("transaction");
    transaction
        .execute(
            "INSERT INTO events (id, type, at_ms, room_sid, room_name, participant_sid, participant_identity, \
             track_sid, node_id, payload) VALUES ('AE_old123456789', 'TRACK_MUTED', 1, 'RM_1', '', '', '', '', '', '{}')",
            &[],
        )
        .await
        .expect("an event of the old schema");
    transaction.commit().await.expect("commit");

    let store = PostgresStore::open(config(&url)).await.expect("migrated");
    let event = |key: &str| EventRecord {
        key: key.to_owned(),
        id: "AE_old123456789".into(),
        event_type: "TRACK_MUTED".into(),
        at: UnixMillis(2),
        room_sid: "RM_1".into(),
        room_name: String::new(),
        participant_sid: String::new(),
        participant_identity: String::new(),
        track_sid: String::new(),
        node_id: String::new(),
        payload: "{}".into(),
        projections: Vec::new(),
    };
    let batch =
        WriteBatch { events: vec![event("AE_old123456789"), event("r-new")], ..Default::default() };
    store.write(batch).await.expect("write");
    assert_eq!(store.counts().await.expect("counts").events, 2);
    store.close().await;
}

/// Webhooks stored before webhook message keys (migration 11) keep their deliveries, ids and
/// claims; the messages are keyed by their ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_stored_before_message_keys_keep_their_deliveries_ids_and_claims() {
    let (url, mut client) = database_at_version(10).await;
    let transaction = client.transaction().await.expect("transaction");
    transaction
        .batch_execute(crate::conformance::WEBHOOKS_BEFORE_MESSAGE_KEYS)
        .await
        .expect("webhooks of the old schema");
    transaction.commit().await.expect("commit");

    let store = PostgresStore::open(config(&url)).await.expect("migrated");
    crate::conformance::webhooks_stored_before_message_keys_keep_their_deliveries(&store).await;
    store.close().await;
}

/// A process paused in the middle of a transaction (SIGSTOP) must not hold its locks for good:
/// the server ends the session of a transaction left idle for [`IDLE_IN_TRANSACTION_TIMEOUT`],
/// and the row it locked can be taken by another session (as another instance's heartbeat takes
/// the lease of a paused holder's fenced write). Without the timeout the row stays locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_idle_loses_its_locks_after_the_timeout() {
    let url = create_database().await;
    let store = PostgresStore::open(config(&url)).await.expect("open");
    let (setup, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    setup
        .batch_execute("CREATE TABLE held (id int PRIMARY KEY); INSERT INTO held VALUES (1)")
        .await
        .expect("a row to lock");
    // The store's own sessions carry the timeout; one of them locks the row and goes quiet.
    let mut paused = store.pool.get().await.expect("a pooled connection");
    let timeout: String = paused
        .query_one("SHOW idle_in_transaction_session_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, format!("{}s", IDLE_IN_TRANSACTION_TIMEOUT.as_secs()));
    let transaction = paused.transaction().await.expect("begin");
    transaction.execute("SELECT id FROM held FOR SHARE", &[]).await.expect("lock");
    let take = "SELECT id FROM held FOR UPDATE SKIP LOCKED";
    assert!(setup.query(take, &[]).await.expect("skip").is_empty(), "locked while in use");
    let started = tokio::time::Instant::now();
    loop {
        if !setup.query(take, &[]).await.expect("take").is_empty() {
            break;
        }
        assert!(
            started.elapsed() < IDLE_IN_TRANSACTION_TIMEOUT + Duration::from_secs(10),
            "the idle transaction still holds the row"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() + Duration::from_millis(500) >= IDLE_IN_TRANSACTION_TIMEOUT);
    // The paused session was ended: its transaction cannot go on.
    assert!(transaction.commit().await.is_err(), "the idle transaction was rolled back");
    drop(paused);
    store.ping().await.expect("the pool serves again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let url = create_database().await;
    let opens = (0..4).map(|_| PostgresStore::open(config(&url)));
    let stores = futures_util::future::try_join_all(opens).await.expect("every instance opens");
    for store in &stores {
        store.ping().await.expect("ping");
    }
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .expect("versions")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let every: Vec<i64> = (1..=super::MIGRATIONS.len() as i64).collect();
    assert_eq!(versions, every, "each migration applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_fast_as_unavailable() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let started = tokio::time::Instant::now();
    let error = PostgresStore::open(config(&format!("postgres://postgres@127.0.0.1:{port}/none")))
        .await
        .expect_err("nothing listens");
    assert!(
        started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(error.is_transient(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_within_the_connect_timeout() {
    // Accepts connections and never says a word: the start-up handshake times out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = tokio::time::Instant::now();
    let error = PostgresStore::open(config(&format!("postgres://postgres@127.0.0.1:{port}/none")))
        .await
        .expect_err("never answers");
    assert!(
        started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(error.is_transient(), "{error:?}");
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_url_is_refused() {
    let error =
        PostgresStore::open(config("postgres://host:notaport/db")).await.expect_err("invalid");
    assert!(!error.is_transient(), "{error:?}");
}

/// A write on one instance wakes the dispatchers of another through NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_created_by_one_instance_wake_another() {
    let url = create_database().await;
    let writer = PostgresStore::open(config(&url)).await.expect("open");
    let other = PostgresStore::open(config(&url)).await.expect("open");
    let wake = other.outbox_changed();
    // The other instance wakes once when it starts listening: wait for that, so that the wake
    // below can only come from the notification.
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("the listener starts");
    writer.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let webhook = OutgoingWebhook {
        message: WebhookMessage::new(
            RenderedWebhook {
                id: "EV_1".into(),
                event: "room_started".into(),
                resource_key: "r".into(),
                subject: WebhookSubject::default(),
                body: "{}".into(),
            },
            String::new(),
            UnixMillis(0),
        ),
        endpoint_ids: vec!["WE_a".into()],
    };
    let receipt = writer
        .write(WriteBatch { webhooks: vec![webhook], ..WriteBatch::default() })
        .await
        .expect("write");
    assert_eq!(receipt.deliveries, 1);
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("the other instance is woken by the notification");
    writer.close().await;
    other.close().await;
}

/// Writes committed in one group: one that fails is rolled back alone (its savepoint, its write
/// mark's move with it), the others commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_fails_alone_in_its_group() {
    let url = create_database().await;
    let store = PostgresStore::open(config(&url)).await.expect("open");
    let event = |id: &str, payload: &str| EventRecord {
        key: id.to_owned(),
        id: id.to_owned(),
        event_type: "TRACK_MUTED".into(),
        at: UnixMillis(1),
        room_sid: "RM_1".into(),
        room_name: "one".into(),
        participant_sid: String::new(),
        participant_identity: String::new(),
        track_sid: String::new(),
        node_id: "sfu-1".into(),
        payload: payload.to_owned(),
        projections: vec![Projection::RoomSeen {
            sid: "RM_1".into(),
            name: "one".into(),
            at: UnixMillis(1),
        }],
    };
    // Each of its own writer (a write mark is moved with its write, or not at all).
    let batch = |index: usize, payload: &str| WriteBatch {
        events: vec![event(&format!("AE_{index}"), payload)],
        mark: Some(WriteMark { writer: format!("w{index}"), number: 1, at: UnixMillis(1) }),
        ..WriteBatch::default()
    };
    // PostgreSQL's text refuses a NUL byte: the second write fails.
    let payloads = ["{}", "bad\0payload", "{}"];
    let mut group = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        let (done, _) = tokio::sync::oneshot::channel();
        group.push(WriteRequest { batch: batch(index, payload), done });
    }
    let results = commit_group(&store.pool, &group).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let error = results[1].as_ref().expect_err("refused");
    assert!(!error.is_transient(), "{error:?}");
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.events, counts.rooms), (2, 1));
    let nodes = store.nodes().await.expect("nodes");
    assert_eq!(
        nodes.len(),
        1,
        "the failed write's node touch is rolled back with it, the others stay"
    );
    // The failed write's mark did not move: the same write, now valid, is not taken for a
    // repeat; the others' did.
    let receipt = store.write(batch(1, "{}")).await.expect("written");
    assert!(!receipt.repeated, "{receipt:?}");
    assert!(store.write(batch(2, "{}")).await.expect("answered").repeated);
    assert_eq!(store.counts().await.expect("counts").events, 3);
}

/// More claimants than the conformance suite's two, on separate stores (separate pools): still
/// one request in flight per key, in id order, and every delivery delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_claimants_keep_one_request_in_flight_per_key_in_order() {
    use std::collections::{HashMap, HashSet};

    use crate::model::{AttemptOutcome, AttemptRecord, ClaimRequest};

    let url = create_database().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(PostgresStore::open(config(&url)).await.expect("open")));
    }
    stores[0].put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let (keys, per_key) = (6, 20);
    let webhooks: Vec<OutgoingWebhook> = (0..keys * per_key)
        .map(|index| OutgoingWebhook {
            message: WebhookMessage::new(
                RenderedWebhook {
                    id: format!("EV_{index}"),
                    event: "room_started".into(),
                    resource_key: format!("k{}", index % keys),
                    subject: WebhookSubject::default(),
                    body: "{}".into(),
                },
                String::new(),
                UnixMillis(0),
            ),
            endpoint_ids: vec!["WE_a".into()],
        })
        .collect();
    for chunk in webhooks.chunks(10) {
        stores[0]
            .write(WriteBatch { webhooks: chunk.to_vec(), ..WriteBatch::default() })
            .await
            .expect("write");
    }
    let total = keys * per_key;
    #[derive(Default)]
    struct Log {
        in_flight: HashSet<String>,
        first_attempts: HashMap<String, Vec<i64>>,
        delivered: Vec<i64>,
        violations: Vec<String>,
    }
    let log = Arc::new(std::sync::Mutex::new(Log::default()));
    let mut tasks = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        let (store, log) = (store.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let owner = format!("d{index}");
            for _ in 0..100_000 {
                let claimed = store
                    .claim(ClaimRequest {
                        owner: owner.clone(),
                        now: UnixMillis(1),
                        lease_ms: 60_000,
                        slots: vec![("WE_a".into(), 4)],
                        run: 1,
                    })
                    .await
                    .expect("claim");
                {
                    let mut log = log.lock().expect("log");
                    if log.delivered.len() == total {
                        return;
                    }
                    for claimed in &claimed.deliveries {
                        let key = claimed.delivery.resource_key.clone();
                        if !log.in_flight.insert(key.clone()) {
                            log.violations.push(format!("two in flight on `{key}`"));
                        }
                        log.first_attempts.entry(key).or_default().push(claimed.delivery.id);
                    }
                }
                tokio::task::yield_now().await;
                {
                    // Out of flight before the record commits: the store, not this log, keeps
                    // the key from being claimed until then.
                    let mut log = log.lock().expect("log");
                    for claimed in &claimed.deliveries {
                        log.in_flight.remove(&claimed.delivery.resource_key);
                    }
                }
                let records = claimed
                    .deliveries
                    .iter()
                    .map(|claimed| AttemptRecord {
                        delivery_id: claimed.delivery.id,
                        claim: claimed.claim.clone(),
                        attempt: 1,
                        started_at: UnixMillis(1),
                        duration_ms: 1,
                        status_code: Some(200),
                        error: None,
                        outcome: AttemptOutcome::Delivered,
                    })
                    .collect::<Vec<_>>();
                let recorded = store.record_attempts(records.clone()).await.expect("record");
                let mut log = log.lock().expect("log");
                for (record, recorded) in records.iter().zip(recorded) {
                    if recorded {
                        log.delivered.push(record.delivery_id);
                    } else {
                        log.violations
                            .push(format!("a current claim was fenced: {}", record.delivery_id));
                    }
                }
            }
            panic!("the claimants made no progress");
        }));
    }
    for task in tasks {
        task.await.expect("claimant");
    }
    let log = log.lock().expect("log");
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    let mut delivered = log.delivered.clone();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!((delivered.len(), log.delivered.len()), (total, total));
    for (key, ids) in &log.first_attempts {
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "out of order on `{key}`: {ids:?}");
    }
}

/// The server goes away while the store is open: calls fail as unavailable (transient), and
/// once it is back the store serves again by itself, its listener listening again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_unavailable_and_the_store_recovers_when_it_returns() {
    let (server, url) = tokio::task::spawn_blocking(|| {
        let server = PgServer::builder().fast().start().expect("a server of its own");
        let url = server.create_database().expect("a database");
        (server, url)
    })
    .await
    .expect("start task");
    let store = PostgresStore::open(config(&url)).await.expect("open");
    let wake = store.outbox_changed();
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect("the listener starts");
    let event = |id: &str| WriteBatch {
        events: vec![EventRecord::from_event(&telemetry_core::proto::AnalyticsEvent {
            id: id.to_owned(),
            room_id: "RM_1".into(),
            ..Default::default()
        })],
        ..WriteBatch::default()
    };
    store.write(event("AE_before")).await.expect("write");

    let mut server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop().expect("stop");
        server
    })
    .await
    .expect("stop task");
    let error = store.ping().await.expect_err("no server");
    assert!(error.is_transient(), "{error:?}");
    let error = store.write(event("AE_during")).await.expect_err("no server");
    assert!(error.is_transient(), "{error:?}");
    let error = store.counts().await.expect_err("no server");
    assert!(error.is_transient(), "{error:?}");

    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let server = tokio::task::spawn_blocking(move || {
        server.restart().expect("restart");
        server
    })
    .await
    .expect("restart task");
    store.ping().await.expect("the pool connects again");
    store.write(event("AE_after")).await.expect("write");
    assert_eq!(store.counts().await.expect("counts").events, 2);
    tokio::time::timeout(Duration::from_secs(15), notified)
        .await
        .expect("the listener listens again (and wakes, having missed notifications)");
    store.close().await;
    tokio::task::spawn_blocking(move || drop(server)).await.expect("drop task");
}

/// Writes committed in one group are applied as one: each still gets its own receipt, a
/// message repeated in a later write of the group creates nothing more, and ids follow the
/// order of the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_merged_in_a_group_get_their_own_receipts() {
    let url = create_database().await;
    let store = PostgresStore::open(config(&url)).await.expect("open");
    let webhook = |id: &str, endpoints: &[&str]| OutgoingWebhook {
        message: WebhookMessage::new(
            RenderedWebhook {
                id: id.to_owned(),
                event: "room_started".into(),
                resource_key: "r".into(),
                subject: WebhookSubject::default(),
                body: format!("{{\"id\":\"{id}\"}}"),
            },
            String::new(),
            UnixMillis(0),
        ),
        endpoint_ids: endpoints.iter().map(|endpoint| (*endpoint).to_owned()).collect(),
    };
    let batches = [
        WriteBatch { webhooks: vec![webhook("EV_1", &["WE_a", "WE_b"])], ..WriteBatch::default() },
        WriteBatch {
            webhooks: vec![webhook("EV_1", &["WE_a", "WE_b"]), webhook("EV_2", &["WE_a"])],
            ..WriteBatch::default()
        },
        WriteBatch {
            events: vec![EventRecord::from_event(&telemetry_core::proto::AnalyticsEvent {
                id: "AE_1".into(),
                room_id: "RM_1".into(),
                ..Default::default()
            })],
            ..WriteBatch::default()
        },
    ];
    let group: Vec<WriteRequest> = batches
        .into_iter()
        .map(|batch| WriteRequest { batch, done: tokio::sync::oneshot::channel().0 })
        .collect();
    let results = commit_group(&store.pool, &group).await;
    let deliveries: Vec<u64> =
        results.into_iter().map(|result| result.expect("written").deliveries).collect();
    assert_eq!(deliveries, [2, 1, 0]);
    let page = store
        .deliveries(crate::model::DeliveriesQuery { limit: 10, ..Default::default() })
        .await
        .expect("deliveries");
    let order: Vec<(&str, &str)> = page
        .items
        .iter()
        .rev()
        .map(|delivery| (delivery.message_id.as_str(), delivery.endpoint_id.as_str()))
        .collect();
    assert_eq!(order, [("EV_1", "WE_a"), ("EV_1", "WE_b"), ("EV_2", "WE_a")]);
    assert_eq!(store.counts().await.expect("counts").rooms, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leases_are_shared_fairly_renewed_and_taken_over_with_a_new_epoch() {
    use crate::ClusterStore;
    use crate::model::Lease;
    let url = create_database().await;
    let store = PostgresStore::open(config(&url)).await.expect("open");
    let lease = Duration::from_secs(1);
    // Alone, the first instance takes every partition, each at epoch 1.
    let a = store.cluster_heartbeat("a", 4, lease).await.expect("heartbeat a");
    assert_eq!(a.share, 4);
    assert_eq!(a.held, (0..4).map(|partition| Lease { partition, epoch: 1 }).collect::<Vec<_>>());
    // A second instance's share is half, but nothing is free until `a` gives some back.
    let b = store.cluster_heartbeat("b", 4, lease).await.expect("heartbeat b");
    assert_eq!((b.live.len(), b.share, b.held.len()), (2, 2, 0));
    let a = store.cluster_heartbeat("a", 4, lease).await.expect("renew a");
    assert_eq!((a.share, a.held.len(), a.taken.len()), (2, 4, 0), "renewed, same epochs");
    for lease in &a.held[2..] {
        store.release_lease("a", *lease).await.expect("release");
    }
    // A release by a former holder (an old epoch) changes nothing.
    store.release_lease("b", Lease { partition: 0, epoch: 1 }).await.expect("no-op");
    let b = store.cluster_heartbeat("b", 4, lease).await.expect("b takes");
    assert_eq!(b.held, vec![Lease { partition: 2, epoch: 2 }, Lease { partition: 3, epoch: 2 }]);
    let instances = store.cluster_instances(lease).await.expect("instances");
    let owned: Vec<(&str, &[u32])> =
        instances.iter().map(|i| (i.id.as_str(), i.partitions.as_slice())).collect();
    assert_eq!(owned, vec![("a", &[0, 1][..]), ("b", &[2, 3][..])]);

    // `a` stops heartbeating: once its leases expire, `b` takes them with a new epoch, and `a`
    // renews none (they are lost to it even before anyone takes them).
    tokio::time::sleep(lease * 6 / 10).await;
    store.cluster_heartbeat("b", 4, lease).await.expect("b renews");
    tokio::time::sleep(lease * 6 / 10).await;
    let b = store.cluster_heartbeat("b", 4, lease).await.expect("b takes over");
    assert_eq!(b.held.len(), 4);
    assert_eq!(b.live, vec!["b".to_owned()]);
    assert_eq!(b.taken, vec![Lease { partition: 0, epoch: 2 }, Lease { partition: 1, epoch: 2 }]);
    let a = store.cluster_heartbeat("a", 4, lease).await.expect("a back");
    assert!(a.held.is_empty(), "a lost every lease: {a:?}");
    store.leave_cluster("a").await.expect("leave");
    let ids: Vec<String> = store
        .cluster_instances(lease)
        .await
        .expect("instances")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, vec!["b".to_owned()]);
    store.close().await;
}

/// A fenced write is written only while its instance holds the partition's lease at its epoch,
/// with its offset; once the lease is released (or taken again with a new epoch) the same write
/// writes nothing, and says so, while an unfenced write in the same group still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_writes_are_written_only_while_their_lease_is_held() {
    use crate::ClusterStore;
    use crate::model::{Fence, Lease};
    let url = create_database().await;
    let store = PostgresStore::open(config(&url)).await.expect("open");
    let lease = Duration::from_secs(30);
    let held = store.cluster_heartbeat("a", 2, lease).await.expect("heartbeat").held;
    assert_eq!(held[1], Lease { partition: 1, epoch: 1 });
    let event = |id: &str| {
        EventRecord::from_event(&telemetry_core::proto::AnalyticsEvent {
            id: id.to_owned(),
            room_id: "RM_1".into(),
            ..Default::default()
        })
    };
    let fenced = |id: &str, instance: &str, offset: u64| WriteBatch {
        events: vec![event(id)],
        fence: Some(Fence {
            instance: instance.to_owned(),
            lease: Lease { partition: 1, epoch: 1 },
            offset: Some(offset),
        }),
        ..WriteBatch::default()
    };
    let receipt = store.write(fenced("AE_1", "a", 7)).await.expect("write");
    assert!(!receipt.fenced);
    assert_eq!(store.partition_offset(1).await.expect("offset"), Some((1, 7)));
    // Another instance's fence, or an offset below the stored one, changes nothing.
    assert!(store.write(fenced("AE_2", "b", 9)).await.expect("write").fenced);
    assert!(!store.write(fenced("AE_3", "a", 5)).await.expect("write").fenced);
    assert_eq!(store.partition_offset(1).await.expect("offset"), Some((1, 7)));
    assert_eq!(store.partition_offset(0).await.expect("offset"), None);

    // Given back, then taken by `b` with epoch 2: `a`'s writes are fenced out, in a group with
    // an unfenced write that commits.
    store.release_lease("a", Lease { partition: 1, epoch: 1 }).await.expect("release");
    let taken = store.cluster_heartbeat("b", 2, lease).await.expect("b").taken;
    assert!(taken.contains(&Lease { partition: 1, epoch: 2 }), "{taken:?}");
    let group: Vec<WriteRequest> = [
        fenced("AE_4", "a", 20),
        WriteBatch { events: vec![event("AE_5")], ..WriteBatch::default() },
    ]
    .into_iter()
    .map(|batch| WriteRequest { batch, done: tokio::sync::oneshot::channel().0 })
    .collect();
    let results = commit_group(&store.pool, &group).await;
    let fenced_out: Vec<bool> =
        results.into_iter().map(|result| result.expect("written").fenced).collect();
    assert_eq!(fenced_out, [true, false]);
    assert_eq!(store.partition_offset(1).await.expect("offset"), Some((1, 7)));
    // AE_1, AE_3 and AE_5.
    assert_eq!(store.counts().await.expect("counts").events, 3);
    store.close().await;
}

/// The ambiguous commit: a write commits but the connection is lost before its answer arrives,
/// so the write fails as unavailable and is retried. With its writer's mark the retry writes
/// nothing (it waits for the lost transaction if that is still committing): the rate cells are
/// counted once, the delivery made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_commit_answer_is_lost_is_written_once_when_retried() {
    use crate::model::RateCellRecord;
    use telemetry_core::rates::RateCell;
    let url = create_database().await;
    let (base, database) = url.rsplit_once('/').expect("a database name");
    let (_, port) = base.rsplit_once(':').expect("a port");
    let proxy = LoseCommitAnswer::start(port.parse().expect("port")).expect("proxy");
    let (prefix, _) = base.rsplit_once(':').expect("a host");
    let proxied = format!("{prefix}:{}/{database}", proxy.port());
    let store = PostgresStore::open(config(&proxied)).await.expect("open through the proxy");
    store.put_endpoint(endpoint("WE_a")).await.expect("endpoint");
    let at = UnixMillis(1_700_000_000_000);
    let batch = |number: u64| WriteBatch {
        events: vec![EventRecord::from_event(&telemetry_core::proto::AnalyticsEvent {
            id: format!("AE_{number}"),
            room_id: "RM_1".into(),
            ..Default::default()
        })],
        rate_cells: vec![RateCellRecord {
            node_id: "sfu-1".into(),
            second: at.as_secs(),
            cell: RateCell { bytes_in: 1000, ..RateCell::default() },
        }],
        webhooks: vec![OutgoingWebhook {
            message: WebhookMessage::new(
                RenderedWebhook {
                    id: format!("EV_{number}"),
                    event: "room_started".into(),
                    resource_key: "RM_1".into(),
                    subject: WebhookSubject::default(),
                    body: "{}".into(),
                },
                String::new(),
                at,
            ),
            endpoint_ids: vec!["WE_a".into()],
        }],
        mark: Some(WriteMark { writer: "consumer".into(), number, at }),
        ..WriteBatch::default()
    };
    store.write(batch(1)).await.expect("a first write");

    proxy.arm(b"AE_2");
    let error = store.write(batch(2)).await.expect_err("the answer is lost");
    assert!(error.is_transient(), "{error:?}");
    assert!(!proxy.armed(), "the write's COMMIT went through the proxy");
    let receipt = store.write(batch(2)).await.expect("the retry");
    assert!(receipt.repeated, "the retry finds the write committed: {receipt:?}");
    store.write(batch(3)).await.expect("the next write");

    let cells = store.node_rates("sfu-1", at, at.plus_millis(1000)).await.expect("rates");
    let bytes: u64 = cells.iter().map(|(_, cell)| cell.bytes_in).sum();
    assert_eq!(bytes, 3000, "three writes' cells, each once");
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.events, 3);
    assert_eq!(store.outbox_counts().await.expect("outbox").pending, 3, "a delivery each");
    store.close().await;
}

/// A fenced-out write stores no mark (its writer's later write is not taken for a repeat); and
/// the writer task never groups two writes of one writer, which it could not compare with each
/// other in one statement: the second waits for the next group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_move_only_with_writes_that_are_written() {
    use crate::ClusterStore;
    use crate::model::{Fence, Lease};
    let url = create_database().await;
    let store = PostgresStore::open(config(&url)).await.expect("open");
    let event = |id: &str| {
        EventRecord::from_event(&telemetry_core::proto::AnalyticsEvent {
            id: id.to_owned(),
            room_id: "RM_1".into(),
            ..Default::default()
        })
    };
    let marked = |id: &str, writer: &str, number: u64| WriteBatch {
        events: vec![event(id)],
        mark: Some(WriteMark { writer: writer.to_owned(), number, at: UnixMillis(1) }),
        ..WriteBatch::default()
    };
    let held = store.cluster_heartbeat("a", 1, Duration::from_secs(30)).await.expect("heartbeat");
    let fence = |instance: &str| Fence {
        instance: instance.to_owned(),
        lease: held.held[0],
        offset: Some(1),
    };
    let receipt = store
        .write(WriteBatch { fence: Some(fence("b")), ..marked("AE_1", "w/0", 5) })
        .await
        .expect("fenced out");
    assert!(receipt.fenced && !receipt.repeated, "{receipt:?}");
    let receipt = store
        .write(WriteBatch { fence: Some(fence("a")), ..marked("AE_2", "w/0", 5) })
        .await
        .expect("written");
    assert!(!receipt.fenced && !receipt.repeated, "{receipt:?}");
    assert_eq!(held.held[0], Lease { partition: 0, epoch: 1 });

    // Three writes waiting before the writer task starts, two of them of one writer.
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut answers = Vec::new();
    for batch in [marked("AE_3", "w", 1), marked("AE_4", "v", 1), marked("AE_5", "w", 2)] {
        let (done, answer) = tokio::sync::oneshot::channel();
        sender.send(WriteRequest { batch, done }).expect("queued");
        answers.push(answer);
    }
    drop(sender);
    crate::postgres::writer::run(store.pool.clone(), receiver).await;
    for answer in answers {
        let receipt = answer.await.expect("answered").expect("written");
        assert!(!receipt.repeated, "{receipt:?}");
    }
    assert_eq!(store.counts().await.expect("counts").events, 4);
    store.close().await;
}
