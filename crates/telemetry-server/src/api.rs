//! The query API (role `read`): rooms, a room with its participants and tracks, a room's events,
//! stats series with the honest-rate fields, nodes and their rate series. Parameters are checked
//! and a bad one is a 400 naming it; pages carry an opaque `nextCursor`. The call quality routes
//! (issues, room reports) are in [`quality`].

pub mod quality;

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use telemetry_core::proto as lk;
use telemetry_core::rates::window_points;
use telemetry_core::{Clock, SystemClock, UnixMillis};
use telemetry_store::model::{
    EventsQuery, RoomCursor, RoomSummary, RoomsQuery, StatsQuery, StatsWindowRecord,
};

use crate::auth::Principal;
use crate::config::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// How cursors are encoded in URLs.
pub(crate) const CURSOR: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Formats a time as RFC 3339 with milliseconds, in UTC.
pub fn rfc3339(at: UnixMillis) -> String {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at.0).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// Parses a time parameter: RFC 3339, or milliseconds since the epoch.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<UnixMillis, ApiError> {
    if let Ok(millis) = value.parse::<i64>() {
        return Ok(UnixMillis(millis));
    }
    parse_rfc3339(name, value, "neither RFC 3339 nor milliseconds")
}

/// Parses RFC 3339 text; an error says the value `is_not` what it should be.
pub(crate) fn parse_rfc3339(name: &str, value: &str, is_not: &str) -> Result<UnixMillis, ApiError> {
    let time = humantime::parse_rfc3339_weak(value)
        .map_err(|error| ApiError::invalid(format!("`{name}`: {value:?} is {is_not}: {error}")))?;
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::invalid(format!("`{name}`: before 1970")))?;
    Ok(UnixMillis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX)))
}

/// Decodes a cursor that holds an id, as `CURSOR.encode(id.to_string())` made it.
pub(crate) fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|cursor| {
            CURSOR
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| ApiError::invalid("`cursor`: not a cursor this API returned"))
        })
        .transpose()
}

pub(crate) fn limit(value: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ApiError::invalid("`limit`: must be at least 1")),
        Some(limit) if limit > max => Err(ApiError::invalid(format!("`limit`: at most {max}"))),
        Some(limit) => Ok(limit),
    }
}

pub(crate) fn read(principal: Result<Principal, ApiError>) -> Result<(), ApiError> {
    principal?.require(Role::Read)
}

/// Parameters of `GET /v1/rooms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsParams {
    active: Option<bool>,
    name: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomJson {
    sid: String,
    name: String,
    started_at: String,
    ended_at: Option<String>,
    num_participants: u64,
    num_tracks: u64,
}

impl From<RoomSummary> for RoomJson {
    fn from(room: RoomSummary) -> Self {
        Self {
            sid: room.sid,
            name: room.name,
            started_at: rfc3339(room.started_at),
            ended_at: room.ended_at.map(rfc3339),
            num_participants: room.num_participants,
            num_tracks: room.num_tracks,
        }
    }
}

/// `GET /v1/rooms?active=&name=&limit=&cursor=`.
///
/// # Errors
///
/// 400 for a bad parameter; 401, 403.
pub async fn rooms(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    params: Result<Query<RoomsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(principal)?;
    let Query(params) =
        params.map_err(|error| ApiError::invalid(format!("query: {}", error.body_text())))?;
    let after = params.cursor.as_deref().map(decode_room_cursor).transpose()?;
    let page = state
        .store
        .rooms(RoomsQuery {
            active: params.active,
            name_contains: params.name.filter(|name| !name.is_empty()),
            limit: limit(params.limit, 50, 1000)?,
            after,
        })
        .await?;
    let rooms: Vec<RoomJson> = page.items.into_iter().map(RoomJson::from).collect();
    Ok(Json(serde_json::json!({ "rooms": rooms, "nextCursor": page.next.map(encode_room_cursor) })))
}

fn encode_room_cursor(cursor: RoomCursor) -> String {
    CURSOR.encode(format!("{}:{}", cursor.started_at.0, cursor.sid))
}

fn decode_room_cursor(text: &str) -> Result<RoomCursor, ApiError> {
    let invalid = || ApiError::invalid("`cursor`: not a cursor this API returned");
    let bytes = CURSOR.decode(text).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (millis, sid) = text.split_once(':').ok_or_else(invalid)?;
    Ok(RoomCursor {
        started_at: UnixMillis(millis.parse().map_err(|_| invalid())?),
        sid: sid.to_owned(),
    })
}

