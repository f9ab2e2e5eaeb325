//! `TestApp`: the service on `127.0.0.1:0` with a temporary database, and clients for it.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message as _;
use serde_json::Value;
use telemetry_core::proto as lk;
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;
use telemetry_server::app::App;
use telemetry_server::config::{self, FlagOverrides};
use tokio_util::sync::CancellationToken;

/// Keys of the test configuration: one per role set.
pub(crate) const ADMIN: (&str, &str) = ("admin-key", "admin-secret-0123456789abcdef0123");
pub(crate) const READER: (&str, &str) = ("reader-key", "reader-secret-0123456789abcdef012");
pub(crate) const INGESTER: (&str, &str) = ("ingest-key", "ingest-secret-0123456789abcdef012");

pub(crate) struct TestApp {
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    pub(crate) client: reqwest::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn test_config(dir: &std::path::Path, extra: &str) -> config::Config {
    let file = format!(
        r#"
[stats]
flush_interval = "1h"
[[keys]]
key = "{}"
secret = "{}"
roles = ["ingest", "read", "admin"]
[[keys]]
key = "{}"
secret = "{}"
roles = ["read"]
[[keys]]
key = "{}"
secret = "{}"
roles = ["ingest"]
{extra}
"#,
        ADMIN.0, ADMIN.1, READER.0, READER.1, INGESTER.0, INGESTER.1
    );
    let flags = FlagOverrides { data_dir: Some(dir.to_path_buf()), ..FlagOverrides::default() };
    config::load(Some(("test.toml", &file)), &[], &flags).expect("test configuration")
}

impl TestApp {
    pub(crate) async fn start() -> Self {
        Self::start_with("").await
    }

