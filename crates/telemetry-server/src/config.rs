//! The configuration: one tree of per-subsystem sections, loaded in layers (compiled-in defaults,
//! a file, `RTC_TELEMETRY_*` environment variables, command-line flags) and validated at start.
//!
//! Parsing reads the environment through a key-value list the caller passes in, so tests pass
//! their own and the process environment is never read or changed here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The commented default configuration, compiled in (`rtc-telemetry config print-default`).
pub const DEFAULT_CONFIG: &str = include_str!("config/default.toml");

/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "RTC_TELEMETRY_";

/// Variables with the prefix that are not configuration: the log filter.
pub const ENV_RESERVED: &[&str] = &["RTC_TELEMETRY_LOG"];

/// The key and secret `--dev` uses when no key is configured.
pub const DEV_KEY: (&str, &str) = ("devkey", "secret");

/// Everything the service is configured with.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long a graceful shutdown may take.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace_period: Duration,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The gRPC listener.
    pub grpc: GrpcConfig,
    /// The analytics store.
    pub store: StoreConfig,
    /// The telemetry core.
    pub stats: StatsConfig,
    /// Bounds on what callers' ids make the service hold.
    pub limits: LimitsConfig,
    /// API keys.
    pub keys: Vec<KeyConfig>,
    /// Webhooks.
    pub webhooks: WebhooksConfig,
    /// This instance among others on one database.
    pub cluster: ClusterConfig,
    /// Janus ingest (`POST /v1/ingest/janus`).
    pub janus: JanusConfig,
    /// The call quality detectors (DESIGN.md, "Call quality"; `telemetry_core::quality`).
    pub quality: QualityConfig,
    /// The longest a token may still be valid for: a token whose `exp` is further than this from
    /// now is refused.
    #[serde(deserialize_with = "duration")]
    pub max_token_lifetime: Duration,
}

/// The `[quality]` section: thresholds and hysteresis of the issue detectors (see
/// `telemetry_core::quality::QualityConfig`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Whether the detectors run.
    pub enabled: bool,
    /// A condition opens an issue once it held this long (sample time).
    #[serde(deserialize_with = "duration")]
    pub open_after: Duration,
    /// An issue closes once its condition did not hold this long (sample time).
    #[serde(deserialize_with = "duration")]
    pub close_after: Duration,
    /// `packet_loss` above this percentage.
    pub loss_pct: f64,
    /// `jitter` above this many milliseconds.
    pub jitter_ms: f64,
    /// `rtt` above this many milliseconds.
    pub rtt_ms: f64,
    /// `low_score` under this score (0 to 5).
    pub min_score: f64,
}

/// Janus ingest: how Janus's events are mapped, and the caps on the state they make (see
/// `telemetry_janus::AdapterConfig`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JanusConfig {
    /// A VideoRoom room is finished once its last participant has been gone this long.
    #[serde(deserialize_with = "duration")]
    pub room_idle_timeout: Duration,
    /// A Janus session without an event for this long is taken as gone.
    #[serde(deserialize_with = "duration")]
    pub session_idle_timeout: Duration,
    /// Janus servers with state.
    pub max_emitters: usize,
    /// Sessions of one Janus server.
    pub max_sessions: usize,
    /// Handles of one session.
    pub max_handles_per_session: usize,
    /// Rooms of one Janus server.
    pub max_rooms: usize,
    /// Tracks or subscribed streams of one handle.
    pub max_streams_per_handle: usize,
}

/// This instance among several sharing a database, and cluster mode (ingest through NATS
/// JetStream; see `crate::cluster`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster mode: ingest publishes calls to JetStream instead of applying them here. Needs
    /// `store.backend = "postgres"`.
    pub enabled: bool,
    /// This instance's id (claims and endpoint listings are made under it); empty: the host name
    /// and the process id.
    pub instance_id: String,
    /// The NATS server (`nats://host:port`).
    pub nats_url: String,
    /// The JetStream stream (file storage), created at start if missing.
    pub stream: String,
    /// Calls of partition `n` are published on `<subject_prefix>.<n>`.
    pub subject_prefix: String,
    /// Rooms are hashed to this many partitions; fixed for the life of a stream.
    pub partitions: u32,
    /// How long a partition's lease lasts without renewal.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
}

/// Most partitions a cluster may have: every instance holds a consumer per partition it owns,
/// and 1,024 spreads rooms over far more instances than one database serves.
pub const MAX_PARTITIONS: u32 = 1024;

