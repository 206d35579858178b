use super::*;

fn task() -> Task {
    Task {
        event_id: "evt-1".into(),
        org: "acme".into(),
        event_type: "report_created".into(),
        subscription_id: Uuid::now_v7(),
        attempts: 3,
        first_seen_ms: 42,
        published_at_ms: Some(41),
        deferred_since_ms: Some(40),
        due_ms: None,
        lineage: Some(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
        trace: TraceParent::from_headers(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("rojo=00f067aa0ba902b7"),
        ),
    }
}

#[test]
fn a_task_without_a_valid_traceparent_has_no_trace() {
    let task = task();
    let mut h = task.properties().headers().clone().unwrap_or_default();
    headers::set_text(&mut h, TRACEPARENT, "00-not-a-trace-01");
    let read = Task::from_headers(Some(&h)).expect("a task");
    assert_eq!(
        read,
        Task {
            trace: None,
            ..task.clone()
        }
    );
    let bare = Task {
        trace: None,
        ..task
    }
    .properties();
    let bare = bare.headers().as_ref();
    assert_eq!(headers::text(bare, TRACEPARENT), None);
    assert_eq!(headers::text(bare, TRACESTATE), None);
}

#[test]
fn task_round_trips_through_headers() {
    let task = task();
    let props = task.properties();
    assert_eq!(
        Task::from_headers(props.headers().as_ref()),
        Ok(task.clone())
    );
    assert_eq!(
        props.message_id().as_ref().map(|s| s.to_string()),
        Some(task.webhook_id())
    );
    let dead = dead_letter_properties(&props, DeadReason::Exhausted, "5 attempts");
    assert_eq!(
        headers::text(dead.headers().as_ref(), REASON),
        Some("exhausted")
    );
    assert_eq!(Task::from_headers(dead.headers().as_ref()), Ok(task));
}

#[test]
fn a_fanout_chunk_carries_one_task_per_subscription_it_names() {
    let task = Task {
        attempts: 0,
        deferred_since_ms: None,
        ..task()
    };
    let mut ids: Vec<Uuid> = (0..FANOUT_CHUNK_MAX).map(|_| Uuid::now_v7()).collect();
    let props = task.chunk_properties(&ids);
    let read = Task::all_from_headers(props.headers().as_ref()).expect("tasks");
    ids.sort_unstable();
    let expected: Vec<Task> = ids
        .iter()
        .map(|&subscription_id| Task {
            subscription_id,
            ..task.clone()
        })
        .collect();
    assert_eq!(read, expected);
    // A build that knows only single tasks refuses it whole.
    let single = Task::from_headers(props.headers().as_ref()).expect_err("no single task");
    assert!(single.contains(SUBSCRIPTION_ID), "{single}");
    // A single task reads as itself.
    assert_eq!(
        Task::all_from_headers(task.properties().headers().as_ref()),
        Ok(vec![task.clone()])
    );
    // A subscription named twice is attempted once.
    let twice = task.chunk_properties(&[ids[0], ids[0]]);
    let read = Task::all_from_headers(twice.headers().as_ref()).expect("tasks");
    assert_eq!(read.len(), 1);
}

#[test]
fn a_fanout_chunk_naming_too_many_or_broken_ids_is_refused() {
    let task = task();
    let many: Vec<Uuid> = (0..=FANOUT_CHUNK_MAX).map(|_| Uuid::now_v7()).collect();
    let err = Task::all_from_headers(task.chunk_properties(&many).headers().as_ref())
        .expect_err("too many");
    assert!(err.contains("more than 64"), "{err}");
    let mut h = FieldTable::default();
    headers::set_text(&mut h, SUBSCRIPTION_IDS, "not-a-uuid");
    let err = Task::all_from_headers(Some(&h)).expect_err("not a UUID");
    assert!(err.contains("`not-a-uuid`, not a UUID"), "{err}");
    headers::set_text(&mut h, SUBSCRIPTION_IDS, &Uuid::now_v7().to_string());
    let err = Task::all_from_headers(Some(&h)).expect_err("no event id");
    assert!(err.contains(EVENT_ID), "{err}");
}

#[test]
fn broken_task_headers_are_named() {
    let err = Task::from_headers(None).expect_err("no headers");
    assert!(err.contains(SUBSCRIPTION_ID), "{err}");
}

#[test]
fn a_task_claiming_more_attempts_than_can_follow_is_refused() {
    let mut task = task();
    task.attempts = u32::MAX - 1;
    let read = Task::from_headers(task.properties().headers().as_ref());
    assert_eq!(read.map(|t| t.attempts), Ok(u32::MAX - 1));
    for forged in [u64::from(u32::MAX), u64::from(u32::MAX) + 1] {
        let mut h = task.properties().headers().clone().unwrap_or_default();
        headers::set_unsigned(&mut h, ATTEMPTS, forged);
        let err = Task::from_headers(Some(&h)).expect_err("a forged attempt count");
        assert_eq!(
            err,
            format!("task header `{ATTEMPTS}` is {forged}: more than 4294967294 attempts")
        );
    }
}

#[test]
fn a_parked_task_expires_after_its_delay() {
    let props = task().parked_properties(Duration::from_millis(31_250));
    assert_eq!(
        props.expiration().as_ref().map(|e| e.to_string()),
        Some("31250".to_owned())
    );
    assert_eq!(props.delivery_mode(), &Some(PERSISTENT));
}

#[test]
fn a_parked_task_says_when_its_tier_is_due_to_expire_it() {
    let before = now_ms();
    let props = task().parked_properties(Duration::from_millis(31_250));
    let back = Task::from_headers(props.headers().as_ref()).expect("task");
    let due = back.due_ms.expect("due");
    assert!(
        (before + 31_250..=now_ms() + 31_250).contains(&due),
        "{due}"
    );
    assert_eq!(back.deferred_since_ms, Some(40));
    let fresh = Task::from_headers(task().properties().headers().as_ref()).expect("task");
    assert_eq!(fresh.due_ms, None, "only a parked task is due");
}

#[test]
fn operational_events_pass_the_catalog_like_any_event() {
    let catalog = Catalog::builtin();
    let cause = task();
    let fields = [
        ("webhook_id", cause.subscription_id.to_string()),
        ("reason", "the receiver answered 410 Gone".to_owned()),
    ];
    let event = operational_event(&cause, "webhook_disabled", &fields);
    assert_eq!(event.id, format!("webhook_disabled_{}", cause.webhook_id()));
    let body = encode_operational(&catalog, &event).expect("a catalog event");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["event"], "webhook_disabled");
    assert_eq!(body["reason"], "the receiver answered 410 Gone");
    let task = Task {
        event_type: event.event_type.clone(),
        ..task()
    };
    let props = task.properties();
    assert_eq!(
        headers::text(props.headers().as_ref(), ORG_HEADER),
        Some("acme")
    );
    assert_eq!(props.delivery_mode(), &Some(PERSISTENT));
    let unknown = operational_event(&cause, "no_such_event", &fields);
    assert!(matches!(
        encode_operational(&catalog, &unknown),
        Err(Error::Contract(_))
    ));
    // Producers cannot send them: only hookwire does, on the work exchange.
    assert!(matches!(
        encode_event(&catalog, &event),
        Err(Error::Contract(_))
    ));
}