    pub(crate) async fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra).await
    }

    pub(crate) async fn start_in(dir: tempfile::TempDir, extra: &str) -> Self {
        let config = test_config(dir.path(), extra);
        let app = App::build(config).expect("build");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let (http_address, grpc_address) =
            (http.local_addr().expect("addr"), grpc.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run(http, grpc, stop.clone().cancelled_owned()));
        Self {
            http: http_address,
            grpc: grpc_address,
            client: reqwest::Client::new(),
            stop,
            task,
            dir,
        }
    }

    pub(crate) async fn stop(self) -> tempfile::TempDir {
        self.stop.cancel();
        self.task.await.expect("app task").expect("app ran");
        self.dir
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub(crate) fn token(key: (&str, &str)) -> String {
        telemetry_server::auth::mint_token(key.0, key.1, Duration::from_secs(600)).expect("token")
    }

    pub(crate) async fn ingest_json(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/v1/telemetry"))
            .bearer_auth(Self::token(ADMIN))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn ingest_protobuf(&self, batch: &v1::TelemetryBatch) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/v1/telemetry"))
            .bearer_auth(Self::token(ADMIN))
            .header("content-type", "application/x-protobuf")
            .body(batch.encode_to_vec())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(Self::token(READER))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub(crate) async fn flush(&self) {
        let response = self
            .client
            .post(self.url("/v1/flush"))
            .bearer_auth(Self::token(ADMIN))
            .send()
            .await
            .expect("flush");
        assert_eq!(response.status().as_u16(), 200, "flush");
    }
}

/// A deterministic room lifecycle: a room, two participants (one aborts), a published video
/// track with a subscriber, stats in both directions, leaves and the end of the room.
pub(crate) struct Lifecycle {
    pub(crate) start: telemetry_core::UnixMillis,
}

pub(crate) const ROOM: &str = "RM_lifecycle01";
pub(crate) const ALICE: &str = "PA_alice000001";
pub(crate) const BOB: &str = "PA_bob00000001";
pub(crate) const CAROL: &str = "PA_carol000001";
pub(crate) const VIDEO: &str = "TR_video000001";

impl Lifecycle {
    pub(crate) fn new() -> Self {
        // A minute ago, so every call is in the past of the server's clock.
        Self {
            start: telemetry_core::Clock::now(&telemetry_core::SystemClock).plus_millis(-60_000),
        }
    }

    fn at(&self, offset_ms: i64) -> Option<pbjson_types::Timestamp> {
        Some(self.start.plus_millis(offset_ms).to_timestamp())
    }

    fn room(&self) -> lk::Room {
        lk::Room {
            sid: ROOM.into(),
            name: "lifecycle".into(),
            creation_time: self.start.as_secs(),
            ..Default::default()
        }
    }

    fn participant(sid: &str, identity: &str) -> lk::ParticipantInfo {
        lk::ParticipantInfo { sid: sid.into(), identity: identity.into(), ..Default::default() }
    }

    fn call(&self, offset_ms: i64, member: Member) -> v1::TelemetryCall {
        v1::TelemetryCall {
            at: self.at(offset_ms),
            node_id: "sfu-test-1".into(),
            call: Some(member),
        }
    }

    fn video(&self) -> lk::TrackInfo {
        lk::TrackInfo {
            sid: VIDEO.into(),
            r#type: lk::TrackType::Video as i32,
            source: lk::TrackSource::Camera as i32,
            mime_type: "video/VP8".into(),
            ..Default::default()
        }
    }

    fn stats(
        &self,
        offset_ms: i64,
        participant: &str,
        direction: lk::StreamType,
        bytes: u64,
    ) -> v1::TelemetryCall {
        let stream = lk::AnalyticsStream {
            primary_bytes: bytes,
            primary_packets: (bytes / 1000) as u32,
            packets_lost: 2,
            rtt: 40,
            jitter: 3000,
            start_time: Some(self.start.plus_millis(offset_ms - 5000).to_timestamp()),
            end_time: Some(self.start.plus_millis(offset_ms).to_timestamp()),
            ..Default::default()
        };
        self.call(
            offset_ms,
            Member::TrackStats(v1::TrackStatsCall {
                room_id: ROOM.into(),
                room_name: "lifecycle".into(),
                key: Some(v1::StatsKey {
                    country: "DE".into(),
                    stream_type: direction as i32,
                    participant_id: participant.into(),
                    track_id: VIDEO.into(),
                    track_source: lk::TrackSource::Camera as i32,
                    track_type: lk::TrackType::Video as i32,
                    track: true,
                }),
                stat: Some(lk::AnalyticsStat {
                    score: 4.2,
                    streams: vec![stream],
                    mime: "video/VP8".into(),
                    ..Default::default()
                }),
            }),
        )
    }

    /// The calls, in order.
    pub(crate) fn calls(&self) -> Vec<v1::TelemetryCall> {
        let room = self.room();
        let alice = Self::participant(ALICE, "alice");
        let bob = Self::participant(BOB, "bob");
        let carol = Self::participant(CAROL, "carol");
        let mut calls = vec![
            self.call(0, Member::RoomStarted(v1::RoomCall { room: Some(room.clone()) })),
            self.call(
                100,
                Member::ParticipantJoined(v1::ParticipantJoinedCall {
                    room: Some(room.clone()),
                    participant: Some(alice.clone()),
                    ..Default::default()
                }),
            ),
            self.call(
                200,
                Member::ParticipantActive(v1::ParticipantActiveCall {
                    room: Some(room.clone()),
                    participant: Some(alice.clone()),
                    ..Default::default()
                }),
            ),
            self.call(
                300,
                Member::ParticipantJoined(v1::ParticipantJoinedCall {
                    room: Some(room.clone()),
                    participant: Some(bob.clone()),
                    ..Default::default()
                }),
            ),
            self.call(
                400,
                Member::ParticipantActive(v1::ParticipantActiveCall {
                    room: Some(room.clone()),
                    participant: Some(bob.clone()),
                    ..Default::default()
                }),
            ),
            self.call(
                500,
                Member::ParticipantJoined(v1::ParticipantJoinedCall {
                    room: Some(room.clone()),
                    participant: Some(carol.clone()),
                    ..Default::default()
                }),
            ),
            self.call(
                600,
                Member::TrackPublished(v1::TrackPublishCall {
                    room: Some(room.clone()),
                    participant_id: ALICE.into(),
                    identity: "alice".into(),
                    track: Some(self.video()),
                    ..Default::default()
                }),
            ),
            self.call(
                700,
                Member::TrackSubscribed(v1::TrackSubscribedCall {
                    room: Some(room.clone()),
                    participant_id: BOB.into(),
                    track: Some(self.video()),
                    publisher: Some(alice.clone()),
                    should_send_event: None,
                }),
            ),
            self.call(
                800,
                Member::ParticipantLeft(v1::ParticipantLeftCall {
                    room: Some(room.clone()),
                    participant: Some(carol),
                    ..Default::default()
                }),
            ),
        ];
        for second in 1..=6 {
            let offset = 600 + second * 5000;
            calls.push(self.stats(offset, ALICE, lk::StreamType::Upstream, 625_000));
            calls.push(self.stats(offset, BOB, lk::StreamType::Downstream, 600_000));
        }
        calls.extend([
            self.call(
                40_000,
                Member::TrackUnpublished(v1::TrackPublishCall {
                    room: Some(room.clone()),
                    participant_id: ALICE.into(),
                    identity: "alice".into(),
                    track: Some(self.video()),
                    ..Default::default()
                }),
            ),
            self.call(
                40_100,
                Member::ParticipantLeft(v1::ParticipantLeftCall {
                    room: Some(room.clone()),
                    participant: Some(bob),
                    ..Default::default()
                }),
            ),
            self.call(
                40_200,
                Member::ParticipantLeft(v1::ParticipantLeftCall {
                    room: Some(room.clone()),
                    participant: Some(alice),
                    ..Default::default()
                }),
            ),
            self.call(41_000, Member::RoomEnded(v1::RoomCall { room: Some(room) })),
        ]);
        calls
    }
}

/// A gRPC channel to `endpoint`.
pub(crate) async fn channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}
