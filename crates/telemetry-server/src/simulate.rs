//! `rtc-telemetry simulate`: the traffic of the simulated SFU (`telemetry_sim`) sent to a running
//! service over HTTP, deterministic for a given `--seed` and arguments.
//!
//! With `--speed 0` the simulated time ends now and the calls go out as fast as the service takes
//! them (a backfill); otherwise simulated time starts now and runs `--speed` times real time.
//!
//! With `--nats URL` the calls are published straight to a cluster's JetStream stream instead,
//! by the partition rule (`crate::cluster::partition`), as an SFU may do itself: every call
//! counts as accepted once JetStream acknowledged it (the owner of its partition validates it).

use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use telemetry_core::{Clock as _, SystemClock};
use telemetry_proto::v1;
use telemetry_sim::{CallKind, SimulateArgs, WireFormat, World};

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
    args.check().map_err(anyhow::Error::msg)?;
    let real_start = SystemClock.now();
    let duration_ms = i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX);
    let sim_start =
        if args.speed == 0.0 { real_start.plus_millis(-duration_ms) } else { real_start };
    let mut world = World::new(&args, sim_start);
    for trouble in world.troubles() {
        eprintln!(
            "simulate: {} on participant {} of room {} from {} until {}",
            trouble.kind.as_str(),
            trouble.participant_sid,
            trouble.room,
            crate::api::rfc3339(trouble.from),
            crate::api::rfc3339(trouble.until)
        );
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let endpoint = format!("{}/v1/telemetry", args.url.trim_end_matches('/'));
    let nats = match &args.nats {
        Some(url) => Some(
            crate::cluster::Cluster::connect(
                &crate::config::ClusterConfig {
                    enabled: true,
                    instance_id: "simulate".to_owned(),
                    nats_url: url.clone(),
                    stream: args.nats_stream.clone(),
                    subject_prefix: args.nats_subject_prefix.clone(),
                    partitions: args.nats_partitions,
                    lease: Duration::from_secs(10),
                },
                "simulate",
                Duration::from_secs(10),
            )
            .await?,
        ),
        None => None,
    };
    let sink = Sink { client: &client, endpoint: &endpoint, nats: nats.as_ref() };
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
                    && !send(&sink, &args, &mut token, &mut pending, &mut summary).await
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
            if !send(&sink, &args, &mut token, &mut pending, &mut summary).await {
                break;
            }
        }
    }
    world.finish(sim_end, &mut pending);
    if !pending.is_empty() {
        send(&sink, &args, &mut token, &mut pending, &mut summary).await;
    }
    summary.unsent += pending.len() as u64;
    progress.finish_and_clear();
    Ok(summary)
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

/// Where the calls go: the service's HTTP ingest, or a cluster's JetStream stream.
struct Sink<'a> {
    client: &'a reqwest::Client,
    endpoint: &'a str,
    nats: Option<&'a crate::cluster::Cluster>,
}

/// Publishes the pending calls to JetStream (each with `at` and `nodeId` set), retrying while
/// NATS is unreachable; returns false if it stays so (the calls stay pending).
async fn publish(
    cluster: &crate::cluster::Cluster,
    pending: &mut Vec<(v1::TelemetryCall, CallKind)>,
    summary: &mut Summary,
) -> bool {
    let now = SystemClock.now().to_timestamp();
    let calls: Vec<v1::TelemetryCall> = pending
        .iter()
        .map(|(call, _)| {
            let mut call = call.clone();
            call.at.get_or_insert(now);
            call
        })
        .collect();
    for _attempt in 0..10 {
        summary.requests += 1;
        match cluster.publish(calls.clone(), None).await {
            Ok(_) => {
                for (_, kind) in pending.iter() {
                    summary.calls += 1;
                    summary.accepted += 1;
                    match kind {
                        CallKind::Stats => summary.accepted_stats += 1,
                        CallKind::Event => summary.accepted_events += 1,
                        CallKind::Other => {}
                    }
                }
                pending.clear();
                return true;
            }
            Err(error) => {
                tracing::warn!(error = %error.message, "publishing to JetStream failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    false
}

/// Sends the pending calls as one request, retrying on 429 and 503; returns false if the service
/// is gone (the calls stay pending).
async fn send(
    sink: &Sink<'_>,
    args: &SimulateArgs,
    token: &mut Token,
    pending: &mut Vec<(v1::TelemetryCall, CallKind)>,
    summary: &mut Summary,
) -> bool {
    if let Some(cluster) = sink.nats {
        return publish(cluster, pending, summary).await;
    }
    let (client, endpoint) = (sink.client, sink.endpoint);
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