fn message(routing_key: &str, properties: BasicProperties) -> Delivery {
    let mut m = Delivery::mock(
        1,
        "ns.dlx".into(),
        routing_key.into(),
        false,
        b"{}".to_vec(),
    );
    m.properties = properties;
    m
}

#[test]
fn dead_letters_read_back() {
    // A dead task keeps its trace, for its replay.
    let trace = TraceParent::from_headers(Some(TRACEPARENT_OF_DEAD), Some("vendor=1"));
    let task = task().with_trace(trace.clone());
    let dead = message(
        DEAD_KEY,
        task.dead_letter_properties(DeadReason::Exhausted, "4 attempts"),
    );
    assert_eq!(
        DeadMessage::read(&dead),
        DeadMessage {
            org: Some("acme".into()),
            subscription_id: Some(task.subscription_id),
            event_id: Some("evt-1".into()),
            event_type: Some("report_created".into()),
            reason: "exhausted".into(),
            detail: "4 attempts".into(),
            attempts: 3,
            body_bytes: 2,
            trace,
            transformed: None,
        }
    );
    // A dead task whose last attempt sent a transformed body says what it sent.
    let sent = hookwire_core::Transformed::of(b"{\"text\":\"hi\"}");
    let dead = message(
        DEAD_KEY,
        task.dead_letter_properties_sent(DeadReason::Exhausted, "4 attempts", Some(&sent)),
    );
    assert_eq!(DeadMessage::read(&dead).transformed, Some(sent));

    let mut event = message("report_created", BasicProperties::default());
    event.properties = event_properties(Some("acme"), Some("evt-2"), None);
    let rejected = message(
        DEAD_KEY,
        rejected_event_properties(&event, DeadReason::UnknownEvent, "no such type"),
    );
    let read = DeadMessage::read(&rejected);
    assert_eq!(read.event_type.as_deref(), Some("report_created"));
    assert_eq!(read.event_id.as_deref(), Some("evt-2"));
    assert_eq!(read.subscription_id, None);

    let mut death = FieldTable::default();
    headers::set_text(&mut death, "reason", "delivery_limit");
    headers::set_text(&mut death, "queue", "ns.events");
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString("report_created".into())].into()),
    );
    let mut h = FieldTable::default();
    h.insert(
        "x-death".into(),
        AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
    );
    let crash_loop = DeadMessage::read(&message(
        DEAD_KEY,
        BasicProperties::default().with_headers(h),
    ));
    assert_eq!(crash_loop.reason, "delivery_limit");
    assert_eq!(crash_loop.event_type.as_deref(), Some("report_created"));

    let bare = DeadMessage::read(&message(DEAD_KEY, BasicProperties::default()));
    assert_eq!((bare.reason.as_str(), bare.event_type), ("unknown", None));
}

