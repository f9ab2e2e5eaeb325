//! The partition consumers: what an instance in cluster mode stores of what the cluster ingests
//! (DESIGN.md, "Ownership").
//!
//! For every partition whose lease this instance holds, one task takes the partition over, then
//! consumes the partition's subject in stream order through a durable pull consumer of its own
//! (`rtc-telemetry-p<partition>-e<epoch>`, explicit acknowledgement, `ack_wait` well above
//! `stats.flush_interval`, at most [`MAX_ACK_PENDING`] messages unacknowledged). Each message's
//! `TelemetryBatch` is converted call by call as ingest does (the ingesting instance validated
//! it and stamped `at` and `nodeId`, but a message may come from an SFU that publishes itself: a
//! bad call is logged and counted, never a failure) and applied to the core with
//! [`TelemetryService::apply_from`], its origin the message's stream sequence and the call's
//! index, so its event and webhook ids are the same wherever and however often it is applied.
//! A message is applied whole under the read side of the fencing gate, so a flush's cut falls
//! between messages (`super::fencing`).
//!
//! **Take-over.** Before consuming, the task reads the partition's stored offset (how far its
//! outputs are stored, stats windows included) and the stored workers, which are those of that
//! offset. Under the gate's write side it drops the core's workers of the partition's rooms
//! (left over from an earlier epoch here), restores the stored ones (guards, connected state) and
//! has the partition's outputs fenced by the lease from then on. It then deletes every other
//! consumer of the partition (a former holder's: a dead holder's unacknowledged messages need not
//! wait for `ack_wait`, and a paused holder that resumes pulls nothing more) and creates its own,
//! delivering from just after the offset. Replayed calls keep their ids, so the store keeps one
//! event and one webhook of each; replayed samples were in no stored window.
//!
//! **A message is acknowledged only once everything it caused is stored**, in stream order: its
//! lifecycle outputs once the pipeline's durable watermark passes their sequence numbers, and,
//! if it carried stats samples, once a flush of the stats workers that started after it was
//! applied is stored too (its samples are then in stored windows). Acknowledgements are
//! confirmed by the server (`double_ack`); a message redelivered while it waits for its
//! acknowledgement (the store was slow past `ack_wait`) is not applied twice. (What a new owner
//! replays is decided by the stored offset, not by the acknowledgements.)
//!
//! **Leases decide.** A partition's task starts when its lease is held and stops at once,
//! acknowledging nothing more, when the lease is lost (not renewed in time, or taken with
//! another epoch). A lease given back (above the fair share, or at a graceful stop) is drained
//! first ([`Consumers::give_back`]): the task stops fetching, has the stats flushed, waits for
//! the store, acknowledges everything it applied, and only then is the lease released. Either
//! way the partition's workers are then dropped from the core and what the core still makes of
//! its rooms is not written: its next owner restores them from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use futures::{StreamExt as _, TryStreamExt as _};
use prost::Message as _;
use telemetry_core::{Call, CallMeta, Clock as _, Origin, Shed, SystemClock};
use telemetry_proto::v1;
use telemetry_store::model::Lease;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::ingest::{convert, validate};
use crate::state::AppState;

/// Most messages delivered to a partition's consumer and not yet acknowledged. The server stops
/// delivering past it: a bound on what one partition holds in memory waiting for the store.
pub const MAX_ACK_PENDING: i64 = 20_000;

/// Most messages one pull request asks for.
const FETCH_MESSAGES: usize = 256;

/// How long one pull request waits for messages: also how often an idle partition checks for
/// acknowledgements due and for a drain.
const FETCH_EXPIRES: Duration = Duration::from_millis(500);

/// How often the leases held are compared with the partitions consumed.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(200);

/// The node of a call that names none (only an SFU that publishes itself can send one).
const DEFAULT_NODE: &str = "jetstream";

/// Failed confirmations of one acknowledgement after which it is given up (the server then
/// redelivers the message; it was stored already, and the replay keeps its ids).
const MAX_ACK_ATTEMPTS: u32 = 5;

