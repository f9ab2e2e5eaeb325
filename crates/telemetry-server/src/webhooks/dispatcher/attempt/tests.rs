//! What an attempt's result makes of its delivery.

use std::time::Duration;

use telemetry_core::UnixMillis;
use telemetry_core::retry::RetrySchedule;
use telemetry_store::model::{AttemptOutcome, PendingDelivery};

use super::outcome;
use crate::webhooks::sender::SendResult;

fn delivery(attempts: u32, retry_base: u32) -> PendingDelivery {
    PendingDelivery {
        id: 1,
        message_id: "EV_1".into(),
        endpoint_id: "WE_1".into(),
        resource_key: "room".into(),
        event: "room_started".into(),
        payload: "{}".into(),
        subject: Default::default(),
        attempts,
        retry_base,
        next_attempt_at: UnixMillis(0),
        created_at: UnixMillis(0),
    }
}

fn result(status: Option<u16>, retry_after: Option<Duration>) -> SendResult {
    let delivered = status.is_some_and(|status| (200..300).contains(&status));
    SendResult {
        status,
        error: (!delivered).then(|| "failed".to_owned()),
        retry_after,
        took: Duration::from_millis(20),
        result: if delivered { "success" } else { "http_5xx" },
    }
}

#[test]
fn a_2xx_delivers_a_failure_retries_on_the_schedule_and_the_last_one_is_dead() {
    let schedule = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(5)]);
    let start = UnixMillis(10_000);
    assert_eq!(
        outcome(&result(Some(204), None), &delivery(0, 0), &schedule, start, 0.5),
        AttemptOutcome::Delivered
    );
    let AttemptOutcome::Retry(at) =
        outcome(&result(Some(503), None), &delivery(0, 0), &schedule, start, 0.5)
    else {
        panic!("a first failure is retried");
    };
    assert!(at > start.plus_millis(20), "after the attempt's end");
    assert!(at <= start.plus_millis(20 + 2_000), "about the first wait, jittered: {at:?}");
    assert_eq!(
        outcome(&result(Some(503), None), &delivery(2, 0), &schedule, start, 0.5),
        AttemptOutcome::Dead,
        "the schedule is used up"
    );
    // A requeued delivery restarts its schedule from its base.
    assert!(matches!(
        outcome(&result(None, None), &delivery(7, 7), &schedule, start, 0.5),
        AttemptOutcome::Retry(_)
    ));
}

#[test]
fn retry_after_is_honoured() {
    let schedule = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(5)]);
    let start = UnixMillis(10_000);
    let AttemptOutcome::Retry(at) = outcome(
        &result(Some(429), Some(Duration::from_secs(30))),
        &delivery(0, 0),
        &schedule,
        start,
        0.5,
    ) else {
        panic!("a 429 is retried");
    };
    assert!(at >= start.plus_millis(30_000), "not before the answer's Retry-After: {at:?}");
}
