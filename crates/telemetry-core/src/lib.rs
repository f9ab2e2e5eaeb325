//! The TelemetryService core of rtc-telemetry: pure logic, no IO, no async runtime.
//!
//! It reproduces the telemetry service of LiveKit's SFU (`reference/livekit-telemetry.md` §2):
//! every lifecycle call becomes analytics events and webhooks in call order; every stats sample is
//! folded into its participant's stats worker and coalesced at each flush into one stat per track
//! and direction. It adds what LiveKit left open: every coalesced stat carries an exact window with
//! average and peak rates and their resolution, and node-level rates spread each sample over the
//! seconds it covers ([`rates`]).
//!
//! The flow: callers use [`TelemetryService`] (cheap to clone, callable from any thread); effects
//! come out, in order, of the [`OutputReceiver`] its builder returns. The embedder drives time:
//! it calls [`TelemetryService::flush_stats`] on its flush interval and
//! [`TelemetryService::drain_node_rates`] as often as it wants rate cells.

mod api;
pub mod call;
pub mod coalesce;
pub mod config;
pub mod events;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod nodes;
pub mod output;
pub mod quality;
pub mod rates;
pub mod retry;
pub mod service;
pub mod signing;
pub mod time;
pub mod webhook;
mod workers;

pub use call::{Call, DEFAULT_GUARD};
pub use coalesce::{Coalesced, RateWindow, StreamTotals};
pub use config::{CoreConfig, CoreLimits};
pub use events::{names as webhook_names, passes_filter, webhook_resource_key};
pub use keys::{Direction, StatsKey, StreamKind};
pub use nodes::{NodeId, NodeLimit};
pub use output::{
    AnalyticsSink, CallOutput, CoalescedStat, Encoded, NodeRateCell, NodeRates, Output,
    OutputReceiver, Sequenced, StatsBatch, WebhookSink, WorkerState,
};
pub use service::{
    CallMeta, Origin, RateGroups, RestoredRoom, ServiceBuilder, Shed, TelemetryService,
};
pub use time::{Clock, ManualClock, SystemClock, UnixMillis};
pub use webhook::{RenderedWebhook, WebhookSubject};

/// The inline string type of track ids and mimes in outputs.
pub use compact_str::CompactString;
/// The protobuf types of LiveKit, as the core uses them.
pub use livekit_protocol as proto;