/// What the consumers did (rendered as `rtc_telemetry_cluster_consumed_messages_total` and
/// `rtc_telemetry_cluster_refused_calls_total`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages applied to the core.
    pub applied: AtomicU64,
    /// Messages delivered again while already applied and waiting for their acknowledgement.
    pub redelivered: AtomicU64,
    /// Messages acknowledged (confirmed by the server).
    pub acknowledged: AtomicU64,
    /// Calls not applied: undecodable messages' (counted once each), invalid calls, calls of a
    /// node over its cap, samples shed.
    pub refused_calls: AtomicU64,
}

/// `ack_wait` of the partition consumers: comfortably above a flush interval plus a slow store
/// write, so that a message waiting for its flush is not redelivered.
pub fn ack_wait(flush_interval: Duration) -> Duration {
    flush_interval * 3 + Duration::from_secs(30)
}

/// A partition being consumed.
struct Running {
    epoch: i64,
    /// Cancelled when the lease is lost: stop at once, acknowledge nothing more.
    lost: CancellationToken,
    /// Cancelled to give the partition back: stop fetching, acknowledge what was applied.
    drain: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The partition consumers of this instance.
pub struct Consumers {
    state: AppState,
    running: Mutex<BTreeMap<u32, Running>>,
    /// Partitions being given back: not started again while their lease is still recorded.
    giving_back: Mutex<BTreeSet<u32>>,
    limits: validate::Limits,
}

impl std::fmt::Debug for Consumers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Consumers")
            .field("running", &lock(&self.running).keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Consumers {
    /// The consumers of `state`'s cluster (none run before [`Consumers::run`]).
    pub fn new(state: AppState) -> Arc<Self> {
        let limits = validate::Limits::from_config(&state.config);
        Arc::new(Self { state, running: Mutex::default(), giving_back: Mutex::default(), limits })
    }

    /// Starts and stops the partition tasks as leases come and go, until `stop`; then drains
    /// every partition (the graceful stop: the leases are released after this returns).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(cluster) = self.state.cluster.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(SUPERVISE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let held = cluster.leases.held();
            let giving_back = lock(&self.giving_back).clone();
            let mut running = lock(&self.running);
            let lost: Vec<u32> = running
                .iter()
                .filter(|&(&partition, run)| {
                    !held
                        .iter()
                        .any(|lease| lease.partition == partition && lease.epoch == run.epoch)
                })
                .map(|(&partition, _)| partition)
                .collect();
            for partition in lost {
                if let Some(run) = running.remove(&partition) {
                    tracing::warn!(partition, "partition lease lost: its consumer stops at once");
                    run.lost.cancel();
                }
            }
            for lease in held {
                if running.contains_key(&lease.partition) || giving_back.contains(&lease.partition)
                {
                    continue;
                }
                let lost = CancellationToken::new();
                let drain = CancellationToken::new();
                let task = tokio::spawn(
                    self.clone()
                        .consume(lease, lost.clone(), drain.clone())
                        .instrument(tracing::info_span!("partition", partition = lease.partition)),
                );
                running.insert(lease.partition, Running { epoch: lease.epoch, lost, drain, task });
            }
        }
        let all: Vec<Running> = std::mem::take(&mut *lock(&self.running)).into_values().collect();
        for run in &all {
            run.drain.cancel();
        }
        for run in all {
            let _ = run.task.await;
        }
    }

    /// Drains `partition` before its lease is given back: its task stops fetching, has the
    /// stats flushed, waits for the store and acknowledges what it applied. The caller releases
    /// the lease, then calls [`Consumers::given_back`].
    pub async fn give_back(&self, partition: u32) {
        lock(&self.giving_back).insert(partition);
        let run = lock(&self.running).remove(&partition);
        if let Some(run) = run {
            run.drain.cancel();
            let _ = run.task.await;
        }
    }

    /// `partition`'s lease was released: it may be consumed again once it is taken again.
    pub fn given_back(&self, partition: u32) {
        lock(&self.giving_back).remove(&partition);
    }

