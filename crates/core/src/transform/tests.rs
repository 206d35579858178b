use super::*;

const RUN: &[u8] = br#"{"event":"report_run_completed","report_run_url":"https://modeanalytics.com/r/1","tags":["q3","board"],"rows":12}"#;

fn apply(source: &str, body: &[u8]) -> Result<String, TransformError> {
    Transform::parse(source)
        .expect("valid transform")
        .apply(&FilterInput::new("report_run_completed", body))
        .map(|bytes| String::from_utf8(bytes).expect("JSON is UTF-8"))
}

#[test]
fn the_value_becomes_compact_json_with_sorted_keys() {
    assert_eq!(
        apply(
            r#"{"text": "Report finished: " + body.report_run_url}"#,
            RUN
        ),
        Ok(r#"{"text":"Report finished: https://modeanalytics.com/r/1"}"#.into())
    );
    assert_eq!(
        apply(
            r#"{"z": body.rows, "a": [event_type, null, true, -1, 2.5, b"hi"], "m": {"n": body.tags.map(t, t + "!")}}"#,
            RUN
        ),
        Ok(r#"{"a":["report_run_completed",null,true,-1,2.5,"aGk="],"m":{"n":["q3!","board!"]},"z":12}"#.into())
    );
    assert_eq!(apply("body.tags", RUN), Ok(r#"["q3","board"]"#.into()));
    // Strings are escaped as JSON requires.
    assert_eq!(
        apply(r#"{"q": "say \"hi\"\n"}"#, RUN),
        Ok(r#"{"q":"say \"hi\"\n"}"#.into())
    );
}

#[test]
fn a_value_with_no_json_body_is_an_error() {
    let error = apply("body.report_run_url", RUN).expect_err("a string is not a body");
    assert_eq!(
        error.to_string(),
        "the transform gave string, not a map or a list"
    );
    let error = apply("{1: 'one'}", RUN).expect_err("an int key");
    assert!(error.to_string().contains("key 1, not a string"), "{error}");
    let error = apply("[type(1)]", RUN).expect_err("a type");
    assert!(error.to_string().contains("no JSON form"), "{error}");
    let error = apply("[1.0 / 0.0]", RUN).expect_err("infinity");
    assert!(error.to_string().contains("no JSON form"), "{error}");
    // A missing field fails the evaluation; `has` guards it.
    let error = apply(r#"{"x": body.missing}"#, RUN).expect_err("missing key");
    assert!(!error.budget_exceeded);
    assert!(error.to_string().contains("missing"), "{error}");
    assert_eq!(
        apply(r#"{"x": has(body.missing) ? body.missing : "none"}"#, RUN),
        Ok(r#"{"x":"none"}"#.into())
    );
    let error = apply("[1]", b"not json").expect_err("not JSON");
    assert!(error.to_string().contains("not JSON"), "{error}");
}

#[test]
fn the_body_is_capped() {
    // Each element shares the body's one string: cheap to evaluate, large to write.
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(60 * 1024));
    let error = apply("[body.s, body.s, body.s, body.s, body.s]", big.as_bytes())
        .expect_err("over the cap");
    assert_eq!(
        error.to_string(),
        format!(
            "the transform's body is larger than {} KiB",
            MAX_TRANSFORMED_BODY_BYTES / 1024
        )
    );
    let fits = apply("[body.s, body.s]", big.as_bytes()).expect("under the cap");
    assert_eq!(fits.len(), 2 * (60 * 1024 + 2) + 3);
}

#[test]
fn parsing_applies_the_filter_bounds_with_its_own_name() {
    let error = Transform::parse(" ").expect_err("empty");
    assert_eq!(
        error.message,
        "a transform is a CEL expression, not empty text"
    );
    let long = format!(r#"{{"a": "{}"}}"#, "x".repeat(MAX_TRANSFORM_BYTES));
    let error = Transform::parse(&long).expect_err("too long");
    assert!(
        error
            .message
            .starts_with("a transform has at most 4096 bytes"),
        "{error}"
    );
    // Longer than a filter may be, and still accepted.
    let card = format!(
        r#"{{"text": "{}" + body.report_run_url}}"#,
        "y".repeat(3000)
    );
    Transform::parse(&card).expect("a long literal is cheap");
    let error = Transform::parse(r#"{"x": secret}"#).expect_err("unknown variable");
    assert_eq!(
        error.message,
        "unknown variable `secret`: a transform reads `body` and `event_type`"
    );
    assert_eq!((error.line, error.column), (Some(1), Some(7)));
    let nested = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let error = Transform::parse(&nested).expect_err("too deep");
    assert!(
        error.message.contains("a transform nests at most 32"),
        "{error}"
    );
    // Eight stages that each repeat their element eight times: refused by the cost check.
    let costly = format!(
        "[event_type]{}",
        ".map(x, x + x + x + x + x + x + x + x)".repeat(8)
    );
    let error = Transform::parse(&costly).expect_err("over the static budget");
    assert!(
        error.message.starts_with("the transform could take up to"),
        "{error}"
    );
}

#[test]
fn a_stored_transform_the_rules_refuse_fails_each_evaluation() {
    let stored = Transform::load("{'x': unknown_variable}");
    assert_eq!(stored.source(), "{'x': unknown_variable}");
    let error = stored
        .apply(&FilterInput::new("report_run_completed", RUN))
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("the stored transform is refused"),
        "{error}"
    );
}

#[test]
fn the_runtime_budget_stops_an_evaluation() {
    // A body far larger than the static check assumed: the budget stops the evaluation.
    let many: Vec<String> = (0..200_000).map(|i| format!("\"t{i}\"")).collect();
    let body = format!(r#"{{"tags":[{}]}}"#, many.join(","));
    let error = Transform::parse(r#"body.tags.map(t, t + t + t)"#)
        .expect("within the static bound")
        .apply(&FilterInput::new("report_run_completed", body.as_bytes()))
        .expect_err("over the runtime budget");
    assert!(error.budget_exceeded, "{error}");
}

#[test]
fn what_was_sent_round_trips_as_a_header() {
    let sent = Transformed::of(b"{\"text\":\"hi\"}");
    assert_eq!(sent.bytes, 13);
    assert_eq!(
        Transformed::from_header_value(&sent.header_value()),
        Some(sent)
    );
    assert_eq!(Transformed::from_header_value("13:nothex"), None);
    assert_eq!(Transformed::from_header_value("13"), None);
}
