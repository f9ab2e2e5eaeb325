//! Cluster mode in operation (issue 10, points 6 and 7): the consumer lag an instance reports
//! for its partitions, and PostgreSQL stopped and started again under the simulator's load while
//! two instances consume the stream. NATS is the shared test server (each test on a stream of
//! its own); the PostgreSQL test stops is one of its own. The helpers are `cluster.rs`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prost::Message as _;
use telemetry_proto::v1;
use telemetry_server::cluster::partition::partition_of;
use telemetry_test_support::nats::NatsServer;
use telemetry_test_support::postgres::PgServer;

use crate::cluster::{
    PARTITIONS, cluster_config, counter, names, sampled_room, spread_over, wait_for_ownership,
};
use crate::support::{ADMIN, TestApp, TestData, TestReceiver, endpoint_config};

/// `app`'s `rtc_telemetry_cluster_consumer_lag` (or `_redelivered`) samples, by partition.
async fn by_partition(app: &TestApp, family: &str) -> BTreeMap<u32, u64> {
    let text = app.metrics_text().await;
    let prefix = format!("{family}{{partition=\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (partition, value) = rest.split_once("\"} ").expect("a labelled sample");
            (partition.parse().expect("a partition"), value.parse::<f64>().expect("a value") as u64)
        })
        .collect()
}

