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
//! recorded; a restart resumes from the store.

pub mod api;
pub mod dispatcher;
pub mod sender;

use std::sync::{Arc, RwLock};

use telemetry_core::{Clock as _, SystemClock, UnixMillis};
use telemetry_store::Store;
use telemetry_store::model::EndpointRecord;

use crate::config::{EndpointConfig, Signing};

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
    /// How requests are signed.
    pub signing: Signing,
}

impl Endpoint {
    fn from_record(record: EndpointRecord) -> Self {
        let signing =
            if record.signing == "standard" { Signing::Standard } else { Signing::Livekit };
        Self { record, signing }
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
        let endpoints =
            records.into_iter().map(|record| Arc::new(Endpoint::from_record(record))).collect();
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

/// Makes the store's endpoints match the configuration: configured endpoints are created or
/// updated; endpoints configured before and gone now are deleted (their pending deliveries
/// become dead, still listed and replayable if the endpoint comes back). Then loads the registry.
///
/// # Errors
///
/// Fails if the store does.
pub async fn sync_endpoints(
    store: &dyn Store,
    configured: &[EndpointConfig],
    endpoints: &Endpoints,
) -> Result<(), telemetry_store::StoreError> {
    let now = SystemClock.now();
    let existing = store.endpoints().await?;
    let ids: Vec<String> = configured.iter().map(config_endpoint_id).collect();
    for stale in
        existing.iter().filter(|record| record.source == "config" && !ids.contains(&record.id))
    {
        tracing::info!(endpoint = %stale.id, url = %stale.url, "a configured webhook endpoint was removed");
        store.delete_endpoint(&stale.id, now).await?;
    }
    for (endpoint, id) in configured.iter().zip(ids) {
        let created_at =
            existing.iter().find(|record| record.id == id).map_or(now, |record| record.created_at);
        store.put_endpoint(endpoint_record(id, endpoint, "config", created_at)).await?;
    }
    endpoints.set(store.endpoints().await?);
    Ok(())
}

/// The stored form of an endpoint.
pub fn endpoint_record(
    id: String,
    endpoint: &EndpointConfig,
    source: &str,
    created_at: UnixMillis,
) -> EndpointRecord {
    EndpointRecord {
        id,
        url: endpoint.url.clone(),
        signing: match endpoint.signing {
            Signing::Livekit => "livekit".to_owned(),
            Signing::Standard => "standard".to_owned(),
        },
        api_key: endpoint.api_key.clone(),
        secret: endpoint.secret.clone(),
        include_events: endpoint.include_events.clone(),
        exclude_events: endpoint.exclude_events.clone(),
        enabled: true,
        source: source.to_owned(),
        created_at,
    }
}
