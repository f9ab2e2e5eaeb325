//! `POST /v1/ingest/janus`: what Janus's stock sample event handler sends, unchanged (DESIGN.md,
//! "Janus ingest"). One event or an array of them, gzip when Janus compresses, `Basic` auth with
//! an API key and its secret (Janus's `backend_user` and `backend_pwd`) or a `Bearer` token, role
//! `ingest`.
//!
//! The route only decodes ([`decode_body`]: the body limits of `POST /v1/telemetry`, then
//! `telemetry_janus::decode` per event), checks each event's strings and time against `[limits]`
//! and `store.retention` ([`validate`]), and hands the events to the Janus adapter, whose calls
//! go to the core like every other call (checked again by [`validate`] first). It answers once
//! the calls' outputs are stored, like `POST /v1/telemetry`: `200 {"accepted", "ignored",
//! "rejected": [{"index", "error"}], "rejectedCount"}`. Janus counts any answer as delivered and
//! drops an event after a few quick retries, so nothing is refused whole for being busy while it
//! can be taken: 429 only when no request slot is free (`http.max_in_flight`), and only stats
//! samples are shed (counted, and the event reported rejected), never lifecycle calls.
//!
//! The adapter's state (per Janus server) is written to the store after the calls it caused are
//! stored (or by [`run_timer`] if that write failed), and restored by `App::build`, so a call in
//! progress keeps its room, participant and tracks across a restart of the service.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use serde::Serialize;
use serde_json::value::RawValue;
use telemetry_core::metrics::MetricFamily;
use telemetry_core::proto as lk;
use telemetry_core::{Call, CallMeta, Clock, NodeId, SystemClock, TelemetryService, UnixMillis};
use telemetry_janus::{AdapterConfig, Adapters, Applied, Event, Snapshot};
use telemetry_store::Store;
use telemetry_store::model::AdapterStateRecord;
use tokio_util::sync::CancellationToken;

use crate::config::Role;
use crate::error::{ApiError, ErrorCode};
use crate::ingest::decode::Format;
use crate::ingest::http::{
    content_encoding_is_gzip, content_format, gunzip, read_body, wait_durable,
};
use crate::ingest::validate::{Checker, Limits, StatKind};
use crate::ingest::{MAX_LISTED_REJECTIONS, Rejection};
use crate::state::AppState;

/// The adapter's name in the store's adapter states.
pub const ADAPTER: &str = "janus";

/// How often the adapter's time passes (rooms finished by their idle timeout, sessions expired)
/// and unsaved states are written again.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);

/// The Janus adapter of the running service: every Janus server's state, behind one lock (an
/// event and the calls it makes are applied together, so calls reach the core in the adapter's
/// order), and what the route counts.
#[derive(Debug)]
pub struct JanusIngest {
    adapters: Mutex<Adapters>,
    /// States whose write failed, by Janus server: written again by [`run_timer`].
    unsaved: Mutex<BTreeMap<String, Snapshot>>,
    /// Events accepted, ignored and rejected.
    events: [AtomicU64; 3],
    /// Stats samples the core shed.
    shed: AtomicU64,
    /// The caps on strings, for the calls the adapter's timer makes.
    limits: Limits,
}

/// What applying a request's events did.
#[derive(Debug, Default)]
pub struct JanusOutcome {
    /// Events taken into account.
    pub accepted: usize,
    /// Events that carried nothing for telemetry.
    pub ignored: usize,
    /// The first [`MAX_LISTED_REJECTIONS`] events rejected.
    pub rejected: Vec<Rejection>,
    /// How many events were rejected in all.
    pub rejected_count: usize,
    /// The sequence number of the last output the calls produced, if any.
    pub last_seq: Option<u64>,
    /// The adapter states the events changed, to be written once the calls are stored.
    pub snapshots: Vec<Snapshot>,
}

impl JanusOutcome {
    fn reject(&mut self, index: usize, error: String) {
        self.rejected_count += 1;
        if self.rejected.len() < MAX_LISTED_REJECTIONS {
            self.rejected.push(Rejection { index, error });
        }
    }
}