/// The HTTP listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Largest request body, as sent.
    pub max_body_bytes: usize,
    /// Most calls in one request (or one gRPC message).
    pub max_calls_per_request: usize,
    /// Largest body after decompression.
    pub max_decompressed_bytes: usize,
    /// Ingest requests processed at once.
    pub max_in_flight: usize,
    /// Timeout of a request.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
}

/// The gRPC listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Largest message.
    pub max_message_bytes: usize,
}

/// Which store, where.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The backend.
    pub backend: StoreBackend,
    /// Folder of the SQLite database.
    pub data_dir: PathBuf,
    /// How SQLite syncs commits.
    pub synchronous: SynchronousMode,
    /// The PostgreSQL database (`postgres://user@host:port/database`).
    pub url: String,
    /// Most PostgreSQL connections this instance opens.
    pub max_connections: usize,
    /// How long data is kept.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
}

/// A store backend.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded SQLite store.
    Sqlite,
    /// A PostgreSQL database, which several instances can share.
    Postgres,
}

/// How SQLite syncs commits.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SynchronousMode {
    /// Every commit.
    Full,
    /// At checkpoints.
    Normal,
}

/// The telemetry core's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Flush interval.
    #[serde(deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// Reap delay of closed workers.
    #[serde(deserialize_with = "duration")]
    pub worker_cleanup_wait: Duration,
    /// Shed stats samples above this many outputs waiting.
    pub max_pending_outputs: usize,
    /// Samples per track between flushes.
    pub max_samples_per_track: u32,
    /// Full rooms in track webhooks.
    pub full_room_in_track_webhooks: bool,
}

/// Bounds on what callers' ids make the service hold: caps on the strings a caller chooses,
/// checked on every ingest path (a call or a recorder item with a longer one is rejected, naming
/// the field and the cap), and on the state keyed by them (see `telemetry_core::CoreLimits`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest string, in bytes, that becomes a key, an id or a metric label (sids, identities,
    /// room names, node ids, guards, countries, egress and ingress ids, error texts, mime types).
    pub max_id_bytes: usize,
    /// Longest other string, in bytes (display names, metadata, reasons, any other text).
    pub max_text_bytes: usize,
    /// Live reporting nodes.
    pub max_nodes: usize,
    /// A node without calls for this long is forgotten.
    #[serde(deserialize_with = "duration")]
    pub node_idle_timeout: Duration,
    /// Stats workers (participants in rooms).
    pub max_participants: usize,
    /// Tracks per participant's worker.
    pub max_tracks_per_participant: usize,
    /// A participant (or track) without samples or calls for this long is closed (dropped).
    #[serde(deserialize_with = "duration")]
    pub participant_idle_timeout: Duration,
    /// Rooms tracked in the room gauge.
    pub max_open_rooms: usize,
}

/// An API key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key (the JWT issuer).
    pub key: String,
    /// The HMAC secret.
    pub secret: String,
    /// What tokens of this key may do.
    pub roles: Vec<Role>,
}

/// What a token may do.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Report telemetry.
    Ingest,
    /// Query.
    Read,
    /// Change webhooks, flush, retry and replay deliveries.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// Webhook delivery.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Timeout of one attempt.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Waits between attempts.
    #[serde(deserialize_with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Static endpoints.
    pub endpoints: Vec<EndpointConfig>,
    /// Requests in flight at once, over every endpoint.
    pub max_in_flight: usize,
    /// Requests in flight at once to one endpoint: a hung endpoint holds no more than this.
    pub max_in_flight_per_endpoint: usize,
    /// How long a dispatcher's claim on a delivery lasts: after it, another instance takes the
    /// delivery over. Also how long an instance's listing of its configured endpoints lasts.
    #[serde(deserialize_with = "duration")]
    pub claim_lease: Duration,
}

/// A webhook endpoint (in the configuration file, or created through the API).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Where to POST.
    pub url: String,
    /// How to sign.
    #[serde(default = "default_signing")]
    pub signing: Signing,
    /// LiveKit signing: the JWT issuer.
    #[serde(default)]
    pub api_key: String,
    /// LiveKit: the HMAC key; standard: `whsec_` and base64.
    pub secret: String,
    /// Only these events, if any.
    #[serde(default)]
    pub include_events: Vec<String>,
    /// Not these events (ignored if `include_events` is set).
    #[serde(default)]
    pub exclude_events: Vec<String>,
}

