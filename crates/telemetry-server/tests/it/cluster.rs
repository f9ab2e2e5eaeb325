//! Cluster mode's ingest (`telemetry_server::cluster`) against a real `nats-server -js` this
//! binary starts (`telemetry_test_support::nats`) and the test PostgreSQL server; and
//! `Idempotency-Key` without the cluster.

use std::sync::atomic::{AtomicU32, Ordering};

use async_nats::jetstream;
use prost::Message as _;
use serde_json::{Value, json};
use telemetry_proto::v1;
use telemetry_server::cluster::partition::partition_of;
use telemetry_test_support::nats::NatsServer;

use crate::support::{ADMIN, INGESTER, TestApp, TestData, room_calls};

pub(crate) const PARTITIONS: u32 = 4;

/// A stream and subject prefix of the test's own on a shared NATS server.
pub(crate) struct Names {
    pub(crate) stream: String,
    prefix: String,
}

pub(crate) fn names() -> Names {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Names { stream: format!("TEST_{n}"), prefix: format!("test{n}.calls") }
}

pub(crate) fn cluster_config(nats_url: &str, names: &Names, partitions: u32) -> String {
    format!(
        "[cluster]\nenabled = true\nnats_url = \"{nats_url}\"\nstream = \"{}\"\nsubject_prefix = \"{}\"\npartitions = {partitions}\n",
        names.stream, names.prefix
    )
}

async fn post(app: &TestApp, body: &Value, key: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request =
        app.client.post(app.url("/v1/telemetry")).bearer_auth(TestApp::token(INGESTER)).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after =
        response.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
    (status, response.json().await.unwrap_or(Value::Null), retry_after)
}

/// Every message of the stream: (subject, batch).
pub(crate) async fn messages(nats_url: &str, stream: &str) -> Vec<(String, v1::TelemetryBatch)> {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let context = jetstream::new(client);
    let mut stream = context.get_stream(stream).await.expect("stream");
    let info = stream.info().await.expect("info").clone();
    let mut out = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        let message = stream.get_raw_message(sequence).await.expect("message");
        let batch = v1::TelemetryBatch::decode(message.payload.as_ref()).expect("a TelemetryBatch");
        out.push((message.subject.to_string(), batch));
    }
    out
}

fn body(rooms: usize) -> Value {
    let mut calls: Vec<Value> = (0..rooms).flat_map(|room| room_calls("cl", room, 3)).collect();
    // One call that fails validation: rejected, never published.
    calls.push(json!({ "roomStarted": { "room": { "name": "no-sid" } } }));
    json!({ "calls": calls })
}

