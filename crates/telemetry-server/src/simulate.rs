//! `rtc-telemetry simulate`: realistic SFU traffic against a running service, deterministic for a
//! given `--seed` and arguments.
//!
//! The simulated SFU runs rooms of participants who join (some never get media: aborted joins),
//! become active, publish audio, simulcast video (three layers) and sometimes data, subscribe to
//! each other, mute and unmute, resume after a network change, and leave; one room records an
//! egress. Every `--stats-interval` each active participant reports its media stats (with loss,
//! jitter, RTT and a quality score, and a bad spell now and then), data-channel bytes (with
//! bursts) and signalling bytes; every 30 s the node reports its room states.
//!
//! With `--speed 0` the simulated time ends now and the calls go out as fast as the service takes
//! them (a backfill); otherwise simulated time starts now and runs `--speed` times real time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use telemetry_core::proto as lk;
use telemetry_core::{Clock as _, SystemClock, UnixMillis};
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;

/// The base57 alphabet of LiveKit's ids.
const ALPHABET: &[u8] = telemetry_core::ids::BASE57_ALPHABET;

/// Arguments of `simulate`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:7890")]
    pub url: String,
    /// API key (with the `ingest` role).
    #[arg(long, default_value = "devkey")]
    pub api_key: String,
    /// Its secret.
    #[arg(long, default_value = "secret")]
    pub api_secret: String,
    /// Seed: the same seed and arguments give the same traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Rooms.
    #[arg(long, default_value_t = 3)]
    pub rooms: u32,
    /// Participants per room.
    #[arg(long, default_value_t = 4)]
    pub participants: u32,
    /// Simulated time.
    #[arg(long, default_value = "2m", value_parser = crate::config::parse_duration)]
    pub duration: Duration,
    /// How often each participant reports its stats.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub stats_interval: Duration,
    /// Simulated seconds per real second; 0 runs as fast as the service takes the calls, with
    /// the simulated time ending now.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Body encoding.
    #[arg(long, value_enum, default_value_t = WireFormat::Json)]
    pub format: WireFormat,
    /// The node id the calls carry.
    #[arg(long, default_value = "sfu-sim-1")]
    pub node_id: String,
    /// Most calls per request.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:7890".to_owned(),
            api_key: "devkey".to_owned(),
            api_secret: "secret".to_owned(),
            seed: 1,
            rooms: 3,
            participants: 4,
            duration: Duration::from_secs(120),
            stats_interval: Duration::from_secs(5),
            speed: 1.0,
            format: WireFormat::Json,
            node_id: "sfu-sim-1".to_owned(),
            batch_size: 500,
            quiet: true,
        }
    }
}

/// How batches are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WireFormat {
    /// `application/json`.
    Json,
    /// `application/x-protobuf`.
    Protobuf,
}

/// What a simulation sent and what the service made of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Calls generated.
    pub calls: u64,
    /// Calls the service accepted.
    pub accepted: u64,
    /// Calls the service rejected.
    pub rejected: u64,
    /// Accepted `trackStats` calls.
    pub accepted_stats: u64,
    /// Accepted calls that produce an analytics event.
    pub accepted_events: u64,
    /// Requests sent (retries included).
    pub requests: u64,
    /// Calls not sent because the service went away.
    pub unsent: u64,
}

