//! How a kept event's record and a block of them are laid out in a sled value.

use super::*;

/// An event's record, without what its key says (org, time, seq).
pub(super) struct Record {
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) published_at_ms: Option<u64>,
    pub(super) body_bytes: usize,
    /// The body when it is inline; `None` when it is in pieces.
    pub(super) body: Option<Vec<u8>>,
}

/// `v1 ‖ id len (u16) ‖ id ‖ type len (u16) ‖ type ‖ published (0, or 1 ‖ u64) ‖
/// size (u64) ‖ inline (0 or 1) ‖ the inline body`.
pub(super) fn encode_record(p: &Payload, inline: bool) -> Vec<u8> {
    let body = if inline { p.body.as_slice() } else { &[] };
    let mut v = Vec::with_capacity(24 + p.event_id.len() + p.event_type.len() + body.len());
    v.push(RECORD_V1);
    for text in [&p.event_id, &p.event_type] {
        // An event id or type is far shorter than 64 KiB (the wire contract bounds both).
        let text = &text.as_bytes()[..text.len().min(usize::from(u16::MAX))];
        v.extend_from_slice(&(text.len() as u16).to_be_bytes());
        v.extend_from_slice(text);
    }
    match p.published_at_ms {
        None => v.push(0),
        Some(at) => {
            v.push(1);
            v.extend_from_slice(&at.to_be_bytes());
        }
    }
    v.extend_from_slice(&(p.body.len() as u64).to_be_bytes());
    v.push(u8::from(inline));
    v.extend_from_slice(body);
    v
}

/// Reads a record's fields in turn.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Corrupt("payload record".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_be_bytes(bytes.try_into().unwrap_or_default()))
    }

    fn text(&mut self) -> Result<String> {
        let len = self.take(2)?;
        let len = u16::from_be_bytes([len[0], len[1]]);
        Ok(String::from_utf8_lossy(self.take(usize::from(len))?).into_owned())
    }
}

pub(super) fn decode_record(raw: &[u8], with_body: bool) -> Result<Record> {
    let rest = raw
        .strip_prefix(&[RECORD_V1])
        .ok_or_else(|| Error::Corrupt("payload record of an unknown encoding".into()))?;
    let mut r = Reader(rest);
    let event_id = r.text()?;
    let event_type = r.text()?;
    let published_at_ms = match r.take(1)?[0] {
        0 => None,
        _ => Some(r.u64()?),
    };
    let body_bytes =
        usize::try_from(r.u64()?).map_err(|_| Error::Corrupt("payload record's size".into()))?;
    let inline = r.take(1)?[0] == 1;
    let body = match (inline, with_body) {
        (true, true) => Some(r.take(body_bytes)?.to_vec()),
        (true, false) => Some(Vec::new()),
        (false, _) => None,
    };
    Ok(Record {
        event_id,
        event_type,
        published_at_ms,
        body_bytes,
        body,
    })
}

/// One event of a block: when it was received, its own sequence number (which names its
/// body's pieces and orders it in the block), and its record.
pub(super) struct Member<'a> {
    pub(super) received_at_ms: u64,
    pub(super) seq: u64,
    pub(super) record: &'a [u8],
}

/// `v2 ‖ count (u16) ‖ (received (u64) ‖ seq (u64) ‖ record len (u32) ‖ record)*`.
pub(super) fn encode_block(members: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
    let size = members.iter().map(|(_, _, r)| 20 + r.len()).sum::<usize>();
    let mut v = Vec::with_capacity(3 + size);
    v.push(BLOCK_V1);
    v.extend_from_slice(&(members.len() as u16).to_be_bytes());
    for (received_at_ms, seq, record) in members {
        v.extend_from_slice(&received_at_ms.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&(record.len() as u32).to_be_bytes());
        v.extend_from_slice(record);
    }
    v
}

/// The events of the value at `stamp`: a block, or the one record a store written before
/// blocks keeps there.
pub(super) fn decode_block<'a>(raw: &'a [u8], stamp: &[u8]) -> Result<Vec<Member<'a>>> {
    let corrupt = || Error::Corrupt("payload block".into());
    if raw.first() == Some(&RECORD_V1) {
        let at = |range: std::ops::Range<usize>| {
            stamp
                .get(range)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(corrupt)
        };
        return Ok(vec![Member {
            received_at_ms: at(0..8)?,
            seq: at(8..16)?,
            record: raw,
        }]);
    }
    let mut r = Reader(raw.strip_prefix(&[BLOCK_V1]).ok_or_else(corrupt)?);
    let count = r.take(2)?;
    let count = u16::from_be_bytes([count[0], count[1]]);
    (0..count)
        .map(|_| {
            let received_at_ms = r.u64()?;
            let seq = r.u64()?;
            let len = r.take(4)?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            let record = r.take(usize::try_from(len).map_err(|_| corrupt())?)?;
            Ok(Member {
                received_at_ms,
                seq,
                record,
            })
        })
        .collect()
}