#[tokio::test]
async fn cluster_ingest_publishes_calls_by_partition_and_a_repeated_key_takes_effect_once() {
    let nats = NatsServer::shared();
    let names = names();
    let config = cluster_config(&nats.url(), &names, PARTITIONS);
    let first = TestApp::start_in(TestData::on_postgres(), &config).await;

    let (status, answer, _) = post(&first, &body(6), Some("request-1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 18);
    assert_eq!(answer["rejectedCount"], 1);
    assert_eq!(answer["rejected"][0]["index"], 18);

    let stored = messages(&nats.url(), &names.stream).await;
    let mut calls = 0;
    for (subject, batch) in &stored {
        let partition: u32 = subject
            .strip_prefix(&format!("{}.", names.prefix))
            .and_then(|n| n.parse().ok())
            .expect("a partition subject");
        for call in &batch.calls {
            calls += 1;
            assert_eq!(partition_of(call, PARTITIONS), partition, "{call:?} on {subject}");
            assert!(call.at.is_some(), "`at` filled in by the ingesting instance");
            assert_eq!(call.node_id, INGESTER.0, "`nodeId` defaults to the API key");
        }
    }
    assert_eq!(calls, 18, "every accepted call published once, the rejected one not");
    assert!(stored.len() <= PARTITIONS as usize, "one message per partition");

    // The same request again, to another instance on the stream: answered alike, stored once.
    let second = TestApp::start_in(TestData::on_postgres(), &config).await;
    let (status, again, _) = post(&second, &body(6), Some("request-1")).await;
    assert_eq!((status, &again), (200, &answer));
    assert_eq!(messages(&nats.url(), &names.stream).await.len(), stored.len());
    // The same key from another API key, or another key, is another request.
    let other_key = second
        .client
        .post(second.url("/v1/telemetry"))
        .bearer_auth(TestApp::token(ADMIN))
        .header("idempotency-key", "request-1")
        .json(&body(1))
        .send()
        .await
        .expect("request");
    assert_eq!(other_key.status().as_u16(), 200);
    let (status, _, _) = post(&second, &body(1), Some("request-2")).await;
    assert_eq!(status, 200);
    assert!(messages(&nats.url(), &names.stream).await.len() >= stored.len() + 2);

    // The repeat shows in the second instance's metrics, and every family it renders is one of
    // the service's names.
    let metrics = second.metrics_text().await;
    let duplicates = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "rtc_telemetry_cluster_published_messages_total{outcome=\"duplicate\"} ",
            )
        })
        .expect("the duplicate count");
    assert_eq!(duplicates.parse::<usize>().expect("a number"), stored.len());
    for family in metrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let name = family.split_whitespace().next().expect("a name");
        assert!(telemetry_core::metrics::names::ALL.contains(&name), "`{name}` is not in ALL");
    }
    for name in [
        telemetry_core::metrics::names::CLUSTER_PARTITIONS_OWNED,
        telemetry_core::metrics::names::CLUSTER_LEASE_EVENTS_TOTAL,
        telemetry_core::metrics::names::CLUSTER_PUBLISHED_MESSAGES_TOTAL,
        telemetry_core::metrics::names::CLUSTER_CONSUMED_MESSAGES_TOTAL,
        telemetry_core::metrics::names::CLUSTER_REFUSED_CALLS_TOTAL,
    ] {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "`{name}` is not rendered");
    }

    let (status, error, _) = post(&first, &body(1), Some(&"k".repeat(201))).await;
    assert_eq!(status, 400);
    assert!(error.to_string().contains("Idempotency-Key"), "{error}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn ingest_answers_503_while_nats_is_down_and_publishes_again_once_it_is_back() {
    let mut nats = NatsServer::start().expect("a NATS server of this test's own");
    let names = names();
    let app = TestApp::start_in(
        TestData::on_postgres(),
        &cluster_config(&nats.url(), &names, PARTITIONS),
    )
    .await;
    assert_eq!(post(&app, &body(1), None).await.0, 200);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.expect("readyz").status(), 200);

    nats.stop().expect("stop NATS");
    let (status, error, retry_after) = post(&app, &body(2), Some("while-down")).await;
    assert_eq!(status, 503, "{error}");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    let ready = app.client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);

    nats.restart().expect("restart NATS");
    // The client reconnects on its own; the retry with the same key then takes effect once.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, _, _) = post(&app, &body(2), Some("while-down")).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no 200 within 20 s of NATS's restart");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let calls: usize =
        messages(&nats.url(), &names.stream).await.iter().map(|(_, b)| b.calls.len()).sum();
    assert_eq!(calls, 3 + 6, "the first request's calls and the retried one's, once");
    // The partition consumers carried on over the restart: every published call is stored,
    // once (room 0 was in both requests).
    for (sid, expected) in [("RM_cl0000", 6), ("RM_cl0001", 3)] {
        crate::support::wait_for_api(
            &app,
            &format!("/v1/rooms/{sid}/events?limit=100"),
            std::time::Duration::from_secs(30),
            |events| {
                let stored = events["events"].as_array().map_or(0, |events| {
                    events.iter().filter(|event| event["type"] != "WEBHOOK").count()
                });
                assert!(stored <= expected, "{sid}: {events}");
                stored == expected
            },
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_cluster_setups_are_refused_at_start_naming_the_key() {
    let nats = NatsServer::shared();
    let names = names();
    // Unreachable NATS.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let data = TestData::on_postgres();
    let config = crate::support::test_config(
        &data,
        &cluster_config(&format!("nats://127.0.0.1:{port}"), &names, PARTITIONS),
    );
    let error = telemetry_server::app::App::build(config).await.expect_err("refused");
    assert!(format!("{error:#}").contains("`cluster.nats_url`"), "{error:#}");

    // The partition count of a running cluster changed.
    let app = TestApp::start_in(data, &cluster_config(&nats.url(), &names, PARTITIONS)).await;
    let data = TestData::on_postgres();
    let config =
        crate::support::test_config(&data, &cluster_config(&nats.url(), &names, PARTITIONS + 1));
    let error = telemetry_server::app::App::build(config).await.expect_err("refused");
    assert!(format!("{error:#}").contains("`cluster.partitions`"), "{error:#}");
    app.stop().await;
}

#[tokio::test]
async fn without_the_cluster_a_repeated_idempotency_key_is_answered_like_the_first_and_stored_once()
{
    let app = TestApp::start().await;
    let calls = json!({ "calls": room_calls("idem", 0, 3) });
    let (status, first, _) = post(&app, &calls, Some("once")).await;
    assert_eq!(status, 200, "{first}");
    let (status, again, _) = post(&app, &calls, Some("once")).await;
    assert_eq!((status, &again), (200, &first));
    let events = app.get_ok("/v1/rooms/RM_idem0000/events").await;
    let events = events["events"].as_array().expect("events").len();
    assert_eq!(events, 3, "the repeat stored nothing");
    // Without a key, or with another, the calls take effect again (events are new ids).
    assert_eq!(post(&app, &calls, Some("twice")).await.0, 200);
    let after = app.get_ok("/v1/rooms/RM_idem0000/events").await;
    assert_eq!(after["events"].as_array().expect("events").len(), 6);
    app.stop().await;
}

/// `GET /v1/cluster` of `app`: (id, partitions) of each instance.
pub(crate) async fn ownership(app: &TestApp) -> Vec<(String, Vec<u32>)> {
    let status = app.get_ok("/v1/cluster").await;
    status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|instance| {
            let partitions = instance["partitions"]
                .as_array()
                .expect("partitions")
                .iter()
                .map(|p| p.as_u64().expect("a partition") as u32)
                .collect();
            (instance["id"].as_str().expect("id").to_owned(), partitions)
        })
        .collect()
}

/// Waits until `held` holds for the instances' partitions (at most 30 s); returns how long.
pub(crate) async fn wait_for_ownership(
    app: &TestApp,
    what: &str,
    held: impl Fn(&[(String, Vec<u32>)]) -> bool,
) -> std::time::Duration {
    let started = tokio::time::Instant::now();
    loop {
        let now = ownership(app).await;
        if held(&now) {
            return started.elapsed();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{what}: still {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Every partition held by exactly one of `ids`, each holding its fair share.
pub(crate) fn spread_over(instances: &[(String, Vec<u32>)], ids: &[&str], partitions: u32) -> bool {
    let mut all: Vec<u32> = Vec::new();
    for (id, held) in instances {
        if ids.contains(&id.as_str()) {
            let share = held.len() as u32;
            let fair = partitions / ids.len() as u32;
            if share != fair && share != fair + 1 {
                return false;
            }
        } else if !held.is_empty() {
            return false;
        }
        all.extend(held);
    }
    all.sort_unstable();
    all == (0..partitions).collect::<Vec<_>>()
}

#[tokio::test]
async fn partitions_spread_over_the_live_instances_and_move_when_one_stops_or_dies() {
    const SIX: u32 = 6;
    let nats = NatsServer::shared();
    let names = names();
    let url =
        telemetry_test_support::postgres::PgServer::shared().create_database().expect("a database");
    let on_database =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    let section = |id: &str| {
        format!(
            "{}instance_id = \"{id}\"\nlease = \"2s\"\n",
            cluster_config(&nats.url(), &names, SIX)
        )
    };
    let a = TestApp::start_in(on_database(), &section("a")).await;
    let b = TestApp::start_in(on_database(), &section("b")).await;
    // The third instance is the real binary, so that it can die of SIGKILL.
    let c_data = on_database();
    let c = start_binary(&c_data, "c.toml", &section("c"));

    wait_for_ownership(&a, "spread over a, b, c", |now| spread_over(now, &["a", "b", "c"], SIX))
        .await;

    // A room of c's: c applies its calls, its samples wait in c's workers for a flush.
    const SAMPLES: usize = 4;
    let room = room_held_by(&a, "c", SIX).await;
    let sid = format!("RM_cs{room:04}");
    let calls = sampled_room(room, SAMPLES);
    let (status, answer) = a.ingest_protobuf(&v1::TelemetryBatch { calls: calls.clone() }).await;
    assert_eq!(status, 200, "{answer}");
    let applied = "rtc_telemetry_cluster_consumed_messages_total{outcome=\"applied\"}";
    let waited = tokio::time::Instant::now();
    loop {
        let text = crate::support::metrics_text(&a.client, &c.url("/metrics")).await;
        if text.lines().any(|line| line.strip_prefix(applied).is_some_and(|n| n.trim() != "0")) {
            break;
        }
        assert!(waited.elapsed() < std::time::Duration::from_secs(10), "c applied nothing");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Paused past its lease, c loses its partitions to a and b; resumed, it holds none of them
    // any more (its leases were lost, not renewed) and gets a share back only as a and b give
    // their extras back.
    c.signal("STOP");
    wait_for_ownership(&a, "paused c's partitions moved", |now| spread_over(now, &["a", "b"], SIX))
        .await;
    // The room's new owner replays what c had applied: every sample in one window.
    let waited = tokio::time::Instant::now();
    while stored_samples(&a, &sid).await != SAMPLES as u64 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(10), "the room replayed");
        a.flush().await;
        b.flush().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    c.signal("CONT");
    // Resumed, c flushes the workers it had (asked at once, before it notices the lost leases):
    // nothing of the partitions it lost is written, no sample counted twice.
    let flushed = a
        .client
        .post(c.url("/v1/flush"))
        .bearer_auth(TestApp::token(ADMIN))
        .send()
        .await
        .expect("flush c");
    assert_eq!(flushed.status().as_u16(), 200);
    wait_for_ownership(&a, "spread again over a, b, c", |now| {
        spread_over(now, &["a", "b", "c"], SIX)
    })
    .await;
    let metrics = crate::support::metrics_text(&a.client, &c.url("/metrics")).await;
    let lost = metrics.lines().find_map(|line| {
        line.strip_prefix("rtc_telemetry_cluster_lease_events_total{event=\"lost\"} ")
            .map(|n| n.parse::<u64>().expect("a count"))
    });
    assert_eq!(lost, Some(2), "c counted the two leases it lost while paused");
    let flushed = a
        .client
        .post(c.url("/v1/flush"))
        .bearer_auth(TestApp::token(ADMIN))
        .send()
        .await
        .expect("flush c");
    assert_eq!(flushed.status().as_u16(), 200);
    a.flush().await;
    b.flush().await;
    assert_eq!(stored_samples(&a, &sid).await, SAMPLES as u64, "no sample stored twice");
    let events = a.get_ok(&format!("/v1/rooms/{sid}/events?limit=100")).await;
    assert_eq!(events["events"].as_array().map(Vec::len), Some(5), "{events}");

    c.signal("KILL");
    let _ = c.wait().await;
    let failover =
        wait_for_ownership(&a, "c's partitions moved", |now| spread_over(now, &["a", "b"], SIX))
            .await;
    eprintln!("cluster: a SIGKILLed instance's partitions moved in {failover:?} (lease 2s)");
    assert!(failover < std::time::Duration::from_secs(2 + 5), "failover took {failover:?}");

    // A graceful stop gives the partitions back at once, without waiting for the lease.
    b.stop().await;
    let handover =
        wait_for_ownership(&a, "b's partitions moved", |now| spread_over(now, &["a"], SIX)).await;
    eprintln!("cluster: a stopped instance's partitions moved in {handover:?}");
    let metrics = a.metrics_text().await;
    assert!(metrics.contains("\nrtc_telemetry_cluster_partitions_owned 6\n"), "{metrics}");
    a.stop().await;
}

#[tokio::test]
async fn cluster_grpc_ingest_publishes_each_message_and_a_repeated_stream_takes_effect_once() {
    let nats = NatsServer::shared();
    let names = names();
    let app = TestApp::start_in(
        TestData::on_postgres(),
        &cluster_config(&nats.url(), &names, PARTITIONS),
    )
    .await;
    let batches = || -> Vec<v1::TelemetryBatch> {
        (0..3)
            .map(|room| {
                let body = json!({ "calls": room_calls("grpc", room, 3) });
                serde_json::from_value(body).expect("a TelemetryBatch from JSON")
            })
            .collect()
    };
    let send = |key: Option<String>| {
        let grpc = app.grpc;
        let batches = batches();
        async move {
            let mut client = v1::telemetry_ingest_client::TelemetryIngestClient::new(
                crate::support::channel(&format!("http://{grpc}")).await,
            );
            let mut request = tonic::Request::new(tokio_stream::iter(batches));
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", TestApp::token(INGESTER)).parse().expect("metadata"),
            );
            if let Some(key) = key {
                request.metadata_mut().insert("idempotency-key", key.parse().expect("metadata"));
            }
            client.ingest(request).await
        }
    };
    let summary = send(Some("stream-1".to_owned())).await.expect("ingest").into_inner();
    assert_eq!((summary.accepted, summary.rejected_count), (9, 0));
    let calls = |stored: &[(String, v1::TelemetryBatch)]| -> usize {
        stored.iter().map(|(_, batch)| batch.calls.len()).sum()
    };
    assert_eq!(calls(&messages(&nats.url(), &names.stream).await), 9);
    // The same stream again with its key: answered alike, nothing stored twice.
    let again = send(Some("stream-1".to_owned())).await.expect("ingest").into_inner();
    assert_eq!(again, summary);
    assert_eq!(calls(&messages(&nats.url(), &names.stream).await), 9);
    let error = send(Some("k".repeat(201))).await;
    let status = error.expect_err("a bad key is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("Idempotency-Key"), "{}", status.message());
    app.stop().await;
}

#[tokio::test]
async fn simulate_nats_publishes_the_simulators_calls_by_partition() {
    let nats = NatsServer::shared();
    let names = names();
    let args = telemetry_sim::SimulateArgs {
        nats: Some(nats.url()),
        nats_stream: names.stream.clone(),
        nats_subject_prefix: names.prefix.clone(),
        nats_partitions: PARTITIONS,
        rooms: 3,
        participants: 2,
        duration: std::time::Duration::from_secs(30),
        speed: 0.0,
        batch_size: 50,
        ..Default::default()
    };
    let summary = telemetry_server::simulate::run(args).await.expect("simulate");
    assert!(summary.accepted > 0 && summary.unsent == 0, "{summary:?}");
    let stored = messages(&nats.url(), &names.stream).await;
    let mut calls = 0;
    for (subject, batch) in &stored {
        for call in &batch.calls {
            calls += 1;
            let expected = format!("{}.{}", names.prefix, partition_of(call, PARTITIONS));
            assert_eq!(subject, &expected);
            assert!(call.at.is_some() && call.node_id == "sfu-sim-1", "{call:?}");
        }
    }
    assert_eq!(calls as u64, summary.accepted, "every call published once");
}

/// Starts the real binary (so that it can die of SIGKILL) on `data`, configured in `file` with
/// the admin key, an hour's flush interval and `section`.
pub(crate) fn start_binary(data: &TestData, file: &str, section: &str) -> crate::support::Binary {
    let config_path = data.path().join(file);
    std::fs::write(
        &config_path,
        format!(
            "[stats]\nflush_interval = \"1h\"\n[[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n{section}",
            ADMIN.0, ADMIN.1
        ),
    )
    .expect("write the configuration");
    crate::support::Binary::start(data, &config_path)
}

/// The first room `cs-<n>` (see [`sampled_room`]) whose partition among `partitions` instance
/// `id` holds, as `app` reports the ownership.
pub(crate) async fn room_held_by(app: &TestApp, id: &str, partitions: u32) -> usize {
    let held = ownership(app).await.into_iter().find(|(owner, _)| owner == id).expect(id).1;
    (0..)
        .find(|&room| {
            telemetry_server::cluster::partition::partition_of_room(
                &format!("cs-{room}"),
                "",
                partitions,
            )
            .is_some_and(|partition| held.contains(&partition))
        })
        .unwrap_or_else(|| panic!("a room of {id}'s"))
}

/// The calls of room `room` of the consumer tests (sid `RM_cs<room>`, name `cs-<room>`): the
/// room started, a participant joined and became active, `samples` upstream video samples, the
/// participant left, the room ended. Five events, four webhooks, `samples` samples in windows.
pub(crate) fn sampled_room(room: usize, samples: usize) -> Vec<v1::TelemetryCall> {
    use telemetry_core::proto as lk;
    use v1::telemetry_call::Call as Member;
    let start = telemetry_core::Clock::now(&telemetry_core::SystemClock).plus_millis(-60_000);
    let call = |offset: i64, member: Member| v1::TelemetryCall {
        at: Some(start.plus_millis(offset).to_timestamp()),
        node_id: "sfu-cluster".into(),
        call: Some(member),
    };
    let sid = format!("RM_cs{room:04}");
    let participant_sid = format!("PA_cs{room:04}");
    let lk_room = lk::Room {
        sid: sid.clone(),
        name: format!("cs-{room}"),
        creation_time: start.as_secs(),
        ..Default::default()
    };
    let participant = lk::ParticipantInfo {
        sid: participant_sid.clone(),
        identity: format!("user-{room}"),
        ..Default::default()
    };
    let mut calls = vec![
        call(0, Member::RoomStarted(v1::RoomCall { room: Some(lk_room.clone()) })),
        call(
            100,
            Member::ParticipantJoined(v1::ParticipantJoinedCall {
                room: Some(lk_room.clone()),
                participant: Some(participant.clone()),
                ..Default::default()
            }),
        ),
        call(
            200,
            Member::ParticipantActive(v1::ParticipantActiveCall {
                room: Some(lk_room.clone()),
                participant: Some(participant.clone()),
                ..Default::default()
            }),
        ),
    ];
    for n in 1..=samples as i64 {
        let end = 100 + 1000 * n;
        let stream = lk::AnalyticsStream {
            primary_bytes: 100_000,
            primary_packets: 100,
            start_time: Some(start.plus_millis(end - 1000).to_timestamp()),
            end_time: Some(start.plus_millis(end).to_timestamp()),
            ..Default::default()
        };
        calls.push(call(
            end,
            Member::TrackStats(v1::TrackStatsCall {
                room_id: sid.clone(),
                room_name: lk_room.name.clone(),
                key: Some(v1::StatsKey {
                    stream_type: lk::StreamType::Upstream as i32,
                    participant_id: participant_sid.clone(),
                    track_id: format!("TR_cs{room:04}"),
                    track_type: lk::TrackType::Video as i32,
                    track: true,
                    ..Default::default()
                }),
                stat: Some(lk::AnalyticsStat {
                    score: 4.0,
                    streams: vec![stream],
                    mime: "video/VP8".into(),
                    ..Default::default()
                }),
            }),
        ));
    }
    let end = 100 + 1000 * (samples as i64 + 1);
    calls.push(call(
        end,
        Member::ParticipantLeft(v1::ParticipantLeftCall {
            room: Some(lk_room.clone()),
            participant: Some(participant),
            ..Default::default()
        }),
    ));
    calls.push(call(end + 100, Member::RoomEnded(v1::RoomCall { room: Some(lk_room) })));
    calls
}

/// A counter of `app`'s `/metrics`, summed over the lines starting with `prefix`.
pub(crate) async fn counter(app: &TestApp, prefix: &str) -> u64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// How many samples the stored windows of room `sid` hold.
pub(crate) async fn stored_samples(app: &TestApp, sid: &str) -> u64 {
    let stats = app.get_ok(&format!("/v1/stats?roomSid={sid}&from=0")).await;
    stats["series"]
        .as_array()
        .expect("series")
        .iter()
        .flat_map(|series| series["windows"].as_array().expect("windows").iter())
        .map(|window| window["samples"].as_u64().expect("samples"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_consume_their_partitions_and_store_every_call_once() {
    const ROOMS: usize = 8;
    const SAMPLES: usize = 6;
    let nats = NatsServer::shared();
    let names = names();
    let receiver = crate::support::TestReceiver::start().await;
    let url =
        telemetry_test_support::postgres::PgServer::shared().create_database().expect("a database");
    let on_database =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    let section = |id: &str| {
        format!(
            "{}instance_id = \"{id}\"\nlease = \"3s\"\n{}",
            cluster_config(&nats.url(), &names, PARTITIONS),
            crate::support::endpoint_config(
                &receiver.url("/hook"),
                "livekit",
                "a-secret-of-32-bytes-or-more-0123"
            )
        )
    };
    let a = TestApp::start_in(on_database(), &section("ca")).await;
    let b = TestApp::start_in(on_database(), &section("cb")).await;
    wait_for_ownership(&a, "spread over ca, cb", |now| spread_over(now, &["ca", "cb"], PARTITIONS))
        .await;

    // Each room's first half to one instance, its second half to the other.
    for room in 0..ROOMS {
        let calls = sampled_room(room, SAMPLES);
        let (first, second) = calls.split_at(calls.len() / 2);
        let (one, other) = if room % 2 == 0 { (&a, &b) } else { (&b, &a) };
        for (app, part) in [(one, first), (other, second)] {
            let (status, answer) =
                app.ingest_protobuf(&v1::TelemetryBatch { calls: part.to_vec() }).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["accepted"], part.len());
        }
    }
    let published = messages(&nats.url(), &names.stream).await.len() as u64;

    // Every message is applied by its partition's owner and acknowledged once stored (a flush
    // after it was applied stores its samples: asked for here, as `stats.flush_interval` is an
    // hour in the tests).
    let acknowledged = "rtc_telemetry_cluster_consumed_messages_total{outcome=\"acknowledged\"}";
    let applied = "rtc_telemetry_cluster_consumed_messages_total{outcome=\"applied\"}";
    let started = tokio::time::Instant::now();
    loop {
        a.flush().await;
        b.flush().await;
        let done = counter(&a, acknowledged).await + counter(&b, acknowledged).await;
        if done == published {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{done} of {published} messages acknowledged within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!("cluster: {published} messages consumed and acknowledged in {:?}", started.elapsed());
    assert_eq!(counter(&a, applied).await + counter(&b, applied).await, published);
    assert!(counter(&a, applied).await > 0 && counter(&b, applied).await > 0, "both consumed");
    assert_eq!(counter(&a, "rtc_telemetry_cluster_refused_calls_total").await, 0);
    assert_eq!(counter(&b, "rtc_telemetry_cluster_refused_calls_total").await, 0);

    // Acknowledged means stored: each call's event once, every sample in a window.
    let mut ids = std::collections::HashSet::new();
    for room in 0..ROOMS {
        let sid = format!("RM_cs{room:04}");
        let events = a.get_ok(&format!("/v1/rooms/{sid}/events?limit=100")).await;
        let events = events["events"].as_array().expect("events");
        // (The webhook deliveries' own events, `WEBHOOK`, are stored as they are made.)
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .filter(|kind| *kind != "WEBHOOK")
            .collect();
        assert_eq!(
            types,
            [
                "ROOM_CREATED",
                "PARTICIPANT_JOINED",
                "PARTICIPANT_ACTIVE",
                "PARTICIPANT_LEFT",
                "ROOM_ENDED"
            ],
            "room {sid}"
        );
        for event in events {
            assert!(ids.insert(event["id"].as_str().expect("id").to_owned()), "{event}");
        }
        assert_eq!(stored_samples(&b, &sid).await, SAMPLES as u64, "room {sid}");
    }

    // Each webhook reaches the endpoint, from whichever instance owns the room's partition.
    let expected: std::collections::BTreeSet<(String, String)> = (0..ROOMS)
        .flat_map(|room| {
            ["room_started", "participant_joined", "participant_left", "room_finished"]
                .map(|event| (format!("cs-{room}"), event.to_owned()))
        })
        .collect();
    let received = receiver
        .wait_for(std::time::Duration::from_secs(30), |received| {
            let got: std::collections::BTreeSet<(String, String)> = received
                .iter()
                .map(|r| {
                    let json = r.json();
                    (
                        json["room"]["name"].as_str().unwrap_or("").to_owned(),
                        json["event"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            got == expected
        })
        .await;
    let distinct: std::collections::HashSet<String> =
        received.iter().map(crate::support::Received::id).collect();
    assert_eq!(distinct.len(), expected.len(), "one webhook id per call");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_mid_load_hands_its_partitions_over_without_losing_or_repeating_a_call()
{
    const ROOMS: usize = 24;
    const STEPS: usize = 5;
    let nats = NatsServer::shared();
    let names = names();
    let url =
        telemetry_test_support::postgres::PgServer::shared().create_database().expect("a database");
    let on_database =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    let section = |id: &str| {
        format!(
            "{}instance_id = \"{id}\"\nlease = \"3s\"\n",
            cluster_config(&nats.url(), &names, PARTITIONS)
        )
    };
    let a = TestApp::start_in(on_database(), &section("ga")).await;
    let b = TestApp::start_in(on_database(), &section("gb")).await;
    wait_for_ownership(&a, "spread over ga, gb", |now| spread_over(now, &["ga", "gb"], PARTITIONS))
        .await;

    // Every call its own request to `a`, in order; `b`, owner of half the partitions, stops
    // gracefully a third of the way through.
    let mut stopping = None;
    let mut b = Some(b);
    for room in 0..ROOMS {
        if room == ROOMS / 3 {
            let b = b.take().expect("b");
            stopping = Some(tokio::spawn(async move { b.stop().await }));
        }
        for call in room_calls("gs", room, STEPS) {
            let (status, answer, _) = post(&a, &json!({ "calls": [call] }), None).await;
            assert_eq!(status, 200, "{answer}");
        }
    }
    stopping.expect("b stopping").await.expect("b stopped");
    wait_for_ownership(&a, "gb's partitions moved to ga", |now| {
        spread_over(now, &["ga"], PARTITIONS)
    })
    .await;

    let started = tokio::time::Instant::now();
    let mut ids = std::collections::HashSet::new();
    for room in 0..ROOMS {
        let sid = format!("RM_gs{room:04}");
        let events = loop {
            let events = a.get_ok(&format!("/v1/rooms/{sid}/events?limit=100")).await;
            let events = events["events"].as_array().cloned().unwrap_or_default();
            if events.len() >= STEPS {
                break events;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "room {sid}: {} of {STEPS} events stored within 30 s",
                events.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
        assert_eq!(types.len(), STEPS, "room {sid}: {types:?}");
        assert_eq!(types.first(), Some(&"ROOM_CREATED"), "room {sid}: {types:?}");
        assert_eq!(types.last(), Some(&"ROOM_ENDED"), "room {sid}: {types:?}");
        for event in &events {
            assert!(ids.insert(event["id"].as_str().expect("id").to_owned()), "twice: {event}");
        }
    }
    eprintln!("cluster: every call stored once after a graceful stop, in {:?}", started.elapsed());
    // Everything published was acknowledged: by the stopped instance before it gave its
    // partitions back, or by the survivor.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut pending, mut consumers) = (u64::MAX, Vec::new());
    while tokio::time::Instant::now() < deadline {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let stream = jetstream::new(client).get_stream(&names.stream).await.expect("stream");
        // One consumer per partition, of its current holder's epoch, once the take-overs are
        // done (a take-over deletes the former holder's, then makes its own).
        consumers =
            futures::TryStreamExt::try_collect(stream.consumers()).await.expect("consumers");
        pending = consumers.iter().map(|info| info.num_pending + info.num_ack_pending as u64).sum();
        if pending == 0 && consumers.len() == PARTITIONS as usize {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let consumers: Vec<jetstream::consumer::Info> = consumers;
    assert_eq!(consumers.len(), PARTITIONS as usize, "{consumers:?}");
    assert_eq!(pending, 0, "every message of the stream acknowledged");
    a.stop().await;
}

/// `GET url` as the admin: 200 and its JSON body.
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response =
        client.get(url).bearer_auth(TestApp::token(ADMIN)).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response.json().await.expect("a JSON body")
}

/// A room name of `partition` (of `partitions`), for probes.
fn room_in_partition(prefix: &str, partition: u32, partitions: u32) -> String {
    (0..)
        .map(|n| format!("{prefix}-{partition}-{n}"))
        .find(|name| {
            telemetry_server::cluster::partition::partition_of_room(name, "", partitions)
                == Some(partition)
        })
        .expect("a name")
}

/// What a deployment stored of the simulator's rooms, to compare with a single instance's: per
/// room, its events in order (each without its id), the totals of its stats windows per track
/// and direction, and every event id seen (with repeats).
#[derive(Debug, Default, PartialEq)]
struct Stored {
    events: std::collections::BTreeMap<String, Vec<Value>>,
    stats: std::collections::BTreeMap<TrackKey, Totals>,
}

/// Room, participant, track and direction.
type TrackKey = (String, String, String, String);

/// Bytes, packets and samples.
type Totals = (u64, u64, u64);

async fn stored(client: &reqwest::Client, base: &str, rooms: &[String]) -> (Stored, Vec<String>) {
    let mut out = Stored::default();
    let mut ids = Vec::new();
    for sid in rooms {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/rooms/{sid}/events?limit=1000");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page = get_json(client, &url).await;
            for event in page["events"].as_array().expect("events") {
                if event["type"] == "WEBHOOK" {
                    continue;
                }
                let mut event = event.clone();
                let id = event.as_object_mut().and_then(|e| e.remove("id"));
                ids.push(id.and_then(|id| id.as_str().map(str::to_owned)).unwrap_or_default());
                events.push(event);
            }
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        out.events.insert(sid.clone(), events);
        let stats = get_json(client, &format!("{base}/v1/stats?roomSid={sid}&from=0")).await;
        for series in stats["series"].as_array().expect("series") {
            let key = (
                sid.clone(),
                series["participantSid"].as_str().unwrap_or("").to_owned(),
                series["trackSid"].as_str().unwrap_or("").to_owned(),
                series["direction"].as_str().unwrap_or("").to_owned(),
            );
            let totals = out.stats.entry(key).or_default();
            for window in series["windows"].as_array().expect("windows") {
                totals.0 += window["bytes"].as_u64().unwrap_or(0);
                totals.1 += window["packets"].as_u64().unwrap_or(0);
                totals.2 += window["samples"].as_u64().unwrap_or(0);
            }
        }
    }
    (out, ids)
}

/// Per resource key (the egress id for an egress's webhooks, else the room name: what orders
/// deliveries, `telemetry_core::webhook_resource_key`), the webhooks in the order of their first
/// arrival (each id once): event, participant, track, creation time.
fn first_arrivals(
    received: &[crate::support::Received],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut rooms: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for request in received {
        if !seen.insert(request.id()) {
            continue;
        }
        let json = request.json();
        let key = match json["egressInfo"]["egressId"].as_str() {
            Some(egress) => format!("egress {egress}"),
            None => json["room"]["name"].as_str().unwrap_or("").to_owned(),
        };
        rooms.entry(key).or_default().push(format!(
            "{} {} {} {}",
            json["event"].as_str().unwrap_or(""),
            json["participant"]["sid"].as_str().unwrap_or(""),
            json["track"]["sid"].as_str().unwrap_or(""),
            json["createdAt"],
        ));
    }
    rooms
}

/// Sends `body` (a `TelemetryBatch`) to `base` with `key`; `None` if no answer came.
async fn send_batch(client: &reqwest::Client, base: &str, body: &[u8], key: &str) -> Option<u16> {
    let response = client
        .post(format!("{base}/v1/telemetry"))
        .bearer_auth(TestApp::token(ADMIN))
        .header("content-type", "application/x-protobuf")
        .header("idempotency-key", key)
        .body(body.to_vec())
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Issue 10, point 7: three instances (processes of the binary) over one PostgreSQL database
/// and one NATS server take the simulator's traffic, spread over all three, each request with an
/// `Idempotency-Key`. One is killed with SIGKILL a third of the way through; the request it was
/// answering, and every later one meant for it, go to another instance with the same key; it is
/// restarted at the end. Then the deployment has stored exactly what one instance without the
/// cluster stores of the same calls: each room's events in order, each once (no event id
/// twice), every sample in exactly one window (bytes, packets and samples per track equal), and
/// every webhook delivered at least once, each room's in order of first arrival. The killed
/// instance's partitions are processed again within the lease plus a few seconds. Quality
/// detection runs as configured by default: its events are among those stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_lose_one_to_sigkill_under_load_and_store_every_acknowledged_call_once() {
    sigkill_under_load(Vec::new(), None).await;
}

/// The same with a lossy uplink in every room from 16 s of the call's time, and kc flushed (a
/// checkpoint of its partitions) right before its kill at 21 s: its rooms' `packet_loss` runs
/// are under way at the stored offset, 5 s long, not yet open (`open_after` is 10 s), and kc
/// dies before it could open them. The detectors' states written with the offset bring the runs
/// back at the take-over, so each issue opens with the start, hence the id, one instance gives
/// it (without them the replay would start each run at its first replayed sample: a later
/// start, another id), and every quality event is stored once. Issues stored open at a kill are
/// restored too (`restore_issues`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_lose_one_to_sigkill_with_quality_issues_open_and_store_them_once() {
    let troubles = (0..8)
        .map(|room| {
            telemetry_sim::parse_trouble(&format!("lossy-uplink:{room}.0@16s..50s"))
                .expect("a trouble")
        })
        .collect();
    sigkill_under_load(troubles, Some(std::time::Duration::from_secs(21))).await;
}

/// The three-instance SIGKILL run of the simulator's traffic with `troubles` injected. kc is
/// killed a third of the way through the requests, or with `flush_and_kill_at`, flushed then
/// killed at the first request with a sample that ends that far into the call.
async fn sigkill_under_load(
    troubles: Vec<telemetry_sim::Trouble>,
    flush_and_kill_at: Option<std::time::Duration>,
) {
    const SIX: u32 = 6;
    const LEASE: std::time::Duration = std::time::Duration::from_secs(2);
    const PER_REQUEST: usize = 25;
    let started = tokio::time::Instant::now();
    let nats = NatsServer::shared();
    let names = names();
    let client = reqwest::Client::new();
    let args = telemetry_sim::SimulateArgs {
        seed: 10,
        rooms: 8,
        participants: 3,
        duration: std::time::Duration::from_secs(60),
        stats_interval: std::time::Duration::from_secs(2),
        speed: 0.0,
        troubles,
        ..telemetry_sim::SimulateArgs::default()
    };
    let now = telemetry_core::Clock::now(&telemetry_core::SystemClock);
    let mut calls = telemetry_sim::generate(&args, now);
    for call in &mut calls {
        call.at.get_or_insert(now.to_timestamp());
    }
    let bodies: Vec<Vec<u8>> = calls
        .chunks(PER_REQUEST)
        .map(|chunk| v1::TelemetryBatch { calls: chunk.to_vec() }.encode_to_vec())
        .collect();
    // How far into the call (generated to end now) each request's latest sample ends.
    let call_start = now.0 - args.duration.as_millis() as i64;
    let latest_end: Vec<std::time::Duration> = calls
        .chunks(PER_REQUEST)
        .map(|chunk| {
            let ends = chunk.iter().filter_map(|call| match &call.call {
                Some(v1::telemetry_call::Call::TrackStats(stats)) => stats.stat.as_ref(),
                _ => None,
            });
            let latest = ends
                .flat_map(|stat| &stat.streams)
                .filter_map(|stream| stream.end_time.as_ref())
                .map(|end| end.seconds * 1000 + i64::from(end.nanos) / 1_000_000)
                .max()
                .unwrap_or(0);
            std::time::Duration::from_millis(latest.saturating_sub(call_start).max(0) as u64)
        })
        .collect();
    let samples = calls
        .iter()
        .filter(|call| matches!(call.call, Some(v1::telemetry_call::Call::TrackStats(_))))
        .count() as u64;

    // What one instance without the cluster stores of these calls.
    let reference_hooks = crate::support::TestReceiver::start().await;
    let reference = TestApp::start_with(&crate::support::endpoint_config(
        &reference_hooks.url("/hook"),
        "livekit",
        SECRET,
    ))
    .await;
    for body in &bodies {
        let status = send_batch(&client, &reference.url(""), body, &request_key(body))
            .await
            .expect("answer");
        assert_eq!(status, 200);
    }
    reference.flush().await;
    let rooms: Vec<String> =
        get_json(&client, &reference.url("/v1/rooms?limit=1000")).await["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|room| room["sid"].as_str().expect("sid").to_owned())
            .collect();
    assert_eq!(rooms.len(), args.rooms as usize, "{rooms:?}");
    let (expected, _) = stored(&client, &reference.url(""), &rooms).await;
    let expected_samples: u64 = expected.stats.values().map(|totals| totals.2).sum();
    assert_eq!(expected_samples, samples, "the reference stores every sample");
    // The default `[quality]`: the simulator's bad spells open quality issues, whose events must
    // be stored once too (issues open at the kill are restored at the take-over).
    let quality_events = expected
        .events
        .values()
        .flatten()
        .filter(|event| event["type"].as_str().is_some_and(|t| t.starts_with("QUALITY_ISSUE")))
        .count();
    eprintln!("cluster: the reference stores {quality_events} quality issue events");
    loop {
        let pending =
            get_json(&client, &reference.url("/v1/webhooks/deliveries?status=pending&limit=1"))
                .await;
        if pending["deliveries"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "reference webhooks");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let expected_hooks = first_arrivals(&reference_hooks.received());
    assert!(!expected_hooks.is_empty());
    reference.stop().await;
    eprintln!("cluster: the reference run took {:?}", started.elapsed());

    // The cluster.
    let hooks = crate::support::TestReceiver::start().await;
    let url =
        telemetry_test_support::postgres::PgServer::shared().create_database().expect("a database");
    let data =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    let config = |data: &TestData, id: &str| {
        let path = data.path().join(format!("{id}.toml"));
        std::fs::write(
            &path,
            format!(
                "[stats]\nflush_interval = \"1s\"\n\
                 [[keys]]\nkey = \"{}\"\nsecret = \"{}\"\nroles = [\"ingest\", \"read\", \"admin\"]\n\
                 {}instance_id = \"{id}\"\nlease = \"2s\"\n{}",
                ADMIN.0,
                ADMIN.1,
                cluster_config(&nats.url(), &names, SIX),
                crate::support::endpoint_config(&hooks.url("/hook"), "livekit", SECRET),
            ),
        )
        .expect("write the configuration");
        path
    };
    let data: Vec<TestData> = (0..3).map(|_| data()).collect();
    let ids = ["ka", "kb", "kc"];
    let mut instances: Vec<Option<crate::support::Binary>> = ids
        .iter()
        .zip(&data)
        .map(|(id, data)| Some(crate::support::Binary::start(data, &config(data, id))))
        .collect();
    let base: Vec<String> =
        instances.iter().map(|i| i.as_ref().expect("running").url("")).collect();
    let cluster_of = |now: &Value| -> Vec<(String, Vec<u32>)> {
        now["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| {
                let held = i["partitions"].as_array().expect("partitions");
                (
                    i["id"].as_str().expect("id").to_owned(),
                    held.iter().map(|p| p.as_u64().expect("a partition") as u32).collect(),
                )
            })
            .collect()
    };
    let wait_spread = |over: &'static [&'static str]| {
        let client = client.clone();
        let base = base[0].clone();
        async move {
            let waited = tokio::time::Instant::now();
            loop {
                let now = cluster_of(&get_json(&client, &format!("{base}/v1/cluster")).await);
                if spread_over(&now, over, SIX) {
                    return now;
                }
                assert!(waited.elapsed() < std::time::Duration::from_secs(30), "{now:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let ownership = wait_spread(&["ka", "kb", "kc"]).await;
    let killed: Vec<u32> =
        ownership.iter().find(|(id, _)| id == "kc").map(|(_, held)| held.clone()).expect("kc");

    // The load: each request to the next instance in turn, in order.
    let kill_at = match flush_and_kill_at {
        Some(at) => latest_end.iter().position(|&end| end >= at).expect("a request that late"),
        None => bodies.len() / 3,
    };
    let mut probe = None;
    let mut resent = 0;
    for (n, body) in bodies.iter().enumerate() {
        let key = request_key(body);
        let target = n % 3;
        if n == kill_at {
            // kc dies with this request in flight: whatever it answered, the client sends it
            // again, with the same key, to another instance.
            let kc = instances[2].take().expect("kc running");
            if flush_and_kill_at.is_some() {
                // A checkpoint of kc's partitions with what it applied so far.
                let flushed = client
                    .post(format!("{}/v1/flush", base[2]))
                    .bearer_auth(TestApp::token(ADMIN))
                    .send()
                    .await
                    .expect("flush kc");
                assert_eq!(flushed.status().as_u16(), 200);
            }
            let in_flight = {
                let (client, base, body, key) =
                    (client.clone(), base[2].clone(), body.clone(), key.clone());
                tokio::spawn(async move { send_batch(&client, &base, &body, &key).await })
            };
            tokio::task::yield_now().await;
            kc.signal("KILL");
            let _ = in_flight.await;
            let _ = kc.wait().await;
            let killed_at = tokio::time::Instant::now();
            // Probes, one room in each of kc's partitions: how long until they are processed.
            let probes: Vec<(String, String)> = killed
                .iter()
                .map(|&partition| {
                    let name = room_in_partition("probe", partition, SIX);
                    (format!("RM_{name}"), name)
                })
                .collect();
            for (sid, name) in &probes {
                let body = json!({ "calls": [{ "roomStarted": { "room": { "sid": sid, "name": name } } }] });
                let (status, answer) = post_to(&client, &base[0], &body).await;
                assert_eq!(status, 200, "{answer}");
            }
            let (probe_client, probe_base) = (client.clone(), base[0].clone());
            probe = Some(tokio::spawn(async move {
                loop {
                    let mut done = true;
                    for (sid, _) in &probes {
                        let events =
                            get_json(&probe_client, &format!("{probe_base}/v1/rooms/{sid}/events"))
                                .await;
                        done &= events["events"].as_array().is_some_and(|e| !e.is_empty());
                    }
                    if done {
                        return killed_at.elapsed();
                    }
                    assert!(killed_at.elapsed() < std::time::Duration::from_secs(30));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }));
            resent += 1;
            assert_eq!(send_batch(&client, &base[0], body, &key).await, Some(200));
            continue;
        }
        match instances[target].as_ref() {
            Some(_) => assert_eq!(send_batch(&client, &base[target], body, &key).await, Some(200)),
            None => {
                // No answer from the dead instance: the same request, key and all, elsewhere.
                assert_eq!(send_batch(&client, &base[target], body, &key).await, None);
                resent += 1;
                let other = if target == 0 { 1 } else { 0 };
                assert_eq!(send_batch(&client, &base[other], body, &key).await, Some(200));
            }
        }
    }
    let failover = probe.expect("kc was killed").await.expect("probe");
    eprintln!(
        "cluster: a SIGKILLed instance's partitions {killed:?} processed again {failover:?} after the kill (lease {LEASE:?}); {resent} requests sent again"
    );
    assert!(failover < LEASE + std::time::Duration::from_secs(5), "failover took {failover:?}");

    // kc comes back and takes its share again.
    instances[2] = Some(crate::support::Binary::start(&data[2], &config(&data[2], "kc")));
    wait_spread(&["ka", "kb", "kc"]).await;

    // Every acknowledged call stored once, every sample in one window, every webhook delivered.
    let waited = tokio::time::Instant::now();
    let ids = loop {
        let (now, ids) = stored(&client, &base[0], &rooms).await;
        if now == expected {
            break ids;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(60),
            "the cluster's store differs from one instance's:\n{:?}",
            difference(&now, &expected)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no event id stored twice");
    let waited = tokio::time::Instant::now();
    loop {
        let now = first_arrivals(&hooks.received());
        let differing = expected_hooks.iter().find(|&(key, hooks)| now.get(key) != Some(hooks));
        let Some((key, hooks)) = differing else { break };
        if waited.elapsed() > std::time::Duration::from_secs(30) {
            assert_eq!(now.get(key), Some(hooks), "webhooks of `{key}` in order of first arrival");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    eprintln!(
        "cluster: {} calls ({samples} samples) in {} requests stored once after a SIGKILL; whole test {:?}",
        calls.len(),
        bodies.len(),
        started.elapsed()
    );
}

/// The webhook endpoint's secret in these tests.
const SECRET: &str = "a-secret-of-32-bytes-or-more-0123";

/// A request's `Idempotency-Key`, from its body.
fn request_key(body: &[u8]) -> String {
    format!("req-{:08x}-{}", telemetry_server::cluster::partition::fnv1a_32(body), body.len())
}

async fn post_to(client: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}/v1/telemetry"))
        .bearer_auth(TestApp::token(ADMIN))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Where two stores differ, for a failure's message.
fn difference(now: &Stored, expected: &Stored) -> Vec<String> {
    let mut out = Vec::new();
    for (room, events) in &expected.events {
        let got = now.events.get(room).map_or(0, Vec::len);
        if let Some(stored) = now.events.get(room)
            && stored != events
        {
            let at = stored.iter().zip(events).position(|(a, b)| a != b);
            let pair = at.map(|at| (&stored[at], &events[at]));
            out.push(format!(
                "room {room}: {got} events, {} expected; first difference at {at:?}: {pair:?}",
                events.len()
            ));
        } else if now.events.get(room) != Some(events) {
            out.push(format!("room {room}: {got} events, {} expected", events.len()));
        }
    }
    for (key, totals) in &expected.stats {
        if now.stats.get(key) != Some(totals) {
            out.push(format!("{key:?}: {:?}, {totals:?} expected", now.stats.get(key)));
        }
    }
    out
}
