//! One attempt of a claimed delivery: what the attempt came to ([`outcome`], pure), the record
//! to store under the claim, and the `WEBHOOK` analytics event of a final outcome.

use telemetry_core::UnixMillis;
use telemetry_core::proto as lk;
use telemetry_core::retry::RetrySchedule;
use telemetry_store::model::{AttemptOutcome, AttemptRecord, ClaimedDelivery, PendingDelivery};

use crate::webhooks::sender::SendResult;

/// What happens to a delivery after an attempt that started at `started_at` and gave `result`:
/// delivered on a 2xx answer; else retried after the schedule's next wait (counted from the
/// delivery's last requeue, `Retry-After` honoured), or dead after the last one.
pub(crate) fn outcome(
    result: &SendResult,
    delivery: &PendingDelivery,
    schedule: &RetrySchedule,
    started_at: UnixMillis,
    random: f64,
) -> AttemptOutcome {
    if result.delivered() {
        return AttemptOutcome::Delivered;
    }
    let attempt = delivery.attempts + 1;
    match schedule.next_wait(
        attempt.saturating_sub(delivery.retry_base),
        result.retry_after,
        random,
    ) {
        Some(wait) => AttemptOutcome::Retry(
            started_at
                .plus_millis(took_ms(result))
                .plus_millis(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        ),
        None => AttemptOutcome::Dead,
    }
}

/// The record of an attempt, under the claim it was made with.
pub(crate) fn record(
    claimed: &ClaimedDelivery,
    started_at: UnixMillis,
    result: &SendResult,
    outcome: AttemptOutcome,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: claimed.delivery.id,
        claim: claimed.claim.clone(),
        attempt: claimed.delivery.attempts + 1,
        started_at,
        duration_ms: took_ms(result),
        status_code: result.status,
        error: result.error.clone(),
        outcome,
    }
}

/// The `WebhookInfo` of a delivery's final outcome (reference §3.10), with the HTTP status
/// LiveKit leaves empty; its subject comes from the store, not from parsing the body back.
pub(crate) fn webhook_info(
    delivery: &PendingDelivery,
    url: &str,
    started_at: UnixMillis,
    result: &SendResult,
) -> lk::WebhookInfo {
    let nanos = |millis: i64| millis.saturating_mul(1_000_000);
    let subject = &delivery.subject;
    lk::WebhookInfo {
        event_id: delivery.message_id.clone(),
        event: delivery.event.clone(),
        room_name: subject.room_name.clone(),
        room_id: subject.room_sid.clone(),
        participant_identity: subject.participant_identity.clone(),
        participant_id: subject.participant_sid.clone(),
        track_id: subject.track_sid.clone(),
        egress_id: subject.egress_id.clone(),
        ingress_id: subject.ingress_id.clone(),
        created_at: Some(delivery.created_at.to_timestamp()),
        queued_at: Some(delivery.created_at.to_timestamp()),
        queue_duration_ns: nanos(started_at.millis_since(delivery.created_at)),
        sent_at: Some(started_at.to_timestamp()),
        send_duration_ns: i64::try_from(result.took.as_nanos()).unwrap_or(i64::MAX),
        url: url.to_owned(),
        send_error: result.error.clone().unwrap_or_default(),
        http_status_code: result.status.map(i32::from).unwrap_or(0),
        ..Default::default()
    }
}

fn took_ms(result: &SendResult) -> i64 {
    i64::try_from(result.took.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
