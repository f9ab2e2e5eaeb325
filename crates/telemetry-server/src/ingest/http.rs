//! `POST /v1/telemetry` and `POST /v1/flush`.

use std::io::Read;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde::Serialize;
use telemetry_core::{Clock, SystemClock};
use telemetry_proto::v1;

use crate::auth::Principal;
use crate::cluster;
use crate::config::Role;
use crate::error::{ApiError, ErrorCode};
use crate::ingest::decode::{Format, decode_batch};
use crate::ingest::idempotency::{self, Begin, RecentKeys};
use crate::ingest::validate::Limits;
use crate::ingest::{Outcome, Rejection, apply_calls, prepare_calls};
use crate::metrics::Transport;
use crate::state::AppState;

/// The ingest response.
#[derive(Clone, Debug, Serialize)]
pub struct IngestResponse {
    /// Calls accepted.
    pub accepted: usize,
    /// The first 100 calls rejected, with their index and why.
    pub rejected: Vec<Rejection>,
    /// How many calls were rejected in all.
    #[serde(rename = "rejectedCount")]
    pub rejected_count: usize,
}

/// `POST /v1/telemetry`.
///
/// # Errors
///
/// The documented statuses: 400, 401, 403, 413, 415, 429, 503.
pub async fn ingest(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let result = ingest_inner(&state, principal, &headers, body).await;
    if let Err(error) = &result {
        state.metrics.refused(error.code.http_status().as_u16());
    }
    result
}

async fn ingest_inner(
    state: &AppState,
    principal: Result<Principal, ApiError>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let principal = principal?;
    principal.require(Role::Ingest)?;
    state.check_accepting_calls()?;
    let format = content_format(headers)?;
    let gzip = content_encoding_is_gzip(headers)?;
    let idempotency_key = idempotency::key(headers)?;
    if state.cluster.is_some() {
        return ingest_to_cluster(state, &principal, idempotency_key, format, gzip, body).await;
    }
    let Some(key) = idempotency_key else {
        return ingest_here(state, &principal, format, gzip, body).await;
    };
    let in_progress =
        match state.recent_keys.begin(&principal.key, &key, tokio::time::Instant::now())? {
            Begin::Repeat(answer) => return Ok(Json(answer)),
            Begin::First => KeyInProgress {
                recent: &state.recent_keys,
                api_key: &principal.key,
                key: &key,
                finished: false,
            },
        };
    let result = ingest_here(state, &principal, format, gzip, body).await;
    in_progress.finish(result.as_ref().ok().map(|Json(answer)| answer.clone()));
    result
}

/// The first request with an `Idempotency-Key` (without the cluster), in progress: dropped
/// unfinished (the request cancelled), the key is forgotten.
struct KeyInProgress<'a> {
    recent: &'a RecentKeys<IngestResponse>,
    api_key: &'a str,
    key: &'a str,
    finished: bool,
}

impl KeyInProgress<'_> {
    fn finish(mut self, answer: Option<IngestResponse>) {
        self.finished = true;
        self.recent.finish(self.api_key, self.key, answer);
    }
}

impl Drop for KeyInProgress<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.recent.finish(self.api_key, self.key, None);
        }
    }
}

async fn ingest_here(
    state: &AppState,
    principal: &Principal,
    format: Format,
    gzip: bool,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let _permit = state.ingest_permits.try_acquire().map_err(|_| {
        ApiError::new(
            ErrorCode::ResourceExhausted,
            "too many ingest requests in flight; retry later",
        )
        .retry_after(1)
    })?;
    if state.service.pending_outputs() > state.config.stats.max_pending_outputs {
        return Err(ApiError::new(
            ErrorCode::ResourceExhausted,
            "the store is behind; retry later",
        )
        .retry_after(1));
    }
    let bytes = read_body(body, state.config.http.max_body_bytes).await?;
    let max_decompressed = state.config.http.max_decompressed_bytes;
    let service = state.service.clone();
    let default_node = principal.key.clone();
    let max_calls = state.config.http.max_calls_per_request;
    let limits = Limits::from_config(&state.config);
    let outcome = tokio::task::spawn_blocking(move || -> Result<Outcome, ApiError> {
        let body = body_bytes(gzip, &bytes, max_decompressed)?;
        let calls = decode_batch(format, &body, max_calls)?;
        Ok(apply_calls(&service, calls, 0, &default_node, SystemClock.now(), &limits))
    })
    .await
    .map_err(|error| ApiError::internal(&error))??;
    if let Some(seq) = outcome.last_seq {
        wait_durable(state, seq).await?;
    }
    state.metrics.ingest(Transport::Http, outcome.accepted as u64, outcome.rejected_count as u64);
    Ok(Json(IngestResponse {
        accepted: outcome.accepted,
        rejected: outcome.rejected,
        rejected_count: outcome.rejected_count,
    }))
}

