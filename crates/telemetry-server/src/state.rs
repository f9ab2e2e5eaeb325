//! The state every request handler shares, and the authentication extractor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use telemetry_core::TelemetryService;
use telemetry_store::Store;
use tokio::sync::Semaphore;

use crate::auth::{Authenticator, Principal};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::ApiError;
use crate::ingest::http::IngestResponse;
use crate::ingest::idempotency::RecentKeys;
use crate::ingest::janus::JanusIngest;
use crate::metrics::ServerMetrics;
use crate::pipeline::{Durable, StoreHealth};
use crate::webhooks::Webhooks;

/// What handlers share; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The shared parts.
#[derive(Debug)]
pub struct Inner {
    /// The configuration.
    pub config: Config,
    /// The telemetry core.
    pub service: TelemetryService,
    /// The store.
    pub store: Arc<dyn Store>,
    /// How far outputs are stored.
    pub durable: Durable,
    /// Whether the store takes writes.
    pub store_health: Arc<StoreHealth>,
    /// API keys.
    pub auth: Authenticator,
    /// The service's metrics.
    pub metrics: Arc<ServerMetrics>,
    /// Webhook endpoints and delivery.
    pub webhooks: Webhooks,
    /// Permits for ingest requests in flight; none left means 429.
    pub ingest_permits: Semaphore,
    /// The Janus adapter of `POST /v1/ingest/janus`.
    pub janus: Arc<JanusIngest>,
    /// NATS JetStream, in cluster mode: ingest publishes there instead of applying calls here.
    pub cluster: Option<Cluster>,
    /// The answers of recent `Idempotency-Key`s (without the cluster; JetStream deduplicates
    /// with it).
    pub recent_keys: RecentKeys<IngestResponse>,
    /// False once shutdown began: readiness fails and ingest answers 503.
    accepting: AtomicBool,
}

impl AppState {
    /// Builds the state.
    #[expect(clippy::too_many_arguments, reason = "each is a part the application built")]
    pub fn new(
        config: Config,
        service: TelemetryService,
        store: Arc<dyn Store>,
        durable: Durable,
        store_health: Arc<StoreHealth>,
        metrics: Arc<ServerMetrics>,
        webhooks: Webhooks,
        cluster: Option<Cluster>,
    ) -> Self {
        let auth = Authenticator::new(&config.keys, config.max_token_lifetime);
        let ingest_permits = Semaphore::new(config.http.max_in_flight);
        let janus = Arc::new(JanusIngest::new(
            config.janus_adapter(),
            crate::ingest::validate::Limits::from_config(&config),
        ));
        Self {
            inner: Arc::new(Inner {
                config,
                service,
                store,
                durable,
                store_health,
                auth,
                metrics,
                webhooks,
                ingest_permits,
                janus,
                cluster,
                recent_keys: RecentKeys::default(),
                accepting: AtomicBool::new(true),
            }),
        }
    }

    /// Whether the service accepts new work.
    pub fn accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
    }

    /// Why new work cannot be taken now, if it cannot: shutting down, or the store is
    /// unavailable (what is accepted could not be stored).
    ///
    /// # Errors
    ///
    /// `Unavailable` (503, with `Retry-After`).
    pub fn check_accepting(&self) -> Result<(), ApiError> {
        self.check_not_stopping()?;
        if !self.store_health.available() {
            return Err(ApiError::new(
                crate::error::ErrorCode::Unavailable,
                "the store is unavailable; nothing was accepted, try again",
            )
            .retry_after(1));
        }
        Ok(())
    }

    /// As [`AppState::check_accepting`], for the calls of `TelemetryBatch` ingest (HTTP and
    /// gRPC): in cluster mode they go to JetStream, not to the store, so a store outage refuses
    /// none of them (the partition consumers store them once it is back; an unreachable NATS is
    /// answered by the publish).
    ///
    /// # Errors
    ///
    /// `Unavailable` (503, with `Retry-After`).
    pub fn check_accepting_calls(&self) -> Result<(), ApiError> {
        if self.cluster.is_some() { self.check_not_stopping() } else { self.check_accepting() }
    }

    fn check_not_stopping(&self) -> Result<(), ApiError> {
        if !self.accepting() {
            return Err(ApiError::new(
                crate::error::ErrorCode::Unavailable,
                "the service is shutting down",
            )
            .retry_after(5));
        }
        Ok(())
    }

    /// Stops accepting new work (shutdown).
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|value| value.to_str().unwrap_or(""));
        state.auth.authenticate(header)
    }
}
