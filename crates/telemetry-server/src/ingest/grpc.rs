//! The gRPC ingest: `rtctelemetry.v1.TelemetryIngest/Ingest` (the HTTP ingest over a stream of
//! batches, applied in stream order) and LiveKit's `livekit.AnalyticsRecorderService` (already
//! coalesced stats, events and node room states from a LiveKit node, stored as they are, with no
//! webhooks). Both need a token with the `ingest` role in the `authorization` metadata.
//!
//! A recorder item that fails validation ([`crate::ingest::validate`]: an event, a stat, or a
//! node's room states) or cannot be stored as JSON (an enum number this build does not know) is
//! dropped alone and counted (`rtc_telemetry_recorder_dropped_total{stream}`, with a warning
//! naming the field), and the stream goes on: a LiveKit node cannot correct what it sends, and an
//! error status would end its stream and lose the valid messages after the bad one.

use std::sync::Arc;

use telemetry_core::proto as lk;
use telemetry_core::{Clock, SystemClock, UnixMillis};
use telemetry_proto::recorder::analytics_recorder_service_server::{
    AnalyticsRecorderService, AnalyticsRecorderServiceServer,
};
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_ingest_server::{TelemetryIngest, TelemetryIngestServer};
use telemetry_store::model::{EventRecord, NodeRoomsRecord, StatsWindowRecord, WriteBatch};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Principal};
use crate::config::Role;
use crate::error::ApiError;
use crate::ingest::decode::writable_as_json;
use crate::ingest::http::wait_durable;
use crate::ingest::validate::{Checker, Limits, StatKind};
use crate::ingest::{Outcome, apply_calls};
use crate::metrics::{RecorderStream, Transport};
use crate::state::AppState;

/// Checks the token of every gRPC call and puts the caller in the request's extensions.
#[derive(Clone, Debug)]
pub struct AuthInterceptor {
    auth: Arc<Authenticator>,
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header =
            request.metadata().get("authorization").map(|value| value.to_str().unwrap_or(""));
        let principal = self.auth.authenticate(header)?;
        principal.require(Role::Ingest)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The gRPC services, authenticated.
pub fn services(
    state: AppState,
) -> (
    InterceptedService<TelemetryIngestServer<GrpcIngest>, AuthInterceptor>,
    InterceptedService<AnalyticsRecorderServiceServer<Recorder>, AuthInterceptor>,
) {
    let interceptor = AuthInterceptor {
        auth: Arc::new(Authenticator::new(&state.config.keys, state.config.max_token_lifetime)),
    };
    let limit = state.config.grpc.max_message_bytes;
    (
        InterceptedService::new(
            TelemetryIngestServer::new(GrpcIngest { state: state.clone() })
                .max_decoding_message_size(limit),
            interceptor.clone(),
        ),
        InterceptedService::new(
            AnalyticsRecorderServiceServer::new(Recorder { state })
                .max_decoding_message_size(limit),
            interceptor,
        ),
    )
}

fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing `authorization` metadata"))
}

fn check_accepting(state: &AppState) -> Result<(), Status> {
    state.check_accepting().map_err(Status::from)
}

/// Cluster mode: each message of the stream validated and published to JetStream
/// (`crate::cluster`) before the next is read; the summary once all are acknowledged. With
/// `idempotency-key` metadata, the messages' ids come from it and the message's place in the
/// stream, so the same stream sent again stores nothing twice.
async fn publish_stream(
    state: &AppState,
    cluster: &crate::cluster::Cluster,
    principal: &Principal,
    idempotency_key: Option<String>,
    mut stream: Streaming<v1::TelemetryBatch>,
) -> Result<Response<v1::IngestSummary>, Status> {
    let mut outcome = Outcome::default();
    let mut index = 0;
    let max_calls = state.config.http.max_calls_per_request;
    let limits = Limits::from_config(&state.config);
    let mut message = 0;
    while let Some(batch) = stream.message().await? {
        let count = batch.calls.len();
        if count > max_calls {
            return Err(crate::ingest::decode::too_many_calls(count, max_calls).into());
        }
        let (calls, batch_outcome) = crate::ingest::prepare_calls(
            batch.calls.into_iter().map(Ok),
            index,
            &principal.key,
            SystemClock.now(),
            &limits,
        );
        let message_id = idempotency_key
            .as_deref()
            .map(|key| crate::cluster::message_id(&principal.key, key, message));
        cluster.publish(calls, message_id.as_deref()).await?;
        outcome.merge(batch_outcome);
        index += count;
        message += 1;
    }
    state.metrics.ingest(Transport::Grpc, outcome.accepted as u64, outcome.rejected_count as u64);
    Ok(Response::new(summary(outcome)))
}

