//! The dispatcher: delivers pending deliveries in FIFO order per endpoint and resource key, one
//! request in flight per key, keys in parallel up to a global bound and a per-endpoint bound
//! (so a hung endpoint holds at most its own share), retries on the schedule, and records every
//! attempt before moving on. Its queues are a cache of the store's pending deliveries: built
//! from the store at start, fed by the pipeline after each commit, and by requeues.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt as _;
use telemetry_core::metrics::{Histogram, MetricFamily, MetricKind, MetricSample, MetricValue};
use telemetry_core::proto as lk;
use telemetry_core::retry::RetrySchedule;
use telemetry_core::{Call, CallMeta, Clock as _, SystemClock, TelemetryService, UnixMillis};
use telemetry_store::Store;
use telemetry_store::model::{
    AttemptOutcome, AttemptRecord, OutboxCounts, PendingDelivery, WriteBatch,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::webhooks::sender::{self, SendResult};
use crate::webhooks::{Endpoint, Endpoints};

/// LiveKit's `livekit_webhook_queue_length` buckets.
const QUEUE_LENGTH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 40.0, 80.0];

/// The node the `WEBHOOK` analytics events are attributed to: none. (LiveKit's come from the SFU
/// node that sent the webhook; here the service sends it, and it is not an SFU node to list in
/// `/v1/nodes`.)
pub const WEBHOOK_EVENT_NODE: &str = "";

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
}

type QueueKey = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<PendingDelivery>,
    in_flight: bool,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<QueueKey, Queue>,
    /// Per endpoint, the resource keys that may be startable now (entries can be stale: checked
    /// when taken). By endpoint so that an endpoint at its bound is skipped at once.
    ready: HashMap<Arc<str>, VecDeque<Arc<str>>>,
    /// Keys whose head is due later (entries can be stale).
    timers: BinaryHeap<Reverse<(i64, QueueKey)>>,
    in_flight: usize,
    per_endpoint: HashMap<Arc<str>, usize>,
    pending: u64,
}

/// Delivers the outbox; cheap to clone.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: DispatchConfig,
    state: Mutex<State>,
    /// Notified when work may be startable: a delivery was queued or an attempt finished.
    wake: Notify,
    endpoints: Endpoints,
    store: Arc<dyn Store>,
    service: TelemetryService,
    client: reqwest::Client,
    metrics: WebhookMetrics,
    /// Every attempt in flight; the shutdown waits for them.
    attempts: TaskTracker,
    /// Attempt records waiting to be written together.
    recorder: Mutex<Recorder>,
}

#[derive(Debug, Default)]
struct Recorder {
    queued: Vec<(AttemptRecord, tokio::sync::oneshot::Sender<bool>)>,
    /// Whether a caller is writing (and will take what is queued).
    writing: bool,
}

