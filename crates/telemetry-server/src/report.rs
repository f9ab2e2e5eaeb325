//! A room's report (DESIGN.md "Call quality"): per participant its outcome, connect time,
//! upstream and downstream figures from its stored media windows and its issues; every issue of
//! the room; and the counts of its webhook deliveries by status. Computed from the store alone,
//! so `GET /v1/rooms/{sid}/report` and the `room_report` webhook ([`crate::room_reports`]) give
//! the same report for a finished room.

use serde_json::Value;
use telemetry_core::{Direction, StreamKind, UnixMillis};
use telemetry_store::model::{
    IssueRecord, IssuesQuery, ParticipantRow, ParticipantState, StatsQuery, StatsWindowRecord,
};
use telemetry_store::{Store, StoreError};

use crate::api::quality::issue_json;
use crate::api::rfc3339;

/// Most issues one report lists, and most windows it reads: a room with more is reported on
/// these (a 24-hour room of 30 participants with 4 tracks each has about 350,000 windows at
/// 30 s flushes; the cap keeps one request's memory near 100 MB).
const REPORT_MAX_WINDOWS: u32 = 200_000;
const REPORT_MAX_ISSUES: u32 = 10_000;

/// A room's report, with what its webhook needs to know of the room.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomReport {
    /// The room's name.
    pub name: String,
    /// When the room finished, if it has.
    pub ended_at: Option<UnixMillis>,
    /// The report as the API serves it.
    pub json: Value,
}

/// The report of room `sid` as of `now` (the end of a room that has not finished), or `None` if
/// the room is unknown. `final` is true once the room has finished; `webhooks` counts the
/// deliveries of the room's webhooks by status at the time of the call.
///
/// # Errors
///
/// Fails if the store does.
pub async fn room_report(
    store: &dyn Store,
    sid: &str,
    now: UnixMillis,
) -> Result<Option<RoomReport>, StoreError> {
    let Some(detail) = store.room(sid).await? else {
        return Ok(None);
    };
    let windows = store
        .stats(StatsQuery {
            room_sid: Some(sid.to_owned()),
            limit: REPORT_MAX_WINDOWS,
            ..Default::default()
        })
        .await?;
    let issues = store
        .issues(IssuesQuery {
            room_sid: Some(sid.to_owned()),
            limit: REPORT_MAX_ISSUES,
            ..Default::default()
        })
        .await?;
    let webhooks = store.room_outbox_counts(sid).await?;
    let room = &detail.room;
    let end = room.ended_at.unwrap_or(now);
    let participants: Vec<Value> = detail
        .participants
        .iter()
        .map(|participant| participant_report(participant, &windows, &issues))
        .collect();
    let json = serde_json::json!({
        "room": {
            "sid": room.sid,
            "name": room.name,
            "startedAt": rfc3339(room.started_at),
            "endedAt": room.ended_at.map(rfc3339),
        },
        "final": room.ended_at.is_some(),
        "durationMs": end.millis_since(room.started_at).max(0),
        "participants": participants,
        "issues": issues.iter().map(issue_json).collect::<Vec<_>>(),
        "webhooks": {
            "delivered": webhooks.delivered,
            "pending": webhooks.pending,
            "dead": webhooks.dead,
        },
    });
    Ok(Some(RoomReport { name: room.name.clone(), ended_at: room.ended_at, json }))
}

fn participant_report(
    participant: &ParticipantRow,
    windows: &[StatsWindowRecord],
    issues: &[IssueRecord],
) -> Value {
    let figures = |direction: Direction| {
        direction_figures(windows.iter().filter(|window| {
            window.participant_sid == participant.sid
                && window.direction == direction
                && window.kind == StreamKind::Media
        }))
    };
    let connect_ms = match (participant.joined_at, participant.active_at) {
        (Some(joined), Some(active)) => Some(active.millis_since(joined).max(0)),
        _ => None,
    };
    let own: Vec<Value> = issues
        .iter()
        .filter(|issue| {
            issue.participant_sid == participant.sid || issue.affected.contains(&participant.sid)
        })
        .map(issue_json)
        .collect();
    serde_json::json!({
        "sid": participant.sid,
        "identity": participant.identity,
        "joinedAt": participant.joined_at.map(rfc3339),
        "activeAt": participant.active_at.map(rfc3339),
        "leftAt": participant.left_at.map(rfc3339),
        "outcome": if participant.state == ParticipantState::Aborted { "aborted" } else { "completed" },
        "connectMs": connect_ms,
        "upstream": figures(Direction::Upstream),
        "downstream": figures(Direction::Downstream),
        "issues": own,
    })
}

/// One direction's figures over a participant's media windows: bytes; the average rate over the
/// time the windows cover; the 95th percentile (nearest rank) of the windows' average rates, of
/// their highest jitter and RTT; the highest peak rate; loss over the packets expected; the mean
/// and lowest MOS of the audio windows.
fn direction_figures<'a>(windows: impl Iterator<Item = &'a StatsWindowRecord>) -> Value {
    let (mut bytes, mut covered_ms, mut packets, mut lost) = (0u64, 0i64, 0u64, 0u64);
    let mut peak_bps = 0.0f64;
    let (mut rates, mut jitters, mut rtts, mut moses) = (vec![], vec![], vec![], vec![]);
    for window in windows {
        bytes = bytes.saturating_add(window.bytes);
        covered_ms = covered_ms.saturating_add(window.covered_ms);
        packets = packets.saturating_add(window.packets);
        lost = lost.saturating_add(window.packets_lost);
        peak_bps = peak_bps.max(window.peak_bps);
        rates.push(window.avg_bps);
        jitters.push(f64::from(window.jitter_max) / 1000.0);
        rtts.push(f64::from(window.rtt_max));
        moses.extend(window.mos);
    }
    let expected = packets.saturating_add(lost);
    serde_json::json!({
        "bytes": bytes,
        "avgBps": if covered_ms > 0 { bytes as f64 * 8000.0 / covered_ms as f64 } else { 0.0 },
        "p95Bps": p95(&mut rates),
        "peakBps": peak_bps,
        "lossPct": if expected > 0 { lost as f64 * 100.0 / expected as f64 } else { 0.0 },
        "jitterP95Ms": p95(&mut jitters),
        "rttP95Ms": p95(&mut rtts),
        "mosAvg": (!moses.is_empty()).then(|| moses.iter().sum::<f64>() / moses.len() as f64),
        "mosMin": moses.iter().copied().reduce(f64::min),
    })
}

/// The 95th percentile by nearest rank; 0 for no values.
pub(crate) fn p95(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = (values.len() * 95).div_ceil(100).max(1);
    values[rank - 1]
}
