//! The application: built from a configuration without binding anything, then run on listeners
//! the caller binds and until a shutdown trigger the caller gives, so tests run it on port 0 with
//! their own trigger exactly as the binary does.
//!
//! Task inventory (all tracked): the HTTP server, the gRPC server, the pipeline's consumer and
//! its timers, the room reporter, the store's health watch, the webhook dispatcher. Shutdown
//! follows the data: stop accepting (readiness fails, servers finish in-flight requests), drain
//! the partition consumers in cluster mode (what they applied stored and acknowledged), stop the
//! timers, flush every stats worker, wait until every output is stored, make the reports of the
//! rooms finished so far, stop the consumer and give the partition leases back, stop the
//! dispatcher (finishing or releasing its attempts), close the store; all
//! within `shutdown_grace_period`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use telemetry_store::Store;
use telemetry_store::model::{
    IssueRecord, IssuesQuery, OpenRoomRecord, QualityRecord, WorkerRecord,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::cluster::Cluster;
use crate::config::{Config, StoreBackend};
use crate::error::ApiError;
use crate::metrics::ServerMetrics;
use crate::pipeline::{self, Consumer, StoreHealth};
use crate::room_reports::Reporter;
use crate::state::AppState;
use crate::webhooks::dispatcher::{DispatchConfig, Dispatcher};
use crate::webhooks::{self, EndpointRegistry, Webhooks};
use crate::{api, ingest};
use telemetry_core::retry::RetrySchedule;

/// The node id the core attributes in-process calls to (ingest calls always name their node).
const SERVICE_NODE: &str = "rtc-telemetry";

/// The built application.
#[derive(Debug)]
pub struct App {
    state: AppState,
    consumer: Consumer,
    reporter: Reporter,
    store: Arc<dyn Store>,
    registry: EndpointRegistry,
}

impl App {
    /// Opens the store, builds the core and the pipeline, and brings the configured webhook
    /// endpoints into the store; binds nothing.
    ///
    /// # Errors
    ///
    /// Fails if the store cannot be opened (unreachable, or written by a newer version).
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let place = match config.store.backend {
            StoreBackend::Sqlite => format!("SQLite in `{}`", config.store.data_dir.display()),
            StoreBackend::Postgres => format!("PostgreSQL at `{}`", redact(&config.store.url)),
        };
        let store = telemetry_store::open(config.store_config())
            .await
            .with_context(|| format!("opening the store ({place})"))?;
        tracing::info!(store = %place, "store open");
        let instance_id = config.instance_id();
        let metrics = Arc::new(ServerMetrics::default());
        let (service, receiver, notify) = pipeline::build_core(
            config.core(SERVICE_NODE),
            config.cluster.enabled.then_some(config.cluster.partitions),
        );
        // Calls in progress carry on: their workers, guards and connected state come back from
        // the store (what the last run committed, whether it stopped or was killed). In cluster
        // mode each partition's come back as its lease is taken (`cluster::consumers`).
        if !config.cluster.enabled {
            let live =
                store.live_workers().await.context("reading the stats workers in progress")?;
            let kept = live.len();
            let restored = service.restore_workers(live.iter().map(WorkerRecord::to_state));
            tracing::info!(kept, restored, "stats workers of calls in progress restored");
            // Their quality detectors as the last flush left them, then the open issues.
            let quality =
                store.quality_states().await.context("reading the quality detector states")?;
            let states: Vec<_> = quality.iter().map(QualityRecord::to_state).collect();
            let restored = service.restore_quality(&states);
            tracing::info!(kept = quality.len(), restored, "quality detector states restored");
            // Their open quality issues too, so each is closed with its own id.
            let open =
                store.issues(open_issues()).await.context("reading the open quality issues")?;
            let issues: Vec<_> = open.iter().map(IssueRecord::to_issue).collect();
            let restored = service.restore_issues(&issues);
            tracing::info!(open = open.len(), restored, "open quality issues restored");
            // The rooms started and not ended, for `livekit_room_total` and their durations.
            let rooms = store.open_rooms().await.context("reading the open rooms")?;
            let restored =
                service.restore_open_rooms(rooms.iter().map(OpenRoomRecord::to_restored));
            tracing::info!(open = rooms.len(), restored, "open rooms restored");
        }
        let registry = EndpointRegistry::new(
            instance_id.clone(),
            &config.webhooks.endpoints,
            config.webhooks.claim_lease,
        );
        registry
            .refresh(store.as_ref())
            .await
            .context("bringing the configured webhook endpoints into the store")?;
        let dispatcher = Dispatcher::new(
            DispatchConfig {
                schedule: RetrySchedule::new(config.webhooks.retry_schedule.clone()),
                request_timeout: config.webhooks.request_timeout,
                max_in_flight: config.webhooks.max_in_flight,
                max_in_flight_per_endpoint: config.webhooks.max_in_flight_per_endpoint,
                instance_id: instance_id.clone(),
                claim_lease: config.webhooks.claim_lease,
            },
            registry.clone(),
            store.clone(),
            service.clone(),
        )?;
        tracing::info!(instance = %instance_id, "webhook deliveries are claimed under this instance id");
        let webhooks = Webhooks { endpoints: registry.endpoints.clone(), dispatcher };
        let health = Arc::new(StoreHealth::default());
        let cluster = if config.cluster.enabled {
            let cluster =
                Cluster::connect(&config.cluster, &instance_id, config.http.request_timeout)
                    .await?;
            tracing::info!(
                nats = %config.cluster.nats_url,
                stream = %config.cluster.stream,
                partitions = config.cluster.partitions,
                "cluster mode: HTTP and gRPC ingest publish to JetStream; this instance consumes \
                 the partitions it leases"
            );
            Some(cluster)
        } else {
            None
        };
        let (mut consumer, durable) = Consumer::new(
            receiver,
            notify,
            store.clone(),
            metrics.clone(),
            webhooks.clone(),
            health.clone(),
            cluster.as_ref().map(|cluster| cluster.fencing.clone()),
        );
        let (finished_rooms, reporter) = crate::room_reports::reporter(
            store.clone(),
            registry.endpoints.clone(),
            durable.clone(),
        );
        // In cluster mode, a room that just ended may be another instance's to report.
        let settle =
            if config.cluster.enabled { config.stats.flush_interval * 2 } else { Duration::ZERO };
        recover_room_reports(
            store.as_ref(),
            &registry.endpoints,
            &finished_rooms,
            &durable,
            settle,
        )
        .await;
        consumer.report_finished_rooms(finished_rooms);
        let state = AppState::new(
            config,
            service,
            store.clone(),
            durable,
            health,
            metrics,
            webhooks,
            cluster,
        );
        // Janus calls in progress carry on too: each Janus server's adapter state comes back.
        let restored = state
            .janus
            .restore(store.as_ref(), telemetry_core::Clock::now(&telemetry_core::SystemClock))
            .await
            .context("reading the Janus adapter's state")?;
        tracing::info!(restored, "Janus servers' states restored");
        Ok(App { state, consumer, reporter, store, registry })
    }

    /// The shared state (for tests and the demo).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves on `http` and `grpc` until `shutdown` completes, then shuts down in data-flow
    /// order.
    ///
    /// # Errors
    ///
    /// Fails if a server fails.
    pub async fn run(
        self,
        http: TcpListener,
        grpc: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let App { state, consumer, reporter, store, registry } = self;
        let grace = state.config.shutdown_grace_period;
        let tracker = TaskTracker::new();
        let stop_servers = CancellationToken::new();
        let stop_timers = CancellationToken::new();
        let stop_consumer = CancellationToken::new();
        let stop_reporter = CancellationToken::new();
        let stop_dispatcher = CancellationToken::new();
        let stop_consumers = CancellationToken::new();
        let stop_leases = CancellationToken::new();
        let dispatcher = state.webhooks.dispatcher.clone();
        let dispatcher_task = tokio::spawn(
            dispatcher
                .clone()
                .run(stop_dispatcher.clone())
                .instrument(tracing::info_span!("webhooks")),
        );

        tracker
            .spawn(consumer.run(stop_consumer.clone()).instrument(tracing::info_span!("consumer")));
        tracker.spawn(
            reporter.run(stop_reporter.clone()).instrument(tracing::info_span!("room_reports")),
        );
        tracker.spawn(
            pipeline::watch_store(store.clone(), state.store_health.clone(), stop_timers.clone())
                .instrument(tracing::info_span!("store_health")),
        );
        tracker.spawn(
            pipeline::run_timers(
                state.service.clone(),
                state.durable.clone(),
                store.clone(),
                state.metrics.clone(),
                state.config.stats.flush_interval,
                state.config.store.retention,
                stop_timers.clone(),
            )
            .instrument(tracing::info_span!("timers")),
        );

        let mut consumers_task = None;
        if let Some(cluster) = &state.cluster {
            let consumers = crate::cluster::consumers::Consumers::new(state.clone());
            tracker.spawn(
                crate::cluster::leases::run(
                    store.clone(),
                    cluster.ownership.clone(),
                    cluster.leases.clone(),
                    Some(consumers.clone()),
                    stop_leases.clone(),
                )
                .instrument(tracing::info_span!("leases")),
            );
            tracker.spawn(
                crate::cluster::lag::run(cluster.clone(), stop_consumers.clone())
                    .instrument(tracing::info_span!("consumer_lag")),
            );
            consumers_task = Some(tokio::spawn(
                consumers.run(stop_consumers.clone()).instrument(tracing::info_span!("consumers")),
            ));
        }
        tracker.spawn(
            ingest::janus::run_timer(state.clone(), stop_timers.clone())
                .instrument(tracing::info_span!("janus")),
        );

        let http_address = http.local_addr().context("the HTTP listener's address")?;
        let grpc_address = grpc.local_addr().context("the gRPC listener's address")?;
        let http_server = axum::serve(http, router(state.clone()))
            .with_graceful_shutdown(stop_servers.clone().cancelled_owned());
        let mut http_task =
            tokio::spawn(async move { http_server.await }.instrument(tracing::info_span!("http")));
        let (ingest_service, recorder_service) = ingest::grpc::services(state.clone());
        let grpc_server = tonic::transport::Server::builder()
            .add_service(ingest_service)
            .add_service(recorder_service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                stop_servers.clone().cancelled_owned(),
            );
        let mut grpc_task = tokio::spawn(grpc_server.instrument(tracing::info_span!("grpc")));
        tracing::info!(http = %http_address, grpc = %grpc_address, "serving");

        let mut failure = None;
        tokio::select! {
            () = shutdown => {}
            result = &mut http_task => failure = Some(format!("the HTTP server stopped: {result:?}")),
            result = &mut grpc_task => failure = Some(format!("the gRPC server stopped: {result:?}")),
        }
        let deadline = tokio::time::Instant::now() + grace;

        // 1. Stop accepting; servers finish the requests in flight.
        state.stop_accepting();
        stop_servers.cancel();
        let servers = async {
            if !http_task.is_finished() {
                let _ = (&mut http_task).await;
            }
            if !grpc_task.is_finished() {
                let _ = (&mut grpc_task).await;
            }
        };
        if tokio::time::timeout_at(deadline, servers).await.is_err() {
            tracing::warn!("requests still in flight at the end of the grace period");
            http_task.abort();
            grpc_task.abort();
        }

        // 1b. Cluster mode: the partition consumers stop fetching, have what they applied stored
        //     and acknowledge it (the leases are released after the last flush, in 3).
        if let Some(task) = consumers_task {
            stop_consumers.cancel();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("partition consumers still draining at the end of the grace period");
            }
        }

        // 2. The last flush: every accepted sample ends in a stored window.
        stop_timers.cancel();
        let last = pipeline::flush(&state.service, &state.metrics, state.durable.flushes()).await;
        if tokio::time::timeout_at(deadline, state.durable.wait_for(last)).await.is_err() {
            tracing::warn!(
                last,
                stored = state.durable.current(),
                "the store did not catch up within the grace period"
            );
        }

        // 3. Make the reports of the rooms finished so far (their windows are stored now), stop
        //    the consumer (it stores what is left first) and give the leases back.
        stop_reporter.cancel();
        stop_consumer.cancel();
        stop_leases.cancel();
        tracker.close();
        if tokio::time::timeout_at(deadline, tracker.wait()).await.is_err() {
            tracing::warn!("tasks still running at the end of the grace period");
        }

        // 4. Stop starting webhook attempts; finish (or abandon, still pending) those in flight.
        stop_dispatcher.cancel();
        let _ = dispatcher_task.await;
        dispatcher.finish(deadline).await;

        // 5. Unlist this instance's configured endpoints, close the store.
        if let Err(error) = registry.unlist(store.as_ref()).await {
            tracing::warn!(%error, "unlisting this instance's configured endpoints failed");
        }
        store.close().await;
        tracing::info!(stored_through = state.durable.current(), "stopped");
        match failure {
            Some(failure) => anyhow::bail!(failure),
            None => Ok(()),
        }
    }
}

