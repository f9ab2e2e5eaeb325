//! What a partition's new holder replays after the stored offset counts once: a take-over after
//! an instance died (SIGKILL) between two flushes, with the stored windows and the node rate
//! cells (`GET /v1/nodes/{id}/rates`) compared with one instance without the cluster; and a
//! room open at the take-over counts in the new holder's `livekit_room_total`. NATS is the
//! shared test server (a stream of the test's own), PostgreSQL the shared test server (a
//! database of the test's own). The helpers are `cluster.rs`'s.

use std::time::Duration;

use serde_json::Value;
use telemetry_proto::v1;
use telemetry_test_support::nats::NatsServer;
use telemetry_test_support::postgres::PgServer;

use crate::cluster::{
    PARTITIONS, cluster_config, messages, names, room_held_by, sampled_room, spread_over,
    start_binary, stored_samples, wait_for_ownership,
};
use crate::support::{ADMIN, Binary, TestApp, TestData};

/// The node `sampled_room`'s calls come from.
const NODE: &str = "sfu-cluster";

/// A counter of the `/metrics` at `url`, summed over the lines starting with `prefix`.
async fn counter_at(client: &reqwest::Client, url: &str, prefix: &str) -> u64 {
    let text = client.get(url).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// Waits (at most 10 s) until the counter `prefix` of `binary` reaches `count`.
async fn wait_for_counter(client: &reqwest::Client, binary: &Binary, prefix: &str, count: u64) {
    let started = tokio::time::Instant::now();
    loop {
        let now = counter_at(client, &binary.url("/metrics"), prefix).await;
        if now >= count {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{prefix}: {now} of {count}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `NODE`'s stored rates, second by second: (second's time, bytes in, packets in, bytes out,
/// packets out) of every second that has any.
async fn node_rates(app: &TestApp) -> Vec<(String, u64, u64, u64, u64)> {
    let rates = app.get_ok(&format!("/v1/nodes/{NODE}/rates?window=1s")).await;
    let amount = |point: &Value, field: &str, per: f64| {
        (point[field].as_f64().expect("a rate") / per).round() as u64
    };
    rates["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|point| {
            (
                point["at"].as_str().expect("at").to_owned(),
                amount(point, "bpsIn", 8.0),
                amount(point, "ppsIn", 1.0),
                amount(point, "bpsOut", 8.0),
                amount(point, "ppsOut", 1.0),
            )
        })
        .filter(|&(_, bytes_in, packets_in, bytes_out, packets_out)| {
            bytes_in + packets_in + bytes_out + packets_out > 0
        })
        .collect()
}

/// Two instances of one cluster (one stream, one database): `a` in process, `c` the real binary
/// (so that it can die of SIGKILL), and a room of a partition `c` holds.
struct Pair {
    nats_url: String,
    names: crate::cluster::Names,
    a: TestApp,
    c: Binary,
    _c_data: TestData,
    client: reqwest::Client,
    room: usize,
}

const APPLIED: &str = "rtc_telemetry_cluster_consumed_messages_total{outcome=\"applied\"}";
const ACKNOWLEDGED: &str =
    "rtc_telemetry_cluster_consumed_messages_total{outcome=\"acknowledged\"}";

impl Pair {
    async fn start() -> Self {
        let nats = NatsServer::shared();
        let names = names();
        let url = PgServer::shared().create_database().expect("a database");
        let on_database = || TestData {
            dir: tempfile::tempdir().expect("tempdir"),
            postgres_url: Some(url.clone()),
        };
        let section = |id: &str| {
            format!(
                "{}instance_id = \"{id}\"\nlease = \"2s\"\n[quality]\nenabled = false\n",
                cluster_config(&nats.url(), &names, PARTITIONS)
            )
        };
        let a = TestApp::start_in(on_database(), &section("ra")).await;
        let c_data = on_database();
        let c = start_binary(&c_data, "rc.toml", &section("rc"));
        wait_for_ownership(&a, "spread over ra, rc", |now| {
            spread_over(now, &["ra", "rc"], PARTITIONS)
        })
        .await;
        let room = room_held_by(&a, "rc", PARTITIONS).await;
        let nats_url = nats.url();
        Self { nats_url, names, a, c, _c_data: c_data, client: reqwest::Client::new(), room }
    }

    /// Sends `calls` through `a` and waits until `c` has applied every message of the stream.
    async fn applied_by_c(&self, calls: &[v1::TelemetryCall]) -> u64 {
        let batch = v1::TelemetryBatch { calls: calls.to_vec() };
        let (status, answer) = self.a.ingest_protobuf(&batch).await;
        assert_eq!(status, 200, "{answer}");
        let published = messages(&self.nats_url, &self.names.stream).await.len() as u64;
        wait_for_counter(&self.client, &self.c, APPLIED, published).await;
        published
    }

    /// As [`Pair::applied_by_c`], then flushed by `c` and acknowledged: stored with `c`'s offset.
    async fn checkpointed_by_c(&self, calls: &[v1::TelemetryCall]) {
        let published = self.applied_by_c(calls).await;
        let flushed = self
            .client
            .post(self.c.url("/v1/flush"))
            .bearer_auth(TestApp::token(ADMIN))
            .send()
            .await
            .expect("flush rc");
        assert_eq!(flushed.status().as_u16(), 200);
        wait_for_counter(&self.client, &self.c, ACKNOWLEDGED, published).await;
    }

    /// `c` dies of SIGKILL; returns once `a` holds every partition.
    async fn kill_c(self) -> TestApp {
        self.c.signal("KILL");
        let _ = self.c.wait().await;
        wait_for_ownership(&self.a, "rc's partitions moved to ra", |now| {
            spread_over(now, &["ra"], PARTITIONS)
        })
        .await;
        self.a
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_sample_counts_once_in_windows_and_node_rates() {
    const SAMPLES: usize = 6;
    let pair = Pair::start().await;
    let sid = format!("RM_cs{:04}", pair.room);
    let calls = sampled_room(pair.room, SAMPLES);
    // The lifecycle calls and half the samples, then the other half, the leave and the end.
    let (first, second) = calls.split_at(3 + SAMPLES / 2);

    // The first half applied by rc, flushed and acknowledged: stored with rc's offset.
    pair.checkpointed_by_c(first).await;
    // The second half applied by rc and not flushed: rc dies with it unacknowledged, after the
    // node rates' one-second drain had its chance.
    pair.applied_by_c(second).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = pair.kill_c().await;

    // ra replays the second half after rc's offset: every sample in one window.
    let started = tokio::time::Instant::now();
    while stored_samples(&a, &sid).await != SAMPLES as u64 {
        assert!(started.elapsed() < Duration::from_secs(15), "the room replayed");
        a.flush().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.flush().await;
    let replayed = node_rates(&a).await;

    // The same calls on one instance without the cluster.
    let single = TestApp::start().await;
    let (status, answer) = single.ingest_protobuf(&v1::TelemetryBatch { calls }).await;
    assert_eq!(status, 200, "{answer}");
    single.flush().await;
    let expected = node_rates(&single).await;
    let bytes_in: u64 = expected.iter().map(|point| point.1).sum();
    assert_eq!(bytes_in, SAMPLES as u64 * 100_000, "{expected:?}");
    assert_eq!(replayed, expected, "the node's rates after the replay");
    assert_eq!(stored_samples(&a, &sid).await, SAMPLES as u64, "no sample stored twice");
    single.stop().await;
    a.stop().await;
}

/// A room open when its partition's holder dies counts in the new holder's `livekit_room_total`
/// (restored from the store: its start is before the stored offset, so no replay counts it), and
/// its end observes its duration there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_open_at_a_take_over_counts_on_the_new_holder_until_it_ends() {
    let pair = Pair::start().await;
    let calls = sampled_room(pair.room, 0);
    // The room's start, join and activity, then its leave and end.
    let (first, second) = calls.split_at(3);
    pair.checkpointed_by_c(first).await;
    let a = pair.kill_c().await;
    let rooms = format!("livekit_room_total{{node_id=\"{NODE}\",node_type=\"SERVER\"}} ");
    let durations =
        format!("livekit_room_duration_seconds_count{{node_id=\"{NODE}\",node_type=\"SERVER\"}} ");
    let client = reqwest::Client::new();
    let metrics = a.url("/metrics");
    // Restored by the partition's take-over, which follows the lease.
    let started = tokio::time::Instant::now();
    while counter_at(&client, &metrics, &rooms).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(15), "the open room restored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counter_at(&client, &metrics, &rooms).await, 1, "the open room, once");
    let (status, answer) = a.ingest_protobuf(&v1::TelemetryBatch { calls: second.to_vec() }).await;
    assert_eq!(status, 200, "{answer}");
    // Its end is applied by ra's consumer of the partition, once read from the stream.
    let started = tokio::time::Instant::now();
    while counter_at(&client, &metrics, &durations).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(15), "the room's end applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counter_at(&client, &metrics, &rooms).await, 0);
    assert_eq!(counter_at(&client, &metrics, &durations).await, 1);
    a.stop().await;
}
