//! Durable webhook delivery: the registry of endpoints, the dispatcher that delivers the outbox,
//! and the webhook API.
//!
//! A webhook leaves the core with the call that produced it; the pipeline writes its message and
//! one delivery per endpoint (filters applied) in the same transaction as the analytics event,
//! before the ingest call is answered. The [`dispatcher::Dispatcher`] then delivers each
//! endpoint's deliveries in FIFO order per resource key (LiveKit's `EventKey`: egress id, ingress
//! id, room name, participant identity, track sid), one request in flight per key, keys in
//! parallel within a global and a per-endpoint bound, retrying on the configured schedule until
//! a 2xx answer (delivered) or the last attempt (dead: kept, listed, replayable). Every attempt is
//! recorded; a restart resumes from the store, and several instances share one database safely
//! (see [`dispatcher`]).
//!
//! The [`EndpointRegistry`] keeps this instance's view of the endpoints: the configured ones are
//! listed in the store under this instance's id and refreshed while it runs (an instance never
//! deletes an endpoint another live instance's configuration lists), and endpoints added or
//! removed through another instance's API show up here within a refresh.

pub mod api;
pub mod dispatcher;
pub mod sender;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use telemetry_core::{Clock as _, SystemClock, UnixMillis};
use telemetry_store::model::{ConfiguredEndpoints, EndpointRecord, EndpointSource, Signing};
use telemetry_store::{Store, StoreError};

use crate::config::EndpointConfig;

/// The webhook parts handlers and the pipeline share.
#[derive(Clone, Debug)]
pub struct Webhooks {
    /// The endpoints.
    pub endpoints: Endpoints,
    /// The dispatcher.
    pub dispatcher: dispatcher::Dispatcher,
}

/// A webhook endpoint ready for use.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// As stored.
    pub record: EndpointRecord,
}

impl Endpoint {
    /// How requests to it are signed.
    pub fn signing(&self) -> Signing {
        self.record.signing
    }

    /// Whether `event` goes to this endpoint.
    pub fn wants(&self, event: &str) -> bool {
        self.record.enabled
            && telemetry_core::passes_filter(
                event,
                &self.record.include_events,
                &self.record.exclude_events,
            )
    }
}

/// The endpoints deliveries are made to; read on every webhook, changed by the API.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    inner: Arc<RwLock<Vec<Arc<Endpoint>>>>,
}

impl Endpoints {
    /// The ids of the endpoints `event` goes to.
    pub fn select(&self, event: &str) -> Vec<String> {
        self.read()
            .iter()
            .filter(|endpoint| endpoint.wants(event))
            .map(|endpoint| endpoint.record.id.clone())
            .collect()
    }

    /// The endpoint `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.read().iter().find(|endpoint| endpoint.record.id == id).cloned()
    }

    /// Every endpoint.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        self.read().clone()
    }

    /// Replaces the registry with what the store holds.
    pub fn set(&self, records: Vec<EndpointRecord>) {
        let endpoints = records.into_iter().map(|record| Arc::new(Endpoint { record })).collect();
        *self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner) = endpoints;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Endpoint>>> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The stable id of a configured endpoint: derived from what identifies it, so deliveries keep
/// their endpoint across restarts and a changed URL is a new endpoint.
pub fn config_endpoint_id(endpoint: &EndpointConfig) -> String {
    // FNV-1a: stable across builds and platforms, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in
        format!("{}\u{0}{:?}\u{0}{}", endpoint.url, endpoint.signing, endpoint.api_key).bytes()
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("WE_cfg_{hash:016x}")
}

/// This instance's configured endpoints and its view of every endpoint.
#[derive(Clone, Debug)]
pub struct EndpointRegistry {
    /// The endpoints deliveries are made to (what the store holds, refreshed).
    pub endpoints: Endpoints,
    instance_id: String,
    configured: Vec<EndpointRecord>,
    /// How long this instance's listing lasts without a refresh.
    liveness: Duration,
}

impl EndpointRegistry {
    /// A registry for `instance_id`'s `configured` endpoints; its listing lasts `liveness`
    /// without a refresh (and is refreshed three times within it).
    pub fn new(instance_id: String, configured: &[EndpointConfig], liveness: Duration) -> Self {
        let now = SystemClock.now();
        let configured = configured
            .iter()
            .map(|endpoint| {
                endpoint_record(config_endpoint_id(endpoint), endpoint, EndpointSource::Config, now)
            })
            .collect();
        Self { endpoints: Endpoints::default(), instance_id, configured, liveness }
    }

    /// How often [`EndpointRegistry::refresh`] runs.
    pub fn refresh_interval(&self) -> Duration {
        (self.liveness / 3).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Lists this instance's configured endpoints in the store (creating or updating them),
    /// lets the store delete configured endpoints no live instance lists (their pending
    /// deliveries become dead, still listed and replayable if the endpoint comes back), and
    /// reloads the registry from the store.
    ///
    /// # Errors
    ///
    /// Fails if the store does.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let deleted = store
            .sync_configured_endpoints(ConfiguredEndpoints {
                instance_id: self.instance_id.clone(),
                endpoints: self.configured.clone(),
                now: SystemClock.now(),
                liveness_ms: i64::try_from(self.liveness.as_millis()).unwrap_or(i64::MAX),
            })
            .await?;
        for id in deleted {
            tracing::info!(endpoint = %id, "a configured webhook endpoint no live instance lists was removed");
        }
        self.endpoints.set(store.endpoints().await?);
        Ok(())
    }

    /// Removes this instance's listing (a graceful stop).
    ///
    /// # Errors
    ///
    /// Fails if the store does.
    pub async fn unlist(&self, store: &dyn Store) -> Result<(), StoreError> {
        store.unlist_instance(&self.instance_id).await
    }
}

/// The stored form of an endpoint.
pub fn endpoint_record(
    id: String,
    endpoint: &EndpointConfig,
    source: EndpointSource,
    created_at: UnixMillis,
) -> EndpointRecord {
    EndpointRecord {
        id,
        url: endpoint.url.clone(),
        signing: endpoint.signing.into(),
        api_key: endpoint.api_key.clone(),
        secret: endpoint.secret.clone(),
        include_events: endpoint.include_events.clone(),
        exclude_events: endpoint.exclude_events.clone(),
        enabled: true,
        source,
        created_at,
    }
}