const TRACEPARENT_OF_DEAD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn replay_destinations() {
    let names = Names::new("ns");
    let sub = Uuid::now_v7();
    let dead = Replay {
        id: Uuid::now_v7(),
        org: Some("acme"),
        subscription_id: Some(sub),
        event_id: Some("evt-1"),
        event_type: Some("report_created"),
        body: b"{}",
        truncated: false,
        traceparent: Some(TRACEPARENT_OF_DEAD),
        tracestate: Some("vendor=1"),
    };
    let task = dead.destination(&names).expect("a task");
    assert_eq!(
        (task.exchange.as_str(), task.routing_key.as_str()),
        ("ns.work", DELIVER_KEY)
    );
    let back = Task::from_headers(task.properties.headers().as_ref()).expect("task");
    assert_eq!((back.attempts, back.subscription_id), (0, sub));
    // The replayed task is in the trace the dead letter was in.
    let trace = back.trace.expect("the dead letter's trace");
    assert_eq!(
        (trace.context.traceparent().as_str(), trace.state.as_deref()),
        (TRACEPARENT_OF_DEAD, Some("vendor=1"))
    );
    let untraced = Replay {
        traceparent: None,
        tracestate: None,
        ..dead
    }
    .destination(&names)
    .expect("a task");
    assert_eq!(trace_of(untraced.properties.headers().as_ref()), None);

    let event = Replay {
        subscription_id: None,
        ..dead
    }
    .destination(&names)
    .expect("an event");
    assert_eq!(
        (event.exchange.as_str(), event.routing_key.as_str()),
        ("ns.events", "report_created")
    );
    assert_eq!(
        event
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string()),
        Some("evt-1".to_owned())
    );
    assert_eq!(
        trace_of(event.properties.headers().as_ref()).map(|t| t.context.traceparent()),
        Some(TRACEPARENT_OF_DEAD.to_owned())
    );
    // Delivered even though its id was seen before: a replay is deliberate.
    assert!(is_replayed(event.properties.headers().as_ref()));
    assert_eq!(
        headers::text(event.properties.headers().as_ref(), ORG_HEADER),
        Some("acme")
    );

    let no_org = Replay { org: None, ..dead };
    assert!(matches!(
        no_org.destination(&names),
        Err(Error::Unreplayable(_))
    ));
    let no_type = Replay {
        event_type: None,
        ..dead
    };
    assert!(matches!(
        no_type.destination(&names),
        Err(Error::Unreplayable(_))
    ));
}

