//! Ingest: `POST /v1/telemetry` (JSON or protobuf, optionally gzip), the gRPC
//! `rtctelemetry.v1.TelemetryIngest/Ingest` stream, LiveKit's
//! `livekit.AnalyticsRecorderService` streams, and `POST /v1/ingest/janus` (what Janus's event
//! handler sends, through the Janus adapter: [`janus`]).
//!
//! A call is accepted once the core has applied it (it is then in the ordered output queue); a
//! request that produced outputs is answered only once they are stored. One bad call never
//! rejects the others: each is reported with its index and a message naming the field. What is
//! valid is decided in [`validate`] (numbers, times, string lengths) and [`convert`] (required
//! arguments).

pub mod convert;
pub mod decode;
pub mod grpc;
pub mod http;
pub mod idempotency;
pub mod janus;
pub mod validate;

use std::collections::HashMap;

use serde::Serialize;
use telemetry_core::{CallMeta, NodeId, Shed, TelemetryService, UnixMillis};
use telemetry_proto::v1;

/// One rejected call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Its index in the batch (over a gRPC stream: in the whole stream).
    pub index: usize,
    /// What is wrong with it.
    pub error: String,
}

/// Most rejections an answer lists; the answer says how many there were in all.
pub const MAX_LISTED_REJECTIONS: usize = 100;

/// What processing a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Calls accepted.
    pub accepted: usize,
    /// The first [`MAX_LISTED_REJECTIONS`] calls rejected.
    pub rejected: Vec<Rejection>,
    /// How many calls were rejected in all.
    pub rejected_count: usize,
    /// The sequence number of the last output the accepted calls produced, if any.
    pub last_seq: Option<u64>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.accepted += other.accepted;
        let room = MAX_LISTED_REJECTIONS.saturating_sub(self.rejected.len());
        self.rejected.extend(other.rejected.into_iter().take(room));
        self.rejected_count += other.rejected_count;
        self.last_seq = self.last_seq.max(other.last_seq);
    }

    /// Counts a rejection, listing it while the list has room.
    fn reject(&mut self, index: usize, error: String) {
        self.rejected_count += 1;
        if self.rejected.len() < MAX_LISTED_REJECTIONS {
            self.rejected.push(Rejection { index, error });
        }
    }
}

/// Converts and applies decoded calls, in order. `first_index` numbers the first call;
/// `default_node` is the node of calls that name none (the API key); `limits` are those of the
/// configuration.
pub fn apply_calls(
    service: &TelemetryService,
    calls: impl IntoIterator<Item = Result<v1::TelemetryCall, String>>,
    first_index: usize,
    default_node: &str,
    received_at: UnixMillis,
    limits: &validate::Limits,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut nodes: HashMap<String, NodeId> = HashMap::new();
    for (offset, call) in calls.into_iter().enumerate() {
        let index = first_index + offset;
        let converted =
            call.and_then(|call| convert::prepare(call, received_at, default_node, limits));
        let converted = match converted {
            Ok(converted) => converted,
            Err(error) => {
                outcome.reject(index, error);
                continue;
            }
        };
        let node = match nodes.get(&converted.node_id) {
            Some(&node) => node,
            None => match service.node(&converted.node_id) {
                Ok(node) => {
                    nodes.insert(converted.node_id.clone(), node);
                    node
                }
                Err(limit) => {
                    outcome.reject(index, format!("nodeId: {limit}"));
                    continue;
                }
            },
        };
        let meta = CallMeta { at: converted.at, node };
        // What `TelemetryService::apply` does with the call, a stats sample applied by
        // reference rather than built into a `Call`.
        let applied = match converted.call {
            convert::PreparedCall::TrackStats(sample) => service.track_stats_at(
                meta,
                &sample.room_id,
                &sample.room_name,
                &sample.key,
                &sample.stat,
            ),
            convert::PreparedCall::Other(call) => service.apply(meta, *call),
        };
        match applied {
            Ok(seq) => {
                outcome.accepted += 1;
                outcome.last_seq = outcome.last_seq.max(seq);
            }
            Err(shed) => outcome.reject(index, shed_message(shed)),
        }
    }
    outcome
}

/// Validates decoded calls for publishing to JetStream (cluster mode), in order: each is
/// converted as [`apply_calls`] would (so what is published is exactly what would be accepted),
/// and kept as it came with `at` (`received_at` where absent) and `nodeId` (`default_node` where
/// empty) filled in. Returns the calls to publish and the outcome (its `last_seq` is `None`).
///
/// What only the owner's core decides (its caps on nodes, shedding) is not known here: such a
/// call is acknowledged once published, and refused (counted) where it is processed.
pub fn prepare_calls(
    calls: impl IntoIterator<Item = Result<v1::TelemetryCall, String>>,
    first_index: usize,
    default_node: &str,
    received_at: UnixMillis,
    limits: &validate::Limits,
) -> (Vec<v1::TelemetryCall>, Outcome) {
    let mut outcome = Outcome::default();
    let mut accepted = Vec::new();
    for (offset, call) in calls.into_iter().enumerate() {
        let index = first_index + offset;
        let mut call = match call {
            Ok(call) => call,
            Err(error) => {
                outcome.reject(index, error);
                continue;
            }
        };
        if call.at.is_none() {
            call.at = Some(received_at.to_timestamp());
        }
        if call.node_id.is_empty() {
            default_node.clone_into(&mut call.node_id);
        }
        match convert::convert(call.clone(), received_at, default_node, limits) {
            Ok(_) => {
                outcome.accepted += 1;
                accepted.push(call);
            }
            Err(error) => outcome.reject(index, error),
        }
    }
    (accepted, outcome)
}

fn shed_message(shed: Shed) -> String {
    format!("{shed}; retry later")
}

#[cfg(test)]
mod tests;
