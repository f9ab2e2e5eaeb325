//! Decoding an ingest body into calls, one result per call: a body that cannot be read at all is
//! a 400, a call that cannot be read is rejected alone, naming the field at fault.

use prost::Message;
use serde::Deserialize;
use serde_json::value::RawValue;
use telemetry_proto::v1;

use crate::error::ApiError;

/// The JSON names of the `call` oneof's members, in the order of the protocol.
pub const MEMBERS: [&str; 31] = [
    "trackStats",
    "roomStarted",
    "roomEnded",
    "participantJoined",
    "participantActive",
    "participantResumed",
    "participantLeft",
    "trackPublishRequested",
    "trackPublished",
    "trackUnpublished",
    "trackSubscribeRequested",
    "trackSubscribed",
    "trackUnsubscribed",
    "trackSubscribeFailed",
    "trackMuted",
    "trackUnmuted",
    "trackPublishedUpdate",
    "trackMaxSubscribedVideoQuality",
    "trackPublishRtpStats",
    "trackSubscribeRtpStats",
    "egressStarted",
    "egressUpdated",
    "egressEnded",
    "ingressCreated",
    "ingressDeleted",
    "ingressStarted",
    "ingressUpdated",
    "ingressEnded",
    "localRoomState",
    "report",
    "apiCall",
];

/// The field numbers of the `call` oneof's members in `TelemetryCall`.
const MEMBER_FIELDS: std::ops::RangeInclusive<u32> = 10..=40;

/// How the body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: the protobuf JSON mapping.
    Json,
    /// `application/x-protobuf`.
    Protobuf,
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    calls: Vec<&'a RawValue>,
}

/// The refusal of a request with more than `max_calls` calls (before any takes effect).
pub fn too_many_calls(count: usize, max_calls: usize) -> ApiError {
    ApiError::new(
        crate::error::ErrorCode::PayloadTooLarge,
        format!(
            "calls: {count} calls in one request, more than {max_calls} (`http.max_calls_per_request`); split the batch"
        ),
    )
}

/// Decodes a batch body of at most `max_calls` calls: splits it into its calls, which
/// [`Calls`] decodes one at a time, as they are taken (so a request holds one decoded call at a
/// time, not all of them at once).
///
/// # Errors
///
/// `InvalidArgument` if the body as a whole cannot be read, `PayloadTooLarge` if it holds more
/// than `max_calls` calls (nothing is decoded further); a call that cannot be read is an `Err`
/// in its place instead.
pub fn decode_batch(format: Format, body: &[u8], max_calls: usize) -> Result<Calls<'_>, ApiError> {
    match format {
        Format::Json => {
            let text = std::str::from_utf8(body)
                .map_err(|error| ApiError::invalid(format!("body: not UTF-8 JSON: {error}")))?;
            let batch: RawBatch<'_> = serde_json::from_str(text).map_err(|error| {
                ApiError::invalid(format!(
                    "body: not a TelemetryBatch (`{{\"calls\": [...]}}`): {error}"
                ))
            })?;
            if batch.calls.len() > max_calls {
                return Err(too_many_calls(batch.calls.len(), max_calls));
            }
            Ok(Calls::Json(batch.calls.into_iter()))
        }
        Format::Protobuf => {
            let frames = telemetry_proto::wire::repeated_bytes(body, 1).map_err(|error| {
                ApiError::invalid(format!("body: not a protobuf TelemetryBatch: {error}"))
            })?;
            if frames.len() > max_calls {
                return Err(too_many_calls(frames.len(), max_calls));
            }
            Ok(Calls::Protobuf(frames.into_iter()))
        }
    }
}

/// The calls of a batch, each decoded when it is taken: [`decode_json_call`] or
/// [`decode_protobuf_call`].
#[derive(Debug)]
pub enum Calls<'a> {
    /// The calls of a JSON batch, as text.
    Json(std::vec::IntoIter<&'a RawValue>),
    /// The calls of a protobuf batch, as bytes.
    Protobuf(std::vec::IntoIter<&'a [u8]>),
}

impl Iterator for Calls<'_> {
    type Item = Result<v1::TelemetryCall, String>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Calls::Json(calls) => calls.next().map(|raw| decode_json_call(raw.get())),
            Calls::Protobuf(frames) => frames.next().map(decode_protobuf_call),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Calls::Json(calls) => calls.size_hint(),
            Calls::Protobuf(frames) => frames.size_hint(),
        }
    }
}

impl ExactSizeIterator for Calls<'_> {}

/// Decodes one call in the protobuf JSON mapping.
///
/// # Errors
///
/// A message naming the field at fault.
pub fn decode_json_call(text: &str) -> Result<v1::TelemetryCall, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, v1::TelemetryCall>(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        if let Some(member) =
            message.strip_prefix("duplicate field `").and_then(|rest| rest.split('`').next())
            && MEMBERS.contains(&member)
        {
            return format!(
                "more than one member of `call` is set (`{member}` and another): set exactly one"
            );
        }
        if path == "." || path.is_empty() { message } else { format!("{path}: {message}") }
    })
}

/// Decodes one protobuf-encoded call, refusing one with two members of its oneof (which a
/// protobuf decoder would silently resolve to the last).
///
/// # Errors
///
/// A message saying what is wrong.
pub fn decode_protobuf_call(frame: &[u8]) -> Result<v1::TelemetryCall, String> {
    let numbers = telemetry_proto::wire::field_numbers(frame)
        .map_err(|error| format!("not a protobuf TelemetryCall: {error}"))?;
    let mut members: Vec<u32> =
        numbers.into_iter().filter(|number| MEMBER_FIELDS.contains(number)).collect();
    members.sort_unstable();
    members.dedup();
    if members.len() > 1 {
        let names: Vec<&str> =
            members.iter().map(|number| MEMBERS[(number - 10) as usize]).collect();
        return Err(format!(
            "more than one member of `call` is set ({}): set exactly one",
            names.join(", ")
        ));
    }
    let call = v1::TelemetryCall::decode(frame)
        .map_err(|error| format!("not a protobuf TelemetryCall: {error}"))?;
    // Protobuf enums are open: a number this build does not know decodes, but the event and
    // webhook a lifecycle call becomes could not be written as JSON. The JSON mapping refuses
    // such a value when it reads it; refuse it here too. (A stats sample is never written as
    // JSON, and its stream type is checked when it is converted.)
    if !matches!(call.call, Some(v1::telemetry_call::Call::TrackStats(_))) {
        writable_as_json(&call)?;
    }
    Ok(call)
}

/// Checks that `message` can be written in the protobuf JSON mapping, which refuses, above all,
/// enum numbers this build does not know.
///
/// # Errors
///
/// A message naming the field at fault (for an unknown enum number, the message holding it).
pub fn writable_as_json<T: serde::Serialize>(message: &T) -> Result<(), String> {
    let mut serializer = serde_json::Serializer::new(std::io::sink());
    serde_path_to_error::serialize(message, &mut serializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let message = match message.strip_prefix("Invalid variant ") {
            Some(number) => format!("{number} is not a known value of one of its enum fields"),
            None => message,
        };
        if path == "." || path.is_empty() { message } else { format!("{path}: {message}") }
    })
}
