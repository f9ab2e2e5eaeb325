//! A minimal protobuf wire scanner: it lists the field numbers of an encoded message without
//! decoding it, so a `TelemetryCall` carrying two members of its `call` oneof can be rejected
//! (a protobuf decoder silently keeps the last one), and it splits a `TelemetryBatch` into its
//! calls' bytes without copying them, so each is decoded (or rejected) alone, as it is applied.

/// Why an encoded message could not be scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ends in the middle of a field.
    #[error("truncated protobuf message")]
    Truncated,
    /// A varint is longer than 10 bytes.
    #[error("malformed varint")]
    BadVarint,
    /// A field has wire type 6 or 7, or field number 0.
    #[error("invalid protobuf field key")]
    BadKey,
    /// A field has another wire type than its declaration's.
    #[error("a field has the wrong wire type")]
    WrongType,
}

/// Returns the field numbers of the top-level fields of `message`, in order.
///
/// # Errors
///
/// Returns a [`WireError`] if `message` is not well-formed protobuf.
pub fn field_numbers(message: &[u8]) -> Result<Vec<u32>, WireError> {
    let mut numbers = Vec::new();
    let mut input = message;
    while let Some((number, _)) = next_field(&mut input)? {
        numbers.push(number);
    }
    Ok(numbers)
}

/// Returns the payloads of every occurrence of the length-delimited field `number` of `message`
/// (a repeated `bytes` or message field), in order, borrowed from `message`, skipping the other
/// fields: what a protobuf decoder reads for such a field, without copying or decoding it.
///
/// # Errors
///
/// Returns a [`WireError`] if `message` is not well-formed protobuf, or
/// [`WireError::WrongType`] if field `number` occurs with another wire type.
pub fn repeated_bytes(message: &[u8], number: u32) -> Result<Vec<&[u8]>, WireError> {
    let mut payloads = Vec::new();
    let mut input = message;
    while let Some((field, value)) = next_field(&mut input)? {
        if field == number {
            match value {
                Value::Delimited(payload) => payloads.push(payload),
                Value::Other => return Err(WireError::WrongType),
            }
        }
    }
    Ok(payloads)
}

/// A field's value, as far as the scanner looks at it.
enum Value<'a> {
    /// Wire type 2: the payload.
    Delimited(&'a [u8]),
    /// A varint or a fixed-width value.
    Other,
}

/// Reads the next field of `input`, advancing past it; `None` at the end.
fn next_field<'a>(input: &mut &'a [u8]) -> Result<Option<(u32, Value<'a>)>, WireError> {
    if input.is_empty() {
        return Ok(None);
    }
    let (number, wire_type) = key(input)?;
    let value = match wire_type {
        3 => {
            skip_group(input, number)?;
            Value::Other
        }
        _ => value(input, wire_type)?,
    };
    Ok(Some((number, value)))
}

/// Reads a field's key: its number (never 0) and wire type.
fn key(input: &mut &[u8]) -> Result<(u32, u64), WireError> {
    let key = varint(input)?;
    let number = u32::try_from(key >> 3).map_err(|_| WireError::BadKey)?;
    if number == 0 {
        return Err(WireError::BadKey);
    }
    Ok((number, key & 7))
}

/// Reads a value of wire type 0, 1, 2 or 5; any other type is an error here.
fn value<'a>(input: &mut &'a [u8], wire_type: u64) -> Result<Value<'a>, WireError> {
    match wire_type {
        0 => {
            varint(input)?;
            Ok(Value::Other)
        }
        1 => skip(input, 8).map(|()| Value::Other),
        2 => {
            let length = usize::try_from(varint(input)?).map_err(|_| WireError::Truncated)?;
            let payload = input.get(..length).ok_or(WireError::Truncated)?;
            *input = &input[length..];
            Ok(Value::Delimited(payload))
        }
        5 => skip(input, 4).map(|()| Value::Other),
        _ => Err(WireError::BadKey),
    }
}

