//! What the core produces, in call order: the ordered output queue, its single consumer, and the
//! sink traits a consumer may hand outputs to.
//!
//! Every effect that leaves the core (a webhook, an analytics event, a stats batch, node room
//! states, node rate cells) is an [`Output`] with a sequence number, pushed onto one FIFO in the
//! order the calls took effect. The caller that made the call only pushes; the sinks run on the
//! consumer's thread, so a slow sink delays nothing but the queue, whose depth is observable and
//! whose overload sheds stats samples (never lifecycle calls).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use compact_str::CompactString;
use livekit_protocol as lk;
use parking_lot::{Condvar, Mutex};

use crate::coalesce::Coalesced;
use crate::ids::InlineId;
use crate::keys::{Direction, StreamKind};
use crate::rates::RateCell;
use crate::time::UnixMillis;

/// One effect of the core, in call order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// What one lifecycle call produced: its webhook (sent first, as in LiveKit) and its analytics
    /// event, either of which may be absent, both kept [`Encoded`] (a decoded `AnalyticsEvent` is
    /// 10 KB). Boxed, so that a queue slot stays small.
    Call(Box<CallOutput>),
    /// One stats worker's coalesced stats of one flush.
    Stats(StatsBatch),
    /// A node's room states (`LocalRoomState`).
    NodeRooms(lk::AnalyticsNodeRooms),
    /// Node-level byte and packet cells, spread over the seconds they cover.
    NodeRates(NodeRates),
    /// A stats worker's state after a call or a flush changed it, for the store to keep, so that
    /// a restarted service can carry on the calls in progress
    /// ([`crate::TelemetryService::restore_workers`]). Pushed right after the change (a lifecycle
    /// call's own output comes first).
    Worker(WorkerState),
    /// A quality issue opened or closed: its `QUALITY_ISSUE_STARTED` or `QUALITY_ISSUE_ENDED`
    /// event and its `quality_degraded` or `quality_recovered` webhook. Boxed, so that a queue
    /// slot stays small.
    Quality(Box<crate::quality::QualityChange>),
    /// A stats worker's quality detectors as a flush left them, pushed by the flush when they
    /// changed since the last one pushed, for the store to keep beside the worker's state
    /// ([`crate::TelemetryService::restore_quality`]).
    QualityState(crate::quality::QualityState),
}

/// What a stats worker needs to carry on after a restart: its identity, the node that made it,
/// its guards and connected state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerState {
    /// The room's sid.
    pub room_id: Arc<str>,
    /// The room's name.
    pub room_name: Arc<str>,
    /// The participant's sid.
    pub participant_id: Arc<str>,
    /// The participant's identity.
    pub identity: Arc<str>,
    /// The node whose call made the worker.
    pub node: Arc<str>,
    /// When the worker was made (its first sample's interval starts no earlier).
    pub created_at: UnixMillis,
    /// Whether the participant's connection came up (`participant_left` rather than
    /// `participant_connection_aborted` at its leave).
    pub connected: bool,
    /// The active guards, in the order they were taken. A closed worker has none.
    pub guards: Vec<String>,
    /// Whether the worker is open. A closed one is kept by the store, closed, until its reap
    /// (`worker_cleanup_wait` after `closed_at`), so that a restart or a take-over restores it
    /// closed and it collects late samples until then, as the original would have.
    pub open: bool,
    /// When a closed worker was closed (`None` while open): its reap is due
    /// `worker_cleanup_wait` later.
    pub closed_at: Option<UnixMillis>,
    /// The worker was reaped (closed for longer than `worker_cleanup_wait`): the store removes
    /// its record. Pushed by the flush that reaps it.
    pub reaped: bool,
}