fn default_signing() -> Signing {
    Signing::Livekit
}

/// How a webhook endpoint's requests are signed.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Signing {
    /// LiveKit's JWT in `Authorization`.
    Livekit,
    /// Standard Webhooks headers.
    Standard,
}

impl From<Signing> for telemetry_store::model::Signing {
    fn from(signing: Signing) -> Self {
        match signing {
            Signing::Livekit => Self::Livekit,
            Signing::Standard => Self::Standard,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn durations<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts.iter().map(|text| parse_duration(text).map_err(serde::de::Error::custom)).collect()
}

/// Parses a duration with units: `"500ms"`, `"30s"`, `"3m"`, `"1h 30m"`, `"30d"`.
///
/// # Errors
///
/// Returns a message saying what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| {
        format!("invalid duration {text:?}: {error} (write a number and a unit, like \"30s\")")
    })
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A layer is not valid TOML.
    #[error("{origin}: not valid TOML: {message}")]
    Syntax {
        /// Which layer.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A key has a bad value, is unknown, or two keys disagree.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key, dotted (`stats.flush_interval`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

/// Overrides that come from command-line flags.
#[derive(Clone, Debug, Default)]
pub struct FlagOverrides {
    /// `--http-bind`.
    pub http_bind: Option<SocketAddr>,
    /// `--grpc-bind`.
    pub grpc_bind: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--dev`: add the development key if none is configured.
    pub dev: bool,
}

/// Loads the configuration: defaults, then `file_text` (from `file_name`), then `environment`
/// (only `RTC_TELEMETRY_*` entries are read), then `flags`; and validates it.
///
/// # Errors
///
/// Returns the first problem found, naming the key.
pub fn load(
    file: Option<(&str, &str)>,
    environment: &[(String, String)],
    flags: &FlagOverrides,
) -> Result<Config, ConfigError> {
    let mut tree = parse_layer("the default configuration", DEFAULT_CONFIG)?;
    if let Some((name, text)) = file {
        let layer = parse_layer(&format!("config file `{name}`"), text)?;
        merge(&mut tree, layer, "")?;
    }
    for (name, value) in environment {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else { continue };
        if ENV_RESERVED.contains(&name.as_str()) {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        let dotted = keys.join(".");
        if keys.iter().any(String::is_empty) {
            return Err(invalid(dotted, format!("environment variable `{name}` names no key")));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("value = {value}"))
            .ok()
            .and_then(|mut table| table.remove("value"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        set(&mut tree, &keys, parsed)
            .map_err(|message| invalid(&dotted, format!("{message} (from `{name}`)")))?;
    }
    let mut config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|error| {
            let key = error.path().to_string();
            invalid(key, error.into_inner().to_string())
        })?;
    if let Some(bind) = flags.http_bind {
        config.http.bind = bind;
    }
    if let Some(bind) = flags.grpc_bind {
        config.grpc.bind = bind;
    }
    if let Some(dir) = &flags.data_dir {
        config.store.data_dir = dir.clone();
    }
    if flags.dev && config.keys.is_empty() {
        config.keys.push(KeyConfig {
            key: DEV_KEY.0.to_owned(),
            secret: DEV_KEY.1.to_owned(),
            roles: vec![Role::Ingest, Role::Read, Role::Admin],
        });
    }
    validate(&config)?;
    Ok(config)
}

fn parse_layer(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|error| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: error.to_string(),
    })
}

/// Merges `layer` into `tree`: tables key by key, everything else replaced.
fn merge(tree: &mut toml::Table, layer: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (key, value) in layer {
        let dotted = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (tree.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge(existing, table, &dotted)?
            }
            (Some(_), toml::Value::Table(_)) => {
                return Err(invalid(dotted, "expected a value, found a table"));
            }
            (_, value) => {
                tree.insert(key, value);
            }
        }
    }
    Ok(())
}

fn set(tree: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().expect("at least one key");
    let mut table = tree;
    for key in parents {
        table = match table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(table) => table,
            _ => return Err(format!("`{key}` is not a section")),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn validate_limits(config: &Config) -> Result<(), ConfigError> {
    let limits = &config.limits;
    for (key, value) in [
        ("limits.max_nodes", limits.max_nodes),
        ("limits.max_participants", limits.max_participants),
        ("limits.max_tracks_per_participant", limits.max_tracks_per_participant),
        ("limits.max_open_rooms", limits.max_open_rooms),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    // A node's id is held by its tracks until the flush after its last sample, and a worker must
    // outlive a flush without samples: both timeouts are at least one flush interval.
    let floor = config.stats.flush_interval;
    for (key, timeout) in [
        ("limits.node_idle_timeout", limits.node_idle_timeout),
        ("limits.participant_idle_timeout", limits.participant_idle_timeout),
    ] {
        if timeout < floor {
            return Err(invalid(key, "must be at least `stats.flush_interval`"));
        }
    }
    Ok(())
}

fn validate_quality(quality: &QualityConfig) -> Result<(), ConfigError> {
    for (key, value, max) in [
        ("quality.loss_pct", quality.loss_pct, 100.0),
        ("quality.jitter_ms", quality.jitter_ms, f64::MAX),
        ("quality.rtt_ms", quality.rtt_ms, f64::MAX),
        ("quality.min_score", quality.min_score, 5.0),
    ] {
        if !value.is_finite() || !(0.0..=max).contains(&value) {
            return Err(invalid(key, format!("must be a number from 0 to {max}")));
        }
    }
    for (key, duration) in
        [("quality.open_after", quality.open_after), ("quality.close_after", quality.close_after)]
    {
        if duration > Duration::from_secs(3600) {
            return Err(invalid(key, "must be at most 1h"));
        }
    }
    Ok(())
}

fn validate_janus(janus: &JanusConfig) -> Result<(), ConfigError> {
    for (key, timeout) in [
        ("janus.room_idle_timeout", janus.room_idle_timeout),
        ("janus.session_idle_timeout", janus.session_idle_timeout),
    ] {
        if timeout.is_zero() {
            return Err(invalid(key, "must be more than zero"));
        }
    }
    // Janus reports a live session at least every `stats_period` (at most a minute).
    if janus.session_idle_timeout < Duration::from_secs(60) {
        return Err(invalid(
            "janus.session_idle_timeout",
            "must be at least 1m: a session with a PeerConnection reports every `stats_period` of Janus, which may be up to a minute",
        ));
    }
    for (key, value) in [
        ("janus.max_emitters", janus.max_emitters),
        ("janus.max_sessions", janus.max_sessions),
        ("janus.max_handles_per_session", janus.max_handles_per_session),
        ("janus.max_rooms", janus.max_rooms),
        ("janus.max_streams_per_handle", janus.max_streams_per_handle),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    Ok(())
}

fn validate_cluster(config: &Config) -> Result<(), ConfigError> {
    let cluster = &config.cluster;
    if !cluster.enabled {
        return Ok(());
    }
    if config.store.backend != StoreBackend::Postgres {
        return Err(invalid(
            "cluster.enabled",
            "cluster mode needs `store.backend = \"postgres\"` (the instances share one PostgreSQL database)",
        ));
    }
    let url = &cluster.nats_url;
    if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() <= "nats://".len() {
        return Err(invalid("cluster.nats_url", "must be a nats:// or tls:// URL"));
    }
    if !is_token(&cluster.stream) {
        return Err(invalid(
            "cluster.stream",
            "must be a JetStream stream name: not empty, no spaces, `.`, `*`, `>`, `/` or `\\`",
        ));
    }
    if !cluster.subject_prefix.split('.').all(is_token) {
        return Err(invalid(
            "cluster.subject_prefix",
            "must be NATS subject tokens joined by `.`: none empty, no spaces or wildcards",
        ));
    }
    if cluster.partitions == 0 || cluster.partitions > MAX_PARTITIONS {
        return Err(invalid(
            "cluster.partitions",
            format!("must be between 1 and {MAX_PARTITIONS}"),
        ));
    }
    if cluster.lease < Duration::from_secs(1) {
        return Err(invalid("cluster.lease", "must be at least 1s"));
    }
    Ok(())
}

