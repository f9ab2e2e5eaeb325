//! `TestApp`: the service on `127.0.0.1:0` with a temporary database, and clients for it.
//!
//! The store is SQLite in a temporary folder, or, with `TELEMETRY_TEST_STORE=postgres`, a
//! database of its own on the PostgreSQL server this test binary starts (one server per binary,
//! one database per test): `cargo xtask test` runs this suite once for each backend.

use std::collections::HashMap;
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
    pub(crate) data: TestData,
}

/// Which backend the suite runs against: `TELEMETRY_TEST_STORE` (`sqlite`, the default, or
/// `postgres`).
pub(crate) fn backend() -> telemetry_store::Backend {
    match std::env::var("TELEMETRY_TEST_STORE").as_deref() {
        Ok("postgres") => telemetry_store::Backend::Postgres,
        Ok("sqlite") | Err(_) => telemetry_store::Backend::Sqlite,
        Ok(other) => panic!("TELEMETRY_TEST_STORE={other:?}: give \"sqlite\" or \"postgres\""),
    }
}

/// Where one test's service keeps its data: a temporary folder (SQLite's file, configuration
/// files), and on PostgreSQL a database of its own. Kept across restarts of the service.
pub(crate) struct TestData {
    pub(crate) dir: tempfile::TempDir,
    /// The PostgreSQL database, when the suite runs on PostgreSQL.
    pub(crate) postgres_url: Option<String>,
}

impl TestData {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let postgres_url = (backend() == telemetry_store::Backend::Postgres).then(|| {
            telemetry_test_support::postgres::PgServer::shared()
                .create_database()
                .expect("a database on the test PostgreSQL server")
        });
        Self { dir, postgres_url }
    }

    /// On PostgreSQL whatever the suite's backend (cluster mode needs it).
    pub(crate) fn on_postgres() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = telemetry_test_support::postgres::PgServer::shared()
            .create_database()
            .expect("a database on the test PostgreSQL server");
        Self { dir, postgres_url: Some(url) }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The configuration variables that point a service at this data's database.
    pub(crate) fn environment(&self) -> Vec<(String, String)> {
        match &self.postgres_url {
            Some(url) => vec![
                ("RTC_TELEMETRY_STORE__BACKEND".to_owned(), "postgres".to_owned()),
                ("RTC_TELEMETRY_STORE__URL".to_owned(), url.clone()),
            ],
            None => Vec::new(),
        }
    }

    /// Opens the store the service wrote (after it stopped, or beside it).
    pub(crate) async fn open_store(&self) -> std::sync::Arc<dyn telemetry_store::Store> {
        let config = test_config(self, "");
        telemetry_store::open(config.store_config()).await.expect("open the store")
    }
}

