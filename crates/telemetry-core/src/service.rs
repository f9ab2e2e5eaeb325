//! The `TelemetryService`: LiveKit's telemetry interface (reference §2.4) over the stats workers,
//! the event and webhook mapping and the ordered output queue.
//!
//! Every call takes effect on the caller's thread, at once and atomically: a lifecycle call under
//! the lifecycle lock (worker changes, metrics, and its outputs pushed onto the queue in the same
//! critical section), a `TrackStats` call under one shard lock and one worker lock. Calls are
//! therefore applied in one order that respects each caller's own call order (one logical FIFO),
//! and a later call always sees an earlier call's effect: a sample sent right after
//! `ParticipantJoined` finds its worker. Nothing a caller does waits on a sink.
//!
//! The mapping of each lifecycle call to its analytics event, webhook and metrics (reference
//! §2.4) lives in one submodule per family of calls ([`rooms`], [`participants`], [`tracks`],
//! [`egress`] for egress and ingress, [`other`]), reached from the dispatch `match` in
//! `lifecycle`. Flushing the stats workers, and reaping the closed ones, is [`flush`].

mod egress;
mod flush;
mod other;
mod participants;
mod rooms;
mod tracks;

use std::sync::Arc;

use hashbrown::HashMap;
use livekit_protocol as lk;
use parking_lot::Mutex;

use crate::call::Call;
use crate::coalesce::SampleSummary;
use crate::config::CoreConfig;
use crate::ids::{ANALYTICS_EVENT_PREFIX, IdGenerator, WEBHOOK_EVENT_PREFIX};
use crate::keys::StatsKey;
use crate::metrics::{
    self, LifecycleMetrics, LimitCounters, MetricsSnapshot, QueueCounters, SampleCounters,
};
use crate::nodes::{LOCAL_NODE, NodeId, NodeLimit, NodeTable};
use crate::output::{
    CallOutput, Encoded, NodeRateCell, NodeRates, Notifier, Output, OutputQueue, OutputReceiver,
    WorkerState,
};
use crate::quality::{Quality, QualityChange};
use crate::rates::{RateCell, sample_interval};
use crate::time::{Clock, SystemClock, UnixMillis};
use crate::workers::{Obtained, Recorded, TrackLimits, WorkerTable};

/// When and by which node a call was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallMeta {
    /// When the SFU made the call. It stamps events and webhooks and ends the interval of a
    /// sample that carries no times of its own.
    pub at: UnixMillis,
    /// The node that made the call.
    pub node: NodeId,
}

/// Where a call was read from, when it comes from a replayable log (in cluster mode a JetStream
/// message: its stream sequence and the call's index in it). The event and webhook ids of a call
/// applied with an origin are derived from it, so applying the same call again (a replay after a
/// take-over) makes the same ids, and the store, which keeps one event and one message per id,
/// keeps one of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The log's sequence number of the message.
    pub sequence: u64,
    /// The call's index in the message.
    pub index: u32,
}

impl Origin {
    /// The seed of the call's ids: distinct for distinct origins while `sequence < 2^44` and
    /// `index < 2^20` (a stream would need 17 trillion messages, a message a million calls).
    fn seed(self) -> u64 {
        (self.sequence << 20) ^ u64::from(self.index)
    }
}

/// Why a stats sample was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    /// The output queue is over `max_pending_outputs`: its consumer has fallen behind.
    #[error("stats sample shed: the telemetry output queue is over its limit")]
    Overloaded,
    /// The track sent more than `max_samples_per_track` samples since the last flush.
    #[error(
        "stats sample shed: the track sent more samples since the last flush than `max_samples_per_track`"
    )]
    TrackLimit,
    /// A new track of a participant whose worker holds `limits.max_tracks_per_participant`.
    #[error(
        "stats sample shed: the participant has `limits.max_tracks_per_participant` tracks already"
    )]
    TooManyTracks,
}

/// The rate group of a room's samples, from its name and sid (see
/// [`ServiceBuilder::rate_groups`]).
pub type RateGroups = Arc<dyn Fn(&str, &str) -> u32 + Send + Sync>;

/// Builds a [`TelemetryService`].
pub struct ServiceBuilder {
    config: CoreConfig,
    clock: Arc<dyn Clock>,
    notifier: Option<Notifier>,
    id_seed: Option<u64>,
    rate_groups: Option<RateGroups>,
}

/// [`RateGroups`] held by the service.
struct GroupOf(RateGroups);