/// The effects of one lifecycle call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallOutput {
    /// The call's method name (`participantLeft`, ...).
    pub method: &'static str,
    /// The node that made the call.
    pub node: Arc<str>,
    /// When the call was made.
    pub at: UnixMillis,
    /// The webhook, with `id` (`EV_…`) and `created_at` stamped.
    pub webhook: Option<Encoded<lk::WebhookEvent>>,
    /// The analytics event, with `id` (`AE_…`), `node_id` and `analytics_key` stamped.
    pub event: Option<Encoded<lk::AnalyticsEvent>>,
    /// Where the call was read from, when it was applied with one: its ids are then derived
    /// from it ([`crate::Origin`]) instead of drawn at random.
    pub origin: Option<crate::Origin>,
}

/// A protobuf message kept encoded while it waits on the queue. prost keeps nested messages
/// inline, so an `AnalyticsEvent` is 10 KB and a `WebhookEvent` 3 KB however little they hold;
/// encoded, a lifecycle call's output is a few hundred bytes, and the memory of the calls waiting
/// to be stored is that much smaller. Encoding is lossless: [`Encoded::decode`] gives the message
/// back.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded<T> {
    bytes: Box<[u8]>,
    message: std::marker::PhantomData<fn() -> T>,
}

impl<T: prost::Message + Default> Encoded<T> {
    /// Encodes `message`.
    pub fn new(message: &T) -> Self {
        Self {
            bytes: message.encode_to_vec().into_boxed_slice(),
            message: std::marker::PhantomData,
        }
    }

    /// The message.
    ///
    /// # Panics
    ///
    /// Never: the bytes are the encoding of a `T`.
    pub fn decode(&self) -> T {
        T::decode(&*self.bytes).expect("bytes encoded from the same message type")
    }

    /// The message, decoded in place on the heap: a large message (an `AnalyticsEvent` is
    /// 10 KB) is then moved as a pointer, where [`Encoded::decode`] returns it by value, copied
    /// at every move.
    ///
    /// # Panics
    ///
    /// Never: the bytes are the encoding of a `T`.
    pub fn decode_boxed(&self) -> Box<T> {
        let mut message = Box::<T>::default();
        message.merge(&*self.bytes).expect("bytes encoded from the same message type");
        message
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T: prost::Message + Default + std::fmt::Debug> std::fmt::Debug for Encoded<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.decode(), formatter)
    }
}

/// One stats worker's output of one flush: one coalesced stat per track and direction, upstream
/// first, then by track id.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsBatch {
    /// The room's sid.
    pub room_id: Arc<str>,
    /// The room's name.
    pub room_name: Arc<str>,
    /// The participant's sid.
    pub participant_id: Arc<str>,
    /// The participant's identity.
    pub identity: Arc<str>,
    /// The flush time, written into every stat's `time_stamp`.
    pub flushed_at: UnixMillis,
    /// The analytics key of the service.
    pub analytics_key: Arc<str>,
    /// The stats.
    pub stats: Vec<CoalescedStat>,
}

/// One track and direction's coalesced window.
#[derive(Clone, Debug, PartialEq)]
pub struct CoalescedStat {
    /// `AS_` id.
    pub id: InlineId,
    /// The track.
    pub track_id: CompactString,
    /// Upstream or downstream.
    pub direction: Direction,
    /// Media, data or signalling.
    pub kind: StreamKind,
    /// The node that reported the last sample.
    pub node: Arc<str>,
    /// The coalesced stream, scores and honest-rate window.
    pub coalesced: Coalesced,
}

impl StatsBatch {
    /// Builds LiveKit's `AnalyticsStat`s for this batch, as `SendStats` would send them.
    pub fn to_analytics_stats(&self) -> Vec<lk::AnalyticsStat> {
        self.stats
            .iter()
            .map(|stat| lk::AnalyticsStat {
                id: stat.id.as_str().to_owned(),
                analytics_key: self.analytics_key.to_string(),
                kind: stat.direction.stream_type() as i32,
                time_stamp: Some(self.flushed_at.to_timestamp()),
                node: stat.node.to_string(),
                room_id: self.room_id.to_string(),
                room_name: self.room_name.to_string(),
                participant_id: self.participant_id.to_string(),
                track_id: stat.track_id.to_string(),
                score: stat.coalesced.score,
                streams: vec![stat.coalesced.stream()],
                mime: stat.coalesced.mime.to_string(),
                min_score: stat.coalesced.min_score,
                median_score: stat.coalesced.median_score,
            })
            .collect()
    }
}