/// The route's answer.
#[derive(Debug, Serialize)]
pub struct JanusResponse {
    /// Events taken into account.
    pub accepted: usize,
    /// Events that carried nothing for telemetry (transport requests, repeated ICE states, ...).
    pub ignored: usize,
    /// The first 100 events rejected, with their index and why.
    pub rejected: Vec<Rejection>,
    /// How many events were rejected in all.
    #[serde(rename = "rejectedCount")]
    pub rejected_count: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held leaves state that is still usable: maps of plain data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JanusIngest {
    /// An adapter knowing no Janus server yet; the calls its timer makes are checked against
    /// `limits` (their times against none: a room finished by its idle timeout after a long stop
    /// of the service is stamped when the timeout ran out).
    pub fn new(config: AdapterConfig, limits: Limits) -> Self {
        Self {
            adapters: Mutex::new(Adapters::new(config)),
            unsaved: Mutex::new(BTreeMap::new()),
            events: Default::default(),
            shed: AtomicU64::new(0),
            limits: Limits { max_age_millis: i64::MAX, ..limits },
        }
    }

    /// Restores the states the store keeps (what the last run wrote), at `now`; returns how many
    /// Janus servers were restored. A state that cannot be read is skipped, with a warning.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub async fn restore(
        &self,
        store: &dyn Store,
        now: UnixMillis,
    ) -> Result<usize, telemetry_store::StoreError> {
        let records = store.adapter_states(ADAPTER).await?;
        let mut adapters = lock(&self.adapters);
        let mut restored = 0;
        for record in records {
            let snapshot = Snapshot {
                emitter: record.key,
                generation: u64::try_from(record.generation).unwrap_or(0),
                state: record.state,
            };
            match adapters.restore(&snapshot, now) {
                Ok(true) => restored += 1,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "a Janus server's state was not restored"),
            }
        }
        Ok(restored)
    }

    /// Applies decoded events in order: each checked ([`check_event`]), applied to its Janus
    /// server's adapter, and the calls it makes checked and applied to `service`.
    pub fn apply_events(
        &self,
        service: &TelemetryService,
        events: Vec<Result<Event, String>>,
        received_at: UnixMillis,
        limits: &Limits,
    ) -> JanusOutcome {
        let checker = Checker::new(limits, received_at);
        let mut outcome = JanusOutcome::default();
        let mut nodes: HashMap<Arc<str>, NodeId> = HashMap::new();
        let mut adapters = lock(&self.adapters);
        let mut calls = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            let applied = event.and_then(|event| {
                check_event(&checker, &event)?;
                // A Janus server the core refuses (`limits.max_nodes`) changes no adapter state.
                if !nodes.contains_key(event.emitter.as_str()) {
                    let node = service
                        .node(&event.emitter)
                        .map_err(|limit| format!("emitter: {limit}"))?;
                    nodes.insert(event.emitter.as_str().into(), node);
                }
                adapters.apply(&event, &mut calls).map_err(|error| error.to_string())
            });
            // Calls made before a refusal (a room started for a participant then refused) go to
            // the core all the same: the adapter knows of them.
            let made = self.apply_calls(service, &checker, &mut calls, &mut nodes, &mut outcome);
            match (applied, made) {
                (Err(error), _) | (Ok(_), Err(error)) => outcome.reject(index, error),
                (Ok(Applied::Accepted), Ok(())) => outcome.accepted += 1,
                (Ok(Applied::Ignored), Ok(())) => outcome.ignored += 1,
            }
        }
        outcome.snapshots = adapters.take_snapshots();
        drop(adapters);
        for (counter, count) in
            self.events.iter().zip([outcome.accepted, outcome.ignored, outcome.rejected_count])
        {
            counter.fetch_add(count as u64, Ordering::Relaxed);
        }
        outcome
    }

    /// Applies the calls in `calls` (draining it); the first problem is returned after every
    /// call that could be applied was.
    fn apply_calls(
        &self,
        service: &TelemetryService,
        checker: &Checker<'_>,
        calls: &mut Vec<telemetry_janus::Emitted>,
        nodes: &mut HashMap<Arc<str>, NodeId>,
        outcome: &mut JanusOutcome,
    ) -> Result<(), String> {
        let mut problem = None;
        for emitted in calls.drain(..) {
            let node = match nodes.get(&emitted.node) {
                Some(&node) => node,
                None => match service.node(&emitted.node) {
                    Ok(node) => {
                        nodes.insert(emitted.node.clone(), node);
                        node
                    }
                    Err(limit) => {
                        problem.get_or_insert_with(|| format!("emitter: {limit}"));
                        continue;
                    }
                },
            };
            if let Err(error) = check_call(checker, &emitted.call) {
                // The adapter builds calls from checked strings: this is a bug, not bad input.
                tracing::error!(%error, "the Janus adapter made a call that does not validate");
                problem.get_or_insert(error);
                continue;
            }
            match service.apply(CallMeta { at: emitted.at, node }, emitted.call) {
                Ok(seq) => outcome.last_seq = outcome.last_seq.max(seq),
                Err(shed) => {
                    self.shed.fetch_add(1, Ordering::Relaxed);
                    problem.get_or_insert_with(|| shed.to_string());
                }
            }
        }
        problem.map_or(Ok(()), Err)
    }

    /// Lets the adapters' time pass to `now`; applies the calls that makes. Returns the last
    /// output's sequence number and the states that changed.
    pub fn tick(
        &self,
        service: &TelemetryService,
        now: UnixMillis,
    ) -> (Option<u64>, Vec<Snapshot>) {
        let checker = Checker::new(&self.limits, now);
        let mut adapters = lock(&self.adapters);
        let mut calls = Vec::new();
        adapters.tick(now, &mut calls);
        let mut outcome = JanusOutcome::default();
        let mut nodes = HashMap::new();
        if let Err(error) =
            self.apply_calls(service, &checker, &mut calls, &mut nodes, &mut outcome)
        {
            tracing::warn!(%error, "a call of the Janus adapter's timer was not applied");
        }
        (outcome.last_seq, adapters.take_snapshots())
    }

    /// Writes states to the store (each over its Janus server's older one); a state whose write
    /// fails is kept and written again by the next [`JanusIngest::save_unsaved`].
    pub async fn save(&self, store: &dyn Store, snapshots: Vec<Snapshot>) {
        let now = SystemClock.now();
        for snapshot in snapshots {
            let record = AdapterStateRecord {
                adapter: ADAPTER.to_owned(),
                key: snapshot.emitter.clone(),
                generation: i64::try_from(snapshot.generation).unwrap_or(i64::MAX),
                state: snapshot.state.clone(),
                updated_at: now,
            };
            if let Err(error) = store.put_adapter_state(record).await {
                tracing::warn!(%error, emitter = %snapshot.emitter, "writing a Janus server's state failed; retrying");
                self.keep_unsaved(snapshot);
            }
        }
    }

    /// Keeps `snapshot` to be written later, unless a newer one of its server is kept.
    fn keep_unsaved(&self, snapshot: Snapshot) {
        let mut unsaved = lock(&self.unsaved);
        match unsaved.get(&snapshot.emitter) {
            Some(kept) if kept.generation >= snapshot.generation => {}
            _ => {
                unsaved.insert(snapshot.emitter.clone(), snapshot);
            }
        }
    }

    /// Writes the states kept by failed writes again.
    pub async fn save_unsaved(&self, store: &dyn Store) {
        let snapshots: Vec<Snapshot> =
            std::mem::take(&mut *lock(&self.unsaved)).into_values().collect();
        if !snapshots.is_empty() {
            self.save(store, snapshots).await;
        }
    }

    /// The route's and the adapter's metrics.
    pub fn metric_families(&self) -> Vec<MetricFamily> {
        let (counters, emitters, sessions, rooms) = {
            let adapters = lock(&self.adapters);
            let (sessions, rooms) = adapters.sizes();
            (adapters.counters(), adapters.len(), sessions, rooms)
        };
        let events = [0, 1, 2].map(|index| self.events[index].load(Ordering::Relaxed));
        crate::metrics::janus_families(
            events,
            self.shed.load(Ordering::Relaxed),
            &counters,
            [emitters, sessions, rooms],
        )
    }
}

