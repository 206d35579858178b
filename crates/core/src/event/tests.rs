use super::*;

const LIMIT: usize = 64 * 1024;

fn raw<'a>(routing_key: &'a str, org: OrgHeader<'a>, body: &'a [u8]) -> RawEvent<'a> {
    RawEvent {
        routing_key,
        org,
        message_id: Some("evt-1"),
        timestamp_secs: None,
        published_at_ms: None,
        body,
    }
}

fn reason(r: &RawEvent<'_>) -> DeadReason {
    decode(r, &Catalog::builtin(), LIMIT)
        .expect_err("must be rejected")
        .reason
}

#[test]
fn accepts_a_valid_event_for_every_catalog_type() {
    let catalog = Catalog::builtin();
    for t in catalog.types() {
        let mut body = serde_json::Map::new();
        body.insert("event".into(), t.name.clone().into());
        for field in &t.fields {
            body.insert(field.clone(), "https://x.test/1".into());
        }
        let body = serde_json::to_string(&body).expect("JSON");
        let event = decode(
            &raw(&t.name, OrgHeader::Text("acme"), body.as_bytes()),
            &catalog,
            LIMIT,
        )
        .expect("valid event");
        assert_eq!(
            (
                event.id.as_str(),
                event.org.as_str(),
                event.event_type.as_str()
            ),
            ("evt-1", "acme", t.name.as_str())
        );
    }
}