/// Waits (at most 30 s) until `app`'s consumer lag by partition is `expected`.
async fn wait_for_lag(app: &TestApp, expected: &BTreeMap<u32, u64>) {
    let started = tokio::time::Instant::now();
    loop {
        let lag = by_partition(app, "rtc_telemetry_cluster_consumer_lag").await;
        if &lag == expected {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "lag {lag:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_counts_per_held_partition_what_is_not_stored_yet() {
    const ROOMS: usize = 6;
    let nats = NatsServer::shared();
    let names = names();
    let app = TestApp::start_in(
        TestData::on_postgres(),
        &format!("{}instance_id = \"lag\"\n", cluster_config(&nats.url(), &names, PARTITIONS)),
    )
    .await;
    wait_for_ownership(&app, "every partition held", |now| spread_over(now, &["lag"], PARTITIONS))
        .await;
    // Held and idle: every partition reads 0.
    let mut expected: BTreeMap<u32, u64> =
        (0..PARTITIONS).map(|partition| (partition, 0)).collect();
    wait_for_lag(&app, &expected).await;

    // A room per request, so a message each; its samples keep it unacknowledged until a flush
    // stores them (`stats.flush_interval` is an hour in the tests).
    for room in 0..ROOMS {
        let calls = sampled_room(room, 3);
        *expected.get_mut(&partition_of(&calls[0], PARTITIONS)).expect("a partition") += 1;
        let (status, answer) = app.ingest_protobuf(&v1::TelemetryBatch { calls }).await;
        assert_eq!(status, 200, "{answer}");
    }
    wait_for_lag(&app, &expected).await;
    let redelivered = by_partition(&app, "rtc_telemetry_cluster_consumer_redelivered").await;
    assert_eq!(redelivered.keys().count(), PARTITIONS as usize, "{redelivered:?}");
    assert!(redelivered.values().all(|&n| n == 0), "nothing waited past ack_wait");

    // Stored, acknowledged: the lag is gone.
    app.flush().await;
    let caught_up: BTreeMap<u32, u64> = (0..PARTITIONS).map(|partition| (partition, 0)).collect();
    wait_for_lag(&app, &caught_up).await;
    app.stop().await;
}

/// The simulator's calls (quality detection off: each lifecycle call is one event), with the
/// number of events and of stats samples they carry.
fn simulated_calls(rooms: u32, participants: u32) -> (Vec<v1::TelemetryCall>, u64, u64) {
    let args = telemetry_sim::SimulateArgs {
        rooms,
        participants,
        duration: Duration::from_secs(120),
        speed: 0.0,
        node_id: "sfu-ops".to_owned(),
        ..Default::default()
    };
    let end = telemetry_core::Clock::now(&telemetry_core::SystemClock);
    let duration_ms = i64::try_from(args.duration.as_millis()).expect("millis");
    let mut world = telemetry_sim::World::new(&args, end.plus_millis(-duration_ms));
    let mut calls = Vec::new();
    while world.next_time().is_some_and(|at| at <= end) {
        world.step(&mut calls);
    }
    world.finish(end, &mut calls);
    let count = |kind| calls.iter().filter(|(_, k)| *k == kind).count() as u64;
    let (events, samples) =
        (count(telemetry_sim::CallKind::Event), count(telemetry_sim::CallKind::Stats));
    (calls.into_iter().map(|(call, _)| call).collect(), events, samples)
}

/// Posts `batch` with its `Idempotency-Key` to `app`; the status.
async fn post_batch(app: &TestApp, batch: &v1::TelemetryBatch, key: &str) -> u16 {
    let response = app
        .client
        .post(app.url("/v1/telemetry"))
        .bearer_auth(TestApp::token(ADMIN))
        .header("content-type", "application/x-protobuf")
        .header("idempotency-key", key)
        .body(batch.encode_to_vec())
        .send()
        .await;
    response.map_or(0, |response| response.status().as_u16())
}

/// The messages of `stream` its consumers have not had acknowledged (not delivered, or
/// delivered and not acknowledged); `None` unless there is one consumer per partition.
async fn pending(nats_url: &str, stream: &str) -> Option<u64> {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let stream = async_nats::jetstream::new(client).get_stream(stream).await.expect("stream");
    let consumers: Vec<async_nats::jetstream::consumer::Info> =
        futures::TryStreamExt::try_collect(stream.consumers()).await.expect("consumers");
    (consumers.len() == PARTITIONS as usize)
        .then(|| consumers.iter().map(|info| info.num_pending + info.num_ack_pending as u64).sum())
}

async fn readyz(app: &TestApp) -> u16 {
    app.client.get(app.url("/readyz")).send().await.map_or(0, |r| r.status().as_u16())
}

/// Waits (at most 30 s) until every app's `/readyz` answers `status`.
async fn wait_for_readyz(apps: [&TestApp; 2], status: u16) {
    let started = tokio::time::Instant::now();
    loop {
        let mut now = Vec::new();
        for app in apps {
            now.push(readyz(app).await);
        }
        if now.iter().all(|&s| s == status) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "/readyz {now:?}, not {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_again_under_load_loses_and_repeats_nothing() {
    // A lease (30 s, renewed every 10 s) outlasts the outage and the restart: heartbeats fail,
    // but the owners keep their partitions.
    postgres_outage_under_load(["pa", "pb"], Duration::from_secs(30), Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_longer_than_the_lease_under_load_loses_and_repeats_nothing() {
    // Every lease runs out during the outage (2.5 leases): the consumers stop, the partitions'
    // workers are dropped, and once PostgreSQL is back the instances take the partitions again
    // under new epochs and replay each after its stored offset.
    postgres_outage_under_load(["la", "lb"], Duration::from_secs(3), Duration::from_millis(7500))
        .await;
}

/// Two instances (`ids`, leases of `lease`) consume the simulator's load while their
/// PostgreSQL is stopped for `outage` and started again: ingest keeps acknowledging, `/readyz`
/// fails meanwhile; afterwards every partition is held, every acknowledged call's event is
/// stored once, every sample is in one stored window, every webhook is delivered. An outage
/// longer than the lease must have lost the leases (counted) and taken them again.
async fn postgres_outage_under_load(ids: [&str; 2], lease: Duration, outage: Duration) {
    const BATCH: usize = 200;
    let nats = NatsServer::shared();
    let names = names();
    let receiver = TestReceiver::start().await;
    let mut postgres = PgServer::start().expect("a PostgreSQL server of the test's own");
    let url = postgres.create_database().expect("a database");
    let on_database =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    let section = |id: &str| {
        format!(
            "{}instance_id = \"{id}\"\nlease = \"{}ms\"\n[quality]\nenabled = false\n{}",
            cluster_config(&nats.url(), &names, PARTITIONS),
            lease.as_millis(),
            endpoint_config(&receiver.url("/hook"), "livekit", "a-secret-of-32-bytes-or-more-0123")
        )
    };
    let a = TestApp::start_in(on_database(), &section(ids[0])).await;
    let b = TestApp::start_in(on_database(), &section(ids[1])).await;
    wait_for_ownership(&a, "spread over both", |now| spread_over(now, &ids, PARTITIONS)).await;

    let (calls, events, samples) = simulated_calls(10, 4);
    let batches: Vec<v1::TelemetryBatch> =
        calls.chunks(BATCH).map(|chunk| v1::TelemetryBatch { calls: chunk.to_vec() }).collect();
    assert!(batches.len() >= 9, "load enough to span the outage: {} batches", batches.len());
    // Batches alternate between the instances; a batch not acknowledged goes again, with its
    // key, to the other one.
    let send = |index: usize| {
        let (a, b, batch) = (&a, &b, &batches[index]);
        async move {
            let key = format!("batch-{index}");
            let started = tokio::time::Instant::now();
            for attempt in 0.. {
                let app = if (index + attempt).is_multiple_of(2) { a } else { b };
                if post_batch(app, batch, &key).await == 200 {
                    return attempt;
                }
                assert!(started.elapsed() < Duration::from_secs(30), "batch {index} refused");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            unreachable!("the loop returns or fails")
        }
    };
    let third = batches.len() / 3;
    for index in 0..third {
        send(index).await;
    }

    tokio::task::block_in_place(|| postgres.stop()).expect("stop PostgreSQL");
    let stopped = tokio::time::Instant::now();
    wait_for_readyz([&a, &b], 503).await;
    // The calls go to JetStream: ingest acknowledges them at once, the store down or not.
    for index in third..2 * third {
        assert_eq!(send(index).await, 0, "batch {index} acknowledged while PostgreSQL is down");
    }
    assert_eq!(readyz(&a).await, 503, "still not ready: PostgreSQL is down");
    // Down for the whole outage (a fixed time: the outage, not a condition, is what is tested).
    tokio::time::sleep(outage.saturating_sub(stopped.elapsed())).await;
    tokio::task::block_in_place(|| postgres.restart()).expect("start PostgreSQL again");
    eprintln!("cluster ops: PostgreSQL was down for {:?}", stopped.elapsed());
    wait_for_readyz([&a, &b], 200).await;
    let lost = "rtc_telemetry_cluster_lease_events_total{event=\"lost\"}";
    let lost_in_outage = counter(&a, lost).await + counter(&b, lost).await;
    for index in 2 * third..batches.len() {
        send(index).await;
    }

    // Everything is stored once the stats are flushed and the consumers caught up: one consumer
    // per partition (its holder's), nothing in it pending. (Not the acknowledged count: a
    // message stored by a holder that lost its lease before acknowledging it is never
    // acknowledged, as its next holder consumes from after the stored offset.)
    let started = tokio::time::Instant::now();
    loop {
        a.flush().await;
        b.flush().await;
        let pending = pending(&nats.url(), &names.stream).await;
        if pending == Some(0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "messages still pending 60 s after the load's end: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("cluster ops: caught up {:?} after the load", started.elapsed());
    // The leases settled again: every partition held, spread over both.
    wait_for_ownership(&a, "spread over both again", |now| spread_over(now, &ids, PARTITIONS))
        .await;
    if outage > lease {
        assert!(lost_in_outage > 0, "an outage longer than the lease loses the leases");
    } else {
        assert_eq!(lost_in_outage, 0, "a lease longer than the outage is kept");
    }
    // Once PostgreSQL is back no lease is lost: an instance that took every partition gives its
    // extras back while it renews the others (a drain after the outage takes longer than a
    // lease here).
    let lost = counter(&a, lost).await + counter(&b, lost).await;
    assert_eq!(lost, lost_in_outage, "leases lost after PostgreSQL came back");

    // Every acknowledged call's event stored once; every sample in one stored window.
    let store = a.data.open_store().await;
    let stored_events = postgres
        .psql(
            url.rsplit('/').next().expect("a database name"),
            "SELECT count(*) FROM events WHERE type <> 'WEBHOOK'",
        )
        .expect("count the events");
    assert_eq!(stored_events.trim().parse::<u64>().expect("a count"), events, "events");
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.samples, samples, "every sample in one stored window: {counts:?}");

    // Every webhook stored is delivered, and reaches the endpoint.
    let deliveries = store
        .deliveries(telemetry_store::model::DeliveriesQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("deliveries");
    let messages: BTreeSet<String> =
        deliveries.items.iter().map(|delivery| delivery.message_id.clone()).collect();
    assert!(!messages.is_empty(), "the load made webhooks");
    let received = receiver
        .wait_for(Duration::from_secs(60), |received| {
            received.iter().map(crate::support::Received::id).collect::<BTreeSet<_>>() == messages
        })
        .await;
    eprintln!(
        "cluster ops: {events} events, {samples} samples, {} webhooks ({} requests)",
        messages.len(),
        received.len()
    );
    store.close().await;
    a.stop().await;
    b.stop().await;
}