/// Decodes a request body into its events, one result per event: decompressed first if `gzip`
/// (at most `max_decompressed` bytes), then one JSON object or an array of at most `max_events`.
///
/// # Errors
///
/// `InvalidArgument` for a body that is not JSON, nor an object or an array; `PayloadTooLarge`
/// for one over a limit. Nothing of such a body takes effect.
pub fn decode_body(
    body: &[u8],
    gzip: bool,
    max_decompressed: usize,
    max_events: usize,
) -> Result<Vec<Result<Event, String>>, ApiError> {
    if gzip {
        decode_events(&gunzip(body, max_decompressed)?, max_events)
    } else {
        decode_events(body, max_events)
    }
}

/// Refuses a body of `count` events, more than `max_events`, whole (413).
fn within_cap(count: usize, max_events: usize) -> Result<(), ApiError> {
    if count > max_events {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "body: {count} events, more than the {max_events} one request may hold (`http.max_calls_per_request`); nothing was taken"
            ),
        ));
    }
    Ok(())
}

fn decode_events(body: &[u8], max_events: usize) -> Result<Vec<Result<Event, String>>, ApiError> {
    let not_json =
        |error: serde_json::Error| ApiError::invalid(format!("body: not valid JSON: {error}"));
    let decode_one = |value: &serde_json::Value| {
        telemetry_janus::decode(value).map_err(|error| error.to_string())
    };
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'[') => {
            let events: Vec<&RawValue> = serde_json::from_slice(body).map_err(not_json)?;
            within_cap(events.len(), max_events)?;
            Ok(events
                .iter()
                .map(|event| {
                    serde_json::from_str::<serde_json::Value>(event.get())
                        .map_err(|error| format!("(event): {error}"))
                        .and_then(|value| decode_one(&value))
                })
                .collect())
        }
        Some(b'{') => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(not_json)?;
            within_cap(1, max_events)?;
            Ok(vec![decode_one(&value)])
        }
        _ => Err(ApiError::invalid(
            "body: expected a Janus event (a JSON object) or an array of them",
        )),
    }
}

