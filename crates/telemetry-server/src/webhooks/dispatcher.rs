//! The dispatcher: claims due deliveries from the outbox and sends them, within a global and a
//! per-endpoint bound (so a hung endpoint holds at most its own share), records every attempt
//! under its claim, and claims again when something may have become due: a wake-up from the
//! store (a commit that created or requeued deliveries, here or, on PostgreSQL, in another
//! instance), an attempt that finished (its key's next delivery may now be its head), the next
//! retry's due time, or the poll interval, whichever comes first. Polling is the source of
//! truth; wake-ups only shorten the wait.
//!
//! The store keeps the queues and their order ([`telemetry_store::Outbox::claim`]): per endpoint
//! and resource key one request in flight and first attempts in id order, whatever the number of
//! dispatchers on the database. A dispatcher that dies leaves claims that expire after
//! `webhooks.claim_lease`, and another dispatcher takes them over; an attempt recorded under a
//! claim that is no longer current is fenced out (counted, nothing written).
//!
//! Parts: [`state`] (slots and timing, pure), [`attempt`] (one attempt's outcome, record and
//! analytics event), [`metrics`].

mod attempt;
mod metrics;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt as _;
use telemetry_core::metrics::MetricFamily;
use telemetry_core::retry::RetrySchedule;
use telemetry_core::{Call, CallMeta, Clock as _, SystemClock, TelemetryService};
use telemetry_store::model::{
    AttemptOutcome, AttemptRecord, ClaimRequest, ClaimedDelivery, OutboxCounts,
};
use telemetry_store::{Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::webhooks::sender;
use crate::webhooks::{EndpointRegistry, Endpoints};
use metrics::WebhookMetrics;
use state::{AfterClaim, DispatchState};

/// The node the `WEBHOOK` analytics events are attributed to: none. (LiveKit's come from the SFU
/// node that sent the webhook; here the service sends it, and it is not an SFU node to list in
/// `/v1/nodes`.)
pub const WEBHOOK_EVENT_NODE: &str = "";

/// How often the dispatcher claims when nothing woke it: the longest a delivery waits for a
/// dispatcher that was not told of it (one created by another instance on SQLite, or a lost
/// PostgreSQL notification).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Most deliveries of one queue (endpoint and resource key) claimed together: its head and the
/// pending deliveries after it, sent one after the other without a claim between them (a
/// busy room's webhooks do not wait for a database round trip each).
pub const MAX_RUN: u32 = 64;

/// A run's next delivery is sent only if its claim has at least `request_timeout` and a margin
/// left (this much, or half of what the lease has beyond `request_timeout` if that is less);
/// otherwise the rest of the run is released for a fresh claim. (The head is always sent: the
/// lease is longer than `request_timeout`.)
const RUN_MARGIN: Duration = Duration::from_secs(2);

/// How the dispatcher delivers.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// Waits between attempts.
    pub schedule: RetrySchedule,
    /// Timeout of one attempt.
    pub request_timeout: Duration,
    /// Requests in flight at once, over every endpoint.
    pub max_in_flight: usize,
    /// Requests in flight at once to one endpoint.
    pub max_in_flight_per_endpoint: usize,
    /// Who claims: this instance's id.
    pub instance_id: String,
    /// How long a claim lasts; more than `request_timeout`.
    pub claim_lease: Duration,
}

/// Delivers the outbox; cheap to clone.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: DispatchConfig,
    state: Mutex<DispatchState>,
    /// Notified when an attempt finished.
    finished: Notify,
    endpoints: Endpoints,
    registry: EndpointRegistry,
    store: Arc<dyn Store>,
    service: TelemetryService,
    client: reqwest::Client,
    metrics: WebhookMetrics,
    /// Every attempt in flight; the shutdown waits for them.
    attempts: TaskTracker,
    /// Attempt records waiting to be written together.
    recorder: Mutex<Recorder>,
}

type RecordWaiter = tokio::sync::oneshot::Sender<Option<bool>>;