#[test]
fn a_producers_reserved_headers_never_reach_the_archive() {
    let forged_sub = Uuid::now_v7();
    let mut h = FieldTable::default();
    headers::set_text(&mut h, ORG_HEADER, "acme");
    headers::set_text(&mut h, SUBSCRIPTION_ID, &forged_sub.to_string());
    headers::set_text(&mut h, EVENT_ID, "forged");
    headers::set_unsigned(&mut h, BODY_BYTES, 1);
    headers::set_text(&mut h, "x-custom", "kept");
    let event = message(
        "report_created",
        BasicProperties::default()
            .with_message_id("evt-9".into())
            .with_headers(h.clone()),
    );
    let rejected = message(
        DEAD_KEY,
        rejected_event_properties(&event, DeadReason::InvalidJson, "not json"),
    );
    let read = DeadMessage::read(&rejected);
    assert_eq!(
        read.subscription_id, None,
        "not a task: replay republishes it as an event"
    );
    assert_eq!(read.event_id.as_deref(), Some("evt-9"));
    assert_eq!(read.reason, "invalid_json");
    assert_eq!(
        headers::text(rejected.properties.headers().as_ref(), "x-custom"),
        Some("kept")
    );

    // The broker dead-letters a crash-looping event with the producer's headers intact.
    let mut death = FieldTable::default();
    headers::set_text(&mut death, "reason", "delivery_limit");
    headers::set_text(&mut death, "queue", "ns.events");
    h.insert(
        "x-death".into(),
        AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
    );
    headers::set_text(&mut h, REASON, "exhausted");
    let crash_loop = DeadMessage::read(&message(
        DEAD_KEY,
        BasicProperties::default().with_headers(h),
    ));
    assert_eq!(crash_loop.reason, "delivery_limit");
    assert_eq!(crash_loop.subscription_id, None);
    assert_eq!(crash_loop.body_bytes, 2);
}

#[test]
fn an_over_size_rejected_event_is_dead_lettered_as_a_prefix_with_its_size() {
    let mut event = message("report_created", event_properties(Some("acme"), None, None));
    event.data = vec![b'x'; 10_000];
    let (body, props) = rejected_event(&event, DeadReason::TooLarge, "too large", 1024);
    assert_eq!(body.len(), 1024);
    let mut dead = message(DEAD_KEY, props);
    dead.data = body.to_vec();
    assert_eq!(DeadMessage::read(&dead).body_bytes, 10_000);
    let (whole, _) = rejected_event(&event, DeadReason::TooLarge, "too large", 10_000);
    assert_eq!(whole.len(), 10_000);
}

#[test]
fn a_truncated_dead_letter_is_not_replayed() {
    let dead = Replay {
        id: Uuid::now_v7(),
        org: Some("acme"),
        subscription_id: None,
        event_id: Some("evt-1"),
        event_type: Some("report_created"),
        body: b"{",
        truncated: true,
        traceparent: None,
        tracestate: None,
    };
    let err = dead.destination(&Names::new("ns")).expect_err("refused");
    assert!(err.to_string().contains("first bytes"), "{err}");
}
