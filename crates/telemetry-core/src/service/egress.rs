//! Egress and ingress calls: `EGRESS_*` and `INGRESS_*` events and the egress and ingress
//! webhooks (LiveKit sends no webhook for an ingress created, deleted or updated).

use livekit_protocol as lk;
use lk::AnalyticsEventType as Type;

use crate::call::Call;
use crate::events::{self, names};
use crate::service::{CallContext, Mapped};

/// Maps an egress or ingress call.
pub(super) fn map(context: &CallContext<'_>, call: Call) -> Mapped {
    let at = context.at;
    match call {
        Call::EgressStarted { info } => (
            Some(events::egress_webhook(names::EGRESS_STARTED, &info, at)),
            Some(events::egress_event(Type::EgressStarted, &info, at)),
        ),
        Call::EgressUpdated { info } => (
            Some(events::egress_webhook(names::EGRESS_UPDATED, &info, at)),
            Some(events::egress_event(Type::EgressUpdated, &info, at)),
        ),
        Call::EgressEnded { info } => (
            Some(events::egress_webhook(names::EGRESS_ENDED, &info, at)),
            Some(events::egress_event(Type::EgressEnded, &info, at)),
        ),
        Call::NotifyEgressEvent { event, info } => {
            (Some(events::egress_webhook(&event, &info, at)), None)
        }
        Call::IngressCreated { info } => {
            (None, Some(events::ingress_event(Type::IngressCreated, &info, at)))
        }
        Call::IngressDeleted { info } => {
            (None, Some(events::ingress_event(Type::IngressDeleted, &info, at)))
        }
        Call::IngressStarted { info } => (
            Some(events::ingress_webhook(names::INGRESS_STARTED, &info, at)),
            Some(events::ingress_event(Type::IngressStarted, &info, at)),
        ),
        Call::IngressUpdated { info } => {
            (None, Some(events::ingress_event(Type::IngressUpdated, &info, at)))
        }
        Call::IngressEnded { info } => (
            Some(events::ingress_webhook(names::INGRESS_ENDED, &info, at)),
            Some(events::ingress_event(Type::IngressEnded, &info, at)),
        ),
        call => unreachable!("`{}` is not an egress or ingress call", call.method_name()),
    }
}