/// An attempt made, waiting for its record.
#[derive(Debug)]
struct Finished {
    claimed: ClaimedDelivery,
    url: String,
    started_at: telemetry_core::UnixMillis,
    result: sender::SendResult,
}

#[derive(Debug, Default)]
struct Recorder {
    queued: Vec<(AttemptRecord, RecordWaiter)>,
    /// Whether a caller is writing (and will take what is queued).
    writing: bool,
}

impl Dispatcher {
    /// Creates a dispatcher with nothing in flight.
    ///
    /// # Errors
    ///
    /// Fails if the HTTP client cannot be built.
    pub fn new(
        config: DispatchConfig,
        registry: EndpointRegistry,
        store: Arc<dyn Store>,
        service: TelemetryService,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(config.request_timeout))
            // Endpoints often share a host: keep every connection the bound allows open, or
            // they churn (a connect and a shutdown per request) under load.
            .pool_max_idle_per_host(config.max_in_flight)
            .build()?;
        let state = DispatchState::new(
            config.max_in_flight,
            config.max_in_flight_per_endpoint,
            POLL_INTERVAL,
            SystemClock.now(),
        );
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(state),
                finished: Notify::new(),
                endpoints: registry.endpoints.clone(),
                registry,
                store,
                service,
                client,
                metrics: WebhookMetrics::default(),
                attempts: TaskTracker::new(),
                recorder: Mutex::default(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, DispatchState> {
        self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u64 {
        self.state().in_flight() as u64
    }

    /// Claims and sends until `stop` is cancelled (then [`Dispatcher::finish`] waits for the
    /// attempts in flight); refreshes the endpoint registry on the way.
    pub async fn run(self, stop: CancellationToken) {
        let outbox_changed = self.shared.store.outbox_changed();
        let mut refresh = tokio::time::interval(self.shared.registry.refresh_interval());
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        loop {
            let wait = self.state().wait(SystemClock.now());
            if wait.is_zero() {
                self.claim_round().await;
                continue;
            }
            tokio::select! {
                () = outbox_changed.notified() => self.state().wake(SystemClock.now()),
                () = self.shared.finished.notified() => self.state().wake(SystemClock.now()),
                () = tokio::time::sleep(wait) => {}
                _ = refresh.tick() => {
                    if let Err(error) = self.shared.registry.refresh(self.shared.store.as_ref()).await {
                        tracing::warn!(%error, "refreshing the webhook endpoints failed");
                    }
                }
                () = stop.cancelled() => break,
            }
        }
    }

    /// Waits for the attempts in flight, at most until `deadline`, then releases the claims of
    /// those abandoned (their deliveries stay pending and can be claimed at once, here after a
    /// restart or by another instance).
    pub async fn finish(&self, deadline: tokio::time::Instant) {
        self.shared.attempts.close();
        if tokio::time::timeout_at(deadline, self.shared.attempts.wait()).await.is_err() {
            tracing::warn!(
                "webhook attempts still in flight at the end of the grace period; they stay pending"
            );
        }
        match self.shared.store.release_claims(&self.shared.config.instance_id).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "released the claims of abandoned attempts"),
            Err(error) => {
                tracing::warn!(%error, "releasing claims failed; they expire after the lease")
            }
        }
    }

