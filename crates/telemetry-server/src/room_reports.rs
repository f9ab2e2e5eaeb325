//! The `room_report` webhook (DESIGN.md "Call quality"): when a room finishes, its final report
//! ([`crate::report`]) is sent to the endpoints that name `room_report` in `includeEvents`.
//!
//! **Where and when.** The pipeline's consumer, once the commit holding a room's `ROOM_ENDED`
//! event has succeeded, hands the room to the [`Reporter`] with a mark of the stats flushes
//! started so far. The reporter waits for a flush that started after that mark to be stored
//! (every sample the core accepted for the room before it finished is then in a stored window),
//! computes the report from the store, exactly as `GET /v1/rooms/{sid}/report` does, and writes
//! the webhook's message and deliveries in one commit of its own. So the report reaches the store
//! at most one `stats.flush_interval` (or one `POST /v1/flush`) after the room finished, after
//! the room's `room_finished` webhook, and on the same ordering key (the room's name): each
//! endpoint receives it after `room_finished`. From then on it is as durable as every webhook.
//!
//! **After an abrupt stop.** A process that stops abruptly between the room's commit and the
//! report's leaves a finished room without its report (a graceful stop makes the reports of
//! rooms already finished, after its last flush). At start, [`recover`] finds the rooms that
//! started within [`RECOVERY_WINDOW`] and finished without a `room_report` message, and hands
//! them to the reporter like the consumer does; their reports come after this process's first
//! flush. A report written twice is stored once, so a room reported meanwhile by another
//! instance, or listed by mistake, costs a computation, not a second webhook.
//!
//! **What it does not promise.** A room that started more than [`RECOVERY_WINDOW`] before the
//! restart loses its report to an abrupt stop. Samples that arrive after the room finished are not in it. Its
//! `webhooks` counts are those at the time it was made (the API's grow as deliveries finish);
//! everything else equals what the API serves for the finished room. Its id is derived from the
//! room's sid, so a report made twice (a retried write, two instances) is stored once.

use std::sync::Arc;
use std::time::Duration;

use telemetry_core::{Clock as _, SystemClock};
use telemetry_store::Store;
use telemetry_store::model::{
    DeliveriesQuery, OutgoingWebhook, RoomsQuery, WebhookMessage, WriteBatch,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Durable;
use crate::webhooks::Endpoints;

/// The first wait after a failed report; it doubles up to `MAX_RETRY_WAIT`.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(100);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// How far back [`recover`] looks: rooms that started this long before the start.
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Rooms and deliveries read per page by [`recover`].
const RECOVERY_PAGE: u32 = 500;

/// At start: hands the reporter the finished rooms that have no `room_report` message (a
/// previous process stopped between their end and their report), among the rooms that started
/// within [`RECOVERY_WINDOW`] of `now`; their reports wait for a flush of this process, like
/// those of rooms finishing now. A room that ended less than `settle` before `now` is handed over
/// only once `settle` has passed since its end: in cluster mode another instance may be making
/// its report, after a flush of samples this process has not seen, and the first report
/// written is the one kept. Does nothing when no endpoint wants `room_report`. Returns the
/// rooms handed over or to be.
///
/// # Errors
///
/// A failed store read (nothing is handed over).
pub async fn recover(
    store: &dyn Store,
    endpoints: &Endpoints,
    rooms: &FinishedRooms,
    durable: &Durable,
    now: telemetry_core::UnixMillis,
    settle: Duration,
) -> Result<Vec<String>, telemetry_store::StoreError> {
    let name = telemetry_core::webhook_names::ROOM_REPORT;
    if endpoints.select(name).is_empty() {
        return Ok(Vec::new());
    }
    let window_ms = i64::try_from(RECOVERY_WINDOW.as_millis()).unwrap_or(i64::MAX);
    let since = now.plus_millis(-window_ms);
    // The finished rooms of the window, newest first.
    let mut finished = Vec::new();
    let mut after = None;
    'rooms: loop {
        let page = store
            .rooms(RoomsQuery {
                active: Some(false),
                name_contains: None,
                limit: RECOVERY_PAGE,
                after,
            })
            .await?;
        for room in page.items {
            if room.started_at < since {
                break 'rooms;
            }
            if let Some(ended_at) = room.ended_at {
                finished.push((room.sid, ended_at));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if finished.is_empty() {
        return Ok(Vec::new());
    }
    // The reports made: their messages' ids, newest first, until a page holds none of the
    // window (a report is created at its room's end, after the room's start).
    let mut reported = std::collections::HashSet::new();
    let mut before = None;
    loop {
        let page = store
            .deliveries(DeliveriesQuery {
                endpoint_id: None,
                status: None,
                event: Some(name.to_owned()),
                limit: RECOVERY_PAGE,
                before,
            })
            .await?;
        let in_window = page.items.iter().any(|delivery| delivery.created_at >= since);
        reported.extend(page.items.into_iter().map(|delivery| delivery.message_id));
        match page.next {
            Some(next) if in_window => before = Some(next),
            _ => break,
        }
    }
    let unreported: Vec<(String, telemetry_core::UnixMillis)> = finished
        .into_iter()
        .filter(|(sid, _)| {
            !reported.contains(&telemetry_core::quality::room_report_webhook_id(sid))
        })
        .collect();
    let settle_ms = i64::try_from(settle.as_millis()).unwrap_or(i64::MAX);
    for (sid, ended_at) in &unreported {
        let wait = ended_at.plus_millis(settle_ms).millis_since(now);
        let room = FinishedRoom { sid: sid.clone(), flush_mark: durable.flushes().mark() };
        if wait <= 0 {
            rooms.push(room);
            continue;
        }
        let (rooms, durable) = (rooms.clone(), durable.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
            rooms.push(FinishedRoom { flush_mark: durable.flushes().mark(), ..room });
        });
    }
    Ok(unreported.into_iter().map(|(sid, _)| sid).collect())
}

/// A room whose `ROOM_ENDED` event is stored, waiting for its report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedRoom {
    /// The room's sid.
    pub sid: String,
    /// The flushes started when its event was stored ([`crate::pipeline::Flushes::mark`]).
    pub flush_mark: u64,
}

/// The consumer's side: hands finished rooms to the [`Reporter`].
#[derive(Clone, Debug)]
pub struct FinishedRooms {
    /// Unbounded: it holds the rooms that finished since the reporter last looked, a few strings
    /// per room; the consumer must never wait on the reporter, which itself waits for the
    /// consumer's watermark. Dropped with the consumer, which ends the reporter's input.
    sender: mpsc::UnboundedSender<FinishedRoom>,
}

impl FinishedRooms {
    /// Hands `room` to the reporter (dropped if the reporter has stopped).
    pub fn push(&self, room: FinishedRoom) {
        let _ = self.sender.send(room);
    }
}

/// Makes the `room_report` webhooks of finished rooms; one task.
#[derive(Debug)]
pub struct Reporter {
    receiver: mpsc::UnboundedReceiver<FinishedRoom>,
    store: Arc<dyn Store>,
    endpoints: Endpoints,
    durable: Durable,
}

/// The reporter and the handle the consumer pushes finished rooms into.
pub fn reporter(
    store: Arc<dyn Store>,
    endpoints: Endpoints,
    durable: Durable,
) -> (FinishedRooms, Reporter) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (FinishedRooms { sender }, Reporter { receiver, store, endpoints, durable })
}

