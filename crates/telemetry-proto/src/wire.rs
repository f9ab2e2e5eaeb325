//! A minimal protobuf wire scanner: it lists the field numbers of an encoded message without
//! decoding it, so a `TelemetryCall` carrying two members of its `call` oneof can be rejected
//! (a protobuf decoder silently keeps the last one).

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
}

/// Returns the field numbers of the top-level fields of `message`, in order.
///
/// # Errors
///
/// Returns a [`WireError`] if `message` is not well-formed protobuf.
pub fn field_numbers(mut message: &[u8]) -> Result<Vec<u32>, WireError> {
    let mut numbers = Vec::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::BadKey)?;
        if number == 0 {
            return Err(WireError::BadKey);
        }
        match key & 7 {
            0 => {
                varint(&mut message)?;
            }
            1 => skip(&mut message, 8)?,
            2 => {
                let length =
                    usize::try_from(varint(&mut message)?).map_err(|_| WireError::Truncated)?;
                skip(&mut message, length)?;
            }
            // Groups (3, 4) are deprecated and never used by these messages.
            5 => skip(&mut message, 4)?,
            _ => return Err(WireError::BadKey),
        }
        numbers.push(number);
    }
    Ok(numbers)
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

    proptest::proptest! {
        #[test]
        fn the_scanner_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = field_numbers(&bytes);
        }
    }
}