/// A NATS name token: not empty, no whitespace, no `.`, wildcards or path separators.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && !text.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

fn validate(config: &Config) -> Result<(), ConfigError> {
    let positive = |key: &str, duration: Duration| {
        if duration.is_zero() { Err(invalid(key, "must be more than zero")) } else { Ok(()) }
    };
    positive("shutdown_grace_period", config.shutdown_grace_period)?;
    positive("http.request_timeout", config.http.request_timeout)?;
    positive("stats.flush_interval", config.stats.flush_interval)?;
    positive("store.retention", config.store.retention)?;
    positive("webhooks.request_timeout", config.webhooks.request_timeout)?;
    if config.max_token_lifetime < Duration::from_secs(60) {
        return Err(invalid(
            "max_token_lifetime",
            "must be at least 1m (a shorter bound would refuse tokens minted moments ago)",
        ));
    }
    if config.limits.max_id_bytes < 16 {
        return Err(invalid(
            "limits.max_id_bytes",
            "must be at least 16 (LiveKit's sids alone are 15 bytes)",
        ));
    }
    if config.limits.max_text_bytes < config.limits.max_id_bytes {
        return Err(invalid("limits.max_text_bytes", "must be at least `limits.max_id_bytes`"));
    }
    if config.http.max_calls_per_request == 0 {
        return Err(invalid("http.max_calls_per_request", "must be at least 1"));
    }
    if config.http.max_body_bytes == 0 {
        return Err(invalid("http.max_body_bytes", "must be more than zero"));
    }
    if config.http.max_decompressed_bytes < config.http.max_body_bytes {
        return Err(invalid(
            "http.max_decompressed_bytes",
            "must be at least `http.max_body_bytes`",
        ));
    }
    if config.http.max_in_flight == 0 {
        return Err(invalid("http.max_in_flight", "must be at least 1"));
    }
    if config.stats.max_samples_per_track == 0 {
        return Err(invalid("stats.max_samples_per_track", "must be at least 1"));
    }
    validate_limits(config)?;
    validate_janus(&config.janus)?;
    validate_quality(&config.quality)?;
    if config.store.backend == StoreBackend::Postgres {
        let url = &config.store.url;
        if url.is_empty() {
            return Err(invalid(
                "store.url",
                "store.backend = \"postgres\" needs the database's URL (postgres://user@host:port/database)",
            ));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("store.url", "must be a postgres:// or postgresql:// URL"));
        }
        if config.store.max_connections < 2 {
            return Err(invalid("store.max_connections", "must be at least 2"));
        }
    }
    validate_cluster(config)?;
    if config.webhooks.claim_lease <= config.webhooks.request_timeout {
        return Err(invalid(
            "webhooks.claim_lease",
            "must be longer than `webhooks.request_timeout`, or a slow attempt's delivery is taken over while it is still being sent",
        ));
    }
    if config.keys.is_empty() {
        return Err(invalid(
            "keys",
            "no API keys configured: add a [[keys]] table (key, secret, roles), or run with --dev",
        ));
    }
    for (index, key) in config.keys.iter().enumerate() {
        if key.key.is_empty() {
            return Err(invalid(format!("keys[{index}].key"), "must not be empty"));
        }
        if key.secret.is_empty() {
            return Err(invalid(format!("keys[{index}].secret"), "must not be empty"));
        }
        if key.roles.is_empty() {
            return Err(invalid(
                format!("keys[{index}].roles"),
                "give at least one of \"ingest\", \"read\", \"admin\"",
            ));
        }
        if config.keys[..index].iter().any(|other| other.key == key.key) {
            return Err(invalid(
                format!("keys[{index}].key"),
                format!("`{}` is configured twice", key.key),
            ));
        }
    }
    if config.webhooks.retry_schedule.is_empty() {
        return Err(invalid("webhooks.retry_schedule", "give at least one wait"));
    }
    for (key, bound) in [
        ("webhooks.max_in_flight", config.webhooks.max_in_flight),
        ("webhooks.max_in_flight_per_endpoint", config.webhooks.max_in_flight_per_endpoint),
    ] {
        if bound == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    for (index, endpoint) in config.webhooks.endpoints.iter().enumerate() {
        validate_endpoint(endpoint).map_err(|(field, message)| {
            invalid(format!("webhooks.endpoints[{index}].{field}"), message)
        })?;
    }
    Ok(())
}