impl Reporter {
    /// Reports finished rooms as they come until `stop` is cancelled, then reports the rooms
    /// already handed over and returns. The caller cancels `stop` after the last flush is
    /// stored, so those reports wait for nothing.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                room = self.receiver.recv() => match room {
                    Some(room) => self.report(room, &stop).await,
                    None => return,
                },
                () = stop.cancelled() => break,
            }
        }
        while let Ok(room) = self.receiver.try_recv() {
            self.report(room, &stop).await;
        }
    }

    /// Waits for the room's windows to be stored, then writes its report to the endpoints that
    /// want it, retrying a failed store call until it succeeds or `stop` is cancelled.
    async fn report(&self, room: FinishedRoom, stop: &CancellationToken) {
        if self.endpoints.select(telemetry_core::webhook_names::ROOM_REPORT).is_empty() {
            return;
        }
        let flushed = tokio::select! {
            seq = self.durable.flushes().completed_after(room.flush_mark) => seq,
            // Stopping: the last flush, already stored, is the one to wait for.
            () = stop.cancelled() => match self.durable.flushes().completed_since(room.flush_mark) {
                Some(seq) => seq,
                None => {
                    tracing::warn!(room = %room.sid, "stopped before the room's stats were flushed: no report");
                    return;
                }
            },
        };
        if self.durable.wait_for(flushed).await.is_err() {
            return;
        }
        let mut wait = FIRST_RETRY_WAIT;
        loop {
            match self.write_report(&room.sid).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%error, room = %room.sid, retry_in = ?wait, "writing a room's report failed");
                    if stop.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
    }

    async fn write_report(&self, sid: &str) -> Result<(), telemetry_store::StoreError> {
        let Some(report) =
            crate::report::room_report(self.store.as_ref(), sid, SystemClock.now()).await?
        else {
            tracing::warn!(room = %sid, "a finished room is not in the store: no report");
            return Ok(());
        };
        let ended_at = report.ended_at.unwrap_or_else(|| SystemClock.now());
        let rendered =
            telemetry_core::quality::room_report_webhook(sid, &report.name, ended_at, &report.json);
        // Chosen now: an endpoint added since the room finished gets the report too.
        let endpoint_ids = self.endpoints.select(&rendered.event);
        if endpoint_ids.is_empty() {
            return Ok(());
        }
        let message = WebhookMessage::new(rendered, String::new(), ended_at);
        self.store
            .write(WriteBatch {
                webhooks: vec![OutgoingWebhook { message, endpoint_ids }],
                ..WriteBatch::default()
            })
            .await?;
        Ok(())
    }
}