impl Dispatcher {
    /// Creates a dispatcher with nothing queued.
    ///
    /// # Errors
    ///
    /// Fails if the HTTP client cannot be built.
    pub fn new(
        config: DispatchConfig,
        endpoints: Endpoints,
        store: Arc<dyn Store>,
        service: TelemetryService,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(config.request_timeout))
            // Endpoints often share a host: keep every connection the bound allows open, or
            // they churn (a connect and a shutdown per request) under load.
            .pool_max_idle_per_host(config.max_in_flight)
            .build()?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                endpoints,
                store,
                service,
                client,
                metrics: WebhookMetrics::default(),
                attempts: TaskTracker::new(),
                recorder: Mutex::default(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues the store's pending deliveries (at start).
    ///
    /// # Errors
    ///
    /// Fails if the store does.
    pub async fn load(&self) -> Result<usize, telemetry_store::StoreError> {
        let pending = self.shared.store.pending_deliveries().await?;
        let count = pending.len();
        self.enqueue(pending);
        Ok(count)
    }

    /// Queues deliveries (just committed, or requeued). A delivery already queued gets the new
    /// due time (a retry brought forward).
    pub fn enqueue(&self, deliveries: Vec<PendingDelivery>) {
        if deliveries.is_empty() {
            return;
        }
        let now = SystemClock.now();
        let mut state = self.state();
        for delivery in deliveries {
            let key: QueueKey =
                (delivery.endpoint_id.as_str().into(), delivery.resource_key.as_str().into());
            let queue = state.queues.entry(key.clone()).or_default();
            // Newly committed deliveries have ids above every queued one: only a requeue can
            // find itself already queued, or go anywhere but the back.
            let newest = queue.items.back().is_none_or(|back| back.id < delivery.id);
            if !newest
                && let Some(queued) = queue.items.iter_mut().find(|queued| queued.id == delivery.id)
            {
                queued.next_attempt_at = delivery.next_attempt_at;
                queued.retry_base = delivery.retry_base;
                let head = queue.items.front().is_some_and(|head| head.id == delivery.id);
                if head && !queue.in_flight {
                    schedule_head(&mut state, key, now);
                }
                continue;
            }
            // In id order: the order the messages were produced in. The head in flight stays.
            let position = if newest {
                queue.items.len()
            } else {
                let after = queue
                    .items
                    .iter()
                    .rposition(|queued| queued.id < delivery.id)
                    .map_or(0, |index| index + 1);
                if queue.in_flight { after.max(1) } else { after }
            };
            queue.items.insert(position, delivery);
            let length = queue.items.len();
            let startable = position == 0 && !queue.in_flight;
            state.pending += 1;
            self.shared
                .metrics
                .queue_length
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .observe(length as f64);
            if startable {
                schedule_head(&mut state, key, now);
            }
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Forgets the queued deliveries of a deleted endpoint (the store made them dead).
    pub fn remove_endpoint(&self, endpoint_id: &str) {
        let mut state = self.state();
        let mut removed = 0;
        state.queues.retain(|(endpoint, _), queue| {
            if &**endpoint == endpoint_id {
                // The head in flight finishes on its own.
                removed += queue.items.len() - usize::from(queue.in_flight);
                queue.items.truncate(usize::from(queue.in_flight));
                queue.in_flight
            } else {
                true
            }
        });
        state.pending -= removed as u64;
    }

    /// Deliveries queued, in flight included.
    pub fn pending(&self) -> u64 {
        self.state().pending
    }

    /// Starts what is due until `stop` is cancelled (then [`Dispatcher::finish`] waits for the
    /// attempts in flight).
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let next_due = self.start_due();
            let wait = next_due
                .map(|due| {
                    Duration::from_millis(
                        u64::try_from(due.millis_since(SystemClock.now())).unwrap_or(0),
                    )
                })
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => break,
            }
        }
    }

    /// Waits for the attempts in flight, at most until `deadline`; an abandoned attempt's
    /// delivery stays pending in the store and is made again after a restart.
    pub async fn finish(&self, deadline: tokio::time::Instant) {
        self.shared.attempts.close();
        if tokio::time::timeout_at(deadline, self.shared.attempts.wait()).await.is_err() {
            tracing::warn!(
                "webhook attempts still in flight at the end of the grace period; they stay pending"
            );
        }
    }

    /// Starts every key whose head is due and which has room; returns when the next timer is due.
    fn start_due(&self) -> Option<UnixMillis> {
        let now = SystemClock.now();
        let config = &self.shared.config;
        let mut started = Vec::new();
        let next_due = {
            let mut state = self.state();
            while let Some(Reverse((due, _))) = state.timers.peek() {
                if *due > now.0 {
                    break;
                }
                let Reverse((_, key)) = state.timers.pop().expect("peeked");
                state.ready.entry(key.0.clone()).or_default().push_back(key.1);
            }
            // Round robin over the endpoints with ready keys, one start each per round, so that
            // under the global bound every endpoint gets its turn.
            let endpoints: Vec<Arc<str>> = state.ready.keys().cloned().collect();
            let mut progress = true;
            while progress && state.in_flight < config.max_in_flight {
                progress = false;
                for endpoint in &endpoints {
                    if state.in_flight >= config.max_in_flight {
                        break;
                    }
                    if state.per_endpoint.get(endpoint).copied().unwrap_or(0)
                        >= config.max_in_flight_per_endpoint
                    {
                        continue;
                    }
                    if let Some(start) = take_ready(&mut state, endpoint, now) {
                        started.push(start);
                        progress = true;
                    }
                }
            }
            state.ready.retain(|_, keys| !keys.is_empty());
            state.timers.peek().map(|Reverse((due, _))| UnixMillis(*due))
        };
        for (key, delivery) in started {
            let dispatcher = self.clone();
            self.shared.attempts.spawn(async move { dispatcher.attempt(key, delivery).await });
        }
        next_due
    }

