//! The dashboard: a web page served at `/`, its assets built into the binary.
//!
//! The page (`assets/dashboard/`: `index.html`, ES modules, CSS and a vendored copy of uPlot) is
//! one static single-page application with hash routing; it reads the query API with the token
//! the user pastes, so it needs nothing from the server but its files and `GET /v1/overview`.
//! Every file is embedded with `include_bytes!`, so the binary serves it offline, and answered
//! with its content type, a strict Content-Security-Policy (only this origin; no inline script or
//! style) and an `ETag` from its bytes with `Cache-Control: no-cache`: browsers revalidate and
//! get a 304, and a new binary's files are never mixed with an old one's from a cache.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::auth::Principal;
use crate::config::Role;
use crate::error::ApiError;
use crate::state::AppState;

#[cfg(test)]
mod tests;

/// The Content-Security-Policy of every dashboard response: scripts, styles, images and API
/// calls from this origin only; no inline script or style, no frames, no form posts (the
/// sign-in form is handled by script, so a token never lands in a URL).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug)]
struct Asset {
    /// The path under `/assets/` (`index.html` is served at `/`).
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// FNV-1a of `bytes`, computed at compile time.
    hash: u64,
}

/// FNV-1a, 64 bits: a cheap content hash for the `ETag`s, usable in a `const`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        index += 1;
    }
    hash
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {{
        const BYTES: &[u8] = include_bytes!(concat!("../assets/dashboard/", $path));
        Asset { path: $path, content_type: $content_type, bytes: BYTES, hash: fnv1a(BYTES) }
    }};
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the page. A unit test checks that this list and `assets/dashboard/` agree
/// (`vendor/README.md`, which says where the vendored files come from, is not served).
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", CSS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("format.js", JS),
    asset!("charts.js", JS),
    asset!("quality.js", JS),
    asset!("cluster.js", JS),
    asset!("pages/overview.js", JS),
    asset!("pages/rooms.js", JS),
    asset!("pages/room.js", JS),
    asset!("pages/nodes.js", JS),
    asset!("pages/webhooks.js", JS),
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
    asset!("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
];

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The dashboard's routes: the page at `/`, its files under `/assets/`, and `GET /v1/overview`.
pub fn router() -> Router<AppState> {
    files().route("/v1/overview", get(overview))
}

/// The routes of the embedded files, for any state.
fn files<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/assets/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers)
            }),
        )
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = find(path) else {
        return ApiError::not_found(format!("no dashboard file `{path}`")).into_response();
    };
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.bytes.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /v1/overview` (role `read`): what the dashboard's overview shows, `{activeRooms,
/// activeParticipants, publishedTracks, acceptedCalls, webhooks: {pending, delivered, dead},
/// principal: {key, roles}, cluster}`, `cluster` being `{instanceId, partitions}` in cluster mode
/// and null without it. The page derives the ingest rate from `acceptedCalls` of two polls,
/// shows the admin actions only when `principal.roles` has `admin`, and asks `GET /v1/cluster`
/// for the instances and partitions only when `cluster` is set (it answers 404 otherwise).
///
/// # Errors
///
/// 401, 403; 503 while the store closes.
pub async fn overview(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let principal = principal?;
    principal.require(Role::Read)?;
    let counts = state.store.counts().await?;
    let outbox = state.store.outbox_counts().await?;
    let roles: Vec<&str> = principal.roles.iter().map(|role| role.as_str()).collect();
    let cluster = state.cluster.as_ref().map(|cluster| {
        serde_json::json!({
            "instanceId": cluster.ownership.instance_id,
            "partitions": cluster.ownership.partitions,
        })
    });
    Ok(Json(serde_json::json!({
        "activeRooms": counts.active_rooms,
        "activeParticipants": counts.active_participants,
        "publishedTracks": counts.published_tracks,
        "acceptedCalls": state.metrics.accepted_calls(),
        "webhooks": { "pending": outbox.pending, "delivered": outbox.delivered, "dead": outbox.dead },
        "principal": { "key": principal.key, "roles": roles },
        "cluster": cluster,
    })))
}