/// Checks one webhook endpoint; on a problem returns the field (its configuration name) and what
/// is wrong.
///
/// # Errors
///
/// `(field, message)` of the first problem.
pub fn validate_endpoint(endpoint: &EndpointConfig) -> Result<(), (&'static str, String)> {
    if !(endpoint.url.starts_with("http://") || endpoint.url.starts_with("https://"))
        || reqwest::Url::parse(&endpoint.url).is_err()
    {
        return Err(("url", format!("{:?} is not an http:// or https:// URL", endpoint.url)));
    }
    match endpoint.signing {
        Signing::Livekit => {
            if endpoint.api_key.is_empty() {
                return Err((
                    "api_key",
                    "livekit signing needs the API key (the JWT issuer)".to_owned(),
                ));
            }
            if endpoint.secret.is_empty() {
                return Err(("secret", "must not be empty".to_owned()));
            }
        }
        Signing::Standard => {
            telemetry_core::signing::standard_headers(&endpoint.secret, "msg_check", 0, b"")
                .map_err(|error| ("secret", error.to_string()))?;
        }
    }
    for (field, names) in
        [("include_events", &endpoint.include_events), ("exclude_events", &endpoint.exclude_events)]
    {
        if let Some(name) = names.iter().find(|name| !telemetry_core::webhook_names::is_known(name))
        {
            let known: Vec<&str> = telemetry_core::webhook_names::ALL
                .into_iter()
                .chain(telemetry_core::webhook_names::OPT_IN)
                .collect();
            return Err((field, format!("unknown event `{name}`; known: {}", known.join(", "))));
        }
    }
    Ok(())
}