/// Checks what of an event ends up stored against `[limits]` and `store.retention`: its time,
/// and the strings that become names, ids and MIME types (the node, room names, identities,
/// display names, mids, codecs, plugin names), each reported under its Janus field.
///
/// # Errors
///
/// A message naming the field.
pub fn check_event(checker: &Checker<'_>, event: &Event) -> Result<(), String> {
    use telemetry_janus::event::{Body, PluginData, VideoRoomEvent};
    let id = |field: &str, value: &str| checker.id(|| field.to_owned(), value);
    id("emitter", &event.emitter)?;
    let millis = i64::try_from(event.timestamp / 1000).unwrap_or(i64::MAX);
    checker.time(|| "timestamp".to_owned(), &UnixMillis(millis).to_timestamp())?;
    if let Some(opaque_id) = &event.opaque_id {
        id("opaque_id", opaque_id)?;
    }
    match &event.body {
        Body::Attached { plugin } | Body::Plugin { plugin, .. } => id("event.plugin", plugin)?,
        Body::MediaStats(reports) => {
            for report in reports {
                id("event.mid", &report.mid)?;
                if let Some(codec) = &report.codec {
                    id("event.codec", codec)?;
                }
            }
        }
        _ => {}
    }
    if let Body::Plugin { data: PluginData::VideoRoom(videoroom), .. } = &event.body {
        let (room, display) = match videoroom {
            VideoRoomEvent::Joined { room, display, .. } => (room, display.as_deref()),
            VideoRoomEvent::Published { room, display, streams, .. } => {
                for (index, stream) in streams.iter().enumerate() {
                    id(&format!("event.data.streams[{index}].mid"), &stream.mid)?;
                    if let Some(codec) = &stream.codec {
                        id(&format!("event.data.streams[{index}].codec"), codec)?;
                    }
                }
                (room, display.as_deref())
            }
            VideoRoomEvent::Subscribing { room, streams } => {
                for (index, stream) in streams.iter().enumerate() {
                    id(&format!("event.data.streams[{index}].mid"), &stream.mid)?;
                    id(&format!("event.data.streams[{index}].feed_mid"), &stream.feed_mid)?;
                }
                (room, None)
            }
            VideoRoomEvent::Unpublished { room, .. }
            | VideoRoomEvent::Leaving { room, .. }
            | VideoRoomEvent::Created { room }
            | VideoRoomEvent::Destroyed { room } => (room, None),
        };
        id("event.data.room", room)?;
        if let Some(display) = display {
            id("event.data.display", display)?;
        }
    }
    Ok(())
}

/// The arguments of an adapter's lifecycle call, walked by the [`Checker`] as the other ingest
/// paths walk a whole call.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Arguments<'a> {
    room: &'a lk::Room,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant: Option<&'a lk::ParticipantInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    track: Option<&'a lk::TrackInfo>,
}

/// Checks a call the adapter made, by the rules every ingested call follows (`validate`).
///
/// # Errors
///
/// A message naming the call's field.
pub fn check_call(checker: &Checker<'_>, call: &Call) -> Result<(), String> {
    let method = call.method_name();
    let arguments = match call {
        Call::TrackStats { room_id, room_name, key, stat } => {
            let path = |field: &str| format!("{method}.{field}");
            checker.id(|| path("roomId"), room_id)?;
            checker.id(|| path("roomName"), room_name)?;
            checker.id(|| path("key.participantId"), &key.participant_id)?;
            checker.id(|| path("key.trackId"), &key.track_id)?;
            return checker.stat(&path("stat"), stat, StatKind::Sample);
        }
        Call::RoomStarted { room } | Call::RoomEnded { room } => {
            Arguments { room, participant: None, participant_id: None, identity: None, track: None }
        }
        Call::ParticipantJoined { room, participant, .. }
        | Call::ParticipantActive { room, participant, .. }
        | Call::ParticipantLeft { room, participant, .. } => Arguments {
            room,
            participant: Some(participant),
            participant_id: None,
            identity: None,
            track: None,
        },
        Call::TrackPublished { room, participant_id, identity, track, .. }
        | Call::TrackUnpublished { room, participant_id, identity, track, .. } => Arguments {
            room,
            participant: None,
            participant_id: Some(participant_id),
            identity: Some(identity),
            track: Some(track),
        },
        other => {
            return Err(format!("{}: not a call the Janus adapter makes", other.method_name()));
        }
    };
    checker.walk(method, &arguments)
}