/// Node-level rate cells drained from the core.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRates {
    /// The rate group of the rooms whose samples made the cells
    /// ([`crate::ServiceBuilder::rate_groups`]); `None` without rate groups.
    pub group: Option<u32>,
    /// Cells, sorted by node and second; each adds to what is already known for that second.
    pub cells: Vec<NodeRateCell>,
}

/// Bytes and packets of one node in one second.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRateCell {
    /// The reporting node.
    pub node: Arc<str>,
    /// Seconds since the epoch.
    pub second: i64,
    /// The amounts to add.
    pub cell: RateCell,
}

/// An output and its position in the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequenced {
    /// Position in call order, from 1; consecutive.
    pub seq: u64,
    /// The output.
    pub output: Output,
}

/// Receives the analytics side of the outputs (LiveKit's `AnalyticsService`). Implementations
/// must not block: they run on the queue's consumer and hold up every later output.
pub trait AnalyticsSink: Send + Sync {
    /// One stats worker's batch of one flush (LiveKit's `SendStats`).
    fn send_stats(&self, batch: &StatsBatch);
    /// One analytics event (LiveKit's `SendEvent`).
    fn send_event(&self, event: &lk::AnalyticsEvent);
    /// A node's room states (LiveKit's `SendNodeRoomStates`).
    fn send_node_room_states(&self, rooms: &lk::AnalyticsNodeRooms);
    /// Node-level rate cells; ignored unless overridden.
    fn send_node_rates(&self, _rates: &NodeRates) {}
}

/// Receives the webhooks (LiveKit's `QueuedNotifier`). Implementations must not block.
pub trait WebhookSink: Send + Sync {
    /// One webhook, with its delivery ordering key (see [`crate::webhook_resource_key`]).
    fn notify(&self, event: &lk::WebhookEvent, resource_key: &str);
}

/// Hands outputs to sinks in order: for a call, the webhook before the analytics event.
pub fn dispatch(outputs: &[Sequenced], analytics: &dyn AnalyticsSink, webhooks: &dyn WebhookSink) {
    for sequenced in outputs {
        match &sequenced.output {
            Output::Call(call) => {
                if let Some(webhook) = call.webhook.as_ref().map(Encoded::decode) {
                    webhooks.notify(&webhook, crate::events::webhook_resource_key(&webhook));
                }
                if let Some(event) = call.event.as_ref().map(Encoded::decode) {
                    analytics.send_event(&event);
                }
            }
            Output::Stats(batch) => analytics.send_stats(batch),
            Output::NodeRooms(rooms) => analytics.send_node_room_states(rooms),
            Output::NodeRates(rates) => analytics.send_node_rates(rates),
            // LiveKit's sinks have no quality events; the server's pipeline stores them.
            Output::Worker(_) | Output::Quality(_) | Output::QualityState(_) => {}
        }
    }
}

/// A function called when the queue goes from empty to non-empty, to wake a consumer that is not
/// blocked in [`OutputReceiver::wait`] (an async task, say).
pub type Notifier = Box<dyn Fn() + Send + Sync>;

/// The ordered output queue.
pub(crate) struct OutputQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Outputs pushed and not yet taken; read without the lock on the `TrackStats` path.
    depth: AtomicUsize,
    pushed: AtomicU64,
    popped: AtomicU64,
    notifier: Option<Notifier>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Sequenced>,
    next_seq: u64,
}

