//! The call quality routes (role `read`, DESIGN.md "Call quality"): `GET /v1/issues`, the quality
//! issues across rooms, and `GET /v1/rooms/{sid}/report`, a room's report, computed from its
//! stored stats windows and issues (final once the room has finished).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;
use telemetry_core::quality::IssueKind;
use telemetry_core::{Clock, Direction, StreamKind, SystemClock};
use telemetry_store::model::{
    IssueRecord, IssuesQuery, ParticipantRow, ParticipantState, StatsQuery, StatsWindowRecord,
};

use crate::api::{limit, parse_time, read, rfc3339};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Most issues one report lists, and most windows it reads: a room with more is reported on
/// these (a 24-hour room of 30 participants with 4 tracks each has about 350,000 windows at
/// 30 s flushes; the cap keeps one request's memory near 100 MB).
const REPORT_MAX_WINDOWS: u32 = 200_000;
const REPORT_MAX_ISSUES: u32 = 10_000;

/// Parameters of `GET /v1/issues`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuesParams {
    open: Option<String>,
    room_sid: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/issues?open=true|false&roomSid=&kind=&from=&to=&limit=`: quality issues, oldest start
/// first; `from`/`to` (RFC 3339 or milliseconds) keep the issues that overlap them.
///
/// # Errors
///
/// 400 naming a bad parameter; 401, 403.
pub async fn issues(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    params: Result<Query<IssuesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(principal)?;
    let Query(params) =
        params.map_err(|error| ApiError::invalid(format!("query: {}", error.body_text())))?;
    let open = match params.open.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`open`: {other:?} is neither \"true\" nor \"false\""
            )));
        }
    };
    let kind = params
        .kind
        .as_deref()
        .map(|kind| {
            IssueKind::parse(kind).ok_or_else(|| {
                let known: Vec<&str> = IssueKind::ALL.iter().map(|kind| kind.as_str()).collect();
                ApiError::invalid(format!("`kind`: {kind:?} is not one of {}", known.join(", ")))
            })
        })
        .transpose()?;
    let from = params.from.as_deref().map(|from| parse_time("from", from)).transpose()?;
    let to = params.to.as_deref().map(|to| parse_time("to", to)).transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(ApiError::invalid("`from`: must be before `to`"));
    }
    let issues = state
        .store
        .issues(IssuesQuery {
            open,
            room_sid: params.room_sid,
            kind,
            from,
            to,
            limit: limit(params.limit, 1000, 10_000)?,
        })
        .await?;
    Ok(Json(serde_json::json!({
        "issues": issues.iter().map(issue_json).collect::<Vec<_>>(),
    })))
}

/// The API's `issue` object, with the room's name beside its sid.
fn issue_json(issue: &IssueRecord) -> Value {
    let mut json = issue.to_issue().to_json();
    json["roomName"] = Value::String(issue.room_name.clone());
    json
}

/// `GET /v1/rooms/{sid}/report`: the room's report (DESIGN.md): per participant its outcome,
/// connect time, upstream and downstream figures from its stored media windows, its issues;
/// every issue of the room; `final` once the room has finished.
///
/// # Errors
///
/// 404 for an unknown room; 401, 403.
pub async fn report(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(sid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read(principal)?;
    let detail = state
        .store
        .room(&sid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no room `{sid}`")))?;
    let windows = state
        .store
        .stats(StatsQuery {
            room_sid: Some(sid.clone()),
            limit: REPORT_MAX_WINDOWS,
            ..Default::default()
        })
        .await?;
    let issues = state
        .store
        .issues(IssuesQuery {
            room_sid: Some(sid.clone()),
            limit: REPORT_MAX_ISSUES,
            ..Default::default()
        })
        .await?;
    let room = &detail.room;
    let end = room.ended_at.unwrap_or_else(|| SystemClock.now());
    let participants: Vec<Value> = detail
        .participants
        .iter()
        .map(|participant| participant_report(participant, &windows, &issues))
        .collect();
    Ok(Json(serde_json::json!({
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
    })))
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
