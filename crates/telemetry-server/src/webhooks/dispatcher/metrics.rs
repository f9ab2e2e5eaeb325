//! The webhook metrics: LiveKit's `livekit_webhook_dispatch_total`, and `rtc_telemetry_webhook_*`
//! for attempts by result, claims, fenced records, requests in flight and the outbox's depth.
//!
//! LiveKit's `livekit_webhook_queue_length` is not exported: the queues live in the store, shared
//! by every dispatcher on the database, and their depth is `rtc_telemetry_webhook_outbox`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use telemetry_core::metrics::{MetricFamily, MetricKind, MetricSample, MetricValue};
use telemetry_store::model::OutboxCounts;

/// Counters of one dispatcher.
#[derive(Debug, Default)]
pub(crate) struct WebhookMetrics {
    /// Final outcomes: delivered, dead.
    dispatched: [AtomicU64; 2],
    attempts: Mutex<Vec<(&'static str, u64)>>,
    claimed: AtomicU64,
    claim_failures: AtomicU64,
    fenced: AtomicU64,
}

impl WebhookMetrics {
    pub(crate) fn dispatched(&self, delivered: bool) {
        self.dispatched[usize::from(!delivered)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn attempt(&self, result: &'static str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match attempts.iter_mut().find(|(name, _)| *name == result) {
            Some((_, count)) => *count += 1,
            None => attempts.push((result, 1)),
        }
    }

    pub(crate) fn claimed(&self, count: usize) {
        self.claimed.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(crate) fn claim_failed(&self) {
        self.claim_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fenced(&self) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn families(
        &self,
        outbox: Option<OutboxCounts>,
        in_flight: u64,
    ) -> Vec<MetricFamily> {
        let number = |labels: Vec<(&'static str, String)>, value: u64| MetricSample {
            labels,
            value: MetricValue::Number(value as f64),
        };
        let counter = |name, help, value: &AtomicU64| MetricFamily {
            name,
            help,
            kind: MetricKind::Counter,
            samples: vec![number(Vec::new(), value.load(Ordering::Relaxed))],
        };
        let mut families = vec![
            MetricFamily {
                name: "livekit_webhook_dispatch_total",
                help: "Webhook deliveries by final outcome: success (a 2xx answer) or failure (dead after the last attempt). Nothing is dropped.",
                kind: MetricKind::Counter,
                samples: vec![
                    number(
                        vec![("status", "success".to_owned()), ("reason", String::new())],
                        self.dispatched[0].load(Ordering::Relaxed),
                    ),
                    number(
                        vec![("status", "failure".to_owned()), ("reason", String::new())],
                        self.dispatched[1].load(Ordering::Relaxed),
                    ),
                ],
            },
            MetricFamily {
                name: "rtc_telemetry_webhook_attempts_total",
                help: "Webhook delivery attempts by result.",
                kind: MetricKind::Counter,
                samples: self
                    .attempts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .map(|(result, count)| number(vec![("result", (*result).to_owned())], *count))
                    .collect(),
            },
            counter(
                "rtc_telemetry_webhook_claims_total",
                "Deliveries this instance claimed from the outbox.",
                &self.claimed,
            ),
            counter(
                "rtc_telemetry_webhook_claim_failures_total",
                "Claims that failed because the store was unavailable.",
                &self.claim_failures,
            ),
            counter(
                "rtc_telemetry_webhook_fenced_total",
                "Attempts not recorded because their claim was no longer current (its lease ran out and another dispatcher took the delivery, or its endpoint was deleted).",
                &self.fenced,
            ),
            MetricFamily {
                name: "rtc_telemetry_webhook_in_flight",
                help: "Webhook requests this instance has in flight.",
                kind: MetricKind::Gauge,
                samples: vec![number(Vec::new(), in_flight)],
            },
        ];
        if let Some(outbox) = outbox {
            families.push(MetricFamily {
                name: "rtc_telemetry_webhook_outbox",
                help: "Deliveries in the outbox by status.",
                kind: MetricKind::Gauge,
                samples: vec![
                    number(vec![("status", "pending".to_owned())], outbox.pending),
                    number(vec![("status", "delivered".to_owned())], outbox.delivered),
                    number(vec![("status", "dead".to_owned())], outbox.dead),
                ],
            });
        }
        families
    }
}