impl std::fmt::Debug for GroupOf {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("GroupOf(..)")
    }
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServiceBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    /// Uses `clock` for flush times instead of the system clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `notifier` whenever the output queue goes from empty to non-empty.
    #[must_use]
    pub fn notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Draws ids from a generator seeded with `seed`, for reproducible tests and simulations.
    #[must_use]
    pub fn id_seed(mut self, seed: u64) -> Self {
        self.id_seed = Some(seed);
        self
    }

    /// Keeps the node rate cells of samples read from a replayable log
    /// ([`TelemetryService::apply_from`]) apart by the group `groups` gives each sample's room
    /// (name, sid): [`TelemetryService::drain_node_rates`] then drains one [`NodeRates`] per
    /// group, and [`TelemetryService::forget_node_rates`] drops a group's cells not drained yet.
    /// Cluster mode groups by partition, so that a partition's cells are stored with its
    /// checkpoint and dropped with the partition (its samples after the checkpoint are
    /// replayed). Other samples, and every sample without rate groups, are of no group.
    #[must_use]
    pub fn rate_groups(mut self, groups: RateGroups) -> Self {
        self.rate_groups = Some(groups);
        self
    }

    /// Builds the service and the receiver of its outputs.
    pub fn build(self) -> (TelemetryService, OutputReceiver) {
        let ids = |offset: u64| match self.id_seed {
            Some(seed) => IdGenerator::seeded(seed.wrapping_add(offset)),
            None => IdGenerator::from_os(),
        };
        let queue = Arc::new(OutputQueue::new(self.notifier));
        // A full node table lets a new node take the place of one idle for a flush interval (at
        // least a minute): by then that node's samples are flushed.
        let nodes = NodeTable::new(
            &self.config.node_id,
            self.config.limits.max_nodes,
            self.config.node_idle_millis(),
            self.config.flush_interval_millis().max(60_000),
        );
        let workers = WorkerTable::new(self.config.limits.max_participants);
        let inner = Inner {
            quality: Quality::new(&self.config.quality),
            analytics_key: self.config.analytics_key.as_str().into(),
            unknown_node: self.config.node_id.as_str().into(),
            config: self.config,
            clock: self.clock,
            workers,
            lifecycle: Mutex::new(Lifecycle {
                ids: ids(0),
                metrics: HashMap::new(),
                node_room_sequence: HashMap::new(),
                open_rooms: OpenRooms::default(),
            }),
            queue: queue.clone(),
            nodes,
            flush: Mutex::new(flush::FlushState::new(ids(1))),
            rate_groups: self.rate_groups.map(GroupOf),
        };
        (TelemetryService { inner: Arc::new(inner) }, OutputReceiver { queue })
    }
}

/// The telemetry service. Cheap to clone; every clone is the same service.
#[derive(Clone, Debug)]
pub struct TelemetryService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CoreConfig,
    clock: Arc<dyn Clock>,
    analytics_key: Arc<str>,
    workers: WorkerTable,
    /// Serialises lifecycle calls: their worker changes, metrics and output pushes.
    lifecycle: Mutex<Lifecycle>,
    queue: Arc<OutputQueue>,
    nodes: NodeTable,
    /// The name given to a node id no longer known (see [`crate::nodes`]): the configured node's.
    unknown_node: Arc<str>,
    /// Serialises flushes; owns the generator of stat ids.
    flush: Mutex<flush::FlushState>,
    /// The quality detectors' thresholds and the upstream board.
    quality: Quality,
    /// The rate group of a sample's room, if node rate cells are kept apart by group.
    rate_groups: Option<GroupOf>,
}

#[derive(Debug)]
struct Lifecycle {
    ids: IdGenerator,
    metrics: HashMap<NodeId, LifecycleMetrics>,
    node_room_sequence: HashMap<NodeId, u64>,
    open_rooms: OpenRooms,
}

/// Rooms started and not yet ended, for `livekit_room_total` and `livekit_room_duration_seconds`.
#[derive(Debug, Default)]
struct OpenRooms {
    /// By sid, with the node that started them, their start and their name (for
    /// [`TelemetryService::forget_open_rooms`]). At most `limits.max_open_rooms`; a forgotten
    /// node's rooms are dropped with it.
    by_sid: HashMap<String, OpenRoom>,
    /// Rooms not tracked because `by_sid` was full.
    refused: u64,
}

/// A room a previous run started and did not end, to put back with
/// [`TelemetryService::restore_open_rooms`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredRoom {
    /// The room's sid.
    pub sid: String,
    /// Its name.
    pub name: String,
    /// The node that started it.
    pub node: String,
    /// When it started.
    pub started_at: UnixMillis,
}

/// An open room, as [`OpenRooms`] keeps it.
#[derive(Debug)]
pub(crate) struct OpenRoom {
    /// The node that started it.
    pub(crate) node: NodeId,
    /// When it started (its `room_started` call, or its stored start).
    pub(crate) started: UnixMillis,
    /// Its name.
    pub(crate) name: Box<str>,
}