/// The test configuration with `extra` added: its lines before its first `[section]` are
/// top-level keys, put before the test's own sections.
pub(crate) fn test_config(data: &TestData, extra: &str) -> config::Config {
    let split = extra
        .lines()
        .position(|line| line.trim_start().starts_with('['))
        .map_or(extra.len(), |line| extra.lines().take(line).map(|l| l.len() + 1).sum());
    let (top, extra) = extra.split_at(split.min(extra.len()));
    let file = format!(
        r#"
{top}
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
    let flags =
        FlagOverrides { data_dir: Some(data.path().to_path_buf()), ..FlagOverrides::default() };
    config::load(Some(("test.toml", &file)), &data.environment(), &flags)
        .expect("test configuration")
}

/// Logs to the test's output when `TELEMETRY_TEST_LOG` holds a filter (e.g. `debug`).
fn init_test_log() {
    if let Ok(filter) = std::env::var("TELEMETRY_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// The text of `GET /metrics` at `url` (Prometheus' text format; the route needs no token).
pub(crate) async fn metrics_text(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response.text().await.expect("the metrics' text")
}

impl TestApp {
    pub(crate) async fn start() -> Self {
        Self::start_with("").await
    }

    pub(crate) async fn start_with(extra: &str) -> Self {
        Self::start_in(TestData::new(), extra).await
    }

    pub(crate) async fn start_in(data: TestData, extra: &str) -> Self {
        init_test_log();
        let config = test_config(&data, extra);
        let app = App::build(config).await.expect("build");
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
            data,
        }
    }

    pub(crate) async fn stop(self) -> TestData {
        self.stop.cancel();
        self.task.await.expect("app task").expect("app ran");
        self.data
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

    /// The text of its `GET /metrics`.
    pub(crate) async fn metrics_text(&self) -> String {
        metrics_text(&self.client, &self.url("/metrics")).await
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

/// The real binary, `serve` on `127.0.0.1:0` with a configuration file and a data directory, its
/// log drained so it never blocks.
pub(crate) struct Binary {
    /// `None` once waited for.
    child: Option<std::process::Child>,
    /// `host:port` of the HTTP API.
    pub(crate) http: String,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Binary {
    /// Starts it and waits until it serves.
    pub(crate) fn start(data: &TestData, config_path: &std::path::Path) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rtc-telemetry"))
            .args(["serve", "--http-bind", "127.0.0.1:0", "--grpc-bind", "127.0.0.1:0", "--config"])
            .arg(config_path)
            .arg("--data-dir")
            .arg(data.path())
            .envs(data.environment())
            .env("RTC_TELEMETRY_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the binary");
        // Find the HTTP address in the log, then keep draining the log.
        let mut log = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let mut seen = String::new();
        let http = loop {
            line.clear();
            assert!(
                log.read_line(&mut line).expect("log") > 0,
                "the service exited before serving: {seen}"
            );
            seen.push_str(&line);
            if let Some(rest) = line.split("http=").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        let log = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut log, &mut rest);
            seen + &rest
        });
        Self { child: Some(child), http, log: Some(log) }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Sends a signal (`TERM`, `KILL`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.as_ref().expect("running").id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -{signal}");
    }

    /// Waits for the process to exit: its status and its whole log.
    pub(crate) async fn wait(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let log = self.log.take().expect("log");
        tokio::task::spawn_blocking(move || {
            let status = child.wait().expect("wait");
            (status, log.join().expect("log"))
        })
        .await
        .expect("join")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failing test must not leave the service running.
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
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

/// What a [`TestReceiver`] answers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    /// This status.
    Status(u16),
    /// 429 with `Retry-After` seconds.
    TooManyRequests(u64),
    /// Never answer.
    Hang,
    /// This status after this wait.
    Slow(Duration, u16),
}

/// Requests being answered per (path, room name), and the most there ever were at once.
type OpenCounts = std::sync::Arc<std::sync::Mutex<(HashMap<(String, String), usize>, usize)>>;

/// A request being answered, counted per path and room until it is answered or its client goes
/// away (dropped with the handler's future).
struct OpenRequest {
    counts: OpenCounts,
    key: (String, String),
}

impl OpenRequest {
    fn new(counts: OpenCounts, key: (String, String)) -> Self {
        {
            let mut guard = counts.lock().expect("lock");
            let (open, max) = &mut *guard;
            let count = open.entry(key.clone()).or_default();
            *count += 1;
            *max = (*max).max(*count);
        }
        Self { counts, key }
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let mut guard = self.counts.lock().expect("lock");
        if let Some(count) = guard.0.get_mut(&self.key) {
            *count -= 1;
        }
    }
}

/// One request a [`TestReceiver`] got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: String,
    pub(crate) at: std::time::Instant,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub(crate) fn id(&self) -> String {
        self.json()["id"].as_str().unwrap_or("").to_owned()
    }
}

type Rule = Box<dyn Fn(&str, &Value) -> Option<Answer> + Send + Sync>;

/// A local webhook endpoint that records every request and answers as the test says: a default
/// answer, switchable at any time, and rules by path and body that take precedence.
#[derive(Clone)]
pub(crate) struct TestReceiver {
    pub(crate) address: SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    answer: std::sync::Arc<std::sync::Mutex<Answer>>,
    rules: std::sync::Arc<std::sync::Mutex<Vec<Rule>>>,
    /// Answers still to give before the default one, in order.
    script: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Answer>>>,
    /// Requests answered `Hang` whose connection is still open.
    hanging: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Requests being answered now, per path and room name, and the most there ever were.
    open_per_room: OpenCounts,
}

impl TestReceiver {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener)
    }

    pub(crate) fn serve(listener: tokio::net::TcpListener) -> Self {
        let receiver = Self {
            address: listener.local_addr().expect("addr"),
            received: Default::default(),
            answer: std::sync::Arc::new(std::sync::Mutex::new(Answer::Status(200))),
            rules: Default::default(),
            script: Default::default(),
            hanging: Default::default(),
            open_per_room: Default::default(),
        };
        let handler = receiver.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let handler = handler.clone();
                async move { handler.handle(uri.path().to_owned(), headers, body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    async fn handle(
        &self,
        path: String,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let _open = OpenRequest::new(
            self.open_per_room.clone(),
            (path.clone(), json["room"]["name"].as_str().unwrap_or("").to_owned()),
        );
        self.received.lock().expect("lock").push(Received {
            path: path.clone(),
            headers,
            body,
            at: std::time::Instant::now(),
        });
        let ruled = self.rules.lock().expect("lock").iter().find_map(|rule| rule(&path, &json));
        let answer = ruled
            .or_else(|| self.script.lock().expect("lock").pop_front())
            .unwrap_or_else(|| self.answer.lock().expect("lock").clone());
        match answer {
            Answer::Status(status) => {
                axum::http::StatusCode::from_u16(status).expect("status").into_response()
            }
            Answer::TooManyRequests(seconds) => {
                (axum::http::StatusCode::TOO_MANY_REQUESTS, [("retry-after", seconds.to_string())])
                    .into_response()
            }
            Answer::Hang => {
                // Counted while open: the client closing the request drops this future.
                struct Open(std::sync::Arc<std::sync::atomic::AtomicUsize>);
                impl Drop for Open {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                self.hanging.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _open = Open(self.hanging.clone());
                std::future::pending::<()>().await;
                unreachable!()
            }
            Answer::Slow(wait, status) => {
                tokio::time::sleep(wait).await;
                axum::http::StatusCode::from_u16(status).expect("status").into_response()
            }
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub(crate) fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("lock") = answer;
    }

    pub(crate) fn script(&self, answers: Vec<Answer>) {
        self.script.lock().expect("lock").extend(answers);
    }

    pub(crate) fn rule(
        &self,
        rule: impl Fn(&str, &Value) -> Option<Answer> + Send + Sync + 'static,
    ) {
        self.rules.lock().expect("lock").push(Box::new(rule));
    }

    /// The most requests for one room that were ever open at once on one path.
    pub(crate) fn max_open_per_room(&self) -> usize {
        self.open_per_room.lock().expect("lock").1
    }

    /// Requests answered `Hang` whose connection is still open.
    pub(crate) fn hanging(&self) -> usize {
        self.hanging.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn clear_rules(&self) {
        self.rules.lock().expect("lock").clear();
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what was received, at most `timeout`.
    pub(crate) async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting; received {} requests: {:?}",
                    received.len(),
                    received
                        .iter()
                        .map(|r| (r.path.clone(), r.json()["event"].clone()))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `GET path` until `done` holds for the body, at most `timeout`.
pub(crate) async fn wait_for_api(
    app: &TestApp,
    path: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let body = app.get_ok(path).await;
        if done(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting on {path}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook endpoint table for the test configuration.
pub(crate) fn endpoint_config(url: &str, signing: &str, secret: &str) -> String {
    format!(
        "[[webhooks.endpoints]]\nurl = \"{url}\"\nsigning = \"{signing}\"\napi_key = \"{}\"\nsecret = \"{secret}\"\n",
        ADMIN.0
    )
}

/// Fast retries for tests: 3 more attempts after the first, 100 to 300 ms apart.
pub(crate) const FAST_RETRIES: &str =
    "[webhooks]\nretry_schedule = [\"100ms\", \"200ms\", \"300ms\"]\nrequest_timeout = \"500ms\"\n";

/// The calls of room `room` named after `prefix` (sid `RM_<prefix><room>`, name
/// `<prefix>-<room>`), `steps` in all: `roomStarted`, then `participantActive` of `user-1` to
/// `user-<steps - 2>`, then `roomEnded`: one webhook each, in call order.
pub(crate) fn room_calls(prefix: &str, room: usize, steps: usize) -> Vec<Value> {
    let r = serde_json::json!({ "sid": format!("RM_{prefix}{room:04}"), "name": format!("{prefix}-{room}") });
    let mut calls = vec![serde_json::json!({ "roomStarted": { "room": r } })];
    for n in 1..steps - 1 {
        let participant =
            serde_json::json!({ "sid": format!("PA_{room}_{n}"), "identity": format!("user-{n}") });
        calls.push(
            serde_json::json!({ "participantActive": { "room": r, "participant": participant } }),
        );
    }
    calls.push(serde_json::json!({ "roomEnded": { "room": r } }));
    calls
}
