//! The webhook API: endpoints (listed with role `read`, changed with `admin`; secrets never
//! returned), deliveries with their attempts, retry of one delivery, replay of a time range.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use telemetry_core::ids::IdGenerator;
use telemetry_core::{Clock as _, SystemClock, UnixMillis};
use telemetry_store::model::{
    DeliveriesQuery, DeliveryRecord, DeliveryStatus, EndpointRecord, EndpointSource, ReplayQuery,
};

use crate::api::{CURSOR, id_cursor, limit, parse_rfc3339, rfc3339};
use crate::auth::Principal;
use crate::config::{EndpointConfig, Role, Signing, validate_endpoint};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

fn endpoint_json(record: &EndpointRecord) -> Value {
    json!({
        "id": record.id,
        "url": record.url,
        "signing": record.signing.as_str(),
        "apiKey": record.api_key,
        "includeEvents": record.include_events,
        "excludeEvents": record.exclude_events,
        "enabled": record.enabled,
        "source": record.source.as_str(),
        "createdAt": rfc3339(record.created_at),
    })
}

fn delivery_json(delivery: &DeliveryRecord) -> Value {
    json!({
        "id": delivery.id.to_string(),
        "eventId": delivery.message_id,
        "event": delivery.event,
        "endpointId": delivery.endpoint_id,
        "resourceKey": delivery.resource_key,
        "status": delivery.status.as_str(),
        "attempts": delivery.attempts,
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "createdAt": rfc3339(delivery.created_at),
        "nextAttemptAt": delivery.next_attempt_at.map(rfc3339),
        "deliveredAt": delivery.delivered_at.map(rfc3339),
    })
}

/// `GET /v1/webhooks/endpoints`.
///
/// # Errors
///
/// 401, 403.
pub async fn list_endpoints(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
) -> Result<Json<Value>, ApiError> {
    principal?.require(Role::Read)?;
    let endpoints: Vec<Value> = state.store.endpoints().await?.iter().map(endpoint_json).collect();
    Ok(Json(json!({ "endpoints": endpoints })))
}

/// The body of `POST /v1/webhooks/endpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewEndpoint {
    url: String,
    #[serde(default)]
    signing: Option<Signing>,
    #[serde(default)]
    api_key: String,
    secret: String,
    #[serde(default)]
    include_events: Vec<String>,
    #[serde(default)]
    exclude_events: Vec<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// `POST /v1/webhooks/endpoints`: creates an endpoint; deliveries to it begin with the next
/// webhook.
///
/// # Errors
///
/// 400 naming the field at fault; 401, 403.
pub async fn create_endpoint(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    body: Result<Json<NewEndpoint>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal?.require(Role::Admin)?;
    let Json(body) =
        body.map_err(|error| ApiError::invalid(format!("body: {}", error.body_text())))?;
    let config = EndpointConfig {
        url: body.url,
        signing: body.signing.unwrap_or(Signing::Livekit),
        api_key: body.api_key,
        secret: body.secret,
        include_events: body.include_events,
        exclude_events: body.exclude_events,
    };
    validate_endpoint(&config).map_err(|(field, message)| {
        let field = match field {
            "api_key" => "apiKey",
            "include_events" => "includeEvents",
            "exclude_events" => "excludeEvents",
            other => other,
        };
        ApiError::invalid(format!("`{field}`: {message}"))
    })?;
    let id = IdGenerator::from_os().next_id("WE_");
    let mut record =
        crate::webhooks::endpoint_record(id, &config, EndpointSource::Api, SystemClock.now());
    record.enabled = body.enabled.unwrap_or(true);
    state.store.put_endpoint(record.clone()).await?;
    state.webhooks.endpoints.set(state.store.endpoints().await?);
    Ok((StatusCode::CREATED, Json(json!({ "endpoint": endpoint_json(&record) }))))
}

/// `DELETE /v1/webhooks/endpoints/{id}`: its pending deliveries become dead (listed and
/// replayable if an endpoint with its id comes back).
///
/// # Errors
///
/// 404 for an unknown endpoint, 409 for one from the configuration file; 401, 403.
pub async fn delete_endpoint(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal?.require(Role::Admin)?;
    let existing = state.store.endpoints().await?;
    let endpoint = existing
        .iter()
        .find(|endpoint| endpoint.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no endpoint `{id}`")))?;
    if endpoint.source == EndpointSource::Config {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "endpoint `{id}` comes from the configuration file: remove it there and restart"
            ),
        ));
    }
    state.store.delete_endpoint(&id, SystemClock.now()).await?;
    state.webhooks.endpoints.set(state.store.endpoints().await?);
    Ok(StatusCode::NO_CONTENT)
}

/// Parameters of `GET /v1/webhooks/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliveriesParams {
    endpoint_id: Option<String>,
    status: Option<String>,
    event: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn check_status(
    name: &str,
    status: &str,
    allowed: &[DeliveryStatus],
) -> Result<DeliveryStatus, ApiError> {
    DeliveryStatus::parse(status).filter(|status| allowed.contains(status)).ok_or_else(|| {
        let names: Vec<&str> = allowed.iter().map(|status| status.as_str()).collect();
        ApiError::invalid(format!("`{name}`: {status:?} is not one of {}", names.join(", ")))
    })
}

