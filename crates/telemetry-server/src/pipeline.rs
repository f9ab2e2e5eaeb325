//! The pipeline from the core to the store: the single consumer of the core's ordered outputs,
//! which turns them into store writes and publishes how far they are durable, and the timers that
//! flush stats workers, drain node rate cells and prune old data.
//!
//! Ingest acknowledges a call that produced outputs only once the durable watermark has passed
//! the call's last output: an acknowledged event, and later its webhook, is on disk.
//!
//! In cluster mode the consumer writes the outputs of each partition consumed here in a batch
//! of its own, fenced by the partition's lease, and never splits a flush across writes; a flush
//! is a checkpoint that stores each partition's offset with its windows and worker states
//! (`crate::cluster::fencing`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use telemetry_core::{
    Clock, Output, OutputReceiver, RenderedWebhook, Sequenced, SystemClock, TelemetryService,
};
use telemetry_store::Store;
use telemetry_store::model::{
    EventRecord, IssueRecord, Lease, NodeRoomsRecord, OutgoingWebhook, QualityRecord,
    RateCellRecord, StatsWindowRecord, WebhookMessage, WorkerRecord, WriteBatch, WriteMark,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::fencing::{Cut, Fencing, Route};
use crate::metrics::ServerMetrics;
use crate::room_reports::{FinishedRoom, FinishedRooms};
use crate::webhooks::{Endpoints, Webhooks};

/// The `AnalyticsEventType` name of a room's end.
const ROOM_ENDED: &str = "ROOM_ENDED";

/// Most outputs turned into one store write.
const MAX_OUTPUTS_PER_WRITE: usize = 4096;

/// How often node rate cells are drained into the store.
pub const RATES_DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// How often old data is pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// The first wait after a failed store write; it doubles up to `MAX_RETRY_WAIT`.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(100);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Publishes the sequence number up to which every output is stored, and counts the callers
/// waiting for it (the consumer's group commit looks at them).
#[derive(Clone, Debug)]
pub struct Durable {
    receiver: watch::Receiver<u64>,
    waiting: Arc<AtomicUsize>,
    flushes: Arc<Flushes>,
}

/// Counts one waiter while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Durable {
    /// Waits until every output up to `seq` is stored.
    ///
    /// # Errors
    ///
    /// Fails if the pipeline stopped first.
    pub async fn wait_for(&self, seq: u64) -> Result<(), watch::error::RecvError> {
        let mut receiver = self.receiver.clone();
        if *receiver.borrow() >= seq {
            return Ok(());
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        receiver.wait_for(|&durable| durable >= seq).await.map(|_| ())
    }

    /// The sequence number up to which every output is stored.
    pub fn current(&self) -> u64 {
        *self.receiver.borrow()
    }

    /// The flushes of the stats workers, counted.
    pub fn flushes(&self) -> &Flushes {
        &self.flushes
    }
}

/// Counts the flushes of the stats workers, so that a caller can wait for a flush that started
/// after a moment of its own (cluster mode acknowledges a JetStream message only once a flush
/// that started after the message was applied is stored: its samples are then in stored
/// windows).
#[derive(Debug)]
pub struct Flushes {
    /// Cluster mode: each flush is a checkpoint of the partitions consumed here.
    fencing: Option<Arc<Fencing>>,
    started: AtomicU64,
    /// The number of the latest flush that completed, and the last output's sequence number
    /// when it did (the flush's outputs are at or below it).
    completed: watch::Sender<(u64, u64)>,
}

impl Default for Flushes {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Flushes {
    /// Flushes counted; in cluster mode each one a checkpoint of `fencing`.
    pub fn new(fencing: Option<Arc<Fencing>>) -> Self {
        Self { fencing, started: AtomicU64::new(0), completed: watch::channel((0, 0)).0 }
    }

    /// A mark: flushes numbered above it start after this call.
    pub fn mark(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Waits for a flush numbered above `mark` to complete; returns the sequence number its
    /// outputs are at or below (they are stored once the durable watermark passes it).
    pub async fn completed_after(&self, mark: u64) -> u64 {
        let mut receiver = self.completed.subscribe();
        match receiver.wait_for(|&(number, _)| number > mark).await {
            Ok(completed) => completed.1,
            // Unreachable while `self` lives (it holds the sender); nothing is waited for.
            Err(_) => 0,
        }
    }

    /// The last completed flush above `mark`, if there is one yet.
    pub fn completed_since(&self, mark: u64) -> Option<u64> {
        let (number, seq) = *self.completed.borrow();
        (number > mark).then_some(seq)
    }

    fn start(&self) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn complete(&self, number: u64, seq: u64) {
        self.completed.send_if_modified(|completed| {
            // Flushes may overlap (the timer's and `POST /v1/flush`): keep the latest-numbered.
            if number > completed.0 {
                *completed = (number, completed.1.max(seq));
                true
            } else {
                false
            }
        });
    }
}

/// Whether the store takes writes: set by the consumer's writes and by a periodic ping. While it
/// does not, readiness fails and ingest answers 503 instead of accepting what it cannot store.
#[derive(Debug)]
pub struct StoreHealth {
    available: AtomicBool,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self { available: AtomicBool::new(true) }
    }
}

impl StoreHealth {
    /// Whether the store answered last time.
    pub fn available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    /// Records how the last store call went.
    pub fn set(&self, available: bool) {
        let was = self.available.swap(available, Ordering::SeqCst);
        if was != available {
            if available {
                tracing::info!("the store is available again");
            } else {
                tracing::error!("the store is unavailable: ingest answers 503 until it is back");
            }
        }
    }
}

/// How often the store is pinged, and how long a ping may take.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Pings the store until `stop` is cancelled, recording whether it answers.
pub async fn watch_store(store: Arc<dyn Store>, health: Arc<StoreHealth>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let answered = matches!(
                    tokio::time::timeout(PING_TIMEOUT, store.ping()).await,
                    Ok(Ok(()))
                );
                health.set(answered);
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Builds the core with a notifier that wakes the consumer.
///
/// In cluster mode (`partitions`, the stream's partition count) the node rate cells of samples
/// read from JetStream are kept apart by partition (the partition rule over the sample's room,
/// [`crate::cluster::partition`]; the core's rate groups): a partition's cells are drained only
/// by a flush, so they are written in the partition's checkpoint, fenced, in the transaction
/// that stores its offset, and dropped with the partition. A sample replayed after the stored
/// offset was then never counted in a stored cell before: it counts once.
pub fn build_core(
    config: telemetry_core::CoreConfig,
    partitions: Option<u32>,
) -> (TelemetryService, OutputReceiver, Arc<Notify>) {
    let notify = Arc::new(Notify::new());
    let waker = notify.clone();
    let mut builder =
        TelemetryService::builder(config).notifier(Box::new(move || waker.notify_one()));
    if let Some(partitions) = partitions {
        builder = builder.rate_groups(Arc::new(move |name: &str, sid: &str| {
            crate::cluster::partition::partition_of_room(name, sid, partitions)
                .unwrap_or(crate::cluster::partition::ROOMLESS_PARTITION)
        }));
    }
    let (service, receiver) = builder.build();
    (service, receiver, notify)
}

/// The longest a write waits for more requests to join it (see [`Consumer`]).
const MAX_GATHER: Duration = Duration::from_millis(2);

/// The consumer of the core's outputs.
///
/// It stores one write at a time, holding whatever outputs wait when the previous write returns
/// (group commit). Under concurrent load that alone splits the callers into cohorts: the callers
/// a write acknowledges send their next calls while the next write, holding only the others, is
/// already under way, so each write holds about half of them and each caller waits about two
/// writes. So when callers were waiting on the previous write, the next one waits for them to
/// come back, until as many callers wait as when the previous write started, or a quarter of the
/// previous write's time (at most [`MAX_GATHER`]) has passed. A write after one that a single
/// caller waited on starts at once, so a lone caller never waits.
#[derive(Debug)]
pub struct Consumer {
    receiver: OutputReceiver,
    notify: Arc<Notify>,
    store: Arc<dyn Store>,
    durable: watch::Sender<u64>,
    waiting: Arc<AtomicUsize>,
    metrics: Arc<ServerMetrics>,
    webhooks: Webhooks,
    health: Arc<StoreHealth>,
    /// Cluster mode: how outputs are fenced and where writes are cut.
    fencing: Option<Arc<Fencing>>,
    flushes: Arc<Flushes>,
    /// Where rooms go once their `ROOM_ENDED` event is stored, for their `room_report`.
    finished_rooms: Option<FinishedRooms>,
    /// This consumer's token in the keys of the events and webhook messages whose ids its core
    /// drew ([`EventRecord::drawn_key`]): random, drawn at its creation. Also its name as the
    /// writer of its writes' marks ([`WriteMark`]).
    boot: u64,
    /// How many rounds of writes this consumer has made: each write's mark number.
    rounds: AtomicU64,
}

impl Consumer {
    /// Creates the consumer and the handle ingest waits on.
    pub fn new(
        receiver: OutputReceiver,
        notify: Arc<Notify>,
        store: Arc<dyn Store>,
        metrics: Arc<ServerMetrics>,
        webhooks: Webhooks,
        health: Arc<StoreHealth>,
        fencing: Option<Arc<Fencing>>,
    ) -> (Self, Durable) {
        let (durable, watermark) = watch::channel(0);
        let waiting = Arc::new(AtomicUsize::new(0));
        let flushes = Arc::new(Flushes::new(fencing.clone()));
        (
            Self {
                receiver,
                notify,
                store,
                durable,
                waiting: waiting.clone(),
                metrics,
                webhooks,
                health,
                fencing,
                flushes: flushes.clone(),
                finished_rooms: None,
                boot: rand::random(),
                rounds: AtomicU64::new(0),
            },
            Durable { receiver: watermark, waiting, flushes },
        )
    }

    /// Hands every room whose `ROOM_ENDED` event this consumer stores to `rooms`, after the
    /// commit that stored it ([`crate::room_reports`]).
    pub fn report_finished_rooms(&mut self, rooms: FinishedRooms) {
        self.finished_rooms = Some(rooms);
    }

    /// Stores outputs as they come until `stop` is cancelled, then stores what is left and
    /// returns. The caller cancels `stop` only after the last flush, so nothing is left behind.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            self.store_available().await;
            let checkpoint = async {
                match &self.fencing {
                    Some(fencing) => fencing.ended.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.notify.notified() => {}
                () = checkpoint => {}
                // A safety net: the notifier fires on empty-to-non-empty only.
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = stop.cancelled() => break,
            }
        }
        self.store_available().await;
    }

    async fn store_available(&self) {
        // How many callers waited when the previous write started, and how long it took.
        let mut previous: Option<(usize, Duration)> = None;
        // Without the cluster: outputs taken while the previous write committed, made into the
        // next write already.
        let mut prepared = Prepared::default();
        loop {
            if let Some((waited, took)) = previous
                && waited > 1
            {
                self.gather(waited, (took / 4).min(MAX_GATHER)).await;
            }
            let written = *self.durable.borrow();
            // Cluster mode: a flush's outputs are written in one write, cut where it ends.
            let limit = match self.fencing.as_deref().map(|fencing| fencing.next_cut(written)) {
                None | Some(Cut::Free) => MAX_OUTPUTS_PER_WRITE - prepared.count,
                Some(Cut::Through(end)) => usize::try_from(end - written).unwrap_or(usize::MAX),
                Some(Cut::Wait) => return,
            };
            let mut outputs = Vec::new();
            if limit > 0 {
                self.receiver.take(limit, &mut outputs);
            }
            if outputs.is_empty() && prepared.count == 0 && limit != 0 {
                return;
            }
            let (batches, last, count) = match &self.fencing {
                None => {
                    prepared.add(outputs, &self.webhooks.endpoints, self.boot);
                    let Prepared { batch, last, count } = std::mem::take(&mut prepared);
                    (vec![batch], last.unwrap_or(written), count as u64)
                }
                Some(fencing) => {
                    let last = outputs.last().map_or(written, |output| output.seq);
                    let count = outputs.len() as u64;
                    let now = SystemClock.now();
                    (
                        fenced_batches(
                            outputs,
                            last,
                            fencing,
                            &self.webhooks.endpoints,
                            self.boot,
                            now,
                        ),
                        last,
                        count,
                    )
                }
            };
            if batches.is_empty() && count == 0 {
                return;
            }
            let batches = self.marked(batches);
            let waited = self.waiting.load(Ordering::Relaxed);
            let write_started = tokio::time::Instant::now();
            let writes =
                futures::future::join_all(batches.into_iter().map(|batch| self.write(batch)));
            let results = match self.fencing {
                None => self.prepare_while(writes, &mut prepared).await,
                // A fenced write's cut depends on what the previous one stored.
                Some(_) => writes.await,
            };
            let mut took = Duration::ZERO;
            let mut fenced = 0;
            for (was_fenced, write_took) in results {
                fenced += usize::from(was_fenced);
                took = took.max(write_took);
            }
            if fenced > 0 {
                tracing::info!(fenced, "writes of partitions no longer held here fenced out");
            }
            self.metrics.store_write(took, count);
            self.durable.send_replace(last);
            previous = Some((waited, write_started.elapsed()));
        }
    }

    /// Marks a round's `batches` ([`WriteMark`]), so that a retry of one that was committed
    /// although its answer was lost writes nothing twice (rate cells are added to). Each batch of
    /// a round is of a writer of its own (this consumer, or this consumer for one lease of a
    /// partition), and rounds are written one after the other.
    fn marked(&self, mut batches: Vec<WriteBatch>) -> Vec<WriteBatch> {
        let number = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        let at = SystemClock.now();
        for batch in &mut batches {
            let writer = match &batch.fence {
                None => format!("{:016x}", self.boot),
                Some(fence) => {
                    format!("{:016x}/{}/{}", self.boot, fence.lease.partition, fence.lease.epoch)
                }
            };
            batch.mark = Some(WriteMark { writer, number, at });
        }
        batches
    }

    /// Awaits `writes`; meanwhile takes the outputs that arrive (up to a write's worth) and makes
    /// them into the next write, so that the conversion (events rendered as JSON, webhooks
    /// rendered) overlaps the store's commit instead of following it. The next write is sent
    /// only after these return: writes still commit one after the other, in output order.
    async fn prepare_while<T>(
        &self,
        writes: impl std::future::Future<Output = T>,
        prepared: &mut Prepared,
    ) -> T {
        let mut writes = std::pin::pin!(writes);
        loop {
            tokio::select! {
                biased;
                results = &mut writes => return results,
                () = self.notify.notified(), if prepared.count < MAX_OUTPUTS_PER_WRITE => {
                    let mut outputs = Vec::new();
                    self.receiver.take(MAX_OUTPUTS_PER_WRITE - prepared.count, &mut outputs);
                    prepared.add(outputs, &self.webhooks.endpoints, self.boot);
                }
            }
        }
    }

    /// Writes `batch`, retrying until the store takes it; returns whether it was fenced out,
    /// and how long the write that succeeded took.
    async fn write(&self, batch: WriteBatch) -> (bool, Duration) {
        let mut wait = FIRST_RETRY_WAIT;
        loop {
            let started = tokio::time::Instant::now();
            match self.store.write(batch.clone()).await {
                Ok(receipt) => {
                    // The store wakes the dispatcher for the deliveries it created: only now,
                    // with their rows committed, may webhooks be sent.
                    self.health.set(true);
                    if !receipt.fenced {
                        self.report_finished_rooms_of(&batch);
                    }
                    return (receipt.fenced, started.elapsed());
                }
                Err(error) => {
                    // Never drop what was accepted: retry until the store takes it.
                    if error.is_transient() {
                        self.health.set(false);
                    }
                    self.metrics.store_write_failed();
                    tracing::error!(%error, retry_in = ?wait, "store write failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
    }

    /// Hands the rooms whose `ROOM_ENDED` event `batch` (just committed) stored to the reporter,
    /// with a mark of the flushes started so far: flushes numbered above it start after this
    /// commit.
    fn report_finished_rooms_of(&self, batch: &WriteBatch) {
        let Some(rooms) = &self.finished_rooms else { return };
        let flush_mark = self.flushes.mark();
        for event in batch.events.iter().filter(|event| event.event_type == ROOM_ENDED) {
            rooms.push(FinishedRoom { sid: event.room_sid.clone(), flush_mark });
        }
    }

    /// Waits until `callers` callers wait for the durable watermark, at most `longest`.
    async fn gather(&self, callers: usize, longest: Duration) {
        let deadline = tokio::time::Instant::now() + longest;
        while self.waiting.load(Ordering::Relaxed) < callers {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return;
            }
            // A caller applies its calls (waking the consumer) just before it waits.
            tokio::select! {
                () = self.notify.notified() => {}
                () = tokio::time::sleep((deadline - now).min(Duration::from_micros(200))) => {}
            }
        }
    }
}

/// Outputs already made into a store write, waiting to be written (see
/// [`Consumer::prepare_while`]).
#[derive(Debug, Default)]
struct Prepared {
    batch: WriteBatch,
    /// The last output's sequence number, if any is held.
    last: Option<u64>,
    count: usize,
}

impl Prepared {
    /// Adds `outputs` (the queue's next ones, in order) to the write.
    fn add(&mut self, outputs: Vec<Sequenced>, endpoints: &Endpoints, boot: u64) {
        let Some(last) = outputs.last().map(|output| output.seq) else { return };
        self.last = Some(last);
        self.count += outputs.len();
        let mut batch = to_write_batch(outputs, endpoints, boot, SystemClock.now());
        self.batch.append(&mut batch);
    }
}

/// Turns core outputs into one store write: events, stats windows, node states and rates, and
/// each webhook with a delivery for every endpoint that wants it. The events and webhook messages
/// of lifecycle calls are keyed by their origin, if they have one, else by `boot` (the consumer's
/// token) and their output's sequence number ([`EventRecord::drawn_key`]).
pub fn to_write_batch(
    outputs: Vec<Sequenced>,
    endpoints: &Endpoints,
    boot: u64,
    now: telemetry_core::UnixMillis,
) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for output in outputs {
        let sequence = output.seq;
        match output.output {
            Output::Call(call) => {
                // The call's event and webhook (in tables of their own) share its key.
                let key = match call.origin {
                    Some(origin) => EventRecord::origin_key(origin),
                    None => EventRecord::drawn_key(boot, sequence),
                };
                let event = call.event.as_ref().map(|event| event.decode_boxed());
                if let Some(webhook) = call.webhook.as_ref().map(|webhook| webhook.decode_boxed()) {
                    let endpoint_ids = endpoints.select(&webhook.event);
                    if !endpoint_ids.is_empty() {
                        // Rendered once: every attempt to every endpoint sends these bytes.
                        let event_id =
                            event.as_ref().map(|event| event.id.clone()).unwrap_or_default();
                        let message = WebhookMessage {
                            key: key.clone(),
                            ..WebhookMessage::new(
                                RenderedWebhook::render(&webhook),
                                event_id,
                                call.at,
                            )
                        };
                        batch.webhooks.push(OutgoingWebhook { message, endpoint_ids });
                    }
                }
                if let Some(event) = &event {
                    let mut record = EventRecord::from_event(event);
                    record.key = key;
                    batch.events.push(record);
                }
            }
            Output::Stats(stats) => batch.stats.extend(StatsWindowRecord::from_batch(&stats)),
            Output::NodeRooms(rooms) => {
                batch.node_rooms.push(NodeRoomsRecord::from_node_rooms(&rooms, now))
            }
            Output::NodeRates(rates) => {
                batch.rate_cells.extend(rates.cells.into_iter().map(|cell| RateCellRecord {
                    node_id: cell.node.to_string(),
                    second: cell.second,
                    cell: cell.cell,
                }))
            }
            Output::Worker(state) => batch.workers.push(WorkerRecord::from_state(&state)),
            Output::QualityState(state) => batch.quality.push(QualityRecord::from_state(&state)),
            Output::Quality(change) => {
                let event = EventRecord::from_quality(&change);
                let endpoint_ids = endpoints.select(change.webhook_name());
                if !endpoint_ids.is_empty() {
                    let message =
                        WebhookMessage::new(change.render_webhook(), event.id.clone(), change.at);
                    batch.webhooks.push(OutgoingWebhook { message, endpoint_ids });
                }
                batch.events.push(event);
                batch.issues.push(IssueRecord::from_issue(&change.issue));
            }
        }
    }
    batch
}

/// Cluster mode's writes of `outputs` (the last of them, or the last written, is `last`): one
/// batch of the outputs of no partition held here, and one fenced batch per partition held
/// ([`crate::cluster::fencing`]). A partition's worker states are held back until its next
/// checkpoint; if this write completes one, each partition of it gets its offset and workers.
fn fenced_batches(
    outputs: Vec<Sequenced>,
    last: u64,
    fencing: &Fencing,
    endpoints: &Endpoints,
    boot: u64,
    now: telemetry_core::UnixMillis,
) -> Vec<WriteBatch> {
    let mut unfenced = WriteBatch::default();
    let mut by_lease: std::collections::BTreeMap<Lease, WriteBatch> = Default::default();
    for output in outputs {
        let seq = output.seq;
        let partition = match &output.output {
            // The partition of the samples whose cells they are (`build_core`).
            Output::NodeRates(rates) => rates.group,
            other => {
                output_room(other).and_then(|(name, sid)| fencing.partition_of_room(&name, &sid))
            }
        };
        let mut batch = to_write_batch(vec![output], endpoints, boot, now);
        match fencing.route(partition, seq) {
            Route::Unfenced => unfenced.append(&mut batch),
            Route::Fenced(lease) => {
                fencing.defer_workers(lease, std::mem::take(&mut batch.workers));
                by_lease
                    .entry(lease)
                    .or_insert_with(|| WriteBatch {
                        fence: Some(fencing.fence(lease)),
                        ..WriteBatch::default()
                    })
                    .append(&mut batch);
            }
            Route::Dropped => {}
        }
    }
    for (fence, workers) in fencing.take_checkpoint(last).unwrap_or_default() {
        let batch = by_lease.entry(fence.lease).or_default();
        batch.workers.extend(workers);
        batch.fence = Some(fence);
    }
    std::iter::once(unfenced)
        .chain(by_lease.into_values())
        .filter(|batch| !batch.is_empty())
        .collect()
}

/// The room an output is of, as (name, sid), found as the partition rule finds a call's
/// (`crate::cluster::partition`): an egress's by its info, an ingress's by its room name, an
/// API call's by its info, others by their room. `None` for node states and rates.
fn output_room(output: &Output) -> Option<(String, String)> {
    let pair = |name: &str, sid: &str| Some((name.to_owned(), sid.to_owned()));
    match output {
        Output::Call(call) => {
            if let Some(event) = &call.event {
                let event = event.decode_boxed();
                if let Some(room) = &event.room {
                    pair(&room.name, &room.sid)
                } else if let Some(egress) = &event.egress {
                    pair(&egress.room_name, &egress.room_id)
                } else if let Some(ingress) = &event.ingress {
                    pair(&ingress.room_name, "")
                } else if let Some(api_call) = &event.api_call {
                    pair(&api_call.room_name, &api_call.room_id)
                } else {
                    pair("", &event.room_id)
                }
            } else if let Some(webhook) = &call.webhook {
                let webhook = webhook.decode_boxed();
                if let Some(room) = &webhook.room {
                    pair(&room.name, &room.sid)
                } else if let Some(egress) = &webhook.egress_info {
                    pair(&egress.room_name, &egress.room_id)
                } else if let Some(ingress) = &webhook.ingress_info {
                    pair(&ingress.room_name, "")
                } else {
                    None
                }
            } else {
                None
            }
        }
        Output::Stats(batch) => pair(&batch.room_name, &batch.room_id),
        Output::Worker(state) => pair(&state.room_name, &state.room_id),
        Output::Quality(change) => pair(&change.issue.room_name, &change.issue.room_id),
        Output::QualityState(state) => pair(&state.room_name, &state.room_id),
        Output::NodeRooms(_) | Output::NodeRates(_) => None,
    }
}

/// Flushes every stats worker and drains node rates, on a blocking thread (a flush of many
/// workers takes longer than async code may hold a thread); returns the last output's sequence
/// number. Counted in `flushes`.
///
/// In cluster mode the flush is a checkpoint: it holds the write side of the fencing gate, so no
/// partition consumer applies a message meanwhile, and records the cut
/// ([`Fencing::begin_checkpoint`]).
/// The flush runs in a task of its own: a caller that goes away (an HTTP request dropped) does
/// not leave a checkpoint begun and never ended.
pub async fn flush(service: &TelemetryService, metrics: &ServerMetrics, flushes: &Flushes) -> u64 {
    let number = flushes.start();
    let started = tokio::time::Instant::now();
    let flushing = service.clone();
    let fencing = flushes.fencing.clone();
    let flush = tokio::spawn(async move {
        let _gate = match &fencing {
            Some(fencing) => Some(fencing.gate.write().await),
            None => None,
        };
        if let Some(fencing) = &fencing {
            fencing.begin_checkpoint(flushing.last_seq());
        }
        let workers = flushing.clone();
        let _ = tokio::task::spawn_blocking(move || {
            workers.flush_stats();
            workers.drain_node_rates();
        })
        .await;
        let seq = flushing.last_seq();
        if let Some(fencing) = &fencing {
            fencing.end_checkpoint(seq);
        }
        seq
    });
    let seq = flush.await.unwrap_or_else(|_| service.last_seq());
    metrics.flush(started.elapsed());
    flushes.complete(number, seq);
    seq
}

/// Runs the periodic work until `stop` is cancelled: flush every `flush_interval`, drain node
/// rates every second, prune data older than `retention` every ten minutes. In cluster mode the
/// node rates are drained by the flushes only (see [`build_core`]): every cell of a sample read
/// from JetStream then goes with its partition's checkpoint.
pub async fn run_timers(
    service: TelemetryService,
    durable: Durable,
    store: Arc<dyn Store>,
    metrics: Arc<ServerMetrics>,
    flush_interval: Duration,
    retention: Duration,
    stop: CancellationToken,
) {
    let mut flush_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + flush_interval, flush_interval);
    // A late flush is not made up twice: the next one covers what the missed one would have.
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cluster = durable.flushes().fencing.is_some();
    let mut rates_tick = tokio::time::interval(RATES_DRAIN_INTERVAL);
    rates_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune_tick = tokio::time::interval(PRUNE_INTERVAL);
    prune_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = flush_tick.tick() => {
                flush(&service, &metrics, durable.flushes()).await;
            }
            _ = rates_tick.tick(), if !cluster => {
                service.drain_node_rates();
            }
            _ = prune_tick.tick() => {
                let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                let before = SystemClock.now().plus_millis(-retention_ms);
                match store.prune(before).await {
                    Ok(pruned) => tracing::info!(?pruned, "pruned data older than the retention"),
                    Err(error) => tracing::warn!(%error, "pruning failed"),
                }
            }
            () = stop.cancelled() => return,
        }
    }
}