/// Skips a (deprecated) group's fields up to its end key, as a decoder skips an unknown group.
fn skip_group(input: &mut &[u8], number: u32) -> Result<(), WireError> {
    // The numbers of the groups open, innermost last; as deep as prost's recursion limit.
    let mut open = vec![number];
    while let Some(&innermost) = open.last() {
        let (field, wire_type) = key(input)?;
        match wire_type {
            3 if open.len() < 100 => open.push(field),
            4 if field == innermost => {
                open.pop();
            }
            _ => {
                value(input, wire_type)?;
            }
        }
    }
    Ok(())
}

fn varint(input: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in 0..10 {
        let (&byte, rest) = input.split_first().ok_or(WireError::Truncated)?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::BadVarint)
}

fn skip(input: &mut &[u8], length: usize) -> Result<(), WireError> {
    if input.len() < length {
        return Err(WireError::Truncated);
    }
    *input = &input[length..];
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::v1;

    #[test]
    fn field_numbers_of_an_encoded_call() {
        let call = v1::TelemetryCall {
            at: Some(pbjson_types::Timestamp { seconds: 1, nanos: 0 }),
            node_id: "n".into(),
            call: Some(v1::telemetry_call::Call::RoomStarted(v1::RoomCall::default())),
        };
        assert_eq!(field_numbers(&call.encode_to_vec()), Ok(vec![1, 2, 11]));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(field_numbers(&[0x0a, 0x05, 0x01]), Err(WireError::Truncated));
        assert_eq!(field_numbers(&[0x07]), Err(WireError::BadKey));
        let mut long_varint = vec![0x08];
        long_varint.extend([0xff; 10]);
        assert_eq!(field_numbers(&long_varint), Err(WireError::BadVarint));
        assert_eq!(field_numbers(&[0x00, 0x00]), Err(WireError::BadKey));
    }

    #[test]
    fn repeated_bytes_are_the_frames_prost_reads() {
        let calls: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
        let frames = v1::TelemetryBatchFrames { calls: calls.clone() };
        let mut encoded = frames.encode_to_vec();
        // An unknown field between the calls is skipped, as prost skips it.
        encoded.splice(5..5, [0x10, 0x05]);
        let decoded = v1::TelemetryBatchFrames::decode(encoded.as_slice()).expect("decodes");
        assert_eq!(decoded.calls, calls);
        let borrowed: Vec<Vec<u8>> =
            repeated_bytes(&encoded, 1).expect("scans").into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(borrowed, calls);
        assert_eq!(repeated_bytes(&[0x08, 0x01], 1), Err(WireError::WrongType));
        assert_eq!(repeated_bytes(&[0x0a, 0x05, 0x01], 1), Err(WireError::Truncated));
        // A group in an unknown field (2) is skipped whole, nested groups included.
        let group = [0x13, 0x1b, 0x08, 0x01, 0x1c, 0x14, 0x0a, 0x01, 0x07];
        assert_eq!(repeated_bytes(&group, 1), Ok(vec![&[0x07][..]]));
        assert!(v1::TelemetryBatchFrames::decode(&group[..]).is_ok());
        assert_eq!(repeated_bytes(&[0x13, 0x08, 0x01], 1), Err(WireError::Truncated));
    }

    proptest::proptest! {
        #[test]
        fn the_scanner_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = field_numbers(&bytes);
            let _ = repeated_bytes(&bytes, 1);
        }

        #[test]
        fn repeated_bytes_agree_with_prost(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let ours = repeated_bytes(&bytes, 1);
            let prost = v1::TelemetryBatchFrames::decode(bytes.as_slice());
            if let (Ok(ours), Ok(prost)) = (&ours, &prost) {
                let ours: Vec<Vec<u8>> = ours.iter().map(|frame| frame.to_vec()).collect();
                proptest::prop_assert_eq!(&ours, &prost.calls);
            }
            // Whatever prost reads as frames, the scanner reads too.
            if prost.is_ok() {
                proptest::prop_assert!(ours.is_ok(), "{:?}", ours);
            }
        }
    }
}