impl Config {
    /// The store this configuration names.
    pub fn store_config(&self) -> telemetry_store::StoreConfig {
        match self.store.backend {
            StoreBackend::Sqlite => {
                telemetry_store::StoreConfig::Sqlite(telemetry_store::sqlite::SqliteConfig {
                    path: self.store.data_dir.join("telemetry.sqlite3"),
                    synchronous: match self.store.synchronous {
                        SynchronousMode::Full => telemetry_store::sqlite::Synchronous::Full,
                        SynchronousMode::Normal => telemetry_store::sqlite::Synchronous::Normal,
                    },
                    checkpoint_pages: telemetry_store::sqlite::CHECKPOINT_PAGES,
                })
            }
            StoreBackend::Postgres => {
                telemetry_store::StoreConfig::Postgres(telemetry_store::postgres::PostgresConfig {
                    url: self.store.url.clone(),
                    max_connections: self.store.max_connections,
                })
            }
        }
    }

    /// This instance's id: `cluster.instance_id`, or the host name and the process id (and a
    /// number after the first, for several services in one process, as tests run them).
    pub fn instance_id(&self) -> String {
        static SERVICES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if !self.cluster.instance_id.is_empty() {
            return self.cluster.instance_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let pid = std::process::id();
        match SERVICES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
            0 => format!("{host}-{pid}"),
            later => format!("{host}-{pid}-{}", later + 1),
        }
    }

    /// The Janus adapter's settings from this configuration.
    pub fn janus_adapter(&self) -> telemetry_janus::AdapterConfig {
        let janus = &self.janus;
        telemetry_janus::AdapterConfig {
            room_idle_timeout: janus.room_idle_timeout,
            session_idle_timeout: janus.session_idle_timeout,
            limits: telemetry_janus::AdapterLimits {
                max_emitters: janus.max_emitters,
                max_sessions: janus.max_sessions,
                max_handles_per_session: janus.max_handles_per_session,
                max_rooms: janus.max_rooms,
                max_streams_per_handle: janus.max_streams_per_handle,
            },
        }
    }

    /// The core's settings from this configuration.
    pub fn core(&self, node_id: &str) -> telemetry_core::CoreConfig {
        telemetry_core::CoreConfig {
            node_id: node_id.to_owned(),
            flush_interval: self.stats.flush_interval,
            worker_cleanup_wait: self.stats.worker_cleanup_wait,
            max_pending_outputs: self.stats.max_pending_outputs,
            max_samples_per_track: self.stats.max_samples_per_track,
            full_room_in_track_webhooks: self.stats.full_room_in_track_webhooks,
            analytics_key: String::new(),
            limits: telemetry_core::CoreLimits {
                max_nodes: self.limits.max_nodes,
                node_idle_timeout: self.limits.node_idle_timeout,
                max_participants: self.limits.max_participants,
                max_tracks_per_participant: self.limits.max_tracks_per_participant,
                participant_idle_timeout: self.limits.participant_idle_timeout,
                max_open_rooms: self.limits.max_open_rooms,
            },
            quality: telemetry_core::quality::QualityConfig {
                enabled: self.quality.enabled,
                open_after: self.quality.open_after,
                close_after: self.quality.close_after,
                loss_pct: self.quality.loss_pct,
                jitter_ms: self.quality.jitter_ms,
                rtt_ms: self.quality.rtt_ms,
                min_score: self.quality.min_score,
            },
        }
    }
}

#[cfg(test)]
mod tests;