    async fn attempt(&self, key: QueueKey, delivery: PendingDelivery) {
        let shared = &self.shared;
        let Some(endpoint) = shared.endpoints.get(&delivery.endpoint_id) else {
            // Deleted meanwhile: the store made the delivery dead.
            self.complete(&key, delivery.id, None);
            return;
        };
        let started_at = SystemClock.now();
        let result = sender::send(
            &shared.client,
            &endpoint,
            &delivery.message_id,
            &delivery.payload,
            shared.config.request_timeout,
        )
        .await;
        let attempt = delivery.attempts + 1;
        let took_ms = i64::try_from(result.took.as_millis()).unwrap_or(i64::MAX);
        let outcome = if result.delivered() {
            AttemptOutcome::Delivered
        } else {
            let random = rand::rng().random_range(0.0..1.0);
            match shared.config.schedule.next_wait(
                attempt - delivery.retry_base,
                result.retry_after,
                random,
            ) {
                Some(wait) => AttemptOutcome::Retry(
                    started_at
                        .plus_millis(took_ms)
                        .plus_millis(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
                ),
                None => AttemptOutcome::Dead,
            }
        };
        shared.metrics.attempt(result.result);
        tracing::debug!(delivery = delivery.id, attempt, status = ?result.status, error = ?result.error, ?outcome, "webhook attempt");
        let record = AttemptRecord {
            delivery_id: delivery.id,
            attempt,
            started_at,
            duration_ms: took_ms,
            status_code: result.status,
            error: result.error.clone(),
            outcome: outcome.clone(),
        };
        if let AttemptOutcome::Retry(_) = outcome {
            // The head stays until its next attempt: its retry time must be on disk first.
            if self.record(record).await {
                self.complete(&key, delivery.id, Some((outcome, attempt)));
            }
            // Else the store is closed (shutdown): the key stays blocked, the delivery pending
            // in the store.
            return;
        }
        // A final outcome lets the key's next delivery start at once, while the attempt is
        // recorded: at least once still holds (after a crash before the record, the delivery
        // is pending again and made again, after the ones it preceded had their first
        // attempt), and so does each key's order of first attempts.
        self.complete(&key, delivery.id, Some((outcome.clone(), attempt)));
        if !self.record(record).await {
            // The store is closed (shutdown): the delivery stays pending there.
            return;
        }
        if outcome == AttemptOutcome::Delivered {
            shared.metrics.dispatched(true);
        } else {
            shared.metrics.dispatched(false);
            tracing::warn!(delivery = delivery.id, endpoint = %endpoint.record.id, event = %delivery.event,
                error = ?result.error, "webhook delivery is dead after its last attempt");
        }
        self.analytics_event(&endpoint, &delivery, started_at, &result);
    }

    /// Records an attempt, retrying while the store fails; false if the store is closed.
    ///
    /// Attempts finishing together are written together: the first caller to find no write
    /// going on writes every record queued meanwhile, in rounds until none is left, and tells
    /// each caller how it went (one store request for many attempts, not one each).
    async fn record(&self, record: AttemptRecord) -> bool {
        let (done, result) = tokio::sync::oneshot::channel();
        let lead = {
            let mut recorder =
                self.shared.recorder.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            recorder.queued.push((record, done));
            !std::mem::replace(&mut recorder.writing, true)
        };
        if lead {
            loop {
                let queued = {
                    let mut recorder = self
                        .shared
                        .recorder
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if recorder.queued.is_empty() {
                        recorder.writing = false;
                        break;
                    }
                    std::mem::take(&mut recorder.queued)
                };
                let (attempts, waiting): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
                let written = self.write_attempts(attempts).await;
                for done in waiting {
                    let _ = done.send(written);
                }
            }
        }
        result.await.unwrap_or(false)
    }

    async fn write_attempts(&self, attempts: Vec<AttemptRecord>) -> bool {
        let mut wait = Duration::from_millis(100);
        loop {
            match self
                .shared
                .store
                .write(WriteBatch { attempts: attempts.clone(), ..WriteBatch::default() })
                .await
            {
                Ok(_) => return true,
                Err(telemetry_store::StoreError::Closed) => return false,
                Err(error) => {
                    tracing::error!(%error, attempts = attempts.len(), retry_in = ?wait, "recording webhook attempts failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn complete(&self, key: &QueueKey, id: i64, outcome: Option<(AttemptOutcome, u32)>) {
        let now = SystemClock.now();
        let mut state = self.state();
        state.in_flight -= 1;
        if let Some(count) = state.per_endpoint.get_mut(&key.0) {
            *count -= 1;
        }
        if let Some(queue) = state.queues.get_mut(key) {
            queue.in_flight = false;
            let is_head = queue.items.front().is_some_and(|head| head.id == id);
            match outcome {
                Some((AttemptOutcome::Retry(at), attempts)) if is_head => {
                    let head = queue.items.front_mut().expect("the head");
                    head.next_attempt_at = at;
                    head.attempts = attempts;
                }
                _ if is_head => {
                    queue.items.pop_front();
                    state.pending -= 1;
                }
                _ => {}
            }
            let empty = state.queues.get(key).is_none_or(|queue| queue.items.is_empty());
            if empty {
                state.queues.remove(key);
            } else {
                schedule_head(&mut state, key.clone(), now);
            }
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// The `WEBHOOK` analytics event of a delivery's final outcome (reference §3.10), with the
    /// HTTP status LiveKit leaves empty.
    fn analytics_event(
        &self,
        endpoint: &Endpoint,
        delivery: &PendingDelivery,
        started_at: UnixMillis,
        result: &SendResult,
    ) {
        let event: lk::WebhookEvent = serde_json::from_str(&delivery.payload).unwrap_or_default();
        let nanos = |millis: i64| millis.saturating_mul(1_000_000);
        let info = lk::WebhookInfo {
            event_id: delivery.message_id.clone(),
            event: delivery.event.clone(),
            room_name: event.room.as_ref().map(|room| room.name.clone()).unwrap_or_default(),
            room_id: event.room.as_ref().map(|room| room.sid.clone()).unwrap_or_default(),
            participant_identity: event
                .participant
                .as_ref()
                .map(|p| p.identity.clone())
                .unwrap_or_default(),
            participant_id: event.participant.as_ref().map(|p| p.sid.clone()).unwrap_or_default(),
            track_id: event.track.as_ref().map(|track| track.sid.clone()).unwrap_or_default(),
            egress_id: event
                .egress_info
                .as_ref()
                .map(|egress| egress.egress_id.clone())
                .unwrap_or_default(),
            ingress_id: event
                .ingress_info
                .as_ref()
                .map(|ingress| ingress.ingress_id.clone())
                .unwrap_or_default(),
            created_at: Some(UnixMillis::from_secs(event.created_at).to_timestamp()),
            queued_at: Some(delivery.created_at.to_timestamp()),
            queue_duration_ns: nanos(started_at.millis_since(delivery.created_at)),
            sent_at: Some(started_at.to_timestamp()),
            send_duration_ns: i64::try_from(result.took.as_nanos()).unwrap_or(i64::MAX),
            url: endpoint.record.url.clone(),
            send_error: result.error.clone().unwrap_or_default(),
            http_status_code: result.status.map(i32::from).unwrap_or(0),
            ..Default::default()
        };
        let service = &self.shared.service;
        let meta = CallMeta { at: SystemClock.now(), node: service.node(WEBHOOK_EVENT_NODE) };
        let _ = service.apply(meta, Call::Webhook { info });
    }

    /// The webhook metrics, with the outbox counts given.
    pub fn metric_families(&self, outbox: Option<OutboxCounts>) -> Vec<MetricFamily> {
        self.shared.metrics.families(outbox, self.pending())
    }
}

/// Takes the endpoint's first ready key whose head is startable and marks it in flight; stale
/// entries are dropped, and heads not yet due go back to the timers.
fn take_ready(
    state: &mut State,
    endpoint: &Arc<str>,
    now: UnixMillis,
) -> Option<(QueueKey, PendingDelivery)> {
    loop {
        let resource = state.ready.get_mut(endpoint)?.pop_front()?;
        let key: QueueKey = (endpoint.clone(), resource);
        let Some(queue) = state.queues.get_mut(&key) else { continue };
        let Some(head) = queue.items.front() else { continue };
        if queue.in_flight {
            continue;
        }
        if head.next_attempt_at > now {
            let due = head.next_attempt_at.0;
            state.timers.push(Reverse((due, key)));
            continue;
        }
        let head = head.clone();
        queue.in_flight = true;
        state.in_flight += 1;
        *state.per_endpoint.entry(endpoint.clone()).or_default() += 1;
        return Some((key, head));
    }
}

fn schedule_head(state: &mut State, key: QueueKey, now: UnixMillis) {
    let Some(head) = state.queues.get(&key).and_then(|queue| queue.items.front()) else { return };
    if head.next_attempt_at <= now {
        state.ready.entry(key.0).or_default().push_back(key.1);
    } else {
        let due = head.next_attempt_at.0;
        state.timers.push(Reverse((due, key)));
    }
}

/// The webhook metrics: LiveKit's `livekit_webhook_dispatch_total` and
/// `livekit_webhook_queue_length`, and `rtc_telemetry_webhook_*`.
#[derive(Debug)]
struct WebhookMetrics {
    /// Final outcomes: delivered, dead.
    dispatched: [AtomicU64; 2],
    attempts: Mutex<Vec<(&'static str, u64)>>,
    queue_length: Mutex<Histogram>,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self {
            dispatched: Default::default(),
            attempts: Mutex::new(Vec::new()),
            queue_length: Mutex::new(Histogram::new(QUEUE_LENGTH_BUCKETS)),
        }
    }
}

impl WebhookMetrics {
    fn dispatched(&self, delivered: bool) {
        self.dispatched[usize::from(!delivered)].fetch_add(1, Ordering::Relaxed);
    }

    fn attempt(&self, result: &'static str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match attempts.iter_mut().find(|(name, _)| *name == result) {
            Some((_, count)) => *count += 1,
            None => attempts.push((result, 1)),
        }
    }

    fn families(&self, outbox: Option<OutboxCounts>, queued: u64) -> Vec<MetricFamily> {
        let number = |labels: Vec<(&'static str, String)>, value: u64| MetricSample {
            labels,
            value: MetricValue::Number(value as f64),
        };
        let mut families = vec![
            MetricFamily {
                name: "livekit_webhook_dispatch_total",
                help: "Webhook deliveries by final outcome: success (a 2xx answer) or failure (dead after the last attempt). Nothing is dropped.",
                kind: MetricKind::Counter,
                samples: vec![
                    number(
                        vec![("status", "success".to_owned()), ("reason", String::new())],
                        self.dispatched[0].load(Ordering::Relaxed),
                    ),
                    number(
                        vec![("status", "failure".to_owned()), ("reason", String::new())],
                        self.dispatched[1].load(Ordering::Relaxed),
                    ),
                ],
            },
            MetricFamily {
                name: "livekit_webhook_queue_length",
                help: "Length of a resource queue after each delivery queued.",
                kind: MetricKind::Histogram,
                samples: vec![MetricSample {
                    labels: Vec::new(),
                    value: MetricValue::Histogram(
                        self.queue_length
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone(),
                    ),
                }],
            },
            MetricFamily {
                name: "rtc_telemetry_webhook_attempts_total",
                help: "Webhook delivery attempts by result.",
                kind: MetricKind::Counter,
                samples: self
                    .attempts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .map(|(result, count)| number(vec![("result", (*result).to_owned())], *count))
                    .collect(),
            },
            MetricFamily {
                name: "rtc_telemetry_webhook_queued",
                help: "Deliveries queued in the dispatcher (pending, in flight included).",
                kind: MetricKind::Gauge,
                samples: vec![number(Vec::new(), queued)],
            },
        ];
        if let Some(outbox) = outbox {
            families.push(MetricFamily {
                name: "rtc_telemetry_webhook_outbox",
                help: "Deliveries in the outbox by status.",
                kind: MetricKind::Gauge,
                samples: vec![
                    number(vec![("status", "pending".to_owned())], outbox.pending),
                    number(vec![("status", "delivered".to_owned())], outbox.delivered),
                    number(vec![("status", "dead".to_owned())], outbox.dead),
                ],
            });
        }
        families
    }
}
