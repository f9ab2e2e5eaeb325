//! `rtc-telemetry demo`: the main job for a newcomer. A dev-mode service on the usual ports, a
//! local webhook receiver that verifies and logs what it receives, and the simulator: first a
//! few minutes of history at full speed (so there is something to look at at once), then live
//! traffic in real time. The history injects a publisher's lossy uplink in its first minute, so
//! there is a quality issue and a room report with it to look at. It prints where to look, and
//! runs until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use telemetry_sim::{SimulateArgs, Trouble, TroubleKind};

use crate::config::{self, FlagOverrides};
use crate::simulate;

/// Arguments of `demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its database.
    #[arg(long, default_value = "./data/demo")]
    pub data_dir: PathBuf,
    /// The service's HTTP address.
    #[arg(long, default_value = "127.0.0.1:7890")]
    pub http_bind: SocketAddr,
    /// The service's gRPC address.
    #[arg(long, default_value = "127.0.0.1:7891")]
    pub grpc_bind: SocketAddr,
    /// The local webhook receiver's address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub receiver_bind: SocketAddr,
    /// Rooms the simulated SFU runs.
    #[arg(long, default_value_t = 4)]
    pub rooms: u32,
    /// Participants per room.
    #[arg(long, default_value_t = 5)]
    pub participants: u32,
    /// How long the live traffic runs.
    #[arg(long, default_value = "30m", value_parser = config::parse_duration)]
    pub duration: Duration,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The demo's flush interval: shorter than the default so stats windows appear quickly.
const DEMO_FLUSH_INTERVAL: &str = "10s";

/// Runs the demo until Ctrl-C.
///
/// # Errors
///
/// Fails if a port is taken or the service cannot start.
pub async fn run(args: DemoArgs, environment: &[(String, String)]) -> anyhow::Result<()> {
    let (key, secret) = config::DEV_KEY;
    let receiver = tokio::net::TcpListener::bind(args.receiver_bind).await.with_context(|| {
        format!(
            "binding the demo's webhook receiver on {} (is a demo already running?)",
            args.receiver_bind
        )
    })?;
    let receiver_url = format!("http://{}/webhook", receiver.local_addr()?);
    tokio::spawn(async move {
        let app = Router::new().route("/webhook", post(receive_webhook));
        let _ = axum::serve(receiver, app).await;
    });

    let file = format!(
        "[stats]\nflush_interval = \"{DEMO_FLUSH_INTERVAL}\"\n\n[[webhooks.endpoints]]\nurl = \"{receiver_url}\"\nsigning = \"livekit\"\napi_key = \"{key}\"\nsecret = \"{secret}\"\n"
    );
    let flags = FlagOverrides {
        http_bind: Some(args.http_bind),
        grpc_bind: Some(args.grpc_bind),
        data_dir: Some(args.data_dir.clone()),
        dev: true,
    };
    let config = config::load(Some(("the demo's configuration", &file)), environment, &flags)?;
    let app = crate::app::App::build(config.clone()).await?;
    let http = tokio::net::TcpListener::bind(config.http.bind).await.with_context(|| {
        format!(
            "binding HTTP on {} (is a service already running? try --http-bind)",
            config.http.bind
        )
    })?;
    let grpc = tokio::net::TcpListener::bind(config.grpc.bind)
        .await
        .with_context(|| format!("binding gRPC on {} (try --grpc-bind)", config.grpc.bind))?;
    let http_address = http.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(app.run(http, grpc, stop.clone().cancelled_owned()));

    let token = crate::auth::mint_token(key, secret, Duration::from_secs(24 * 3600))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let base = format!("http://{http_address}");
    eprintln!(
        "\nrtc-telemetry demo\n\
         \n  export TOKEN={token}\n\
         \n  dashboard      {base}/   (sign in with the token above)\
         \n  rooms          curl -s -H \"Authorization: Bearer $TOKEN\" {base}/v1/rooms\
         \n  stats          curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/v1/stats'\
         \n  node rates     curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/v1/nodes/sfu-demo-1/rates?window=5s'\
         \n  metrics        {base}/metrics\
         \n  webhooks       received by {receiver_url}, logged below\
         \n\n  First 3 minutes of history are sent at full speed, then live traffic for {}; Ctrl-C stops.\n",
        humantime::format_duration(args.duration)
    );

    let simulation = SimulateArgs {
        url: base.clone(),
        api_key: key.to_owned(),
        api_secret: secret.to_owned(),
        seed: args.seed,
        rooms: args.rooms,
        participants: args.participants,
        node_id: "sfu-demo-1".to_owned(),
        ..SimulateArgs::default()
    };
    // The history shows a room with a quality issue within its first minute: a publisher's lossy
    // uplink from 15 s to 50 s (its rooms start within 9 s), the participant drawn from the seed.
    let history = SimulateArgs {
        duration: Duration::from_secs(180),
        speed: 0.0,
        troubles: vec![Trouble {
            kind: TroubleKind::LossyUplink,
            target: None,
            from: Duration::from_secs(15),
            until: Duration::from_secs(50),
        }],
        ..simulation.clone()
    };
    let live = SimulateArgs {
        duration: args.duration,
        speed: 1.0,
        seed: args.seed + 1,
        quiet: false,
        ..simulation
    };
    let simulate = async {
        let started = std::time::Instant::now();
        match simulate::run(history).await {
            Ok(summary) => simulate::print_summary(&summary, started.elapsed()),
            Err(error) => eprintln!("demo: the history simulation failed: {error:#}"),
        }
        let flushed = reqwest::Client::new()
            .post(format!("{base}/v1/flush"))
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await;
        if let Err(error) = flushed {
            eprintln!("demo: flush failed: {error}");
        }
        eprintln!("demo: history stored; live traffic starts now");
        let started = std::time::Instant::now();
        match simulate::run(live).await {
            Ok(summary) => simulate::print_summary(&summary, started.elapsed()),
            Err(error) => eprintln!("demo: the live simulation failed: {error:#}"),
        }
        eprintln!("demo: the simulation is over; the service keeps running until Ctrl-C");
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = simulate => {}
        () = crate::shutdown::signal() => {}
    }
    stop.cancel();
    service.await.context("the service task")??;
    Ok(())
}

/// The demo's webhook receiver: verifies LiveKit's signature and logs the event.
async fn receive_webhook(headers: HeaderMap, body: Bytes) -> &'static str {
    let authorization =
        headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (key, secret) = config::DEV_KEY;
    let verified =
        telemetry_core::signing::verify_livekit(key, secret, &body, authorization, now, 60);
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let room = event["room"]["name"].as_str().unwrap_or("");
    let who = event["participant"]["identity"].as_str().unwrap_or("");
    match verified {
        Ok(_) => eprintln!(
            "webhook  {:<30} room={room} {who} id={} (signature verified)",
            event["event"].as_str().unwrap_or("?"),
            event["id"].as_str().unwrap_or("?")
        ),
        Err(error) => eprintln!("webhook  REJECTED: {error}"),
    }
    "ok"
}