/// `rtctelemetry.v1.TelemetryIngest`.
#[derive(Debug)]
pub struct GrpcIngest {
    state: AppState,
}

#[tonic::async_trait]
impl TelemetryIngest for GrpcIngest {
    async fn ingest(
        &self,
        request: Request<Streaming<v1::TelemetryBatch>>,
    ) -> Result<Response<v1::IngestSummary>, Status> {
        let principal = principal(&request)?;
        self.state.check_accepting_calls().map_err(Status::from)?;
        if let Some(cluster) = &self.state.cluster {
            let key = match request.metadata().get(crate::ingest::idempotency::HEADER) {
                Some(value) => Some(crate::ingest::idempotency::parse(value.as_bytes())?),
                None => None,
            };
            return publish_stream(&self.state, cluster, &principal, key, request.into_inner())
                .await;
        }
        let mut stream = request.into_inner();
        let mut outcome = Outcome::default();
        let mut index = 0;
        let max_calls = self.state.config.http.max_calls_per_request;
        let limits = Limits::from_config(&self.state.config);
        while let Some(batch) = stream.message().await? {
            let count = batch.calls.len();
            if count > max_calls {
                // Refused whole; messages before it in the stream have taken effect.
                return Err(crate::ingest::decode::too_many_calls(count, max_calls).into());
            }
            let service = self.state.service.clone();
            let key = principal.key.clone();
            let first = index;
            let batch_outcome = tokio::task::spawn_blocking(move || {
                apply_calls(
                    &service,
                    batch.calls.into_iter().map(Ok),
                    first,
                    &key,
                    SystemClock.now(),
                    &limits,
                )
            })
            .await
            .map_err(|error| Status::from(ApiError::internal(&error)))?;
            outcome.merge(batch_outcome);
            index += count;
        }
        if let Some(seq) = outcome.last_seq {
            wait_durable(&self.state, seq).await?;
        }
        self.state.metrics.ingest(
            Transport::Grpc,
            outcome.accepted as u64,
            outcome.rejected_count as u64,
        );
        Ok(Response::new(summary(outcome)))
    }
}

fn summary(outcome: Outcome) -> v1::IngestSummary {
    v1::IngestSummary {
        accepted: outcome.accepted as u32,
        rejected: outcome
            .rejected
            .into_iter()
            .map(|rejection| v1::Rejection {
                index: rejection.index as u32,
                error: rejection.error,
            })
            .collect(),
        rejected_count: outcome.rejected_count as u32,
    }
}

/// What one `livekit.AnalyticsRecorderService/IngestStats` message stores, received at `now`,
/// and the errors of the stats dropped as invalid.
pub fn stats_batch(
    message: lk::AnalyticsStats,
    limits: &Limits,
    now: UnixMillis,
) -> (WriteBatch, Vec<String>) {
    let checker = Checker::new(limits, now);
    let (stats, errors) = keep_valid(message.stats, |index, stat| {
        checker.stat(&format!("stats[{index}]"), stat, StatKind::Window)
    });
    let stats = stats.iter().map(|stat| StatsWindowRecord::from_livekit_stat(stat, now)).collect();
    (WriteBatch { stats, ..WriteBatch::default() }, errors)
}

/// What one `livekit.AnalyticsRecorderService/IngestEvents` message stores, received at `now`,
/// and the errors of the events dropped: invalid, or not storable as JSON (an enum number this
/// build does not know). An event is stored once per id (a recorder's retry stores nothing
/// twice); an event without an id, which nothing can know again, is keyed as a new event, never
/// by the empty id that every other such event shares and that would keep only the first.
pub fn events_batch(
    message: lk::AnalyticsEvents,
    limits: &Limits,
    now: UnixMillis,
) -> (WriteBatch, Vec<String>) {
    let checker = Checker::new(limits, now);
    let (events, errors) = keep_valid(message.events, |index, event| {
        let path = format!("events[{index}]");
        // First what names an unknown enum number best, then every other rule.
        writable_as_json(event).map_err(|error| format!("{path}: {error}"))?;
        checker.event(&path, event)
    });
    let message_token: u64 = rand::random();
    let events = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let mut record = EventRecord::from_event(event);
            if record.id.is_empty() {
                record.key = EventRecord::drawn_key(message_token, index as u64);
            }
            record
        })
        .collect();
    (WriteBatch { events, ..WriteBatch::default() }, errors)
}

