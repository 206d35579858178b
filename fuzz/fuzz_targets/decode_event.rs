//! The wire contract on arbitrary messages: `decode` never panics, and ends in an event
//! that honours the contract or in a rejection with a contract reason and a detail.
//!
//! Input layout: one control byte, then `routing key \0 org \0 body`. The control byte
//! picks the `org` header's kind, whether a `message_id` is set, and a small size limit.

#![no_main]

use std::sync::LazyLock;

use hookwire_core::Catalog;
use hookwire_core::event::{DeadReason, OrgHeader, RawEvent, decode, is_valid_org};
use libfuzzer_sys::fuzz_target;

/// Parsed once: parsing the TOML on every input would slow the fuzzer tenfold.
static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::builtin);

const CONTRACT_REASONS: [DeadReason; 6] = [
    DeadReason::InvalidJson,
    DeadReason::MissingOrg,
    DeadReason::UnknownEvent,
    DeadReason::MissingField,
    DeadReason::EventMismatch,
    DeadReason::TooLarge,
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let routing_key = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let org_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let org = match control % 4 {
        0 => OrgHeader::Missing,
        1 => OrgHeader::NotText,
        _ => OrgHeader::Text(&org_text),
    };
    let raw = RawEvent {
        routing_key: &routing_key,
        org,
        message_id: (control & 0x10 != 0).then_some("evt-fuzz"),
        timestamp_secs: (control & 0x20 != 0).then_some(u64::from(control) << 40),
        published_at_ms: None,
        body,
    };
    let max_bytes = if control & 0x40 != 0 { 64 } else { 64 * 1024 };
    let catalog = &*CATALOG;
    match decode(&raw, catalog, max_bytes) {
        Ok(event) => {
            assert!(body.len() <= max_bytes);
            assert!(is_valid_org(&event.org) && *org_text == event.org);
            assert_eq!(event.event_type, *routing_key);
            assert!(catalog.get(&event.event_type).is_some());
            assert!(!event.id.is_empty());
        }
        Err(rejection) => {
            assert!(CONTRACT_REASONS.contains(&rejection.reason));
            assert!(!rejection.detail.is_empty());
        }
    }
});