/// Runs a simulation to its end (or until the service stops answering) and returns the summary.
///
/// # Errors
///
/// Fails if the arguments are unusable; a service that goes away ends the run early instead.
pub async fn run(args: SimulateArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        args.rooms > 0 && args.participants > 0,
        "`--rooms` and `--participants` must be at least 1"
    );
    anyhow::ensure!(
        args.stats_interval >= Duration::from_millis(100),
        "`--stats-interval` must be at least 100ms"
    );
    anyhow::ensure!(args.speed >= 0.0 && args.speed.is_finite(), "`--speed` must be 0 or more");
    let real_start = SystemClock.now();
    let duration_ms = i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX);
    let sim_start =
        if args.speed == 0.0 { real_start.plus_millis(-duration_ms) } else { real_start };
    let mut world = World::new(&args, sim_start);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let endpoint = format!("{}/v1/telemetry", args.url.trim_end_matches('/'));
    let progress = if args.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(u64::try_from(duration_ms / 1000).unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} simulated s  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    let mut summary = Summary::default();
    let mut token = Token::new(&args);
    let sim_end = sim_start.plus_millis(duration_ms);
    let mut pending: Vec<(v1::TelemetryCall, CallKind)> = Vec::new();
    let mut last_send = sim_start;
    while let Some(at) = world.next_time() {
        if at > sim_end {
            break;
        }
        // In real time, wait until the simulated moment; first send what is due.
        if args.speed > 0.0 {
            let due =
                real_start.plus_millis((at.millis_since(sim_start) as f64 / args.speed) as i64);
            let wait = due.millis_since(SystemClock.now());
            if wait > 0 {
                if !pending.is_empty()
                    && !send(&client, &endpoint, &args, &mut token, &mut pending, &mut summary)
                        .await
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        world.step(&mut pending);
        progress.set_position(u64::try_from(at.millis_since(sim_start) / 1000).unwrap_or(0));
        progress.set_message(format!(
            "{} calls, {} accepted, {} rejected",
            summary.calls, summary.accepted, summary.rejected
        ));
        let flush = pending.len() >= args.batch_size
            || (args.speed > 0.0 && at.millis_since(last_send) >= 1000);
        if flush && !pending.is_empty() {
            last_send = at;
            if !send(&client, &endpoint, &args, &mut token, &mut pending, &mut summary).await {
                break;
            }
        }
    }
    world.finish(sim_end, &mut pending);
    if !pending.is_empty() {
        send(&client, &endpoint, &args, &mut token, &mut pending, &mut summary).await;
    }
    summary.unsent += pending.len() as u64;
    progress.finish_and_clear();
    Ok(summary)
}

/// Generates the whole simulation's calls without sending them, in call order, the simulated time
/// ending at `end` (for benchmarks and tests).
pub fn generate(args: &SimulateArgs, end: UnixMillis) -> Vec<v1::TelemetryCall> {
    let duration_ms = i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX);
    let mut world = World::new(args, end.plus_millis(-duration_ms));
    let mut calls = Vec::new();
    while world.next_time().is_some_and(|at| at <= end) {
        world.step(&mut calls);
    }
    world.finish(end, &mut calls);
    calls.into_iter().map(|(call, _)| call).collect()
}

/// A minted token, renewed before it expires.
struct Token {
    key: String,
    secret: String,
    value: String,
    minted: std::time::SystemTime,
}

impl Token {
    fn new(args: &SimulateArgs) -> Self {
        Self {
            key: args.api_key.clone(),
            secret: args.api_secret.clone(),
            value: String::new(),
            minted: std::time::UNIX_EPOCH,
        }
    }

    fn get(&mut self) -> &str {
        let stale =
            self.minted.elapsed().map(|age| age > Duration::from_secs(1800)).unwrap_or(true);
        if stale {
            self.value =
                crate::auth::mint_token(&self.key, &self.secret, Duration::from_secs(3600))
                    .unwrap_or_default();
            self.minted = std::time::SystemTime::now();
        }
        &self.value
    }
}

/// Sends the pending calls as one request, retrying on 429 and 503; returns false if the service
/// is gone (the calls stay pending).
async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    args: &SimulateArgs,
    token: &mut Token,
    pending: &mut Vec<(v1::TelemetryCall, CallKind)>,
    summary: &mut Summary,
) -> bool {
    let batch =
        v1::TelemetryBatch { calls: pending.iter().map(|(call, _)| call.clone()).collect() };
    let (content_type, body) = match args.format {
        WireFormat::Json => ("application/json", serde_json::to_vec(&batch).unwrap_or_default()),
        WireFormat::Protobuf => ("application/x-protobuf", batch.encode_to_vec()),
    };
    for attempt in 0..20u32 {
        summary.requests += 1;
        let response = client
            .post(endpoint)
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {}", token.get()))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.clone())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "the service did not answer; stopping");
                return false;
            }
        };
        let status = response.status();
        if status.is_success() {
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            let rejected: Vec<usize> = answer["rejected"]
                .as_array()
                .map(|rejections| {
                    rejections
                        .iter()
                        .filter_map(|r| r["index"].as_u64())
                        .map(|i| i as usize)
                        .collect()
                })
                .unwrap_or_default();
            for (index, (_, kind)) in pending.iter().enumerate() {
                summary.calls += 1;
                if rejected.contains(&index) {
                    summary.rejected += 1;
                } else {
                    summary.accepted += 1;
                    match kind {
                        CallKind::Stats => summary.accepted_stats += 1,
                        CallKind::Event => summary.accepted_events += 1,
                        CallKind::Other => {}
                    }
                }
            }
            if !rejected.is_empty() {
                tracing::warn!(rejections = %answer["rejected"], "calls rejected");
            }
            pending.clear();
            return true;
        }
        if status.as_u16() == 429 || (status.as_u16() == 503 && attempt < 3) {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.min(5))).await;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        tracing::warn!(%status, body = %text, "the service refused the batch; stopping");
        return false;
    }
    false
}