/// `POST /v1/ingest/janus`.
///
/// # Errors
///
/// The documented statuses: 400, 401, 403, 413, 415, 429 (no request slot free), 503.
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JanusResponse>, ApiError> {
    let result = ingest_inner(&state, &headers, body).await;
    if let Err(error) = &result {
        state.metrics.refused(error.code.http_status().as_u16());
    }
    result
}

async fn ingest_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<JanusResponse>, ApiError> {
    let authorization =
        headers.get(header::AUTHORIZATION).map(|value| value.to_str().unwrap_or(""));
    let principal = state.auth.authenticate_basic_or_bearer(authorization)?;
    principal.require(Role::Ingest)?;
    state.check_accepting()?;
    json_content_type(headers)?;
    let gzip = content_encoding_is_gzip(headers)?;
    let _permit = state.ingest_permits.try_acquire().map_err(|_| {
        ApiError::new(
            ErrorCode::ResourceExhausted,
            "every ingest request slot is taken (`http.max_in_flight`): nothing could be queued; retry later",
        )
        .retry_after(1)
    })?;
    let bytes = read_body(body, state.config.http.max_body_bytes).await?;
    let janus = state.janus.clone();
    let service = state.service.clone();
    let limits = Limits::from_config(&state.config);
    let (max_decompressed, max_events) =
        (state.config.http.max_decompressed_bytes, state.config.http.max_calls_per_request);
    let outcome = tokio::task::spawn_blocking(move || -> Result<JanusOutcome, ApiError> {
        let events = decode_body(&bytes, gzip, max_decompressed, max_events)?;
        Ok(janus.apply_events(&service, events, SystemClock.now(), &limits))
    })
    .await
    .map_err(|error| ApiError::internal(&error))??;
    let JanusOutcome { accepted, ignored, rejected, rejected_count, last_seq, snapshots } = outcome;
    let stored = match last_seq {
        Some(seq) => wait_durable(state, seq).await,
        None => Ok(()),
    };
    match stored {
        // The calls are stored: their state may be.
        Ok(()) => state.janus.save(state.store.as_ref(), snapshots).await,
        // Not confirmed yet: the timer writes the state once they are.
        Err(_) => snapshots.into_iter().for_each(|snapshot| state.janus.keep_unsaved(snapshot)),
    }
    stored?;
    Ok(Json(JanusResponse { accepted, ignored, rejected, rejected_count }))
}

/// Janus sends `application/json` (read as `POST /v1/telemetry` reads it); never protobuf here.
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match content_format(headers) {
        Ok(Format::Json) => Ok(()),
        _ => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "`Content-Type: {content_type}` is not supported here: Janus's event handler sends `application/json`"
                ),
            ))
        }
    }
}

/// Lets the adapters' time pass every [`TICK_INTERVAL`] until `stop` is cancelled: rooms finish
/// after their idle timeout and vanished sessions expire; then writes the states that changed
/// (once their calls are stored) and those whose write failed. At `stop`, writes what is left.
pub async fn run_timer(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let (janus, service) = (state.janus.clone(), state.service.clone());
        let ticked =
            tokio::task::spawn_blocking(move || janus.tick(&service, SystemClock.now())).await;
        let Ok((last_seq, snapshots)) = ticked else { continue };
        let stored = match last_seq {
            Some(seq) => {
                tokio::time::timeout(state.config.http.request_timeout, state.durable.wait_for(seq))
                    .await
                    .is_ok_and(|waited| waited.is_ok())
            }
            None => true,
        };
        if stored {
            state.janus.save(state.store.as_ref(), snapshots).await;
            state.janus.save_unsaved(state.store.as_ref()).await;
        } else {
            snapshots.into_iter().for_each(|snapshot| state.janus.keep_unsaved(snapshot));
        }
    }
    // The shutdown stores every output before the store closes: the states may go first.
    state.janus.save_unsaved(state.store.as_ref()).await;
}

#[cfg(test)]
mod tests;
