use super::*;

const RUN: &[u8] =
    br#"{"event":"report_run_completed","report_run_url":"https://modeanalytics.com/api/acme/spaces/finance/reports/r1/runs/1","tags":["q3","board"]}"#;

fn eval(source: &str, body: &[u8]) -> Result<bool, String> {
    Filter::parse(source)
        .expect("valid filter")
        .matches(&FilterInput::new("report_run_completed", body))
}

#[test]
fn selects_events_by_their_body() {
    let under_finance = r#"event_type == "report_run_completed" && body.report_run_url.startsWith("https://modeanalytics.com/api/acme/spaces/finance/")"#;
    assert_eq!(eval(under_finance, RUN), Ok(true));
    let other = br#"{"event":"report_run_completed","report_run_url":"https://modeanalytics.com/api/acme/spaces/ops/reports/r2/runs/1"}"#;
    assert_eq!(eval(under_finance, other), Ok(false));
    assert_eq!(eval(r#"body.tags.exists(t, t == "board")"#, RUN), Ok(true));
    assert_eq!(eval(r#"body.tags.all(t, t.size() == 2)"#, RUN), Ok(false));
    assert_eq!(
        eval(r#"has(body.tags) && size(body.tags) == 2"#, RUN),
        Ok(true)
    );
    assert_eq!(
        eval(r#"body.report_run_url.matches("/runs/[0-9]+$")"#, RUN),
        Ok(true)
    );
    // A comprehension over another's result is sequential work, not nested.
    assert_eq!(
        eval(
            r#"body.tags.filter(t, t != "q3").exists(t, t == "board")"#,
            RUN
        ),
        Ok(true)
    );
}

#[test]
fn failures_on_a_body_are_errors_not_answers() {
    let missing = eval("body.space == \"finance\"", RUN).expect_err("no such key");
    assert!(missing.contains("space"), "{missing}");
    let not_bool = eval("body.tags", RUN).expect_err("a list");
    assert!(not_bool.contains("not a boolean"), "{not_bool}");
    let not_json = eval("true", b"{not json").expect_err("bad body");
    assert!(not_json.contains("not JSON"), "{not_json}");
}

#[test]
fn a_syntax_error_points_at_its_place() {
    let error = Filter::parse("body.report_run_url.startsWith(\"x\") &&").expect_err("incomplete");
    assert_eq!(error.line, Some(1));
    assert!(error.column.is_some(), "{error:?}");
    let error = Filter::parse("body.a == 1 &&\n  body.b = 2").expect_err("`=`");
    assert_eq!(error.line, Some(2), "{error:?}");
    assert!(error.to_string().starts_with("2:"), "{error}");
    assert!(Filter::parse("").is_err());
    assert!(Filter::parse("   ").is_err());
}

#[test]
fn rules_that_bound_the_cost_are_enforced_with_a_place() {
    let long = format!("body.a == \"{}\"", "x".repeat(MAX_FILTER_BYTES));
    assert!(
        Filter::parse(&long)
            .expect_err("long")
            .message
            .contains("at most")
    );
    for deep in [
        format!("{}true{}", "(".repeat(300), ")".repeat(300)),
        format!("{}1{}", "[".repeat(300), "]".repeat(300)),
        format!("{}false", "true ? true : ".repeat(140)),
        format!("{}true{}", "(".repeat(33), ")".repeat(33)),
    ] {
        let error = Filter::parse(&deep).expect_err("too deep");
        assert!(error.message.contains("nests at most 32"), "{error:?}");
    }
    Filter::parse(&format!("{}true{}", "(".repeat(30), ")".repeat(30))).expect("shallow");
    // The deepest expression the rules let through evaluates on an ordinary stack.
    let nested = format!("size({}1{}) == 1", "[".repeat(30), "]".repeat(30));
    assert_eq!(eval(&nested, RUN), Ok(true));
    // Brackets inside a string do not nest.
    Filter::parse(&format!("body.a == '{}'", "(".repeat(100))).expect("a string");
    // Long flat chains stay within the parser's own limit, or are refused by it.
    let chain = format!("body{} == 1", ".a".repeat(600));
    let error = Filter::parse(&chain).expect_err("too deep a tree");
    assert!(error.message.contains("operations deep"), "{error:?}");
    let chain = format!("body.tags.size(){} == 2", " + 0".repeat(50));
    assert_eq!(
        eval(&chain, RUN),
        Ok(true),
        "a long chain within the limit evaluates"
    );
    let ors = vec!["body.a == 1"; 150].join(" || ");
    let _ = Filter::parse(&ors);
    let nested =
        Filter::parse("body.tags.exists(t, body.tags.exists(u, u == t))").expect_err("nested");
    assert_eq!(
        (nested.line, nested.column),
        (Some(1), Some(37)),
        "{nested:?}"
    );
    let nested = Filter::parse("body.tags.exists(t, [1, 2].all(u, u > 0))").expect_err("nested");
    assert!(nested.message.contains("inside another"), "{nested:?}");
    let outer = Filter::parse("body.tags.exists(t, t == body.event)").expect_err("body in loop");
    assert!(outer.message.contains("predicate"), "{outer:?}");
    let unknown = Filter::parse("request.path == \"/\"").expect_err("unknown variable");
    assert!(
        unknown.message.contains("unknown variable `request`"),
        "{unknown:?}"
    );
    assert_eq!((unknown.line, unknown.column), (Some(1), Some(1)));
}

#[test]
fn a_large_body_is_read_in_linear_time() {
    let items: Vec<String> = (0..8_000).map(|i| format!("\"t{i}\"")).collect();
    let body = format!(
        r#"{{"event":"report_created","tags":[{}]}}"#,
        items.join(",")
    );
    assert!(body.len() > 60_000);
    let started = std::time::Instant::now();
    assert_eq!(
        eval(
            r#"body.tags.exists(t, t.endsWith("7999")) && body.tags.map(t, t + t).size() == 8000"#,
            body.as_bytes()
        ),
        Ok(true)
    );
    // Generous, even for an unoptimised build: the bound is on the work, not the clock.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn the_body_is_decoded_once_per_event() {
    let input = FilterInput::new("report_run_completed", RUN);
    let a = Filter::parse("body.tags.size() == 2").expect("valid");
    let b = Filter::parse("event_type == \"report_run_completed\"").expect("valid");
    assert_eq!(a.matches(&input), Ok(true));
    assert!(input.decoded.get().is_some());
    assert_eq!(b.matches(&input), Ok(true));
    assert_eq!(a, Filter::parse("body.tags.size() == 2").expect("valid"));
    assert_eq!(a.source(), "body.tags.size() == 2");
}