/// What a call contributes to the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    /// `trackStats`.
    Stats,
    /// A lifecycle call that produces an analytics event.
    Event,
    /// Neither (node room states).
    Other,
}

#[derive(Clone, Debug)]
struct SimTrack {
    info: lk::TrackInfo,
    muted: bool,
}

#[derive(Clone, Debug)]
struct SimParticipant {
    info: lk::ParticipantInfo,
    /// Joined and active (media flowing).
    active: bool,
    left: bool,
    tracks: Vec<SimTrack>,
    /// Tracks of others this participant subscribes to: (publisher index, track index).
    subscriptions: Vec<(usize, usize)>,
    data_channel: bool,
    /// A bad network spell until this time.
    bad_until: UnixMillis,
}

#[derive(Clone, Debug)]
struct SimRoom {
    room: lk::Room,
    participants: Vec<SimParticipant>,
    ended: bool,
}

/// Scheduled happenings, ordered by time then insertion.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    RoomStart(usize),
    Join(usize, usize),
    Active(usize, usize),
    Publish(usize, usize),
    Subscribe(usize, usize),
    Stats(usize, usize),
    ToggleMute(usize, usize),
    Resume(usize, usize),
    Leave(usize, usize),
    EgressStart(usize),
    EgressEnd(usize),
    RoomStates,
}

struct World {
    rng: StdRng,
    rooms: Vec<SimRoom>,
    queue: BinaryHeap<Reverse<(UnixMillis, u64, Happening)>>,
    order: u64,
    node_id: String,
    stats_interval_ms: i64,
    end: UnixMillis,
    now: UnixMillis,
    egress: Option<lk::EgressInfo>,
    room_states_sequence: u64,
}

