//! The deterministic SFU simulator of rtc-telemetry: realistic calls of a LiveKit SFU for a given
//! `--seed` and arguments, generated without IO (the server's `simulate` and `demo` commands send
//! them to a service; benchmarks and tests use them as input).
//!
//! The simulated SFU runs rooms of participants who join (some never get media: aborted joins),
//! become active, publish audio, simulcast video (three layers) and sometimes data, subscribe to
//! each other, mute and unmute, resume after a network change, and leave; one room records an
//! egress. Every `--stats-interval` each active participant reports its media stats (with loss,
//! jitter, RTT and a quality score, and a bad spell now and then), data-channel bytes (with
//! bursts) and signalling bytes; every 30 s the node reports its room states. Trouble can be
//! injected at chosen times (`--trouble`, see [`trouble`]).

pub mod trouble;
mod world;

use std::time::Duration;

use telemetry_core::UnixMillis;
use telemetry_proto::v1;

pub use trouble::{Trouble, TroubleKind, parse_trouble};
pub use world::{AimedTrouble, Calls, World};

/// Arguments of `simulate`: what the simulated SFU runs, and how the server's command sends it.
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
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub duration: Duration,
    /// How often each participant reports its stats.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
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
    /// Publish the calls straight to this NATS server's JetStream stream (`nats://host:port`),
    /// partitioned as a cluster of the service expects (README.md, "Running several
    /// instances"), instead of sending them to `--url`.
    #[arg(long)]
    pub nats: Option<String>,
    /// With `--nats`: the stream (`cluster.stream`; created if missing, as the service does).
    #[arg(long, default_value = "RTC_TELEMETRY")]
    pub nats_stream: String,
    /// With `--nats`: the subject prefix (`cluster.subject_prefix`).
    #[arg(long, default_value = "rtctelemetry.v1.calls")]
    pub nats_subject_prefix: String,
    /// With `--nats`: the partition count (`cluster.partitions`; must be the stream's).
    #[arg(long, default_value_t = 16)]
    pub nats_partitions: u32,
    /// Trouble to inject, `KIND[:ROOM.PARTICIPANT]@FROM..UNTIL` (offsets from the start of the
    /// simulated time; KIND one of lossy-uplink, bad-downlink, frozen-video, high-rtt; without a
    /// target the participant is drawn from the seed); repeatable.
    #[arg(long = "trouble", value_name = "TROUBLE", value_parser = parse_trouble)]
    pub troubles: Vec<Trouble>,
}

impl SimulateArgs {
    /// Checks what no single flag can: each `--trouble`'s target exists and its time range ends
    /// within `--duration`.
    ///
    /// # Errors
    ///
    /// A message naming the option and what is wrong.
    pub fn check(&self) -> Result<(), String> {
        for trouble in &self.troubles {
            if let Some((room, participant)) = trouble.target
                && (room >= self.rooms || participant >= self.participants)
            {
                return Err(format!(
                    "`--trouble` {trouble}: no participant {participant} in room {room} \
                     (`--rooms` {}, `--participants` {}; indices from 0)",
                    self.rooms, self.participants
                ));
            }
            if trouble.until > self.duration {
                return Err(format!(
                    "`--trouble` {trouble}: ends after `--duration` ({})",
                    humantime::format_duration(self.duration)
                ));
            }
        }
        if !self.troubles.is_empty() && (self.rooms == 0 || self.participants == 0) {
            return Err("`--trouble`: there is no participant to aim it at".to_owned());
        }
        Ok(())
    }
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
            nats: None,
            nats_stream: "RTC_TELEMETRY".to_owned(),
            nats_subject_prefix: "rtctelemetry.v1.calls".to_owned(),
            nats_partitions: 16,
            troubles: Vec::new(),
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

/// What a call contributes to a summary of what was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `trackStats`.
    Stats,
    /// A lifecycle call that produces an analytics event.
    Event,
    /// Neither (node room states).
    Other,
}

/// Generates the whole simulation's calls, in call order, the simulated time ending at `end`.
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

/// Parses a duration such as `30s` or `2m` (the `--duration` and `--stats-interval` flags).
///
/// # Errors
///
/// Returns a message for a person when `text` is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| {
        format!("invalid duration {text:?}: {error} (write a number and a unit, like \"30s\")")
    })
}

#[cfg(test)]
mod tests;
