//! The call quality routes (role `read`, DESIGN.md "Call quality"): `GET /v1/issues`, the quality
//! issues across rooms, and `GET /v1/rooms/{sid}/report`, a room's report (computed by
//! [`crate::report`] from what is stored; final once the room has finished).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;
use telemetry_core::quality::IssueKind;
use telemetry_core::{Clock, SystemClock};
use telemetry_store::model::{IssueRecord, IssuesQuery};

use crate::api::{limit, parse_time, read};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

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
pub(crate) fn issue_json(issue: &IssueRecord) -> Value {
    let mut json = issue.to_issue().to_json();
    json["roomName"] = Value::String(issue.room_name.clone());
    json
}

/// `GET /v1/rooms/{sid}/report`: the room's report ([`crate::report`]), final once the room has
/// finished.
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
    let report = crate::report::room_report(state.store.as_ref(), &sid, SystemClock.now())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no room `{sid}`")))?;
    Ok(Json(report.json))
}