/// What the mapping of one lifecycle call reads and changes, under the lifecycle lock.
#[derive(Debug)]
struct CallContext<'a> {
    inner: &'a Inner,
    /// When the call was made.
    at: UnixMillis,
    /// The node that made it ...
    node_id: NodeId,
    /// ... and its name.
    node: Arc<str>,
    /// The lifecycle metrics of that node.
    metrics: &'a mut LifecycleMetrics,
    open_rooms: &'a mut OpenRooms,
    /// The state of the worker the call changed, for the store.
    worker_state: Option<WorkerState>,
}

/// What a lifecycle call maps to: LiveKit's webhook, its analytics event, either or both.
type Mapped = (Option<lk::WebhookEvent>, Option<lk::AnalyticsEvent>);

/// What a restore of quality state onto a worker needs ([`Inner::restore_on_workers`]).
struct Restore<'a> {
    now: UnixMillis,
    max_tracks: usize,
    hasher: &'a hashbrown::DefaultHashBuilder,
    quality: &'a crate::quality::Quality,
}

impl Inner {
    /// Pushes quality changes onto the output queue; returns the last sequence number.
    fn push_quality(&self, changes: Vec<QualityChange>) -> Option<u64> {
        if changes.is_empty() {
            return None;
        }
        self.queue.push(changes.into_iter().map(|change| Output::Quality(Box::new(change))))
    }

    /// Restores each of `items` on the worker of its (room, participant) `key` with `restore`,
    /// under the lifecycle lock, as of now; returns how many it restored (`restore` said true).
    /// Nothing while `quality.enabled` is false (what is restored is the detectors').
    fn restore_on_workers<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        key: impl Fn(&T) -> (&str, &str),
        restore: impl Fn(&mut crate::workers::Worker, &T, &Restore<'_>) -> bool,
    ) -> usize {
        if !self.quality.thresholds.enabled {
            return 0;
        }
        let _lifecycle = self.lifecycle.lock();
        let context = Restore {
            now: self.clock.now(),
            max_tracks: self.config.limits.max_tracks_per_participant,
            hasher: self.workers.hasher(),
            quality: &self.quality,
        };
        items
            .into_iter()
            .filter(|item| {
                let (room_id, participant_id) = key(item);
                let hash = self.workers.hash(room_id, participant_id);
                self.workers.with_worker(hash, room_id, participant_id, |worker| {
                    worker.is_some_and(|worker| restore(&mut worker.lock(), item, &context))
                })
            })
            .count()
    }

    /// Returns the name of `node` (for a node no longer known, the configured node's name).
    fn node_name(&self, node: NodeId) -> Arc<str> {
        self.nodes.name(node).unwrap_or_else(|| self.unknown_node.clone())
    }
}

impl TelemetryService {
    /// Starts building a service with `config`.
    pub fn builder(config: CoreConfig) -> ServiceBuilder {
        ServiceBuilder {
            config,
            clock: Arc::new(SystemClock),
            notifier: None,
            id_seed: None,
            rate_groups: None,
        }
    }

    /// Builds a service with `config`, the system clock and random ids.
    pub fn new(config: CoreConfig) -> (TelemetryService, OutputReceiver) {
        Self::builder(config).build()
    }

    /// Returns the service's settings.
    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    /// Returns the id of the node called `name`, registering it on first use, and marks it
    /// active now. Call it for every request (or call) a node makes: a node without calls for
    /// `limits.node_idle_timeout` is forgotten, and its id then names nothing.
    ///
    /// # Errors
    ///
    /// A new node is refused while `limits.max_nodes` nodes are live (counted in
    /// `rtc_telemetry_limit_refusals_total{limit="nodes"}`).
    pub fn node(&self, name: &str) -> Result<NodeId, NodeLimit> {
        self.inner.nodes.get_or_register(name, self.inner.clock.now())
    }

    /// Returns the id of one of the service's own nodes (such as the webhook sender's): never
    /// refused, never forgotten. Not for names callers choose.
    pub fn service_node(&self, name: &str) -> NodeId {
        self.inner.nodes.pinned(name, self.inner.clock.now())
    }

    /// Returns the name of `node` (for a node no longer known, the configured node's name).
    pub fn node_name(&self, node: NodeId) -> Arc<str> {
        self.inner.node_name(node)
    }

    /// Returns the meta of an in-process call made now by the configured node.
    pub fn now(&self) -> CallMeta {
        CallMeta { at: self.inner.clock.now(), node: LOCAL_NODE }
    }