impl World {
    fn new(args: &SimulateArgs, start: UnixMillis) -> Self {
        let duration_ms = i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX);
        let mut world = Self {
            rng: StdRng::seed_from_u64(args.seed),
            rooms: Vec::new(),
            queue: BinaryHeap::new(),
            order: 0,
            node_id: args.node_id.clone(),
            stats_interval_ms: i64::try_from(args.stats_interval.as_millis()).unwrap_or(5000),
            end: start.plus_millis(duration_ms),
            now: start,
            egress: None,
            room_states_sequence: 0,
        };
        for room_index in 0..args.rooms as usize {
            let sid = world.id("RM_");
            let room = lk::Room {
                sid,
                name: format!("room-{}-{room_index}", args.seed),
                empty_timeout: 300,
                max_participants: args.participants,
                ..Default::default()
            };
            let participants = (0..args.participants as usize)
                .map(|index| {
                    let sid = world.id("PA_");
                    SimParticipant {
                        info: lk::ParticipantInfo {
                            sid,
                            identity: format!("user-{room_index}-{index}"),
                            name: format!("User {room_index}.{index}"),
                            ..Default::default()
                        },
                        active: false,
                        left: false,
                        tracks: Vec::new(),
                        subscriptions: Vec::new(),
                        data_channel: false,
                        bad_until: UnixMillis(0),
                    }
                })
                .collect();
            world.rooms.push(SimRoom { room, participants, ended: false });
            let room_start =
                start.plus_millis(world.rng.random_range(0..=(duration_ms / 20).max(1)));
            world.schedule(room_start, Happening::RoomStart(room_index));
        }
        world.schedule(start.plus_millis(1000), Happening::RoomStates);
        world
    }

    fn id(&mut self, prefix: &str) -> String {
        let mut id = String::from(prefix);
        while id.len() < prefix.len() + 12 {
            let value = (self.rng.next_u32() & 0x3f) as usize;
            if value < ALPHABET.len() {
                id.push(char::from(ALPHABET[value]));
            }
        }
        id
    }

    fn schedule(&mut self, at: UnixMillis, happening: Happening) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, happening)));
    }

    /// A random time in `range` milliseconds after `at`.
    fn later(&mut self, at: UnixMillis, range: std::ops::Range<i64>) -> UnixMillis {
        at.plus_millis(self.rng.random_range(range))
    }

    fn next_time(&self) -> Option<UnixMillis> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    fn call(&self, member: Member) -> v1::TelemetryCall {
        v1::TelemetryCall {
            at: Some(self.now.to_timestamp()),
            node_id: self.node_id.clone(),
            call: Some(member),
        }
    }

    fn step(&mut self, out: &mut Vec<(v1::TelemetryCall, CallKind)>) {
        let Some(Reverse((at, _, happening))) = self.queue.pop() else { return };
        self.now = at;
        let remaining = self.end.millis_since(at).max(1);
        match happening {
            Happening::RoomStart(room) => {
                self.rooms[room].room.creation_time = at.as_secs();
                self.rooms[room].room.creation_time_ms = at.0;
                out.push((
                    self.call(Member::RoomStarted(v1::RoomCall {
                        room: Some(self.rooms[room].room.clone()),
                    })),
                    CallKind::Event,
                ));
                for participant in 0..self.rooms[room].participants.len() {
                    let join = at.plus_millis(self.rng.random_range(0..=(remaining / 4).max(1)));
                    self.schedule(join, Happening::Join(room, participant));
                }
                if room == 0 {
                    let started = at.plus_millis((remaining / 10).max(1));
                    self.schedule(started, Happening::EgressStart(room));
                }
            }
            Happening::Join(room, participant) => {
                let mut info = self.rooms[room].participants[participant].info.clone();
                info.state = lk::participant_info::State::Joined as i32;
                info.joined_at = at.as_secs();
                info.joined_at_ms = at.0;
                self.rooms[room].participants[participant].info = info.clone();
                out.push((
                    self.call(Member::ParticipantJoined(v1::ParticipantJoinedCall {
                        room: Some(self.room_snapshot(room)),
                        participant: Some(info),
                        client_info: Some(lk::ClientInfo {
                            sdk: [
                                lk::client_info::Sdk::Js,
                                lk::client_info::Sdk::Swift,
                                lk::client_info::Sdk::Android,
                            ][participant % 3] as i32,
                            version: "2.5.0".to_owned(),
                            os: ["macOS", "iOS", "Android"][participant % 3].to_owned(),
                            browser: "Chrome".to_owned(),
                            ..Default::default()
                        }),
                        client_meta: Some(lk::AnalyticsClientMeta {
                            region: "eu-west".to_owned(),
                            node: self.node_id.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                    CallKind::Event,
                ));
                // One join in ten never gets media: the connection is aborted.
                if self.rng.random_range(0..10) == 0 {
                    let leave = at.plus_millis(self.rng.random_range(2000..15000));
                    self.schedule(leave, Happening::Leave(room, participant));
                } else {
                    let active = at.plus_millis(self.rng.random_range(300..2500));
                    self.schedule(active, Happening::Active(room, participant));
                }
            }
            Happening::Active(room, participant) => {
                if self.rooms[room].participants[participant].left {
                    return;
                }
                let sim = &mut self.rooms[room].participants[participant];
                sim.active = true;
                sim.info.state = lk::participant_info::State::Active as i32;
                let info = sim.info.clone();
                let connect_ms = self.rng.random_range(150..1500);
                let connection = ["udp", "udp", "udp", "tcp", "turn"][self.rng.random_range(0..5)];
                out.push((
                    self.call(Member::ParticipantActive(v1::ParticipantActiveCall {
                        room: Some(self.room_snapshot(room)),
                        participant: Some(info),
                        client_meta: Some(lk::AnalyticsClientMeta {
                            client_connect_time: connect_ms,
                            connection_type: connection.to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                    CallKind::Event,
                ));
                {
                    let when = self.later(at, 200..1500);
                    self.schedule(when, Happening::Publish(room, participant));
                }
                self.schedule(
                    at.plus_millis(self.stats_interval_ms),
                    Happening::Stats(room, participant),
                );
                let leave_at = at
                    .plus_millis(self.rng.random_range((remaining / 2).max(1)..=remaining.max(2)));
                if leave_at < self.end {
                    self.schedule(leave_at, Happening::Leave(room, participant));
                }
                if self.rng.random_range(0..4) == 0 {
                    let resume =
                        at.plus_millis(self.rng.random_range(5000..(remaining / 2).max(5001)));
                    self.schedule(resume, Happening::Resume(room, participant));
                }
            }
            Happening::Publish(room, participant) => {
                if self.rooms[room].participants[participant].left {
                    return;
                }
                let pid = self.rooms[room].participants[participant].info.sid.clone();
                let identity = self.rooms[room].participants[participant].info.identity.clone();
                let audio = lk::TrackInfo {
                    sid: self.id("TR_"),
                    r#type: lk::TrackType::Audio as i32,
                    source: lk::TrackSource::Microphone as i32,
                    name: "microphone".to_owned(),
                    mime_type: "audio/opus".to_owned(),
                    ..Default::default()
                };
                let video = lk::TrackInfo {
                    sid: self.id("TR_"),
                    r#type: lk::TrackType::Video as i32,
                    source: lk::TrackSource::Camera as i32,
                    name: "camera".to_owned(),
                    mime_type: "video/VP8".to_owned(),
                    width: 1280,
                    height: 720,
                    ..Default::default()
                };
                let data = self.rng.random_range(0..3) == 0;
                for track in [audio, video] {
                    for member in [
                        Member::TrackPublishRequested(v1::TrackPublishCall {
                            room: Some(self.minimal_room(room)),
                            participant_id: pid.clone(),
                            identity: identity.clone(),
                            track: Some(track.clone()),
                            ..Default::default()
                        }),
                        Member::TrackPublished(v1::TrackPublishCall {
                            room: Some(self.minimal_room(room)),
                            participant_id: pid.clone(),
                            identity: identity.clone(),
                            track: Some(track.clone()),
                            ..Default::default()
                        }),
                    ] {
                        out.push((self.call(member), CallKind::Event));
                    }
                    self.rooms[room].participants[participant]
                        .tracks
                        .push(SimTrack { info: track, muted: false });
                }
                self.rooms[room].participants[participant].data_channel = data;
                // Others subscribe to the new tracks a moment later.
                for other in 0..self.rooms[room].participants.len() {
                    if other != participant
                        && self.rooms[room].participants[other].active
                        && !self.rooms[room].participants[other].left
                    {
                        {
                            let when = self.later(at, 100..800);
                            self.schedule(when, Happening::Subscribe(room, other));
                        }
                    }
                }
                {
                    let when = self.later(at, 100..800);
                    self.schedule(when, Happening::Subscribe(room, participant));
                }
                if self.rng.random_range(0..3) == 0 {
                    {
                        let when = self.later(at, 10_000..60_000);
                        self.schedule(when, Happening::ToggleMute(room, participant));
                    }
                }
            }
            Happening::Subscribe(room, participant) => {
                if self.rooms[room].participants[participant].left
                    || !self.rooms[room].participants[participant].active
                {
                    return;
                }
                let subscriber = self.rooms[room].participants[participant].info.sid.clone();
                for publisher in 0..self.rooms[room].participants.len() {
                    if publisher == participant || self.rooms[room].participants[publisher].left {
                        continue;
                    }
                    for track in 0..self.rooms[room].participants[publisher].tracks.len() {
                        if self.rooms[room].participants[participant]
                            .subscriptions
                            .contains(&(publisher, track))
                        {
                            continue;
                        }
                        let info =
                            self.rooms[room].participants[publisher].tracks[track].info.clone();
                        let publisher_info = lk::ParticipantInfo {
                            sid: self.rooms[room].participants[publisher].info.sid.clone(),
                            identity: self.rooms[room].participants[publisher]
                                .info
                                .identity
                                .clone(),
                            ..Default::default()
                        };
                        out.push((
                            self.call(Member::TrackSubscribeRequested(v1::TrackCall {
                                room: Some(self.minimal_room(room)),
                                participant_id: subscriber.clone(),
                                track: Some(info.clone()),
                            })),
                            CallKind::Event,
                        ));
                        out.push((
                            self.call(Member::TrackSubscribed(v1::TrackSubscribedCall {
                                room: Some(self.minimal_room(room)),
                                participant_id: subscriber.clone(),
                                track: Some(info),
                                publisher: Some(publisher_info),
                                should_send_event: None,
                            })),
                            CallKind::Event,
                        ));
                        self.rooms[room].participants[participant]
                            .subscriptions
                            .push((publisher, track));
                    }
                }
            }
            Happening::ToggleMute(room, participant) => {
                let sim = &self.rooms[room].participants[participant];
                if sim.left || sim.tracks.is_empty() {
                    return;
                }
                let pid = sim.info.sid.clone();
                let muted = !sim.tracks[0].muted;
                self.rooms[room].participants[participant].tracks[0].muted = muted;
                let mut track = self.rooms[room].participants[participant].tracks[0].info.clone();
                track.muted = muted;
                let call = v1::TrackCall {
                    room: Some(self.minimal_room(room)),
                    participant_id: pid,
                    track: Some(track),
                };
                let member =
                    if muted { Member::TrackMuted(call) } else { Member::TrackUnmuted(call) };
                out.push((self.call(member), CallKind::Event));
                {
                    let when = self.later(at, 5_000..40_000);
                    self.schedule(when, Happening::ToggleMute(room, participant));
                }
            }
            Happening::Resume(room, participant) => {
                if self.rooms[room].participants[participant].left {
                    return;
                }
                let info = self.rooms[room].participants[participant].info.clone();
                out.push((
                    self.call(Member::ParticipantResumed(v1::ParticipantResumedCall {
                        room: Some(self.room_snapshot(room)),
                        participant: Some(info),
                        node_id: self.node_id.clone(),
                        reason: lk::ReconnectReason::RrSubscriberFailed as i32,
                        guard: String::new(),
                    })),
                    CallKind::Event,
                ));
                self.rooms[room].participants[participant].bad_until = at.plus_millis(10_000);
            }
            Happening::Stats(room, participant) => self.stats(room, participant, out),
            Happening::Leave(room, participant) => self.leave(room, participant, out),
            Happening::EgressStart(room) => {
                let info = lk::EgressInfo {
                    egress_id: self.id("EG_"),
                    room_id: self.rooms[room].room.sid.clone(),
                    room_name: self.rooms[room].room.name.clone(),
                    status: lk::EgressStatus::EgressActive as i32,
                    started_at: at.0 * 1_000_000,
                    ..Default::default()
                };
                out.push((
                    self.call(Member::EgressStarted(v1::EgressCall { info: Some(info.clone()) })),
                    CallKind::Event,
                ));
                self.egress = Some(info);
                let end = at.plus_millis((remaining / 2).max(1));
                self.schedule(end, Happening::EgressEnd(room));
            }
            Happening::EgressEnd(_) => {
                if let Some(mut info) = self.egress.take() {
                    info.status = lk::EgressStatus::EgressComplete as i32;
                    info.ended_at = at.0 * 1_000_000;
                    out.push((
                        self.call(Member::EgressEnded(v1::EgressCall { info: Some(info) })),
                        CallKind::Event,
                    ));
                }
            }
            Happening::RoomStates => {
                self.room_states_sequence += 1;
                let rooms = self
                    .rooms
                    .iter()
                    .filter(|room| room.room.creation_time > 0 && !room.ended)
                    .map(|room| lk::AnalyticsRoom {
                        id: room.room.sid.clone(),
                        name: room.room.name.clone(),
                        created_at: Some(
                            UnixMillis::from_secs(room.room.creation_time).to_timestamp(),
                        ),
                        participants: room
                            .participants
                            .iter()
                            .filter(|p| p.active && !p.left)
                            .map(|p| lk::AnalyticsRoomParticipant {
                                id: p.info.sid.clone(),
                                identity: p.info.identity.clone(),
                                name: p.info.name.clone(),
                                state: lk::participant_info::State::Active as i32,
                                joined_at: Some(
                                    UnixMillis::from_secs(p.info.joined_at).to_timestamp(),
                                ),
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect();
                let node_rooms = lk::AnalyticsNodeRooms {
                    node_id: self.node_id.clone(),
                    rooms,
                    ..Default::default()
                };
                out.push((
                    self.call(Member::LocalRoomState(v1::LocalRoomStateCall {
                        node_rooms: Some(node_rooms),
                    })),
                    CallKind::Other,
                ));
                self.schedule(at.plus_millis(30_000), Happening::RoomStates);
            }
        }
    }

    fn room_snapshot(&self, room: usize) -> lk::Room {
        let mut snapshot = self.rooms[room].room.clone();
        snapshot.num_participants = self.rooms[room]
            .participants
            .iter()
            .filter(|p| p.info.joined_at > 0 && !p.left)
            .count() as u32;
        snapshot.num_publishers = self.rooms[room]
            .participants
            .iter()
            .filter(|p| !p.tracks.is_empty() && !p.left)
            .count() as u32;
        snapshot
    }

    fn minimal_room(&self, room: usize) -> lk::Room {
        lk::Room {
            sid: self.rooms[room].room.sid.clone(),
            name: self.rooms[room].room.name.clone(),
            ..Default::default()
        }
    }

    fn stats(
        &mut self,
        room: usize,
        participant: usize,
        out: &mut Vec<(v1::TelemetryCall, CallKind)>,
    ) {
        let sim = &self.rooms[room].participants[participant];
        if sim.left || !sim.active {
            return;
        }
        let interval = self.stats_interval_ms;
        let seconds = interval as f64 / 1000.0;
        let start = self.now.plus_millis(-interval);
        let bad = self.now < sim.bad_until || self.rng.random_range(0..40) == 0;
        let pid = sim.info.sid.clone();
        let room_id = self.rooms[room].room.sid.clone();
        let room_name = self.rooms[room].room.name.clone();
        // Upstream: what this participant publishes.
        let tracks = self.rooms[room].participants[participant].tracks.clone();
        for track in &tracks {
            let stat = self.media_stat(&track.info, track.muted, seconds, start, bad);
            out.push((
                self.stats_call(
                    &room_id,
                    &room_name,
                    &pid,
                    &track.info,
                    lk::StreamType::Upstream,
                    stat,
                ),
                CallKind::Stats,
            ));
        }
        // Downstream: what it receives.
        let subscriptions = self.rooms[room].participants[participant].subscriptions.clone();
        for (publisher, track) in subscriptions {
            let source = &self.rooms[room].participants[publisher];
            if source.left {
                continue;
            }
            let info = source.tracks[track].info.clone();
            let muted = source.tracks[track].muted;
            let mut stat = self.media_stat(&info, muted, seconds, start, bad);
            // A subscriber gets one simulcast layer.
            if stat.streams.len() > 1 {
                let layer = self.rng.random_range(0..stat.streams.len());
                stat.streams = vec![stat.streams.swap_remove(layer)];
            }
            out.push((
                self.stats_call(
                    &room_id,
                    &room_name,
                    &pid,
                    &info,
                    lk::StreamType::Downstream,
                    stat,
                ),
                CallKind::Stats,
            ));
        }
        // Data channel bytes, with bursts; signalling bytes.
        if self.rooms[room].participants[participant].data_channel {
            let burst = self.rng.random_range(0..12) == 0;
            let bytes_per_second = if burst {
                self.rng.random_range(1_000_000..5_000_000)
            } else {
                self.rng.random_range(2_000..20_000)
            };
            let bytes = (bytes_per_second as f64 * seconds) as u64;
            let key = v1::StatsKey {
                stream_type: lk::StreamType::Upstream as i32,
                participant_id: pid.clone(),
                track_id: format!("TR_DT{pid}"),
                ..Default::default()
            };
            let stat = lk::AnalyticsStat {
                streams: vec![lk::AnalyticsStream {
                    primary_bytes: bytes,
                    primary_packets: (bytes / 1000).max(1) as u32,
                    ..Default::default()
                }],
                ..Default::default()
            };
            out.push((self.raw_stats_call(&room_id, &room_name, key, stat), CallKind::Stats));
        }
        let signal = self.rng.random_range(200..2000);
        let key = v1::StatsKey {
            stream_type: lk::StreamType::Downstream as i32,
            participant_id: pid.clone(),
            track_id: format!("TR_SG{pid}"),
            ..Default::default()
        };
        let stat = lk::AnalyticsStat {
            streams: vec![lk::AnalyticsStream {
                primary_bytes: signal,
                primary_packets: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        out.push((self.raw_stats_call(&room_id, &room_name, key, stat), CallKind::Stats));
        let next = self.now.plus_millis(interval);
        self.schedule(next, Happening::Stats(room, participant));
    }

    fn media_stat(
        &mut self,
        track: &lk::TrackInfo,
        muted: bool,
        seconds: f64,
        start: UnixMillis,
        bad: bool,
    ) -> lk::AnalyticsStat {
        let end = start.plus_millis((seconds * 1000.0) as i64);
        let loss_rate =
            if bad { self.rng.random_range(0.03..0.12) } else { self.rng.random_range(0.0..0.005) };
        let rtt = if bad { self.rng.random_range(150..600) } else { self.rng.random_range(20..90) };
        let jitter = if bad {
            self.rng.random_range(20_000..80_000)
        } else {
            self.rng.random_range(1_000..8_000)
        };
        let mut stream =
            |bits_per_second: f64, packet_bytes: f64, ssrc: u32, frames_per_second: f64| {
                let bytes = if muted {
                    0.0
                } else {
                    bits_per_second / 8.0 * seconds * self.rng.random_range(0.9..1.1)
                };
                let packets = (bytes / packet_bytes).round() as u32;
                let lost = (f64::from(packets) * loss_rate).round() as u32;
                lk::AnalyticsStream {
                    ssrc,
                    primary_packets: packets,
                    primary_bytes: bytes as u64,
                    retransmit_packets: lost / 2,
                    retransmit_bytes: (f64::from(lost / 2) * packet_bytes) as u64,
                    packets_lost: lost,
                    frames: (frames_per_second * seconds) as u32,
                    rtt,
                    jitter,
                    nacks: lost,
                    plis: u32::from(bad && frames_per_second > 0.0),
                    start_time: Some(start.to_timestamp()),
                    end_time: Some(end.to_timestamp()),
                    ..Default::default()
                }
            };
        let streams = if track.r#type == lk::TrackType::Video as i32 {
            [(1_500_000.0, 1, 30.0), (500_000.0, 2, 30.0), (150_000.0, 3, 15.0)]
                .into_iter()
                .enumerate()
                .map(|(layer, (bps, ssrc, fps))| {
                    let mut s = stream(bps, 1100.0, ssrc, fps);
                    s.video_layers = vec![lk::AnalyticsVideoLayer {
                        layer: 2 - layer as i32,
                        packets: s.primary_packets,
                        bytes: s.primary_bytes,
                        frames: s.frames,
                    }];
                    s
                })
                .collect()
        } else {
            vec![stream(32_000.0, 80.0, 10, 0.0)]
        };
        let score = if muted {
            0.0
        } else if bad {
            self.rng.random_range(2.0..3.5)
        } else {
            self.rng.random_range(4.0..4.6)
        };
        lk::AnalyticsStat { score, streams, mime: track.mime_type.clone(), ..Default::default() }
    }

    fn stats_call(
        &self,
        room_id: &str,
        room_name: &str,
        participant_id: &str,
        track: &lk::TrackInfo,
        direction: lk::StreamType,
        stat: lk::AnalyticsStat,
    ) -> v1::TelemetryCall {
        let key = v1::StatsKey {
            country: "DE".to_owned(),
            stream_type: direction as i32,
            participant_id: participant_id.to_owned(),
            track_id: track.sid.clone(),
            track_source: track.source,
            track_type: track.r#type,
            track: true,
        };
        self.raw_stats_call(room_id, room_name, key, stat)
    }

    fn raw_stats_call(
        &self,
        room_id: &str,
        room_name: &str,
        key: v1::StatsKey,
        stat: lk::AnalyticsStat,
    ) -> v1::TelemetryCall {
        self.call(Member::TrackStats(v1::TrackStatsCall {
            room_id: room_id.to_owned(),
            room_name: room_name.to_owned(),
            key: Some(key),
            stat: Some(stat),
        }))
    }

    fn leave(
        &mut self,
        room: usize,
        participant: usize,
        out: &mut Vec<(v1::TelemetryCall, CallKind)>,
    ) {
        if self.rooms[room].participants[participant].left {
            return;
        }
        let pid = self.rooms[room].participants[participant].info.sid.clone();
        let identity = self.rooms[room].participants[participant].info.identity.clone();
        let tracks = std::mem::take(&mut self.rooms[room].participants[participant].tracks);
        for track in tracks {
            out.push((
                self.call(Member::TrackUnpublished(v1::TrackPublishCall {
                    room: Some(self.minimal_room(room)),
                    participant_id: pid.clone(),
                    identity: identity.clone(),
                    track: Some(track.info),
                    ..Default::default()
                })),
                CallKind::Event,
            ));
        }
        self.rooms[room].participants[participant].left = true;
        let mut info = self.rooms[room].participants[participant].info.clone();
        info.state = lk::participant_info::State::Disconnected as i32;
        info.disconnect_reason = lk::DisconnectReason::ClientInitiated as i32;
        out.push((
            self.call(Member::ParticipantLeft(v1::ParticipantLeftCall {
                room: Some(self.room_snapshot(room)),
                participant: Some(info),
                should_send_event: None,
                guard: String::new(),
            })),
            CallKind::Event,
        ));
    }

    /// Everyone leaves, every room ends.
    fn finish(&mut self, at: UnixMillis, out: &mut Vec<(v1::TelemetryCall, CallKind)>) {
        self.now = at;
        for room in 0..self.rooms.len() {
            if self.rooms[room].room.creation_time == 0 || self.rooms[room].ended {
                continue;
            }
            for participant in 0..self.rooms[room].participants.len() {
                if self.rooms[room].participants[participant].info.joined_at > 0 {
                    self.leave(room, participant, out);
                }
            }
            if let Some(mut info) = self.egress.take() {
                info.status = lk::EgressStatus::EgressComplete as i32;
                out.push((
                    self.call(Member::EgressEnded(v1::EgressCall { info: Some(info) })),
                    CallKind::Event,
                ));
            }
            self.rooms[room].ended = true;
            out.push((
                self.call(Member::RoomEnded(v1::RoomCall { room: Some(self.room_snapshot(room)) })),
                CallKind::Event,
            ));
        }
    }
}

/// Prints a summary for a person.
pub fn print_summary(summary: &Summary, took: Duration) {
    eprintln!(
        "simulate: {} calls in {} requests, {:.1} s: {} accepted ({} stats samples, {} events), {} rejected, {} not sent",
        summary.calls + summary.unsent,
        summary.requests,
        took.as_secs_f64(),
        summary.accepted,
        summary.accepted_stats,
        summary.accepted_events,
        summary.rejected,
        summary.unsent
    );
}

#[cfg(test)]
mod tests;
