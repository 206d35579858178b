//! The wire contract: arbitrary messages end accepted or dead with a reason, and valid
//! events are always accepted as what they are.

use hookwire_core::event::{DeadReason, OrgHeader, RawEvent, decode, is_valid_org};
use hookwire_core::{Catalog, Event, Rejection};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The reasons the wire contract itself gives; the others come from deliveries.
const CONTRACT_REASONS: [DeadReason; 6] = [
    DeadReason::InvalidJson,
    DeadReason::MissingOrg,
    DeadReason::UnknownEvent,
    DeadReason::MissingField,
    DeadReason::EventMismatch,
    DeadReason::TooLarge,
];
const LIMIT: usize = 64 * 1024;

/// An owned message, so that strategies can build one.
#[derive(Debug, Clone)]
struct Message {
    routing_key: String,
    org: Org,
    message_id: Option<String>,
    timestamp_secs: Option<u64>,
    published_at_ms: Option<u64>,
    body: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Org {
    Missing,
    NotText,
    Text(String),
}

impl Message {
    fn raw(&self) -> RawEvent<'_> {
        RawEvent {
            routing_key: &self.routing_key,
            org: match &self.org {
                Org::Missing => OrgHeader::Missing,
                Org::NotText => OrgHeader::NotText,
                Org::Text(org) => OrgHeader::Text(org),
            },
            message_id: self.message_id.as_deref(),
            timestamp_secs: self.timestamp_secs,
            published_at_ms: self.published_at_ms,
            body: &self.body,
        }
    }
}

fn catalog_names() -> Vec<String> {
    Catalog::builtin().types().map(|t| t.name.clone()).collect()
}

fn catalog_fields() -> Vec<String> {
    Catalog::builtin()
        .types()
        .flat_map(|t| t.fields.clone())
        .collect()
}

fn valid_org() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn routing_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(catalog_names()),
        ".{0,80}",
        "[a-z_]{1,40}",
    ]
}

