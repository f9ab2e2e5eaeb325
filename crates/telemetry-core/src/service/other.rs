//! The rest of the lifecycle calls: a node's room states (LiveKit's `SendNodeRoomStates`, which
//! is no event), and reports, API calls and webhooks sent, each stored as an analytics event
//! without a webhook.

use livekit_protocol as lk;
use lk::AnalyticsEventType as Type;

use crate::call::Call;
use crate::events;
use crate::service::{CallContext, Mapped};

/// Maps a report, an API call or a webhook sent.
pub(super) fn map(context: &CallContext<'_>, call: Call) -> Mapped {
    let at = context.at;
    let event = match call {
        Call::Report { report } => {
            lk::AnalyticsEvent { report: Some(report), ..events::bare_event(Type::Report, at) }
        }
        Call::ApiCall { info } => {
            lk::AnalyticsEvent { api_call: Some(info), ..events::bare_event(Type::ApiCall, at) }
        }
        Call::Webhook { info } => {
            lk::AnalyticsEvent { webhook: Some(info), ..events::bare_event(Type::Webhook, at) }
        }
        call => unreachable!("`{}` is not mapped to a bare event", call.method_name()),
    };
    (None, Some(event))
}

/// Stamps a node's room states as LiveKit's `SendNodeRoomStates` does: the node's name, a
/// per-node `sequence` from 1, the call's time.
pub(super) fn node_rooms(
    context: &CallContext<'_>,
    sequence: &mut u64,
    mut node_rooms: lk::AnalyticsNodeRooms,
) -> lk::AnalyticsNodeRooms {
    *sequence += 1;
    node_rooms.node_id = context.node.to_string();
    node_rooms.sequence_number = *sequence;
    node_rooms.timestamp = Some(context.at.to_timestamp());
    node_rooms
}