/// What one `livekit.AnalyticsRecorderService/IngestNodeRoomStates` message stores, received
/// at `now`: its record, or why it is dropped.
///
/// # Errors
///
/// The message is invalid or cannot be stored as JSON, naming the field.
pub fn node_rooms_batch(
    message: &lk::AnalyticsNodeRooms,
    limits: &Limits,
    now: UnixMillis,
) -> Result<WriteBatch, String> {
    Checker::new(limits, now).node_rooms(message)?;
    writable_as_json(message)?;
    let record = NodeRoomsRecord::from_node_rooms(message, now);
    Ok(WriteBatch { node_rooms: vec![record], ..WriteBatch::default() })
}

/// `livekit.AnalyticsRecorderService`.
#[derive(Debug)]
pub struct Recorder {
    state: AppState,
}

impl Recorder {
    async fn store(&self, batch: WriteBatch) -> Result<(), Status> {
        self.state
            .store
            .write(batch)
            .await
            .map(|_| ())
            .map_err(|error| Status::from(ApiError::from(error)))
    }

    /// Counts and logs the items of one recorder message dropped as invalid (the first error
    /// names the field).
    fn dropped(&self, stream: RecorderStream, errors: &[String]) {
        if let Some(first) = errors.first() {
            self.state.metrics.recorder_dropped(stream, errors.len() as u64);
            tracing::warn!(
                stream = stream.as_str(),
                dropped = errors.len(),
                error = %first,
                "recorder items dropped as invalid"
            );
        }
    }
}

/// Keeps the items that pass `check`, collecting the errors of the others.
fn keep_valid<T>(
    items: Vec<T>,
    mut check: impl FnMut(usize, &T) -> Result<(), String>,
) -> (Vec<T>, Vec<String>) {
    let mut errors = Vec::new();
    let kept = items
        .into_iter()
        .enumerate()
        .filter_map(|(index, item)| match check(index, &item) {
            Ok(()) => Some(item),
            Err(error) => {
                errors.push(error);
                None
            }
        })
        .collect();
    (kept, errors)
}

#[tonic::async_trait]
impl AnalyticsRecorderService for Recorder {
    async fn ingest_stats(
        &self,
        request: Request<Streaming<lk::AnalyticsStats>>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        check_accepting(&self.state)?;
        let mut stream = request.into_inner();
        let limits = Limits::from_config(&self.state.config);
        while let Some(message) = stream.message().await? {
            let (batch, errors) = stats_batch(message, &limits, SystemClock.now());
            self.dropped(RecorderStream::Stats, &errors);
            self.store(batch).await?;
            self.state.metrics.recorder(RecorderStream::Stats, 1);
        }
        Ok(Response::new(pbjson_types::Empty {}))
    }

    async fn ingest_events(
        &self,
        request: Request<Streaming<lk::AnalyticsEvents>>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        check_accepting(&self.state)?;
        let mut stream = request.into_inner();
        let limits = Limits::from_config(&self.state.config);
        while let Some(message) = stream.message().await? {
            let (batch, errors) = events_batch(message, &limits, SystemClock.now());
            self.dropped(RecorderStream::Events, &errors);
            self.store(batch).await?;
            self.state.metrics.recorder(RecorderStream::Events, 1);
        }
        Ok(Response::new(pbjson_types::Empty {}))
    }

    async fn ingest_node_room_states(
        &self,
        request: Request<Streaming<lk::AnalyticsNodeRooms>>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        check_accepting(&self.state)?;
        let mut stream = request.into_inner();
        let limits = Limits::from_config(&self.state.config);
        while let Some(message) = stream.message().await? {
            match node_rooms_batch(&message, &limits, SystemClock.now()) {
                Ok(batch) => self.store(batch).await?,
                Err(error) => self.dropped(RecorderStream::NodeRoomStates, &[error]),
            }
            self.state.metrics.recorder(RecorderStream::NodeRoomStates, 1);
        }
        Ok(Response::new(pbjson_types::Empty {}))
    }
}
