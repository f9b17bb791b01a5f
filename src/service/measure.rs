//! How much memory a `BatchAuthorizeRequest` will take once decoded,
//! measured on its wire bytes before anything is decoded. A protobuf string
//! costs its bytes plus a header in memory however short it is on the wire
//! (an empty value is 2 bytes sent and 24 or more held), so a batch within
//! `max_batch_bytes` can still decode to ten times that; the edge refuses a
//! batch whose measure is over `max_batch_decoded_bytes` instead.
//!
//! The walk reads only field tags, lengths and varints: it allocates
//! nothing, visits each byte once, and follows the schema of
//! `verdict.v1.BatchAuthorizeRequest` (items, their context entries, their
//! values). Fields it does not know are skipped as prost skips them. A
//! message it cannot walk is left to the decoder, which refuses it at the
//! same place.

use std::mem::size_of;

use crate::proto::{AuthorizeRequest, ContextValues};

/// Length-delimited wire type.
const LEN: u64 = 2;

/// The decoded size of one batch, estimated from above: its wire bytes
/// (every string's content) plus, for every item, context entry and value,
/// twice the size of what holds it (vectors and maps may have grown to
/// twice what they hold).
pub(crate) fn decoded_bytes(message: &[u8]) -> Option<u64> {
    let mut counts = Counts::default();
    walk(message, &mut counts, batch_field)?;
    let item = 2 * size_of::<AuthorizeRequest>() as u64;
    let entry = 2 * (size_of::<(String, ContextValues)>() as u64 + 8);
    let value = 2 * size_of::<String>() as u64;
    Some(
        (message.len() as u64)
            .saturating_add(counts.items.saturating_mul(item))
            .saturating_add(counts.entries.saturating_mul(entry))
            .saturating_add(counts.values.saturating_mul(value)),
    )
}

#[derive(Default)]
struct Counts {
    items: u64,
    entries: u64,
    values: u64,
}

/// What to do with a length-delimited field of a message: count it and
/// walk into it, or nothing (a string, or a field not known).
type Field = fn(u64, &[u8], &mut Counts) -> Option<()>;

fn batch_field(number: u64, payload: &[u8], counts: &mut Counts) -> Option<()> {
    if number == 1 {
        counts.items += 1;
        walk(payload, counts, item_field)?;
    }
    Some(())
}

fn item_field(number: u64, payload: &[u8], counts: &mut Counts) -> Option<()> {
    if number == 4 {
        counts.entries += 1;
        walk(payload, counts, entry_field)?;
    }
    Some(())
}

fn entry_field(number: u64, payload: &[u8], counts: &mut Counts) -> Option<()> {
    if number == 2 {
        walk(payload, counts, values_field)?;
    }
    Some(())
}

fn values_field(number: u64, _payload: &[u8], counts: &mut Counts) -> Option<()> {
    if number == 1 {
        counts.values += 1;
    }
    Some(())
}

/// Walks the fields of one message, calling `field` for each
/// length-delimited one; `None` when the bytes are not a message.
fn walk(mut bytes: &[u8], counts: &mut Counts, field: Field) -> Option<()> {
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        match tag & 7 {
            0 => {
                varint(&mut bytes)?;
            }
            1 => bytes = bytes.get(8..)?,
            LEN => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let payload = bytes.get(..len)?;
                bytes = bytes.get(len..)?;
                field(tag >> 3, payload, counts)?;
            }
            5 => bytes = bytes.get(4..)?,
            // Groups (3, 4) and wire types 6 and 7: prost refuses them too.
            _ => return None,
        }
    }
    Some(())
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::BatchAuthorizeRequest;
    use prost::Message as _;

    fn batch(items: usize, keys: usize, values: usize) -> Vec<u8> {
        let item = AuthorizeRequest {
            principal: "arn:aws:iam::111122223333:user/frank".into(),
            action: "kms:Encrypt".into(),
            resource: "*".into(),
            context: (0..keys)
                .map(|k| {
                    (
                        format!("app:k{k}"),
                        ContextValues {
                            values: vec![String::new(); values],
                        },
                    )
                })
                .collect(),
            ..Default::default()
        };
        BatchAuthorizeRequest {
            requests: vec![item; items],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn empty_values_weigh_what_they_hold_not_what_they_are_sent_as() {
        let wide = batch(100, 64, 26);
        let measured = decoded_bytes(&wide).unwrap();
        let values = 100 * 64 * 26 * size_of::<String>() as u64;
        assert!(
            measured > values,
            "{measured} for {values} bytes of string headers"
        );
        assert!(measured > 10 * wide.len() as u64);
        // A plain batch costs little more than its bytes.
        let plain = batch(100, 2, 1);
        assert!(decoded_bytes(&plain).unwrap() < 4 * plain.len() as u64 + 100 * 400);
    }

    #[test]
    fn counts_match_the_message() {
        let mut counts = Counts::default();
        walk(&batch(3, 5, 7), &mut counts, batch_field).unwrap();
        assert_eq!((counts.items, counts.entries, counts.values), (3, 15, 105));
    }

    #[test]
    fn unknown_fields_are_skipped_and_broken_bytes_are_not_walked() {
        // Field 9 varint, field 10 fixed64, field 11 fixed32, then an item.
        let mut bytes = vec![9 << 3, 1, (10 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend([(11 << 3) | 5, 0, 0, 0, 0]);
        bytes.extend(batch(1, 1, 1));
        assert!(decoded_bytes(&bytes).is_some());
        // A length past the end, a group, an endless varint.
        assert!(decoded_bytes(&[(1 << 3) | 2, 5, 0]).is_none());
        assert!(decoded_bytes(&[(1 << 3) | 3]).is_none());
        assert!(decoded_bytes(&[0x80; 11]).is_none());
    }
}