fn org_header() -> impl Strategy<Value = Org> {
    prop_oneof![
        Just(Org::Missing),
        Just(Org::NotText),
        valid_org().prop_map(Org::Text),
        ".{0,100}".prop_map(Org::Text),
        "[A-Za-z0-9_-]{60,70}".prop_map(Org::Text),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object that is near a valid body: `event` and catalog fields present, absent or
/// of the wrong type, plus anything else.
fn near_valid_body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("event".to_owned()),
        prop::sample::select(catalog_fields()),
        ".{0,12}",
    ];
    let value = prop_oneof![
        prop::sample::select(catalog_names()).prop_map(Value::String),
        json_value(),
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        let object: Map<String, Value> = pairs.into_iter().collect();
        serde_json::to_vec(&object).expect("a map serializes")
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).expect("a value serializes")),
        near_valid_body(),
        // Valid JSON with bytes flipped or cut.
        (near_valid_body(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
            |(mut body, at, byte)| {
                if !body.is_empty() {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
                body
            }
        ),
        (near_valid_body(), any::<prop::sample::Index>()).prop_map(|(mut body, at)| {
            body.truncate(at.index(body.len() + 1));
            body
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arbitrary_message(),
        valid_message(),
        (valid_message(), arbitrary_message(), 0..4u8).prop_map(|(mut m, other, part)| {
            match part {
                0 => m.routing_key = other.routing_key,
                1 => m.org = other.org,
                2 => m.body = other.body,
                _ => m.message_id = other.message_id,
            }
            m
        }),
    ]
}

fn arbitrary_message() -> impl Strategy<Value = Message> {
    (
        routing_key(),
        org_header(),
        prop::option::of(".{0,300}"),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        body(),
    )
        .prop_map(
            |(routing_key, org, message_id, timestamp_secs, published_at_ms, body)| Message {
                routing_key,
                org,
                message_id,
                timestamp_secs,
                published_at_ms,
                body,
            },
        )
}

/// A message that keeps the wire contract: any catalog type, a valid org, any string in
/// the required fields, and extra fields of any JSON.
fn valid_message() -> impl Strategy<Value = Message> {
    (
        prop::sample::select(catalog_names()),
        valid_org(),
        any::<String>(),
        prop::collection::btree_map("x_[a-z0-9_]{0,10}", json_value(), 0..4),
        prop::option::of(".{0,300}"),
        prop::option::of(0u64..=u64::MAX / 1000),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(event, org, url, extra, message_id, timestamp_secs, published_at_ms)| {
                let catalog = Catalog::builtin();
                let mut body: Map<String, Value> = extra.into_iter().collect();
                body.insert("event".into(), Value::String(event.clone()));
                for field in &catalog.get(&event).expect("a catalog type").fields {
                    body.insert(field.clone(), Value::String(url.clone()));
                }
                Message {
                    routing_key: event,
                    org: Org::Text(org),
                    message_id,
                    timestamp_secs,
                    published_at_ms,
                    body: serde_json::to_vec(&body).expect("serializes"),
                }
            },
        )
}

/// What every accepted event must be, whatever the message.
fn check_accepted(m: &Message, event: &Event, catalog: &Catalog, max_bytes: usize) {
    assert!(m.body.len() <= max_bytes);
    assert!(matches!(&m.org, Org::Text(org) if org == &event.org && is_valid_org(org)));
    assert_eq!(event.event_type, m.routing_key);
    assert!(catalog.get(&event.event_type).is_some());
    assert!(!event.id.is_empty() && event.id.len() <= 255);
    let body: Map<String, Value> = serde_json::from_slice(&m.body).expect("an object");
    assert_eq!(
        body.get("event"),
        Some(&Value::String(m.routing_key.clone()))
    );
}

fn check_rejected(rejection: &Rejection) {
    assert!(
        CONTRACT_REASONS.contains(&rejection.reason),
        "{rejection:?}"
    );
    assert!(!rejection.detail.trim().is_empty(), "{rejection:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::CASES))]

    #[test]
    fn any_message_is_accepted_or_dead_with_a_reason(m in message(), small in any::<bool>()) {
        let catalog = Catalog::builtin();
        // A small limit reaches `too_large` as well.
        let max_bytes = if small { 64 } else { LIMIT };
        let verdict = decode(&m.raw(), &catalog, max_bytes);
        match &verdict {
            Ok(event) => check_accepted(&m, event, &catalog, max_bytes),
            Err(rejection) => check_rejected(rejection),
        }
        // Pure: the same message, the same verdict.
        prop_assert_eq!(decode(&m.raw(), &catalog, max_bytes), verdict);
    }

    #[test]
    fn any_routing_key_and_org_header_with_a_valid_body(
        routing_key in routing_key(),
        org in org_header(),
        event in prop::sample::select(catalog_names()),
    ) {
        let catalog = Catalog::builtin();
        let mut body = Map::new();
        body.insert("event".into(), Value::String(event.clone()));
        for field in &catalog.get(&event).expect("a catalog type").fields {
            body.insert(field.clone(), json!("https://mode.test/x"));
        }
        let m = Message {
            routing_key,
            org,
            message_id: None,
            timestamp_secs: None,
            published_at_ms: None,
            body: serde_json::to_vec(&body).expect("serializes"),
        };
        match decode(&m.raw(), &catalog, LIMIT) {
            Ok(accepted) => {
                check_accepted(&m, &accepted, &catalog, LIMIT);
                prop_assert_eq!(&accepted.event_type, &event);
            }
            Err(rejection) => {
                check_rejected(&rejection);
                let valid_org = matches!(&m.org, Org::Text(o) if is_valid_org(o));
                prop_assert!(!valid_org || m.routing_key != event);
            }
        }
    }

    #[test]
    fn generated_valid_events_are_always_accepted(m in valid_message()) {
        let catalog = Catalog::builtin();
        // Exactly at the size limit is still accepted.
        let accepted = decode(&m.raw(), &catalog, m.body.len());
        prop_assert!(accepted.is_ok(), "{:?}", accepted);
        let accepted = accepted.expect("checked");
        check_accepted(&m, &accepted, &catalog, m.body.len());
        prop_assert_eq!(&accepted.event_type, &m.routing_key);
        prop_assert!(matches!(&m.org, Org::Text(org) if *org == accepted.org));
        match m.message_id.as_deref() {
            Some(id) if !id.is_empty() && id.len() <= 255 => prop_assert_eq!(&accepted.id, id),
            _ => prop_assert!(accepted.id.starts_with("evt_")),
        }
        prop_assert_eq!(
            accepted.published_at_ms,
            m.published_at_ms.or(m.timestamp_secs.map(|s| s * 1000))
        );
        // One byte over the limit is not.
        let too_large = decode(&m.raw(), &catalog, m.body.len() - 1);
        prop_assert_eq!(too_large.map_err(|r| r.reason), Err(DeadReason::TooLarge));
    }
}