#[test]
fn each_contract_breach_has_its_reason() {
    let ok = br#"{"event":"report_created","report_run_url":"u"}"#;
    let org = OrgHeader::Text("acme");
    assert_eq!(
        reason(&raw("report_created", org, b"not json")),
        DeadReason::InvalidJson
    );
    assert_eq!(
        reason(&raw("report_created", org, b"[1,2]")),
        DeadReason::InvalidJson
    );
    assert_eq!(
        reason(&raw("report_created", OrgHeader::Missing, ok)),
        DeadReason::MissingOrg
    );
    assert_eq!(
        reason(&raw("report_created", OrgHeader::NotText, ok)),
        DeadReason::MissingOrg
    );
    assert_eq!(
        reason(&raw("report_created", OrgHeader::Text("a b"), ok)),
        DeadReason::MissingOrg
    );
    assert_eq!(
        reason(&raw("report_created", OrgHeader::Text(&"a".repeat(65)), ok)),
        DeadReason::MissingOrg
    );
    assert_eq!(
        reason(&raw("nope", org, br#"{"event":"nope"}"#)),
        DeadReason::UnknownEvent
    );
    assert_eq!(
        reason(&raw(
            "report_created",
            org,
            br#"{"event":"report_created"}"#
        )),
        DeadReason::MissingField
    );
    assert_eq!(
        reason(&raw(
            "report_created",
            org,
            br#"{"event":"report_created","report_run_url":1}"#
        )),
        DeadReason::MissingField
    );
    assert_eq!(
        reason(&raw("report_created", org, br#"{"report_run_url":"u"}"#)),
        DeadReason::MissingField
    );
    assert_eq!(
        reason(&raw(
            "report_created",
            org,
            br#"{"event":"definition_created","report_run_url":"u"}"#
        )),
        DeadReason::EventMismatch
    );
    let big = format!(
        r#"{{"event":"report_created","report_run_url":"{}"}}"#,
        "x".repeat(LIMIT)
    );
    assert_eq!(
        reason(&raw("report_created", org, big.as_bytes())),
        DeadReason::TooLarge
    );
}

#[test]
fn escapes_and_repeated_keys_read_as_the_json_says() {
    let catalog = Catalog::builtin();
    let org = OrgHeader::Text("acme");
    let accepted = |body: &str| {
        decode(
            &raw("report_created", org, body.as_bytes()),
            &catalog,
            LIMIT,
        )
        .map(|event| event.event_type)
        .map_err(|r| r.reason)
    };
    // An escaped key or value means what it spells (the slower, owning parse).
    for body in [
        r#"{"ev\u0065nt":"report_created","report_run_url":"u"}"#,
        r#"{"event":"report\u005fcreated","report_run_url":"u"}"#,
        r#"{"event":"report_created","report_\u0072un_url":"a \"quoted\" url"}"#,
    ] {
        assert_eq!(accepted(body), Ok("report_created".into()), "{body}");
    }
    assert_eq!(
        accepted(r#"{"event":"report\u005fcreated","report_\u0072un_url":2}"#),
        Err(DeadReason::MissingField)
    );
    // A repeated key: the last one counts, as in a JSON object read whole.
    assert_eq!(
        accepted(r#"{"event":"nope","event":"report_created","report_run_url":"u"}"#),
        Ok("report_created".into())
    );
    assert_eq!(
        accepted(r#"{"event":"report_created","report_run_url":"u","report_run_url":null}"#),
        Err(DeadReason::MissingField)
    );
    // Task bodies are read the same way.
    assert!(
        check_task_body(
            br#"{"ev\u0065nt":"report_created"}"#,
            "report_created",
            LIMIT
        )
        .is_ok()
    );
    assert_eq!(
        check_task_body(
            br#"{"event":"report\u005fcreated"}"#,
            "member_joined",
            LIMIT
        )
        .map_err(|r| r.reason),
        Err(DeadReason::EventMismatch)
    );
}

#[test]
fn missing_message_id_gets_a_stable_derived_id() {
    let body = br#"{"event":"report_created","report_run_url":"u"}"#;
    let mut r = raw("report_created", OrgHeader::Text("acme"), body);
    r.message_id = None;
    r.timestamp_secs = Some(1_700_000_000);
    let a = decode(&r, &Catalog::builtin(), LIMIT).expect("valid");
    let b = decode(&r, &Catalog::builtin(), LIMIT).expect("valid");
    assert_eq!(a.id, b.id);
    assert!(a.id.starts_with("evt_"));
    assert_eq!(a.published_at_ms, Some(1_700_000_000_000));
    r.timestamp_secs = Some(1_700_000_001);
    assert_ne!(
        decode(&r, &Catalog::builtin(), LIMIT).expect("valid").id,
        a.id
    );
}

#[test]
fn webhook_id_is_stable_per_pair() {
    let a = uuid::Uuid::now_v7();
    let b = uuid::Uuid::now_v7();
    assert_eq!(webhook_id("e1", &a), webhook_id("e1", &a));
    assert_ne!(webhook_id("e1", &a), webhook_id("e1", &b));
    assert_ne!(webhook_id("e1", &a), webhook_id("e2", &a));
}

#[test]
fn producers_cannot_send_operational_types() {
    let catalog = Catalog::builtin();
    let body = br#"{"event":"webhook_disabled","webhook_id":"w","reason":"r"}"#;
    let r = raw("webhook_disabled", OrgHeader::Text("acme"), body);
    assert!(
        decode(&r, &catalog, LIMIT).is_ok(),
        "the contract itself holds"
    );
    assert_eq!(
        decode_produced(&r, &catalog, LIMIT)
            .expect_err("reserved")
            .reason,
        DeadReason::ReservedEventType
    );
    let ok = br#"{"event":"report_created","report_run_url":"u"}"#;
    let r = raw("report_created", OrgHeader::Text("acme"), ok);
    assert!(decode_produced(&r, &catalog, LIMIT).is_ok());
}

#[test]
fn task_bodies_are_checked_against_their_task() {
    let ok = br#"{"event":"report_created","report_run_url":"u"}"#;
    assert!(check_task_body(ok, "report_created", LIMIT).is_ok());
    let reason =
        |body: &[u8], t: &str, max| check_task_body(body, t, max).expect_err("refused").reason;
    assert_eq!(reason(ok, "report_created", 10), DeadReason::TooLarge);
    assert_eq!(
        reason(b"[1]", "report_created", LIMIT),
        DeadReason::InvalidJson
    );
    assert_eq!(
        reason(ok, "webhook_disabled", LIMIT),
        DeadReason::EventMismatch
    );
    assert_eq!(
        reason(b"{}", "report_created", LIMIT),
        DeadReason::EventMismatch
    );
}

#[test]
fn reasons_round_trip() {
    for r in DeadReason::ALL {
        assert_eq!(r.as_str().parse::<DeadReason>(), Ok(r));
    }
}