    /// Applies one call. Returns the sequence number of the last output it produced, if it
    /// produced any (a consumer that has handled that output has handled the call).
    ///
    /// # Errors
    ///
    /// A `TrackStats` sample may be shed (see [`Shed`]); lifecycle calls never fail.
    pub fn apply(&self, meta: CallMeta, call: Call) -> Result<Option<u64>, Shed> {
        match call {
            Call::TrackStats { room_id, room_name, key, stat } => {
                self.track_stats_at(meta, &room_id, &room_name, &key, &stat)
            }
            call => Ok(self.lifecycle(meta, None, call)),
        }
    }

    /// [`TelemetryService::apply`] of a call read from a replayable log: its event and webhook
    /// ids are derived from `origin` (see [`Origin`]) instead of drawn at random.
    ///
    /// # Errors
    ///
    /// As [`TelemetryService::apply`].
    pub fn apply_from(
        &self,
        meta: CallMeta,
        origin: Origin,
        call: Call,
    ) -> Result<Option<u64>, Shed> {
        match call {
            Call::TrackStats { room_id, room_name, key, stat } => {
                let group =
                    self.inner.rate_groups.as_ref().map(|groups| (groups.0)(&room_name, &room_id));
                self.track_stats_in(meta, group, &room_id, &room_name, &key, &stat)
            }
            call => Ok(self.lifecycle(meta, Some(origin), call)),
        }
    }

    /// `TrackStats` with an explicit call meta: folds `stat` into the stats worker of
    /// `(room_id, key.participant_id)`, spreads it over the node's rate cells and accounts it in
    /// Prometheus. A sample for a participant without a worker still counts in node rates and
    /// Prometheus, as in LiveKit. The sample is read, not kept: callers may reuse it. Returns
    /// the sequence number of the last quality output the sample caused (an issue opened or
    /// closed), if any: the caller waits for it like for a lifecycle call's outputs.
    ///
    /// # Errors
    ///
    /// Returns [`Shed`] when the sample was not accepted.
    pub fn track_stats_at(
        &self,
        meta: CallMeta,
        room_id: &str,
        room_name: &str,
        key: &StatsKey,
        stat: &lk::AnalyticsStat,
    ) -> Result<Option<u64>, Shed> {
        self.track_stats_in(meta, None, room_id, room_name, key, stat)
    }

    /// [`TelemetryService::track_stats_at`] with the sample's node rate cells in rate group
    /// `group` (a sample read from a replayable log: see [`ServiceBuilder::rate_groups`]).
    fn track_stats_in(
        &self,
        meta: CallMeta,
        group: Option<u32>,
        room_id: &str,
        _room_name: &str,
        key: &StatsKey,
        stat: &lk::AnalyticsStat,
    ) -> Result<Option<u64>, Shed> {
        let inner = &*self.inner;
        let hash = inner.workers.hash(room_id, &key.participant_id);
        let shard = inner.workers.shard(hash);
        if inner.queue.depth() > inner.config.max_pending_outputs {
            shard.aux.lock().counters.shed_overload += 1;
            return Err(Shed::Overloaded);
        }
        let flush_interval_ms = inner.config.flush_interval_millis();
        let summary = SampleSummary::of(stat);
        let mut quality_seq = None;
        let recorded =
            inner.workers.with_worker(hash, room_id, &key.participant_id, |worker| match worker {
                Some(worker) => {
                    let mut worker = worker.lock();
                    let mut changes = Vec::new();
                    let recorded = worker.record(
                        meta.at,
                        meta.node,
                        key,
                        stat,
                        &summary,
                        flush_interval_ms,
                        TrackLimits {
                            max_samples: inner.config.max_samples_per_track,
                            max_tracks: inner.config.limits.max_tracks_per_participant,
                        },
                        inner.workers.hasher(),
                        &inner.quality,
                        &mut changes,
                    );
                    // Pushed under the worker lock, so that a leave (which closes the worker's
                    // issues under the same lock) comes before or after, never between.
                    quality_seq = inner.push_quality(changes);
                    recorded
                }
                None => Recorded::Reaped,
            });
        let mut aux = shard.aux.lock();
        let interval = match recorded {
            Recorded::Interval(start, end) => {
                aux.counters.recorded += 1;
                (start, end)
            }
            Recorded::ShedTrackLimit => {
                aux.counters.shed_track_limit += 1;
                return Err(Shed::TrackLimit);
            }
            Recorded::TooManyTracks => {
                aux.counters.shed_too_many_tracks += 1;
                return Err(Shed::TooManyTracks);
            }
            Recorded::Invalid => {
                aux.counters.invalid += 1;
                return Ok(quality_seq);
            }
            Recorded::Reaped if !summary.valid => {
                aux.counters.invalid += 1;
                return Ok(quality_seq);
            }
            Recorded::Reaped => {
                aux.counters.without_worker += 1;
                sample_interval(
                    summary.own_interval,
                    None,
                    meta.at.plus_millis(-flush_interval_ms),
                    meta.at,
                )
            }
        };
        aux.spread(
            meta.node,
            group,
            interval,
            summary.totals.wire_bytes(),
            summary.totals.wire_packets(),
            key.stream_type,
        );
        aux.metrics.record(meta.node, key, stat);
        Ok(quality_seq)
    }