    /// Takes `lease`'s partition over, consumes it until the lease is lost or the partition is
    /// drained, then lets it go.
    async fn consume(
        self: Arc<Self>,
        lease: Lease,
        lost: CancellationToken,
        drain: CancellationToken,
    ) {
        let Some(cluster) = self.state.cluster.clone() else {
            return;
        };
        if let Some(offset) = self.take_over(&cluster, lease, &lost, &drain).await {
            self.consume_from(&cluster, lease, offset, &lost, &drain).await;
        }
        self.let_go(&cluster, lease).await;
    }

    /// The take-over of `lease`'s partition: its stored offset read, the workers of its rooms
    /// replaced by those stored (the state as of that offset), and its outputs fenced by the
    /// lease from now on. Returns the offset; `None` if the lease went (or a drain came) first.
    async fn take_over(
        &self,
        cluster: &super::Cluster,
        lease: Lease,
        lost: &CancellationToken,
        drain: &CancellationToken,
    ) -> Option<u64> {
        let started = tokio::time::Instant::now();
        let store = self.state.store.clone();
        let mut wait = Duration::from_millis(100);
        let (offset, workers, quality, issues, rooms) = loop {
            let read = async {
                let Some(leases) = store.cluster() else {
                    return Err(telemetry_store::StoreError::Closed);
                };
                let offset = leases.partition_offset(lease.partition).await?;
                let workers = store.live_workers().await?;
                let quality = store.quality_states().await?;
                let issues = store.issues(crate::app::open_issues()).await?;
                let rooms = store.open_rooms().await?;
                Ok((offset, workers, quality, issues, rooms))
            };
            match read.await {
                Ok(read) => break read,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?wait, "cannot read the partition's stored state; trying again")
                }
            }
            tokio::select! {
                () = lost.cancelled() => return None,
                () = drain.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        };
        let offset = offset.map_or(0, |(_, seq)| seq);
        let fencing = &cluster.fencing;
        let in_partition = |room_id: &str, room_name: &str| {
            fencing.partition_of_room(room_name, room_id) == Some(lease.partition)
        };
        let gate = fencing.gate.write().await;
        if lost.is_cancelled() || !cluster.leases.holds(lease) {
            return None;
        }
        let service = &self.state.service;
        let forgotten = service.forget_workers(in_partition);
        // Its open rooms as stored (a replayed start of one of them counts it once).
        service.forget_open_rooms(in_partition);
        let open_rooms = service.restore_open_rooms(
            rooms
                .iter()
                .filter(|room| in_partition(&room.sid, &room.name))
                .map(telemetry_store::model::OpenRoomRecord::to_restored),
        );
        // Cells of an earlier holding here not in a checkpoint: replayed from the offset.
        service.forget_node_rates(lease.partition);
        let restored = service.restore_workers(
            workers
                .iter()
                .filter(|worker| in_partition(&worker.room_id, &worker.room_name))
                .map(telemetry_store::model::WorkerRecord::to_state),
        );
        // Their quality detectors as of the offset (written with it: every flush is a
        // checkpoint): a bad or clean run under way there goes on as without the take-over.
        let quality: Vec<_> = quality
            .iter()
            .filter(|state| in_partition(&state.room_id, &state.room_name))
            .map(telemetry_store::model::QualityRecord::to_state)
            .collect();
        let with_state: std::collections::HashSet<(&str, &str)> =
            quality.iter().map(|state| (&*state.room_id, &*state.participant_id)).collect();
        let restored_quality = service.restore_quality(&quality);
        // A worker's stored state is the whole truth about its detectors at the offset: an issue
        // stored open that it does not hold opened after the offset, and the replay opens it
        // again with its id (restored open now, it would read the replayed samples before its
        // opening as an open issue's). The open issues of workers without a state (no flush
        // since they were stored, or a version without states) go back on their tracks, so that
        // a replayed sample does not open a second issue and each closes with its own id.
        let issues: Vec<_> = issues
            .iter()
            .filter(|issue| in_partition(&issue.room_sid, &issue.room_name))
            .filter(|issue| {
                !with_state.contains(&(issue.room_sid.as_str(), issue.participant_sid.as_str()))
            })
            .map(telemetry_store::model::IssueRecord::to_issue)
            .collect();
        let issues = service.restore_issues(&issues);
        fencing.hold(lease, service.last_seq(), offset);
        drop(gate);
        tracing::info!(
            epoch = lease.epoch,
            offset,
            restored,
            quality = restored_quality,
            issues,
            open_rooms,
            forgotten,
            took = ?started.elapsed(),
            "partition taken over: its rooms' workers restored, the stream replayed after the stored offset"
        );
        Some(offset)
    }

    /// The partition is no longer consumed here (its lease lost, or given back after its
    /// drain): the workers and open rooms of its rooms are dropped, and what the core still makes of them is
    /// not written (`super::fencing`). Nothing if another epoch's take-over came first.
    async fn let_go(&self, cluster: &super::Cluster, lease: Lease) {
        let fencing = &cluster.fencing;
        let _gate = fencing.gate.write().await;
        if !fencing.holds(lease) {
            return;
        }
        let service = &self.state.service;
        let in_partition = |room_id: &str, room_name: &str| {
            fencing.partition_of_room(room_name, room_id) == Some(lease.partition)
        };
        service.forget_workers(in_partition);
        service.forget_open_rooms(in_partition);
        service.forget_node_rates(lease.partition);
        fencing.gone(lease.partition, service.last_seq());
    }

    /// Consumes one partition from after `offset` until its lease is lost or it is drained.
    async fn consume_from(
        &self,
        cluster: &super::Cluster,
        lease: Lease,
        offset: u64,
        lost: &CancellationToken,
        drain: &CancellationToken,
    ) {
        let (lost, drain) = (lost.clone(), drain.clone());
        let Some(consumer) = self.consumer(cluster, lease, offset, &lost, &drain).await else {
            return;
        };
        tracing::info!(epoch = lease.epoch, "consuming the partition");
        let mut pending = Pending::default();
        loop {
            if lost.is_cancelled() {
                return;
            }
            if !self.acknowledge(cluster, lease, &mut pending).await {
                return;
            }
            if drain.is_cancelled() {
                break;
            }
            let batch = tokio::select! {
                () = lost.cancelled() => return,
                batch = consumer.batch().max_messages(FETCH_MESSAGES).expires(FETCH_EXPIRES).messages() => batch,
            };
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "pulling from JetStream failed; trying again");
                    tokio::select! {
                        () = lost.cancelled() => return,
                        () = tokio::time::sleep(FETCH_EXPIRES) => continue,
                    }
                }
            };
            // The whole batch is read, even while draining: what the server delivered is
            // applied (and so acknowledged) here rather than redelivered after `ack_wait`.
            loop {
                let message = tokio::select! {
                    () = lost.cancelled() => return,
                    message = batch.next() => message,
                };
                match message {
                    None => break,
                    Some(Ok(message)) => {
                        if !self.received(cluster, lease, message, &mut pending, &lost).await {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "a pull from JetStream failed; pulling again");
                        break;
                    }
                }
            }
        }
        // Drained: a flush that starts now covers every sample applied; then everything
        // applied is acknowledged, unless the lease is lost meanwhile.
        let deadline = tokio::time::Instant::now() + self.state.config.shutdown_grace_period;
        while !pending.messages.is_empty() && tokio::time::Instant::now() < deadline {
            let flushes = self.state.durable.flushes();
            if pending.messages.values().any(|message| message.flush_mark.is_some())
                && flushes.completed_since(pending.last_mark).is_none()
            {
                if flushes.mark() > pending.last_mark {
                    // A flush started since (another partition's drain, or the timer's).
                    let _ = tokio::time::timeout_at(
                        deadline,
                        flushes.completed_after(pending.last_mark),
                    )
                    .await;
                } else {
                    crate::pipeline::flush(&self.state.service, &self.state.metrics, flushes).await;
                }
            }
            let _ = tokio::time::timeout_at(
                deadline,
                self.state.durable.wait_for(self.ready_through(&pending)),
            )
            .await;
            if lost.is_cancelled() || !self.acknowledge(cluster, lease, &mut pending).await {
                return;
            }
            if !pending.messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if !pending.messages.is_empty() {
            tracing::warn!(
                unacknowledged = pending.messages.len(),
                "partition given back before everything it applied was stored; the next owner gets those messages again"
            );
        }
        tracing::info!("partition drained");
    }

    /// The durable consumer of `lease` (`rtc-telemetry-p<partition>-e<epoch>`), made afresh to
    /// deliver from just after `offset`; every other consumer of the partition (a former
    /// holder's) is deleted first, so what a dead holder had not acknowledged comes at once
    /// rather than after `ack_wait`, and a former holder that resumes pulls nothing more. `None`
    /// if the lease went first.
    async fn consumer(
        &self,
        cluster: &super::Cluster,
        lease: Lease,
        offset: u64,
        lost: &CancellationToken,
        drain: &CancellationToken,
    ) -> Option<PullConsumer> {
        let partition = lease.partition;
        let prefix = super::partition::consumer_prefix(partition);
        let name = super::partition::consumer_name(partition, lease.epoch);
        let deliver_policy = match offset {
            0 => DeliverPolicy::All,
            offset => DeliverPolicy::ByStartSequence { start_sequence: offset + 1 },
        };
        let config = jetstream::consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: super::partition::subject(&cluster.subject_prefix, partition),
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ack_wait(self.state.config.stats.flush_interval),
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let mut wait = Duration::from_millis(100);
        loop {
            let made = async {
                let stream = cluster.jetstream.get_stream(&cluster.stream).await?;
                let names: Vec<String> = stream.consumer_names().try_collect().await?;
                for former in names.iter().filter(|n| {
                    *n == &prefix || n.strip_prefix(&prefix).is_some_and(|r| r.starts_with("-e"))
                }) {
                    stream.delete_consumer(former).await?;
                }
                stream
                    .create_consumer::<jetstream::consumer::pull::Config>(config.clone())
                    .await
                    .map_err(anyhow::Error::from)
            };
            match made.await {
                Ok(consumer) => return Some(consumer),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?wait, "cannot open the partition's JetStream consumer")
                }
            }
            tokio::select! {
                () = lost.cancelled() => return None,
                () = drain.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Handles one delivered message: applied (once), kept until it can be acknowledged. Returns
    /// false if the lease was lost meanwhile.
    async fn received(
        &self,
        cluster: &super::Cluster,
        lease: Lease,
        message: jetstream::Message,
        pending: &mut Pending,
        lost: &CancellationToken,
    ) -> bool {
        let sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(error) => {
                tracing::warn!(%error, "a JetStream message without its metadata; skipped");
                return true;
            }
        };
        let (message, acker) = message.split();
        if let Some(waiting) = pending.messages.get_mut(&sequence) {
            // Delivered again while waiting for the store: acknowledged through the latest
            // delivery, applied once.
            waiting.acker = acker;
            cluster.consumed.redelivered.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // Applied whole between two flushes: a flush's cut falls between messages.
        let _gate = cluster.fencing.gate.read().await;
        if !cluster.leases.holds(lease) {
            return false;
        }
        let (last_seq, stats) = self.apply(cluster, sequence, &message.payload, lost).await;
        cluster.fencing.applied(lease, sequence);
        let flush_mark = stats.then(|| self.state.durable.flushes().mark());
        if let Some(mark) = flush_mark {
            pending.last_mark = pending.last_mark.max(mark);
        }
        pending.messages.insert(sequence, Waiting { acker, last_seq, flush_mark, attempts: 0 });
        cluster.consumed.applied.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Applies a message's calls to the core; returns the sequence number of the last output
    /// they produced and whether any was a stats sample.
    async fn apply(
        &self,
        cluster: &super::Cluster,
        sequence: u64,
        payload: &[u8],
        lost: &CancellationToken,
    ) -> (Option<u64>, bool) {
        let refused = |count: u64| {
            cluster.consumed.refused_calls.fetch_add(count, Ordering::Relaxed);
        };
        let batch = match v1::TelemetryBatch::decode(payload) {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, sequence, "a message that is not a TelemetryBatch; skipped");
                refused(1);
                return (None, false);
            }
        };
        let service = &self.state.service;
        let received_at = SystemClock.now();
        let mut last_seq = None;
        let mut stats = false;
        for (index, call) in batch.calls.into_iter().enumerate() {
            let origin = Origin { sequence, index: u32::try_from(index).unwrap_or(u32::MAX) };
            let converted = match convert::convert(call, received_at, DEFAULT_NODE, &self.limits) {
                Ok(converted) => converted,
                Err(error) => {
                    tracing::warn!(%error, sequence, index, "an invalid call in a message; skipped");
                    refused(1);
                    continue;
                }
            };
            let node = match service.node(&converted.node_id) {
                Ok(node) => node,
                Err(limit) => {
                    tracing::warn!(%limit, sequence, index, "a call of a node over the cap; skipped");
                    refused(1);
                    continue;
                }
            };
            let meta = CallMeta { at: converted.at, node };
            stats |= matches!(converted.call, Call::TrackStats { .. });
            let call = converted.call;
            loop {
                match service.apply_from(meta, origin, call.clone()) {
                    Ok(seq) => {
                        last_seq = last_seq.max(seq);
                        break;
                    }
                    // The pipeline is behind: wait for it rather than lose a sample of the log.
                    Err(Shed::Overloaded) if !lost.is_cancelled() => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(shed) => {
                        tracing::warn!(%shed, sequence, index, "a stats sample of a message shed");
                        refused(1);
                        break;
                    }
                }
            }
        }
        (last_seq, stats)
    }

    /// The sequence number the durable watermark must pass for every pending message's outputs
    /// known so far.
    fn ready_through(&self, pending: &Pending) -> u64 {
        let flushed = self.state.durable.flushes().completed_since(pending.last_mark).unwrap_or(0);
        pending
            .messages
            .values()
            .filter_map(|message| message.last_seq)
            .max()
            .unwrap_or(0)
            .max(flushed)
    }

    /// Acknowledges, in stream order, the pending messages whose effects are stored. Returns
    /// false (acknowledging nothing) if the lease is no longer held.
    async fn acknowledge(
        &self,
        cluster: &super::Cluster,
        lease: Lease,
        pending: &mut Pending,
    ) -> bool {
        if pending.messages.is_empty() {
            return true;
        }
        if !cluster.leases.holds(lease) {
            return false;
        }
        let durable = self.state.durable.current();
        let flushes = self.state.durable.flushes();
        let mut ready = Vec::new();
        for (&sequence, message) in &pending.messages {
            let outputs_stored = message.last_seq.is_none_or(|seq| durable >= seq);
            let samples_stored = message.flush_mark.is_none_or(|mark| {
                flushes.completed_since(mark).is_some_and(|flushed| durable >= flushed)
            });
            if !(outputs_stored && samples_stored) {
                break;
            }
            ready.push(sequence);
        }
        let acks = ready.iter().map(|sequence| {
            let message = &pending.messages[sequence];
            async move { (*sequence, message.acker.double_ack().await) }
        });
        for (sequence, result) in futures::future::join_all(acks).await {
            match result {
                Ok(()) => {
                    pending.messages.remove(&sequence);
                    cluster.consumed.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    let Some(message) = pending.messages.get_mut(&sequence) else { continue };
                    message.attempts += 1;
                    if message.attempts >= MAX_ACK_ATTEMPTS {
                        tracing::warn!(%error, sequence, "acknowledging a stored message failed; given up (it is delivered again)");
                        pending.messages.remove(&sequence);
                    } else {
                        tracing::warn!(%error, sequence, "acknowledging a stored message failed; trying again");
                    }
                }
            }
        }
        true
    }
}

/// A message applied and not yet acknowledged.
struct Waiting {
    acker: jetstream::message::Acker,
    /// The sequence number of the last output its calls produced.
    last_seq: Option<u64>,
    /// If it carried stats samples: the flush mark taken after it was applied.
    flush_mark: Option<u64>,
    attempts: u32,
}

/// A partition's messages waiting for their acknowledgement, by stream sequence.
#[derive(Default)]
struct Pending {
    messages: BTreeMap<u64, Waiting>,
    /// The highest flush mark of them.
    last_mark: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
