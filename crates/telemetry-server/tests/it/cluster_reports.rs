//! The `room_report` webhook in cluster mode (`telemetry_server::room_reports`): rooms that
//! finish on a two-instance cluster get their report, made by the instance that stored the
//! room's end, equal to what `GET /v1/rooms/{sid}/report` serves; rooms that did not finish get
//! none; a room whose holder died before the flush that would have made its report gets it from
//! the partition's next holder, which replays the room's end. NATS is the shared test server (a stream of the test's own), PostgreSQL the shared test
//! server (a database of the test's own). The helpers are `cluster.rs`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use telemetry_proto::v1;
use telemetry_test_support::nats::NatsServer;
use telemetry_test_support::postgres::PgServer;

use crate::cluster::{
    PARTITIONS, cluster_config, counter, messages, names, room_held_by, sampled_room, spread_over,
    start_binary, wait_for_ownership,
};
use crate::support::{TestApp, TestData, TestReceiver, endpoint_config};

/// A report without its webhook counts (they grow as deliveries finish).
fn without_counts(report: &Value) -> Value {
    let mut report = report.clone();
    report.as_object_mut().expect("an object").remove("webhooks");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_finished_on_two_instances_get_their_report_webhook_and_unfinished_ones_none() {
    const ROOMS: usize = 8;
    const SAMPLES: usize = 4;
    let nats = NatsServer::shared();
    let names = names();
    let receiver = TestReceiver::start().await;
    let url = PgServer::shared().create_database().expect("a database");
    let on_database =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    let section = |id: &str| {
        format!(
            "{}instance_id = \"{id}\"\nlease = \"3s\"\n{}include_events = [\"room_finished\", \"room_report\"]\n",
            cluster_config(&nats.url(), &names, PARTITIONS),
            endpoint_config(&receiver.url("/hook"), "livekit", "a-secret-of-32-bytes-or-more-0123")
        )
    };
    let a = TestApp::start_in(on_database(), &section("wa")).await;
    let b = TestApp::start_in(on_database(), &section("wb")).await;
    wait_for_ownership(&a, "spread over wa, wb", |now| spread_over(now, &["wa", "wb"], PARTITIONS))
        .await;

    // Even rooms finish, odd ones do not (their participant leaves, the room does not end).
    // Each room's first half goes to one instance, its second half to the other.
    let finished: BTreeSet<String> =
        (0..ROOMS).filter(|room| room % 2 == 0).map(|room| format!("RM_cs{room:04}")).collect();
    for room in 0..ROOMS {
        let mut calls = sampled_room(room, SAMPLES);
        if room % 2 == 1 {
            calls.pop();
        }
        let (first, second) = calls.split_at(calls.len() / 2);
        let (one, other) = if room % 2 == 0 { (&a, &b) } else { (&b, &a) };
        for (app, part) in [(one, first), (other, second)] {
            let (status, answer) =
                app.ingest_protobuf(&v1::TelemetryBatch { calls: part.to_vec() }).await;
            assert_eq!(status, 200, "{answer}");
        }
    }
    let published = messages(&nats.url(), &names.stream).await.len() as u64;
    let acknowledged = "rtc_telemetry_cluster_consumed_messages_total{outcome=\"acknowledged\"}";
    let started = tokio::time::Instant::now();
    loop {
        a.flush().await;
        b.flush().await;
        let done = counter(&a, acknowledged).await + counter(&b, acknowledged).await;
        if done == published {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{done} of {published} acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every finished room's report reaches the endpoint: at least once, each with one id.
    let reports = |received: &[crate::support::Received]| -> BTreeMap<String, Vec<Value>> {
        let mut reports: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for hook in received.iter().map(crate::support::Received::json) {
            if hook["event"] == "room_report" {
                let sid = hook["room"]["sid"].as_str().expect("a sid").to_owned();
                reports.entry(sid).or_default().push(hook);
            }
        }
        reports
    };
    let received = receiver
        .wait_for(Duration::from_secs(30), |received| {
            reports(received).keys().cloned().collect::<BTreeSet<_>>().is_superset(&finished)
        })
        .await;
    eprintln!("cluster reports: every finished room's report received {:?}", started.elapsed());
    for (sid, hooks) in reports(&received) {
        assert!(finished.contains(&sid), "a report of a room that did not finish: {sid}");
        let ids: BTreeSet<&str> =
            hooks.iter().map(|hook| hook["id"].as_str().expect("id")).collect();
        assert_eq!(ids.len(), 1, "room {sid}: one report, maybe delivered more than once");
        let report = a.get_ok(&format!("/v1/rooms/{sid}/report")).await;
        assert_eq!(report["final"], true, "room {sid}: {report}");
        for hook in &hooks {
            assert_eq!(
                without_counts(&hook["report"]),
                without_counts(&report),
                "room {sid}: the report the API serves"
            );
        }
        let upstream: u64 = report["participants"][0]["upstream"]["bytes"].as_u64().unwrap_or(0);
        assert_eq!(upstream, SAMPLES as u64 * 100_000, "room {sid}: every sample in it: {report}");
    }
    // Rooms that did not finish get none, even after more flushes.
    a.flush().await;
    b.flush().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let late = reports(&receiver.received());
    assert!(late.keys().all(|sid| finished.contains(sid)), "{:?}", late.keys());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_finished_on_an_instance_killed_before_its_flush_gets_its_report_from_the_next_holder()
 {
    const SAMPLES: usize = 4;
    let nats = NatsServer::shared();
    let names = names();
    let receiver = TestReceiver::start().await;
    let url = PgServer::shared().create_database().expect("a database");
    let on_database =
        || TestData { dir: tempfile::tempdir().expect("tempdir"), postgres_url: Some(url.clone()) };
    // kc may die between sending `room_finished` and recording it: that delivery stays claimed
    // by kc for `webhooks.claim_lease`, and the report, on the same ordering key, waits behind
    // it. A short lease keeps that wait within the test's.
    let section = |id: &str| {
        format!(
            "{}instance_id = \"{id}\"\nlease = \"2s\"\n[webhooks]\nrequest_timeout = \"2s\"\nclaim_lease = \"3s\"\n{}include_events = [\"room_finished\", \"room_report\"]\n",
            cluster_config(&nats.url(), &names, PARTITIONS),
            endpoint_config(&receiver.url("/hook"), "livekit", "a-secret-of-32-bytes-or-more-0123")
        )
    };
    let a = TestApp::start_in(on_database(), &section("ka")).await;
    // The other instance is the real binary, so that it can die of SIGKILL.
    let c_data = on_database();
    let c = start_binary(&c_data, "kc.toml", &section("kc"));
    wait_for_ownership(&a, "spread over ka, kc", |now| spread_over(now, &["ka", "kc"], PARTITIONS))
        .await;
    let room = room_held_by(&a, "kc", PARTITIONS).await;
    let sid = format!("RM_cs{room:04}");

    // kc applies the whole room and stores its end; no flush, so no report yet: it dies.
    let (status, answer) =
        a.ingest_protobuf(&v1::TelemetryBatch { calls: sampled_room(room, SAMPLES) }).await;
    assert_eq!(status, 200, "{answer}");
    let started = tokio::time::Instant::now();
    loop {
        let events = a.get_ok(&format!("/v1/rooms/{sid}/events?limit=100")).await;
        let ended = events["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|event| event["type"] == "ROOM_ENDED"));
        if ended {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "kc stored the room's end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.signal("KILL");
    let _ = c.wait().await;
    wait_for_ownership(&a, "kc's partitions moved to ka", |now| {
        spread_over(now, &["ka"], PARTITIONS)
    })
    .await;

    // ka replays the room after kc's offset, stores its end again (the same event) and, after
    // its flush, makes the report.
    let started = tokio::time::Instant::now();
    let received = loop {
        a.flush().await;
        let received = receiver.received();
        if received.iter().any(|hook| hook.json()["event"] == "room_report") {
            break received;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no report from ka");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let events: Vec<Value> = received.iter().map(crate::support::Received::json).collect();
    let names: Vec<&Value> = events.iter().map(|hook| &hook["event"]).collect();
    let position = |name: &str| names.iter().position(|event| *event == name);
    let finished =
        position("room_finished").unwrap_or_else(|| panic!("no room_finished: {names:?}"));
    assert!(
        finished < position("room_report").expect("a report"),
        "room_finished first: {names:?}"
    );
    let hook = events.iter().find(|hook| hook["event"] == "room_report").expect("a report");
    assert_eq!(hook["room"]["sid"], sid.as_str());
    let report = a.get_ok(&format!("/v1/rooms/{sid}/report")).await;
    assert_eq!(without_counts(&hook["report"]), without_counts(&report), "the API's report");
    let upstream = report["participants"][0]["upstream"]["bytes"].as_u64().unwrap_or(0);
    assert_eq!(upstream, SAMPLES as u64 * 100_000, "every sample in it once: {report}");
    a.stop().await;
}