    /// Applies a lifecycle call under the lifecycle lock: maps it by family (see the submodules)
    /// and pushes what it made, its event and webhook stamped with ids, then the state of the
    /// worker it changed.
    fn lifecycle(&self, meta: CallMeta, origin: Option<Origin>, call: Call) -> Option<u64> {
        let inner = &*self.inner;
        let method = call.method_name();
        let mut lifecycle = inner.lifecycle.lock();
        let Lifecycle { ids, metrics, node_room_sequence, open_rooms } = &mut *lifecycle;
        let mut derived = origin.map(|origin| IdGenerator::seeded(origin.seed()));
        let ids: &mut IdGenerator = match derived.as_mut() {
            Some(derived) => derived,
            None => ids,
        };
        let mut context = CallContext {
            inner,
            at: meta.at,
            node_id: meta.node,
            node: inner.node_name(meta.node),
            metrics: metrics.entry(meta.node).or_default(),
            open_rooms,
            worker_state: None,
        };
        let (mut webhook, mut event) = match call {
            Call::TrackStats { .. } => {
                unreachable!("`apply` routes `TrackStats` to `track_stats_at`")
            }
            Call::RoomStarted { .. } | Call::RoomEnded { .. } => rooms::map(&mut context, call),
            Call::ParticipantJoined { .. }
            | Call::ParticipantActive { .. }
            | Call::ParticipantResumed { .. }
            | Call::ParticipantLeft { .. } => participants::map(&mut context, call),
            Call::TrackPublishRequested { .. }
            | Call::TrackPublished { .. }
            | Call::TrackUnpublished { .. }
            | Call::TrackSubscribeRequested { .. }
            | Call::TrackSubscribed { .. }
            | Call::TrackUnsubscribed { .. }
            | Call::TrackSubscribeFailed { .. }
            | Call::TrackMuted { .. }
            | Call::TrackUnmuted { .. }
            | Call::TrackPublishedUpdate { .. }
            | Call::TrackMaxSubscribedVideoQuality { .. }
            | Call::TrackPublishRtpStats { .. }
            | Call::TrackSubscribeRtpStats { .. } => tracks::map(&mut context, call),
            Call::EgressStarted { .. }
            | Call::EgressUpdated { .. }
            | Call::EgressEnded { .. }
            | Call::NotifyEgressEvent { .. }
            | Call::IngressCreated { .. }
            | Call::IngressDeleted { .. }
            | Call::IngressStarted { .. }
            | Call::IngressUpdated { .. }
            | Call::IngressEnded { .. } => egress::map(&context, call),
            Call::LocalRoomState { node_rooms } => {
                let sequence = node_room_sequence.entry(meta.node).or_insert(0);
                let node_rooms = other::node_rooms(&context, sequence, node_rooms);
                return inner.queue.push([Output::NodeRooms(node_rooms)]);
            }
            Call::Report { .. } | Call::ApiCall { .. } | Call::Webhook { .. } => {
                other::map(&context, call)
            }
        };
        let CallContext { at, node, worker_state, .. } = context;
        let worker_output = worker_state.map(Output::Worker);
        if webhook.is_none() && event.is_none() {
            return worker_output.and_then(|output| inner.queue.push([output]));
        }
        // Stamped in place: the messages are large (prost keeps nested messages inline), and
        // every move copies them.
        if let Some(webhook) = &mut webhook {
            webhook.id = ids.next_id(WEBHOOK_EVENT_PREFIX);
        }
        if let Some(event) = &mut event {
            event.id = ids.next_id(ANALYTICS_EVENT_PREFIX);
            event.node_id = node.to_string();
            event.analytics_key = inner.config.analytics_key.clone();
        }
        let (webhook, event) =
            (webhook.as_ref().map(Encoded::new), event.as_ref().map(Encoded::new));
        let call = Output::Call(Box::new(CallOutput { method, node, at, webhook, event, origin }));
        inner.queue.push(std::iter::once(call).chain(worker_output))
    }