    /// One claim round: asks the store for as many due queue heads as the slots allow and
    /// starts them.
    async fn claim_round(&self) {
        let now = SystemClock.now();
        let endpoint_ids: Vec<String> = self
            .shared
            .endpoints
            .all()
            .iter()
            .filter(|endpoint| endpoint.record.enabled)
            .map(|endpoint| endpoint.record.id.clone())
            .collect();
        let budget = self.state().budget(&endpoint_ids);
        if budget.is_empty() {
            self.state().claimed(&[], &[], None, now);
            return;
        }
        let request = ClaimRequest {
            owner: self.shared.config.instance_id.clone(),
            now,
            lease_ms: i64::try_from(self.shared.config.claim_lease.as_millis()).unwrap_or(i64::MAX),
            slots: budget.clone(),
            run: MAX_RUN,
        };
        match self.shared.store.claim(request).await {
            Ok(claimed) => {
                self.shared.metrics.claimed(claimed.deliveries.len());
                // A queue's head, then its run: one slot, one request in flight.
                let mut runs: Vec<Vec<ClaimedDelivery>> = Vec::new();
                for delivery in claimed.deliveries {
                    match runs.last_mut() {
                        Some(run)
                            if run[0].delivery.endpoint_id == delivery.delivery.endpoint_id
                                && run[0].delivery.resource_key
                                    == delivery.delivery.resource_key =>
                        {
                            run.push(delivery)
                        }
                        _ => runs.push(vec![delivery]),
                    }
                }
                let endpoints: Vec<&str> =
                    runs.iter().map(|run| run[0].delivery.endpoint_id.as_str()).collect();
                let after = self.state().claimed(&budget, &endpoints, claimed.next_due, now);
                for run in runs {
                    let dispatcher = self.clone();
                    self.shared.attempts.spawn(async move { dispatcher.send_run(run).await });
                }
                if after == AfterClaim::ClaimAgain {
                    tokio::task::yield_now().await;
                }
            }
            Err(error) => {
                let retry_in = self.state().claim_failed(SystemClock.now());
                self.shared.metrics.claim_failed();
                tracing::warn!(%error, ?retry_in, "claiming webhook deliveries failed");
            }
        }
    }

    /// Sends a queue's run in order, one request at a time. A delivered or dead outcome lets
    /// the next delivery go at once while its record is written (the next one is claimed
    /// already, so no other dispatcher can send it; after a crash before the record, the
    /// delivery is made again: at least once, and the order of first attempts holds). A retry
    /// ends the run: its record is written, the rest released. The slot is freed once every
    /// record is written, so the queue's next claim sees them.
    async fn send_run(&self, run: Vec<ClaimedDelivery>) {
        let shared = &self.shared;
        let endpoint_id = run[0].delivery.endpoint_id.clone();
        let mut records = Vec::new();
        let config = &shared.config;
        let margin = RUN_MARGIN.min(config.claim_lease.saturating_sub(config.request_timeout) / 2);
        let needed =
            i64::try_from((config.request_timeout + margin).as_millis()).unwrap_or(i64::MAX);
        let mut run = run.into_iter().enumerate();
        while let Some((index, claimed)) = run.next() {
            if index > 0 && claimed.expires_at.millis_since(SystemClock.now()) < needed {
                let rest = std::iter::once(claimed).chain(run.map(|(_, claimed)| claimed));
                self.release(rest.collect()).await;
                break;
            }
            let Some(endpoint) = shared.endpoints.get(&claimed.delivery.endpoint_id) else {
                // Deleted meanwhile: the store made its deliveries dead.
                break;
            };
            let delivery = &claimed.delivery;
            let started_at = SystemClock.now();
            let result = sender::send(
                &shared.client,
                &endpoint,
                &delivery.message_id,
                &delivery.payload,
                shared.config.request_timeout,
            )
            .await;
            let random = rand::rng().random_range(0.0..1.0);
            let outcome =
                attempt::outcome(&result, delivery, &shared.config.schedule, started_at, random);
            shared.metrics.attempt(result.result);
            tracing::debug!(delivery = delivery.id, attempt = delivery.attempts + 1, status = ?result.status,
                error = ?result.error, ?outcome, "webhook attempt");
            let record = attempt::record(&claimed, started_at, &result, outcome.clone());
            let finished =
                Finished { claimed, url: endpoint.record.url.clone(), started_at, result };
            if matches!(outcome, AttemptOutcome::Retry(_)) {
                // The head waits for its retry: the rest of the run goes back.
                let recorded = self.record(record).await;
                self.recorded(recorded, &outcome, &finished);
                self.release(run.map(|(_, claimed)| claimed).collect()).await;
                break;
            }
            let dispatcher = self.clone();
            records.push(shared.attempts.spawn(async move {
                let recorded = dispatcher.record(record).await;
                dispatcher.recorded(recorded, &outcome, &finished);
            }));
        }
        for record in records {
            let _ = record.await;
        }
        self.finished(&endpoint_id);
    }

