//! Keeps each event's body for resending, through a [`BatchWriter`]: bodies are gathered
//! by a background task and written in batches on the blocking pool, never on the ack
//! path and without a flush of their own, as the attempt log is: a crash can lose the
//! last moments of them (those events cannot be resent; sled makes its writes durable
//! every half second), never a delivery. The same task prunes them by age.
//!
//! With replication, a batch is published to the payloads stream instead, which every
//! node (this one included) reads and keeps: a resend may reach any node. A batch is
//! split so that no message of the stream exceeds the broker's largest
//! ([`STREAM_MESSAGE_MAX_BYTES`](crate::batch_writer::STREAM_MESSAGE_MAX_BYTES)).

use std::sync::Arc;
use std::time::Duration;

use hookwire_store::{Change, Changelog, Payload, PayloadLimits, Store};

use crate::batch_writer::{BatchWriter, Batched, base64_bytes_at_most, json_text_bytes_at_most};

/// The payload archive as a [`Batched`] kind: event bodies, pruned by age.
struct Payloads {
    limits: PayloadLimits,
}

impl Batched for Payloads {
    type Record = Payload;
    /// At most this many times `delivery.max_event_bytes` of memory.
    const BUFFER: usize = 4096;
    const BATCH: usize = 512;
    const LINGER: Duration = Duration::from_millis(100);
    const PRUNE_AFTER: Option<usize> = None;
    const DROPPED_METRIC: &'static str = "hookwire_payloads_dropped_total";
    const UNPUBLISHED_METRIC: &'static str = "hookwire_payloads_unpublished_total";
    const WHAT: &'static str = "Event bodies";

    fn write(payloads: Vec<Payload>) -> Change {
        Change::RecordPayloads(payloads)
    }

    fn encode(payloads: &[Payload]) -> hookwire_store::Result<Vec<u8>> {
        Payload::encode_batch(payloads)
    }

    fn encoded_bytes_at_most(p: &Payload) -> usize {
        // The field names, the separators and the numbers.
        const FIXED: usize = 256;
        [&p.org, &p.event_id, &p.event_type]
            .into_iter()
            .map(|text| json_text_bytes_at_most(text))
            .fold(
                FIXED.saturating_add(base64_bytes_at_most(p.body.len())),
                usize::saturating_add,
            )
    }

    fn prunes(&self, _early: bool) -> Vec<Change> {
        vec![self.limits.prune(hookwire_core::now_ms())]
    }
}

/// Sends bodies to the archive's writer task. Clones share it.
#[derive(Debug, Clone)]
pub struct PayloadArchive {
    writer: BatchWriter<Payloads>,
}

impl PayloadArchive {
    /// Starts the writer task; it ends when every clone is dropped. Bodies are kept within
    /// `limits`. With `stream`, batches are published to it rather than written here.
    pub fn spawn(store: Store, limits: PayloadLimits, stream: Option<Arc<dyn Changelog>>) -> Self {
        Self {
            writer: BatchWriter::spawn(Payloads { limits }, store, stream),
        }
    }

    /// Queues one event's body. Never waits: when the writer is behind, it is dropped.
    pub fn keep(&self, payload: Payload) {
        self.writer.send(payload);
    }

    /// Waits until every body queued so far is written (graceful shutdown, tests).
    pub async fn sync(&self) {
        self.writer.sync().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_writer::{STREAM_MESSAGE_MAX_BYTES, split_under, stream_message};

    fn payload(n: usize, body_bytes: usize) -> Payload {
        // Bytes that JSON and base64 do not compress: every value, in turn.
        let body: Vec<u8> = (0..body_bytes).map(|i| (i * 7 + n) as u8).collect();
        Payload {
            org: "acme".into(),
            event_id: format!("evt-\"{n}\"\u{1}"),
            event_type: "report_created".into(),
            received_at_ms: 1_700_000_000_000 + n as u64,
            published_at_ms: Some(1_700_000_000_000),
            body_bytes: body.len(),
            body,
        }
    }

    #[test]
    fn a_batch_of_large_bodies_becomes_messages_the_broker_takes() {
        let payloads: Vec<Payload> = (0..Payloads::BATCH.min(40))
            .map(|n| payload(n, 1 << 20))
            .collect();
        let whole = Payloads::encode(&payloads).expect("encoded");
        assert!(
            whole.len() > 3 * STREAM_MESSAGE_MAX_BYTES,
            "{}",
            whole.len()
        );
        let runs = split_under::<Payloads>(payloads.clone(), STREAM_MESSAGE_MAX_BYTES);
        assert!(runs.len() >= 4, "{} runs", runs.len());
        let mut back = Vec::new();
        for run in &runs {
            let message = stream_message::<Payloads>(run).expect("under the limit");
            assert!(
                message.len() <= STREAM_MESSAGE_MAX_BYTES,
                "{}",
                message.len()
            );
            back.extend(Payload::decode_batch(&message).expect("decoded"));
        }
        assert_eq!(back, payloads, "every body, once, in order");
    }

    #[test]
    fn a_body_too_large_for_any_message_goes_alone_and_is_refused() {
        // 12 MiB is 16 MiB in base64.
        let payloads = vec![payload(0, 1000), payload(1, 12 << 20), payload(2, 1000)];
        let runs = split_under::<Payloads>(payloads.clone(), STREAM_MESSAGE_MAX_BYTES);
        assert_eq!(runs, [&payloads[..1], &payloads[1..2], &payloads[2..]]);
        let err = stream_message::<Payloads>(&runs[1]).expect_err("too large");
        assert!(err.contains("more than a stream message takes"), "{err}");
        assert!(stream_message::<Payloads>(&runs[0]).is_ok());
    }

    #[test]
    fn the_bound_of_a_record_is_never_below_its_encoding() {
        for body in [0, 1, 2, 3, 1000, 65_536] {
            let p = payload(body, body);
            let alone = Payloads::encode(std::slice::from_ref(&p)).expect("encoded");
            // A batch of one is the record and its two brackets.
            assert!(
                alone.len() - 2 <= Payloads::encoded_bytes_at_most(&p),
                "{body}: {} > {}",
                alone.len() - 2,
                Payloads::encoded_bytes_at_most(&p)
            );
        }
    }
}