    /// Moves the node rate cells accumulated since the last drain onto the output queue, one
    /// [`NodeRates`] per rate group ([`ServiceBuilder::rate_groups`]); returns the last one's
    /// sequence number, or `None` if there was nothing. Then forgets the nodes idle for longer
    /// than `limits.node_idle_timeout` (see [`crate::nodes`]): call it every second or so.
    pub fn drain_node_rates(&self) -> Option<u64> {
        let mut cells: Vec<(Option<u32>, NodeId, i64, RateCell)> = Vec::new();
        for shard in self.inner.workers.shards() {
            shard.aux.lock().drain_rates(&mut cells);
        }
        cells.sort_unstable_by_key(|&(group, node, second, _)| (group, node, second));
        let mut drained: Vec<NodeRates> = Vec::new();
        {
            let names = self.inner.nodes.reader();
            let mut previous: Option<(Option<u32>, NodeId, i64)> = None;
            let mut name = self.inner.unknown_node.clone();
            for (group, node, second, cell) in cells {
                if previous == Some((group, node, second)) {
                    let rates = drained.last_mut().expect("a previous group");
                    rates.cells.last_mut().expect("a previous cell").cell.add(&cell);
                    continue;
                }
                if previous.is_none_or(|(previous_group, _, _)| previous_group != group) {
                    drained.push(NodeRates { group, cells: Vec::new() });
                }
                if previous.is_none_or(|(previous_group, previous, _)| {
                    previous_group != group || previous != node
                }) {
                    name = names.get(node, &self.inner.unknown_node);
                }
                let rates = drained.last_mut().expect("a group");
                rates.cells.push(NodeRateCell { node: name.clone(), second, cell });
                previous = Some((group, node, second));
            }
        }
        let last = if drained.is_empty() {
            None
        } else {
            self.inner.queue.push(drained.into_iter().map(Output::NodeRates))
        };
        self.expire_nodes();
        last
    }

    /// Drops the node rate cells of rate group `group` not drained yet
    /// ([`ServiceBuilder::rate_groups`]): cluster mode's, of a partition no longer consumed
    /// here or taken over (what its samples made is stored with the partition's checkpoints
    /// only; the samples after the last one are replayed by the partition's next holder).
    pub fn forget_node_rates(&self, group: u32) {
        for shard in self.inner.workers.shards() {
            let mut aux = shard.aux.lock();
            aux.rates.retain(|(of, _, _)| *of != Some(group));
            aux.spilled.retain(|(of, _, _, _)| *of != Some(group));
        }
    }

    /// Forgets the nodes idle for longer than `limits.node_idle_timeout` (their last rate cells
    /// have just been drained) and drops their state: lifecycle metrics, room sequence, open
    /// rooms, rate rings and Prometheus cells.
    fn expire_nodes(&self) {
        let inner = &*self.inner;
        let expired = inner.nodes.expire(inner.clock.now());
        if expired.is_empty() {
            return;
        }
        let gone = |node: &NodeId| expired.binary_search(node).is_ok();
        {
            let mut lifecycle = inner.lifecycle.lock();
            lifecycle.metrics.retain(|node, _| !gone(node));
            lifecycle.node_room_sequence.retain(|node, _| !gone(node));
            lifecycle.open_rooms.by_sid.retain(|_, room| !gone(&room.node));
        }
        for shard in inner.workers.shards() {
            let mut aux = shard.aux.lock();
            aux.rates.retain(|(_, node, _)| !gone(node));
            aux.spilled.retain(|(_, node, _, _)| !gone(node));
            aux.metrics.retain_nodes(|node| !gone(&node));
        }
    }