    /// Releases what is left of a run, so that it can be claimed again at once.
    async fn release(&self, rest: Vec<ClaimedDelivery>) {
        if rest.is_empty() {
            return;
        }
        let claims = rest.into_iter().map(|claimed| (claimed.delivery.id, claimed.claim)).collect();
        if let Err(error) = self.shared.store.release(claims).await {
            tracing::warn!(%error, "releasing the rest of a run failed; its claims expire after the lease");
        }
    }

    /// Counts and reports an attempt once its record is written (or fenced out).
    fn recorded(&self, recorded: Option<bool>, outcome: &AttemptOutcome, finished: &Finished) {
        let shared = &self.shared;
        let delivery = &finished.claimed.delivery;
        match recorded {
            Some(true) if *outcome == AttemptOutcome::Delivered => {
                shared.metrics.dispatched(true);
                self.analytics_event(finished);
            }
            Some(true) if *outcome == AttemptOutcome::Dead => {
                shared.metrics.dispatched(false);
                tracing::warn!(delivery = delivery.id, endpoint = %delivery.endpoint_id, event = %delivery.event,
                    error = ?finished.result.error, "webhook delivery is dead after its last attempt");
                self.analytics_event(finished);
            }
            Some(true) => {}
            Some(false) => {
                shared.metrics.fenced();
                tracing::info!(
                    delivery = delivery.id,
                    epoch = finished.claimed.claim.epoch,
                    "attempt not recorded: the claim is no longer current (taken over, or the endpoint was deleted)"
                );
            }
            // The store is closed (shutdown): the delivery stays pending, its claim expires.
            None => {}
        }
    }

    fn finished(&self, endpoint_id: &str) {
        self.state().finished(endpoint_id);
        self.shared.finished.notify_one();
    }

    /// Records an attempt, retrying while the store fails: whether it was recorded (`false`:
    /// fenced out), or `None` if the store is closed.
    ///
    /// Attempts finishing together are written together: the first caller to find no write
    /// going on writes every record queued meanwhile, in rounds until none is left, and tells
    /// each caller how it went (one store request for many attempts, not one each).
    async fn record(&self, record: AttemptRecord) -> Option<bool> {
        let (done, result) = tokio::sync::oneshot::channel();
        let lead = {
            let mut recorder = self.recorder();
            recorder.queued.push((record, done));
            !std::mem::replace(&mut recorder.writing, true)
        };
        if lead {
            loop {
                let queued = {
                    let mut recorder = self.recorder();
                    if recorder.queued.is_empty() {
                        recorder.writing = false;
                        break;
                    }
                    std::mem::take(&mut recorder.queued)
                };
                let (attempts, waiting): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
                let written = self.write_attempts(attempts).await;
                for (index, done) in waiting.into_iter().enumerate() {
                    let _ = done.send(written.as_ref().map(|flags| flags[index]));
                }
            }
        }
        result.await.unwrap_or(None)
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.shared.recorder.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn write_attempts(&self, attempts: Vec<AttemptRecord>) -> Option<Vec<bool>> {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.shared.store.record_attempts(attempts.clone()).await {
                Ok(recorded) => return Some(recorded),
                Err(StoreError::Closed) => return None,
                Err(error) => {
                    tracing::error!(%error, attempts = attempts.len(), retry_in = ?wait, "recording webhook attempts failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// The `WEBHOOK` analytics event of a delivery's final outcome (reference §3.10).
    fn analytics_event(&self, finished: &Finished) {
        let info = attempt::webhook_info(
            &finished.claimed.delivery,
            &finished.url,
            finished.started_at,
            &finished.result,
        );
        let service = &self.shared.service;
        let meta =
            CallMeta { at: SystemClock.now(), node: service.service_node(WEBHOOK_EVENT_NODE) };
        let _ = service.apply(meta, Call::Webhook { info });
    }

    /// The webhook metrics, with the outbox counts given.
    pub fn metric_families(&self, outbox: Option<OutboxCounts>) -> Vec<MetricFamily> {
        self.shared.metrics.families(outbox, self.in_flight())
    }
}