/// `GET /v1/rooms/{roomSid}`.
///
/// # Errors
///
/// 404 for an unknown room; 401, 403.
pub async fn room(
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
    let participants: Vec<Value> = detail
        .participants
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "sid": p.sid,
                "identity": p.identity,
                "joinedAt": p.joined_at.map(rfc3339),
                "activeAt": p.active_at.map(rfc3339),
                "leftAt": p.left_at.map(rfc3339),
                "state": p.state.as_str(),
            })
        })
        .collect();
    let tracks: Vec<Value> = detail
        .tracks
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "sid": t.sid,
                "participantSid": t.participant_sid,
                "type": t.kind,
                "source": t.source,
                "mimeType": t.mime_type,
                "publishedAt": t.published_at.map(rfc3339),
                "unpublishedAt": t.unpublished_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "room": RoomJson::from(detail.room), "participants": participants, "tracks": tracks }),
    ))
}

/// Parameters of `GET /v1/rooms/{roomSid}/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/rooms/{roomSid}/events?type=&limit=&cursor=`: the room's analytics events in call
/// order, each the event's protobuf JSON with its `type` always present.
///
/// # Errors
///
/// 400 for a bad parameter (an unknown event type names the known ones); 401, 403.
pub async fn room_events(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(sid): Path<String>,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(principal)?;
    let Query(params) =
        params.map_err(|error| ApiError::invalid(format!("query: {}", error.body_text())))?;
    if let Some(event_type) = &params.event_type
        && lk::AnalyticsEventType::from_str_name(event_type).is_none()
    {
        return Err(ApiError::invalid(format!(
            "`type`: unknown event type `{event_type}` (an AnalyticsEventType name, like PARTICIPANT_JOINED)"
        )));
    }
    let after = id_cursor(params.cursor.as_deref())?;
    let page = state
        .store
        .room_events(EventsQuery {
            room_sid: sid,
            event_type: params.event_type,
            limit: limit(params.limit, 100, 1000)?,
            after,
        })
        .await?;
    let events: Vec<Value> = page
        .items
        .into_iter()
        .map(|event| {
            let mut object: Map<String, Value> =
                serde_json::from_str(&event.payload).unwrap_or_default();
            // pbjson omits enum value 0 (ROOM_CREATED): the API always names the type.
            object.insert("type".to_owned(), Value::String(event.event_type));
            Value::Object(object)
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "events": events, "nextCursor": page.next.map(|p| CURSOR.encode(p.to_string())) }),
    ))
}