    /// Returns the sequence number of the last output pushed so far (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.inner.queue.last_seq()
    }

    /// Returns the number of outputs waiting for the consumer.
    pub fn pending_outputs(&self) -> usize {
        self.inner.queue.depth()
    }

    /// Recreates the stats workers of calls in progress from their stored states (the
    /// [`Output::Worker`]s a previous run produced), as the service starts: each open one gets its
    /// worker with its guards and connected state, so its samples are recorded and its leave is
    /// reported as it would have been without the restart. Each closed one not reaped yet gets
    /// its worker closed at its `closed_at`: it collects late samples until its reap
    /// (`worker_cleanup_wait` after `closed_at`), as the original would have, reports no leave
    /// again and is no live participant in the metrics. Produces no output. Returns how many
    /// workers were made; a worker that exists already is left as it is, and states beyond
    /// `limits.max_participants` are counted as refused.
    pub fn restore_workers(&self, states: impl IntoIterator<Item = WorkerState>) -> usize {
        let inner = &*self.inner;
        let mut lifecycle = inner.lifecycle.lock();
        let mut restored = 0;
        for state in states.into_iter().filter(|state| !state.reaped) {
            let closed_at = match (state.open, state.closed_at) {
                (true, _) => None,
                (false, Some(closed_at)) => Some(closed_at),
                // Closed at an unknown time: nothing to restore.
                (false, None) => continue,
            };
            let node =
                inner.nodes.get_or_register(&state.node, inner.clock.now()).unwrap_or(LOCAL_NODE);
            let hash = inner.workers.hash(&state.room_id, &state.participant_id);
            if inner
                .workers
                .with_worker(hash, &state.room_id, &state.participant_id, |w| w.is_some())
            {
                continue;
            }
            let (first, others) = match state.guards.split_first() {
                Some((first, others)) => (first.as_str(), others),
                None => (crate::call::DEFAULT_GUARD, &[][..]),
            };
            let obtained = inner.workers.get_or_create(
                &state.room_id,
                &state.room_name,
                &state.participant_id,
                &state.identity,
                first,
                state.created_at,
                node,
                |worker| {
                    if state.connected {
                        worker.set_connected();
                    }
                    match closed_at {
                        // A closed state has no guards: releasing the one taken closes it.
                        Some(closed_at) => {
                            worker.close(first, closed_at);
                        }
                        None => {
                            for guard in others {
                                worker.activate(guard);
                            }
                        }
                    }
                },
            );
            if obtained == Obtained::Created {
                if closed_at.is_none() {
                    lifecycle.metrics.entry(node).or_default().participants += 1;
                }
                restored += 1;
            }
        }
        restored
    }

    /// Restores the quality issues a previous run left open (the open issues of the store,
    /// [`crate::quality::QualityIssue`]s with no `ended_at`), after
    /// [`TelemetryService::restore_workers`]: each goes back on its track of its participant's
    /// worker, open since its start with its worst value, an upstream one on the upstream board
    /// with its `affected` list. So an issue open at a restart or a take-over keeps its id: a
    /// replayed bad sample opens no second issue, a clean run of `quality.close_after` after
    /// the restore closes it (a clean run under way at the cut starts again), and a leave or an
    /// unpublish closes it, each with its `QUALITY_ISSUE_ENDED` output. Produces no output.
    /// Returns how many were restored; skipped are closed issues, issues without an open worker
    /// (left as they are in the store), kinds open on their track already, and everything while
    /// `quality.enabled` is false.
    pub fn restore_issues<'a>(
        &self,
        issues: impl IntoIterator<Item = &'a crate::quality::QualityIssue>,
    ) -> usize {
        self.inner.restore_on_workers(
            issues.into_iter().filter(|issue| !issue.is_ended()),
            |issue| (&issue.room_id, &issue.participant_id),
            |worker, issue, restore| {
                worker.restore_issue(
                    issue,
                    restore.now,
                    restore.max_tracks,
                    restore.hasher,
                    restore.quality,
                )
            },
        )
    }

    /// Puts back the quality detectors' states a previous run's flushes pushed
    /// ([`Output::QualityState`], the last one of each worker), after
    /// [`TelemetryService::restore_workers`] and before [`TelemetryService::restore_issues`]:
    /// each open worker made at the state's `created_at` gets its tracks' detectors, publications
    /// and mutes back as the flush left them, an upstream in trouble back on the upstream board
    /// with its affected list. So a bad run under way at the cut (a restart, or a partition's
    /// stored offset at a take-over) opens its issue with the start it would have had, hence the
    /// same id, a clean run under way closes its issue at the same time, and a published track
    /// that never sends a sample still opens `no_media`. Produces no output. Returns how many
    /// workers got their state back; skipped are states of no open worker or of another worker
    /// under the same key, and everything while `quality.enabled` is false.
    pub fn restore_quality<'a>(
        &self,
        states: impl IntoIterator<Item = &'a crate::quality::QualityState>,
    ) -> usize {
        self.inner.restore_on_workers(
            states,
            |state| (&state.room_id, &state.participant_id),
            |worker, state, restore| {
                worker.restore_quality(
                    state,
                    restore.now,
                    restore.max_tracks,
                    restore.hasher,
                    restore.quality,
                )
            },
        )
    }

    /// Puts back the rooms a previous run started and did not end (the store's open rooms), as
    /// the service starts or a cluster partition is taken: each counts in `livekit_room_total`
    /// of the node that started it, and its `room_ended` call observes its duration, as without
    /// the restart. Produces no output. Returns how many were restored; a room open already is
    /// left as it is, and rooms beyond `limits.max_open_rooms` are counted as refused.
    pub fn restore_open_rooms(&self, rooms: impl IntoIterator<Item = RestoredRoom>) -> usize {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let mut lifecycle = inner.lifecycle.lock();
        let Lifecycle { metrics, open_rooms, .. } = &mut *lifecycle;
        let mut restored = 0;
        for room in rooms {
            if open_rooms.by_sid.contains_key(&room.sid) {
                continue;
            }
            if open_rooms.by_sid.len() >= inner.config.limits.max_open_rooms {
                open_rooms.refused += 1;
                continue;
            }
            let node = inner.nodes.get_or_register(&room.node, now).unwrap_or(LOCAL_NODE);
            // A start the store does not know (a room created at time 0, seen by no other call)
            // counts from now: a duration too short rather than one of decades.
            let started = if room.started_at.0 > 0 { room.started_at } else { now };
            let open = OpenRoom { node, started, name: room.name.into() };
            open_rooms.by_sid.insert(room.sid, open);
            metrics.entry(node).or_default().rooms += 1;
            restored += 1;
        }
        restored
    }

    /// Forgets the open rooms `forget(room_id, room_name)` names (cluster mode: the rooms of a
    /// partition no longer consumed here, which their next holder restores), as if they had
    /// ended but observing no duration. Returns how many were forgotten.
    pub fn forget_open_rooms(&self, forget: impl Fn(&str, &str) -> bool) -> usize {
        let mut lifecycle = self.inner.lifecycle.lock();
        let Lifecycle { metrics, open_rooms, .. } = &mut *lifecycle;
        let mut forgotten = 0;
        open_rooms.by_sid.retain(|sid, room| {
            let keep = !forget(sid, &room.name);
            if !keep {
                if let Some(metrics) = metrics.get_mut(&room.node) {
                    metrics.rooms -= 1;
                }
                forgotten += 1;
            }
            keep
        });
        forgotten
    }

    /// Drops the stats workers of the rooms `forget(room_id, room_name)` names, with the samples
    /// they hold not yet flushed, and produces no output: what they held is someone else's to
    /// store. Cluster mode calls it for the rooms of a partition this instance no longer owns
    /// (their next owner restores them from the store and replays what was not stored) and
    /// before restoring a partition it takes; their upstream tracks leave the quality upstream
    /// board, so that a restore of the rooms ([`TelemetryService::restore_issues`]) starts from
    /// the store. Returns how many open workers were dropped (they
    /// leave `livekit_participant_total` as at a leave).
    pub fn forget_workers(&self, forget: impl Fn(&str, &str) -> bool) -> usize {
        let inner = &*self.inner;
        let mut lifecycle = inner.lifecycle.lock();
        let open = inner.workers.forget(forget, &inner.quality.board);
        for node in &open {
            if let Some(metrics) = lifecycle.metrics.get_mut(node) {
                metrics.participants -= 1;
            }
        }
        open.len()
    }

    /// Returns the number of stats workers held (closed ones awaiting their reap included).
    pub fn worker_count(&self) -> usize {
        self.inner.workers.worker_count()
    }

    /// Returns every metric of the core.
    pub fn metrics(&self) -> MetricsSnapshot {
        let inner = &*self.inner;
        let mut stats = HashMap::new();
        let mut samples = SampleCounters::default();
        for shard in inner.workers.shards() {
            let aux = shard.aux.lock();
            aux.metrics.merge_into(&mut stats);
            samples.add(&aux.counters);
        }
        let queue = QueueCounters {
            pushed: inner.queue.pushed(),
            popped: inner.queue.popped(),
            workers: inner.workers.worker_count() as u64,
        };
        let lifecycle = inner.lifecycle.lock();
        let mut per_node: Vec<(NodeId, &LifecycleMetrics)> =
            lifecycle.metrics.iter().map(|(node, metrics)| (*node, metrics)).collect();
        per_node.sort_by_key(|(node, _)| *node);
        let nodes = inner.nodes.counters();
        let workers = inner.workers.limit_counters();
        let limits = LimitCounters {
            nodes_live: nodes.live,
            nodes_refused: nodes.refused,
            nodes_expired: nodes.expired,
            participants_refused: workers.refused,
            participants_closed_idle: workers.closed_idle,
            tracks_dropped_idle: workers.tracks_dropped,
            open_rooms: lifecycle.open_rooms.by_sid.len() as u64,
            rooms_refused: lifecycle.open_rooms.refused,
        };
        let names = inner.nodes.reader();
        metrics::build_snapshot(&stats, &per_node, &samples, &queue, &limits, &|node| {
            names.get(node, &inner.unknown_node).to_string()
        })
    }

    /// Returns the sample counters alone, summed over shards.
    pub fn sample_counters(&self) -> SampleCounters {
        let mut samples = SampleCounters::default();
        for shard in self.inner.workers.shards() {
            samples.add(&shard.aux.lock().counters);
        }
        samples
    }
}