impl std::fmt::Debug for OutputQueue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OutputQueue")
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .field("pushed", &self.pushed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl OutputQueue {
    pub(crate) fn new(notifier: Option<Notifier>) -> Self {
        Self {
            state: Mutex::new(QueueState { items: VecDeque::new(), next_seq: 1 }),
            ready: Condvar::new(),
            depth: AtomicUsize::new(0),
            pushed: AtomicU64::new(0),
            popped: AtomicU64::new(0),
            notifier,
        }
    }

    /// Appends outputs in order; returns the sequence number of the last one, if any.
    pub(crate) fn push(&self, outputs: impl IntoIterator<Item = Output>) -> Option<u64> {
        let (last, was_empty, count) = {
            let mut state = self.state.lock();
            let was_empty = state.items.is_empty();
            let mut last = None;
            let mut count = 0usize;
            for output in outputs {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.items.push_back(Sequenced { seq, output });
                last = Some(seq);
                count += 1;
            }
            self.depth.fetch_add(count, Ordering::Relaxed);
            self.pushed.fetch_add(count as u64, Ordering::Relaxed);
            (last, was_empty, count)
        };
        if count > 0 && was_empty {
            self.ready.notify_one();
            if let Some(notifier) = &self.notifier {
                notifier();
            }
        }
        last
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub(crate) fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    pub(crate) fn popped(&self) -> u64 {
        self.popped.load(Ordering::Relaxed)
    }

    /// Returns the sequence number of the last output pushed so far (0 if none).
    pub(crate) fn last_seq(&self) -> u64 {
        self.state.lock().next_seq - 1
    }

    fn take(&self, max: usize, out: &mut Vec<Sequenced>) -> usize {
        let mut state = self.state.lock();
        let count = max.min(state.items.len());
        out.extend(state.items.drain(..count));
        self.depth.fetch_sub(count, Ordering::Relaxed);
        self.popped.fetch_add(count as u64, Ordering::Relaxed);
        count
    }

    fn wait(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock();
        if state.items.is_empty() {
            self.ready.wait_for(&mut state, timeout);
        }
        !state.items.is_empty()
    }
}

/// The single consumer of a service's outputs.
#[derive(Debug)]
pub struct OutputReceiver {
    pub(crate) queue: Arc<OutputQueue>,
}

impl OutputReceiver {
    /// Moves up to `max` outputs, oldest first, into `out`; returns how many.
    pub fn take(&self, max: usize, out: &mut Vec<Sequenced>) -> usize {
        self.queue.take(max, out)
    }

    /// Blocks the calling thread until an output is waiting or `timeout` passes; returns whether
    /// one is waiting. For consumers on their own thread; async consumers use a [`Notifier`].
    pub fn wait(&self, timeout: Duration) -> bool {
        self.queue.wait(timeout)
    }

    /// Returns the number of outputs waiting.
    pub fn depth(&self) -> usize {
        self.queue.depth()
    }

    /// Takes every waiting output and hands it to the sinks; returns how many.
    pub fn dispatch_available(
        &self,
        analytics: &dyn AnalyticsSink,
        webhooks: &dyn WebhookSink,
    ) -> usize {
        let mut outputs = Vec::new();
        let count = self.take(usize::MAX, &mut outputs);
        dispatch(&outputs, analytics, webhooks);
        count
    }
}

#[cfg(test)]
mod tests {
    use livekit_protocol as lk;

    use super::Encoded;

    /// Both decodings give back the message encoded, nested messages and all.
    #[test]
    fn an_encoded_message_decodes_to_itself_by_value_and_boxed() {
        let event = lk::AnalyticsEvent {
            id: "AE_1".into(),
            r#type: lk::AnalyticsEventType::ParticipantJoined as i32,
            room_id: "RM_1".into(),
            room: Some(lk::Room { sid: "RM_1".into(), name: "one".into(), ..Default::default() }),
            participant: Some(lk::ParticipantInfo {
                sid: "PA_1".into(),
                identity: "alice".into(),
                metadata: "x".repeat(300),
                ..Default::default()
            }),
            node_id: "sfu-1".into(),
            ..Default::default()
        };
        let encoded = Encoded::new(&event);
        assert_eq!(encoded.decode(), event);
        assert_eq!(*encoded.decode_boxed(), event);
        assert_eq!(*Encoded::new(&lk::WebhookEvent::default()).decode_boxed(), Default::default());
    }
}