/// `GET /v1/webhooks/deliveries?endpointId=&status=&event=&limit=&cursor=`: newest first.
///
/// # Errors
///
/// 400 for a bad parameter; 401, 403.
pub async fn list_deliveries(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    params: Result<Query<DeliveriesParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    principal?.require(Role::Read)?;
    let Query(params) =
        params.map_err(|error| ApiError::invalid(format!("query: {}", error.body_text())))?;
    let status = params
        .status
        .as_deref()
        .map(|status| check_status("status", status, &DeliveryStatus::ALL))
        .transpose()?;
    if let Some(event) = &params.event
        && !telemetry_core::webhook_names::is_known(event)
    {
        return Err(ApiError::invalid(format!("`event`: unknown event `{event}`")));
    }
    let limit = limit(params.limit, 100, 1000)?;
    let before = id_cursor(params.cursor.as_deref())?;
    let page = state
        .store
        .deliveries(DeliveriesQuery {
            endpoint_id: params.endpoint_id,
            status,
            event: params.event,
            limit,
            before,
        })
        .await?;
    let deliveries: Vec<Value> = page.items.iter().map(delivery_json).collect();
    Ok(Json(
        json!({ "deliveries": deliveries, "nextCursor": page.next.map(|id| CURSOR.encode(id.to_string())) }),
    ))
}

fn delivery_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("no delivery `{text}`")))
}

/// `GET /v1/webhooks/deliveries/{id}`: the delivery and every attempt.
///
/// # Errors
///
/// 404 for an unknown delivery; 401, 403.
pub async fn get_delivery(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal?.require(Role::Read)?;
    let (delivery, attempts) = state
        .store
        .delivery(delivery_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no delivery `{id}`")))?;
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|attempt| {
            json!({
                "attempt": attempt.attempt,
                "startedAt": rfc3339(attempt.started_at),
                "durationMs": attempt.duration_ms,
                "statusCode": attempt.status_code,
                "error": attempt.error,
            })
        })
        .collect();
    Ok(Json(json!({ "delivery": delivery_json(&delivery), "attempts": attempts })))
}

/// `POST /v1/webhooks/deliveries/{id}/retry`: makes a dead or delivered delivery pending again
/// (its schedule restarts), or brings a pending one's next attempt forward to now.
///
/// # Errors
///
/// 404 for an unknown delivery or one whose endpoint is gone; 401, 403.
pub async fn retry_delivery(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal?.require(Role::Admin)?;
    let id = delivery_id(&id)?;
    let now = SystemClock.now();
    // The store wakes the dispatchers.
    if state.store.requeue(id, now).await?.is_none() {
        state.store.expedite(id, now).await?.ok_or_else(|| {
            ApiError::not_found(format!("no delivery `{id}` with a live endpoint"))
        })?;
    }
    let (delivery, _) = state
        .store
        .delivery(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no delivery `{id}`")))?;
    Ok(Json(json!({ "delivery": delivery_json(&delivery) })))
}

/// The body of `POST /v1/webhooks/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayBody {
    endpoint_id: String,
    since: Value,
    until: Option<Value>,
    status: Option<String>,
}

fn time_field(name: &str, value: &Value) -> Result<UnixMillis, ApiError> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .map(UnixMillis)
            .ok_or_else(|| ApiError::invalid(format!("`{name}`: milliseconds"))),
        Value::String(text) => parse_rfc3339(name, text, "not RFC 3339"),
        _ => Err(ApiError::invalid(format!("`{name}`: RFC 3339 text or milliseconds"))),
    }
}

/// `POST /v1/webhooks/replay {endpointId, since, until, status}`: makes the endpoint's
/// deliveries of messages produced in `[since, until)` in `status` (default `dead`; `delivered`
/// sends them again) pending again, in their original order.
///
/// # Errors
///
/// 400 naming the field at fault, 404 for an unknown endpoint; 401, 403.
pub async fn replay(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    principal?.require(Role::Admin)?;
    let Json(body) =
        body.map_err(|error| ApiError::invalid(format!("body: {}", error.body_text())))?;
    let now = SystemClock.now();
    let since = time_field("since", &body.since)?;
    let until = body
        .until
        .as_ref()
        .map(|until| time_field("until", until))
        .transpose()?
        .unwrap_or(now.plus_millis(1));
    if since >= until {
        return Err(ApiError::invalid("`since`: must be before `until`"));
    }
    let status = check_status(
        "status",
        body.status.as_deref().unwrap_or(DeliveryStatus::Dead.as_str()),
        &[DeliveryStatus::Dead, DeliveryStatus::Delivered],
    )?;
    if state.webhooks.endpoints.get(&body.endpoint_id).is_none() {
        return Err(ApiError::not_found(format!("no endpoint `{}`", body.endpoint_id)));
    }
    let requeued = state
        .store
        .replay(ReplayQuery { endpoint_id: body.endpoint_id, since, until, status }, now)
        .await?;
    Ok(Json(json!({ "requeued": requeued.len() })))
}