/// Cluster mode: the request's accepted calls published to JetStream (`crate::cluster`), the
/// answer once JetStream acknowledged them. With an `Idempotency-Key`, the messages' ids come
/// from it, so a repeat stores nothing twice and gets the same answer (validation is the same).
async fn ingest_to_cluster(
    state: &AppState,
    principal: &Principal,
    idempotency_key: Option<String>,
    format: Format,
    gzip: bool,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let cluster = state.cluster.as_ref().expect("called in cluster mode only");
    let _permit = state.ingest_permits.try_acquire().map_err(|_| {
        ApiError::new(
            ErrorCode::ResourceExhausted,
            "too many ingest requests in flight; retry later",
        )
        .retry_after(1)
    })?;
    let bytes = read_body(body, state.config.http.max_body_bytes).await?;
    let max_decompressed = state.config.http.max_decompressed_bytes;
    let default_node = principal.key.clone();
    let max_calls = state.config.http.max_calls_per_request;
    let limits = Limits::from_config(&state.config);
    let (calls, outcome) = tokio::task::spawn_blocking(
        move || -> Result<(Vec<v1::TelemetryCall>, Outcome), ApiError> {
            let body = body_bytes(gzip, &bytes, max_decompressed)?;
            let calls = decode_batch(format, &body, max_calls)?;
            Ok(prepare_calls(calls, 0, &default_node, SystemClock.now(), &limits))
        },
    )
    .await
    .map_err(|error| ApiError::internal(&error))??;
    let message_id = idempotency_key.map(|key| cluster::message_id(&principal.key, &key, 0));
    cluster.publish(calls, message_id.as_deref()).await?;
    state.metrics.ingest(Transport::Http, outcome.accepted as u64, outcome.rejected_count as u64);
    Ok(Json(IngestResponse {
        accepted: outcome.accepted,
        rejected: outcome.rejected,
        rejected_count: outcome.rejected_count,
    }))
}

/// Reads a request body of at most `limit` bytes (`http.max_body_bytes`).
///
/// # Errors
///
/// `PayloadTooLarge` over the limit, `InvalidArgument` if it cannot be read.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let bytes = http_body_util::Limited::new(body, limit).collect().await.map_err(|error| {
        if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("body: larger than {limit} bytes (`http.max_body_bytes`)"),
            )
        } else {
            ApiError::invalid(format!("body: could not be read: {error}"))
        }
    })?;
    Ok(bytes.to_bytes())
}

/// Waits until the outputs up to `seq` are stored, at most the request timeout.
///
/// # Errors
///
/// `Unavailable` if the store does not catch up in time or the pipeline stopped. The calls are
/// accepted all the same and will be stored; the caller learns it could not be confirmed.
pub async fn wait_durable(state: &AppState, seq: u64) -> Result<(), ApiError> {
    match tokio::time::timeout(state.config.http.request_timeout, state.durable.wait_for(seq)).await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => {
            Err(ApiError::new(ErrorCode::Unavailable, "the service is shutting down")
                .retry_after(5))
        }
        Err(_) => Err(ApiError::new(
            ErrorCode::Unavailable,
            "accepted, but not confirmed stored within `http.request_timeout`: the store is behind",
        )
        .retry_after(5)),
    }
}

/// Decodes a request body into its calls, one result per call: decompressed first if `gzip`
/// (at most `max_decompressed` bytes), then [`decode_batch`] with at most `max_calls` calls, all
/// decoded. (Ingest decodes each call as it applies it: [`body_bytes`], then [`decode_batch`].)
///
/// # Errors
///
/// `InvalidArgument` for a body that cannot be read at all, `PayloadTooLarge` for one over
/// either limit.
pub fn decode_body(
    format: Format,
    gzip: bool,
    body: &[u8],
    max_decompressed: usize,
    max_calls: usize,
) -> Result<Vec<Result<v1::TelemetryCall, String>>, ApiError> {
    let bytes = body_bytes(gzip, body, max_decompressed)?;
    Ok(decode_batch(format, &bytes, max_calls)?.collect())
}

/// The body's bytes: decompressed if `gzip` (at most `max_decompressed` bytes), else as sent.
///
/// # Errors
///
/// `InvalidArgument` for invalid gzip data, `PayloadTooLarge` for more than `max_decompressed`
/// bytes once decompressed.
pub fn body_bytes(
    gzip: bool,
    body: &[u8],
    max_decompressed: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, ApiError> {
    if gzip { Ok(gunzip(body, max_decompressed)?.into()) } else { Ok(body.into()) }
}

/// The body's format from its `Content-Type`.
///
/// # Errors
///
/// `UnsupportedMediaType` for a missing or unsupported type.
pub fn content_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "" => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "missing `Content-Type`: send `application/json` or `application/x-protobuf`",
        )),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "`Content-Type: {other}` is not supported: send `application/json` or `application/x-protobuf`"
            ),
        )),
    }
}

/// Whether the body is gzip-compressed, from its `Content-Encoding`.
///
/// # Errors
///
/// `UnsupportedMediaType` for an encoding other than `gzip` or `identity`.
pub fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("identity");
    match encoding.trim().to_ascii_lowercase().as_str() {
        "identity" | "" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("`Content-Encoding: {other}` is not supported: send `gzip` or nothing"),
        )),
    }
}

/// Decompresses gzip, refusing to produce more than `limit` bytes.
///
/// # Errors
///
/// `InvalidArgument` for data that is not gzip, `PayloadTooLarge` over the limit.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut decoder = flate2::read::GzDecoder::new(compressed).take(limit as u64 + 1);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    decoder
        .read_to_end(&mut out)
        .map_err(|error| ApiError::invalid(format!("body: invalid gzip data: {error}")))?;
    if out.len() > limit {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "body: larger than {limit} bytes once decompressed (`http.max_decompressed_bytes`)"
            ),
        ));
    }
    Ok(out)
}

/// The flush response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlushResponse {
    /// Stats batches stored by this flush (one per participant with samples).
    pub stored_through_seq: u64,
}

/// `POST /v1/flush`: flushes every stats worker and returns once the flushed stats are stored.
///
/// # Errors
///
/// 401, 403, or 503 if storing does not finish within the request timeout.
pub async fn flush(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
) -> Result<Json<FlushResponse>, ApiError> {
    principal?.require(Role::Admin)?;
    let seq = crate::pipeline::flush(&state.service, &state.metrics, state.durable.flushes()).await;
    wait_durable(&state, seq).await?;
    Ok(Json(FlushResponse { stored_through_seq: seq }))
}