/// The HTTP routes.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.http.request_timeout + Duration::from_secs(5);
    Router::new()
        .route("/v1/telemetry", post(ingest::http::ingest))
        .route("/v1/flush", post(ingest::http::flush))
        .route("/v1/ingest/janus", post(ingest::janus::ingest))
        .route("/v1/rooms", get(api::rooms))
        .route("/v1/rooms/{sid}", get(api::room))
        .route("/v1/rooms/{sid}/events", get(api::room_events))
        .route("/v1/rooms/{sid}/report", get(api::quality::report))
        .route("/v1/issues", get(api::quality::issues))
        .route("/v1/stats", get(api::stats))
        .route("/v1/nodes", get(api::nodes))
        .route("/v1/nodes/{node_id}/rates", get(api::node_rates))
        .route("/v1/cluster", get(crate::cluster::status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/v1/webhooks/endpoints",
            get(webhooks::api::list_endpoints).post(webhooks::api::create_endpoint),
        )
        .route("/v1/webhooks/endpoints/{id}", axum::routing::delete(webhooks::api::delete_endpoint))
        .route("/v1/webhooks/deliveries", get(webhooks::api::list_deliveries))
        .route("/v1/webhooks/deliveries/{id}", get(webhooks::api::get_delivery))
        .route("/v1/webhooks/deliveries/{id}/retry", post(webhooks::api::retry_delivery))
        .route("/v1/webhooks/replay", post(webhooks::api::replay))
        .merge(crate::dashboard::router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.accepting() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if !state.store_health.available() {
        (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable").into_response()
    } else if state.cluster.as_ref().is_some_and(|cluster| !cluster.is_connected()) {
        (StatusCode::SERVICE_UNAVAILABLE, "NATS is unreachable").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

/// A database URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let core = state.service.metrics();
    let outbox = state.store.outbox_counts().await.ok();
    let mut extra = state.webhooks.dispatcher.metric_families(outbox);
    extra.extend(state.janus.metric_families());
    if let Some(cluster) = &state.cluster {
        extra.extend(cluster.metric_families());
    }
    let text = crate::metrics::render(&core, &state.metrics, &extra);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Hands the reporter the finished rooms a previous process left without their report
/// ([`crate::room_reports::recover`]); a failed read is logged, and the start goes on.
async fn recover_room_reports(
    store: &dyn Store,
    endpoints: &webhooks::Endpoints,
    finished_rooms: &crate::room_reports::FinishedRooms,
    durable: &pipeline::Durable,
    settle: Duration,
) {
    let now = telemetry_core::Clock::now(&telemetry_core::SystemClock);
    match crate::room_reports::recover(store, endpoints, finished_rooms, durable, now, settle).await
    {
        Ok(rooms) if rooms.is_empty() => {}
        Ok(rooms) => tracing::warn!(
            rooms = rooms.len(),
            "finished rooms without their report (an abrupt stop): reporting them"
        ),
        Err(error) => tracing::error!(%error, "looking for finished rooms without their report"),
    }
}

/// The query of every open quality issue of the store, restored with the workers at a start
/// (here) and at a partition's take-over (`cluster::consumers`).
pub(crate) fn open_issues() -> IssuesQuery {
    IssuesQuery { open: Some(true), limit: u32::MAX, ..IssuesQuery::default() }
}
