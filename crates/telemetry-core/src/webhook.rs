//! A webhook event rendered once: the exact body every attempt to every endpoint sends (the
//! protobuf JSON mapping of `livekit.WebhookEvent`, which [`crate::signing`] signs), with what a
//! delivery needs to know of it without parsing the body back: its ordering key and its subject.

use crate::events::webhook_resource_key;
use crate::proto as lk;

/// Who and what a webhook is about, as LiveKit's `WebhookInfo` names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookSubject {
    /// The room's sid.
    pub room_sid: String,
    /// The room's name.
    pub room_name: String,
    /// The participant's sid.
    pub participant_sid: String,
    /// The participant's identity.
    pub participant_identity: String,
    /// The track's sid.
    pub track_sid: String,
    /// The egress id.
    pub egress_id: String,
    /// The ingress id.
    pub ingress_id: String,
}

/// A webhook event ready to store and send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedWebhook {
    /// `EV_` id (the body's `id`).
    pub id: String,
    /// The event name (`participant_joined`, ...).
    pub event: String,
    /// The ordering key (LiveKit's `EventKey`).
    pub resource_key: String,
    /// What it is about.
    pub subject: WebhookSubject,
    /// The body: `WebhookEvent` in the protobuf JSON mapping.
    pub body: String,
}

impl RenderedWebhook {
    /// Renders `event`.
    pub fn render(event: &lk::WebhookEvent) -> Self {
        let subject = WebhookSubject {
            room_sid: event.room.as_ref().map(|room| room.sid.clone()).unwrap_or_default(),
            room_name: event.room.as_ref().map(|room| room.name.clone()).unwrap_or_default(),
            participant_sid: event.participant.as_ref().map(|p| p.sid.clone()).unwrap_or_default(),
            participant_identity: event
                .participant
                .as_ref()
                .map(|p| p.identity.clone())
                .unwrap_or_default(),
            track_sid: event.track.as_ref().map(|track| track.sid.clone()).unwrap_or_default(),
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
        };
        Self {
            id: event.id.clone(),
            event: event.event.clone(),
            resource_key: webhook_resource_key(event).to_owned(),
            subject,
            body: serde_json::to_string(event).expect("protobuf messages serialize to JSON"),
        }
    }

    /// Adds the field `name` with `value` as the body's last field (LiveKit's receivers ignore
    /// fields they do not know); the quality and report webhooks carry their objects so.
    pub fn append_field(&mut self, name: &str, value: &serde_json::Value) {
        let closing = self.body.pop();
        debug_assert_eq!(closing, Some('}'), "a JSON object");
        if !self.body.ends_with('{') {
            self.body.push(',');
        }
        self.body.push_str(&serde_json::Value::String(name.to_owned()).to_string());
        self.body.push(':');
        self.body.push_str(&value.to_string());
        self.body.push('}');
    }
}