/// Parameters of `GET /v1/stats`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatsParams {
    room_sid: Option<String>,
    participant_sid: Option<String>,
    track_sid: Option<String>,
    direction: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/stats?roomSid=&participantSid=&trackSid=&direction=&from=&to=`: coalesced windows,
/// grouped into one series per track, participant and direction. `from` and `to` (RFC 3339 or
/// milliseconds) default to the last hour.
///
/// # Errors
///
/// 400 for a bad parameter; 401, 403.
pub async fn stats(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    params: Result<Query<StatsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(principal)?;
    let Query(params) =
        params.map_err(|error| ApiError::invalid(format!("query: {}", error.body_text())))?;
    let direction = params
        .direction
        .as_deref()
        .map(|direction| {
            telemetry_core::Direction::parse(direction).ok_or_else(|| {
                ApiError::invalid(format!(
                    "`direction`: {direction:?} is neither \"upstream\" nor \"downstream\""
                ))
            })
        })
        .transpose()?;
    let to = params
        .to
        .as_deref()
        .map(|to| parse_time("to", to))
        .transpose()?
        .unwrap_or_else(|| SystemClock.now());
    let from = params
        .from
        .as_deref()
        .map(|from| parse_time("from", from))
        .transpose()?
        .unwrap_or(to.plus_millis(-3_600_000));
    if from >= to {
        return Err(ApiError::invalid("`from`: must be before `to`"));
    }
    let windows = state
        .store
        .stats(StatsQuery {
            room_sid: params.room_sid,
            participant_sid: params.participant_sid,
            track_sid: params.track_sid,
            direction,
            from: Some(from),
            to: Some(to),
            limit: limit(params.limit, 10_000, 100_000)?,
        })
        .await?;
    // (track, participant, direction) -> (kind, mime, windows)
    type SeriesKey = (String, String, &'static str);
    let mut series: BTreeMap<SeriesKey, (&'static str, String, Vec<Value>)> = BTreeMap::new();
    for window in windows {
        let key =
            (window.track_sid.clone(), window.participant_sid.clone(), window.direction.as_str());
        let entry = series
            .entry(key)
            .or_insert_with(|| (window.kind.as_str(), window.mime.clone(), Vec::new()));
        if !window.mime.is_empty() {
            entry.1 = window.mime.clone();
        }
        entry.2.push(window_json(&window));
    }
    let series: Vec<Value> = series
        .into_iter()
        .map(|((track_sid, participant_sid, direction), (kind, mime, windows))| {
            serde_json::json!({
                "trackSid": track_sid,
                "participantSid": participant_sid,
                "direction": direction,
                "kind": kind,
                "mime": mime,
                "windows": windows,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "series": series })))
}

fn window_json(window: &StatsWindowRecord) -> Value {
    serde_json::json!({
        "start": rfc3339(window.start),
        "end": rfc3339(window.end),
        "bytes": window.bytes,
        "packets": window.packets,
        "packetsLost": window.packets_lost,
        "avgBps": window.avg_bps,
        "peakBps": window.peak_bps,
        "resolutionMs": window.resolution_ms,
        "jitterMax": window.jitter_max,
        "rttMax": window.rtt_max,
        "score": window.score,
        "minScore": window.min_score,
        "medianScore": window.median_score,
        "nacks": window.nacks,
        "plis": window.plis,
        "firs": window.firs,
        "frames": window.frames,
        "coveredMs": window.covered_ms,
        "samples": window.samples,
        "mos": window.mos,
    })
}

/// `GET /v1/nodes`: the nodes seen, with their latest room states.
///
/// # Errors
///
/// 401, 403.
pub async fn nodes(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
) -> Result<Json<Value>, ApiError> {
    read(principal)?;
    let nodes: Vec<Value> = state
        .store
        .nodes()
        .await?
        .into_iter()
        .map(|node| {
            let rooms = node
                .rooms
                .as_ref()
                .and_then(|rooms| serde_json::from_str::<Value>(&rooms.payload).ok());
            serde_json::json!({
                "nodeId": node.node_id,
                "firstSeen": rfc3339(node.first_seen),
                "lastSeen": rfc3339(node.last_seen),
                "rooms": rooms,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "nodes": nodes })))
}

/// Parameters of `GET /v1/nodes/{nodeId}/rates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesParams {
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Most points one rates query returns.
const MAX_POINTS: i64 = 20_000;

/// `GET /v1/nodes/{nodeId}/rates?window=5s&from=&to=`: the honest node-level rates, one point per
/// window (aligned to multiples of the window); `from` and `to` default to the last 15 minutes.
///
/// # Errors
///
/// 400 for a bad parameter (a window under 1 s or not whole seconds, too many points); 401, 403.
pub async fn node_rates(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(node_id): Path<String>,
    params: Result<Query<RatesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(principal)?;
    let Query(params) =
        params.map_err(|error| ApiError::invalid(format!("query: {}", error.body_text())))?;
    let window = match &params.window {
        None => std::time::Duration::from_secs(5),
        Some(text) => crate::config::parse_duration(text)
            .map_err(|error| ApiError::invalid(format!("`window`: {error}")))?,
    };
    if window.as_millis() < 1000 || window.as_millis() % 1000 != 0 {
        return Err(ApiError::invalid(
            "`window`: whole seconds, at least 1s (rates are kept per second)",
        ));
    }
    let window_seconds = window.as_secs() as i64;
    let to = params
        .to
        .as_deref()
        .map(|to| parse_time("to", to))
        .transpose()?
        .unwrap_or_else(|| SystemClock.now());
    let from = params
        .from
        .as_deref()
        .map(|from| parse_time("from", from))
        .transpose()?
        .unwrap_or(to.plus_millis(-900_000));
    if from >= to {
        return Err(ApiError::invalid("`from`: must be before `to`"));
    }
    if to.millis_since(from) / 1000 / window_seconds > MAX_POINTS {
        return Err(ApiError::invalid(format!(
            "`window`: more than {MAX_POINTS} points between `from` and `to`; widen it"
        )));
    }
    let cells = state.store.node_rates(&node_id, from, to).await?;
    let points: Vec<Value> = window_points(cells, from, to, window_seconds)
        .into_iter()
        .map(|point| {
            serde_json::json!({
                "at": rfc3339(point.at),
                "bpsIn": point.bps_in,
                "bpsOut": point.bps_out,
                "ppsIn": point.pps_in,
                "ppsOut": point.pps_out,
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "nodeId": node_id, "windowMs": window_seconds * 1000, "points": points }),
    ))
}
