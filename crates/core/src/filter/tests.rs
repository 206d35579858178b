use super::*;

const RUN: &[u8] =
    br#"{"event":"report_run_completed","report_run_url":"https://modeanalytics.com/api/acme/spaces/finance/reports/r1/runs/1","tags":["q3","board"]}"#;

fn eval(source: &str, body: &[u8]) -> Result<bool, String> {
    Filter::parse(source)
        .expect("valid filter")
        .matches(&FilterInput::new("report_run_completed", body))
        .map_err(|e| e.to_string())
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

/// Integer arithmetic answers, and fails, alike for int and uint: by zero, and where the
/// result overflows its type.
#[test]
fn integer_arithmetic_fails_by_zero_and_on_overflow() {
    for answered in [
        "7 - 9 == -2 && 7 * 3 == 21 && -7 / 2 == -3 && -7 % 2 == -1",
        "9u - 7u == 2u && 7u * 3u == 21u && 7u / 2u == 3u && 7u % 2u == 1u",
    ] {
        assert_eq!(eval(answered, RUN), Ok(true), "{answered}");
    }
    for (source, says) in [
        ("1 / 0 == 0", "Division by zero"),
        ("1 % 0 == 0", "Remainder by zero"),
        ("1u / 0u == 0u", "Division by zero"),
        ("1u % 0u == 0u", "Remainder by zero"),
        (
            "-9223372036854775807 - 2 == 0",
            "Overflow from binary operator 'sub'",
        ),
        (
            "9223372036854775807 * 2 == 0",
            "Overflow from binary operator 'mul'",
        ),
        (
            "(-9223372036854775807 - 1) / -1 == 0",
            "Overflow from binary operator 'div'",
        ),
        (
            "(-9223372036854775807 - 1) % -1 == 0",
            "Overflow from binary operator 'rem'",
        ),
        ("0u - 1u == 0u", "Overflow from binary operator 'sub'"),
        (
            "18446744073709551615u * 2u == 0u",
            "Overflow from binary operator 'mul'",
        ),
        ("1 - 1u == 0", "no such overload"),
    ] {
        let error = eval(source, RUN).expect_err(source);
        assert!(error.contains(says), "{source}: {error}");
    }
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
fn a_large_body_is_read_within_the_static_bound() {
    let items: Vec<String> = (0..8_000).map(|i| format!("\"t{i}\"")).collect();
    let body = format!(
        r#"{{"event":"report_created","tags":[{}]}}"#,
        items.join(",")
    );
    assert!(body.len() > 60_000);
    let filter = Filter::parse(
        r#"body.tags.exists(t, t.endsWith("7999")) && body.tags.map(t, t + t).size() == 8000"#,
    )
    .expect("within the budget");
    let evaluation = filter.evaluate(&FilterInput::new("report_created", body.as_bytes()));
    assert!(
        matches!(evaluation.result, Ok(Value::Bool(true))),
        "{evaluation:?}"
    );
    let (used, bound) = (evaluation.used, filter.cost());
    assert!(
        used.steps <= bound.steps && used.bytes <= bound.bytes,
        "{used:?} within {bound:?}"
    );
    assert!(used.steps > 8_000, "every element counted: {used:?}");
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

/// The filter that took a node to 713 MiB: eight stages, each repeating its element eight
/// times, over a list built from the event type.
const EIGHT_STAGES: &str = "[event_type].map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x)[0].size() > 0";

#[test]
fn a_filter_whose_cost_can_grow_past_the_budget_is_refused_saying_so() {
    assert_eq!(EIGHT_STAGES.len(), 330);
    let refused = Filter::parse(EIGHT_STAGES).expect_err("too costly");
    assert!(
        refused.message.contains("could take up to")
            && refused.message.contains("more than the 2,000,000 steps"),
        "{refused:?}"
    );
    // Two stages over a short string are cheap; over the body's strings they are not.
    let two = "[event_type].map(x, x + x).map(x, x + x)[0].size() > 0";
    Filter::parse(two).expect("two stages over the event type");
    let body_stages = "body.tags.map(x, x + x + x + x).map(x, x + x + x + x).size() > 0";
    Filter::parse(body_stages).expect_err("sixteen copies of the body");
    // A long literal repeated, and a literal list of the body, are sized as they are.
    let stage = ".map(x, x + x + x + x + x + x + x + x)";
    let literal = format!("['{}']{}.size() > 0", "y".repeat(1500), stage.repeat(5));
    Filter::parse(&literal).expect_err("a long literal repeated");
    Filter::parse("[body, body, body, body, body, body, body, body].map(x, x.size()).size() > 0")
        .expect("sharing the body copies nothing");
}

#[test]
fn a_runtime_budget_stops_the_evaluation_as_an_error() {
    let filter = Filter::parse("body.tags.map(t, t + t + t).exists(t, t.size() > 1000)")
        .expect("within the budget for a body of 64 KiB");
    let input = FilterInput::new("report_run_completed", RUN);
    assert_eq!(filter.matches(&input), Ok(false));
    let tight = Cost {
        steps: 20,
        bytes: u64::MAX,
    };
    let stopped = filter.evaluate_within(&input, tight);
    let error = stopped.result.expect_err("stopped");
    assert!(error.budget_exceeded, "{error:?}");
    assert!(error.to_string().contains("budget of 20 steps"), "{error}");
    assert_eq!(
        stopped.used.steps, 21,
        "stopped at the step past the budget"
    );
    let small = Cost {
        steps: u64::MAX,
        bytes: 100,
    };
    let error = filter
        .evaluate_within(&input, small)
        .result
        .expect_err("stopped");
    assert!(
        error.budget_exceeded && error.to_string().contains("100 bytes"),
        "{error}"
    );

    // A body far over the 64 KiB the static check assumes (a raised
    // `delivery.max_event_bytes`): the real budget stops it, as an error of this filter.
    let tags: Vec<String> = (0..200_000).map(|i| format!("\"tag{i}\"")).collect();
    let huge = format!(r#"{{"tags":[{}]}}"#, tags.join(","));
    let error = filter
        .matches(&FilterInput::new("report_run_completed", huge.as_bytes()))
        .expect_err("over the budget");
    assert!(error.budget_exceeded, "{error}");
    // An error before the budget ran out is no budget stop.
    let missing = Filter::parse("body.nope == 1").expect("valid");
    let error = missing.matches(&input).expect_err("no such key");
    assert!(!error.budget_exceeded, "{error}");
}

#[test]
fn a_pattern_is_a_literal_compiled_at_parse() {
    assert_eq!(
        eval(r#"matches(body.report_run_url, "runs/1$")"#, RUN),
        Ok(true)
    );
    let computed = Filter::parse("body.report_run_url.matches(body.event)").expect_err("computed");
    assert!(
        computed.message.contains("must be a string literal"),
        "{computed:?}"
    );
    assert_eq!(
        (computed.line, computed.column),
        (Some(1), Some(33)),
        "{computed:?}"
    );
    let bad = Filter::parse(r#"body.report_run_url.matches("(unclosed")"#).expect_err("bad");
    assert!(
        bad.message.contains("not a valid regular expression"),
        "{bad:?}"
    );
    let huge = Filter::parse(r#"body.report_run_url.matches("(a{1000}){1000}")"#).expect_err("big");
    assert!(
        huge.message.contains("not a valid regular expression"),
        "{huge:?}"
    );
}

#[test]
fn what_filters_do_not_know_is_refused_with_a_place() {
    for (source, says) in [
        ("body.a.foo()", "no method `foo`"),
        ("timestamp(body.t) > 0", "no function `timestamp`"),
        ("body.?a == 1", "optional values"),
        ("[?body.a].size() == 1", "optional values"),
        ("google.protobuf.Value{} == 1", "message"),
    ] {
        let error = Filter::parse(source).expect_err(source);
        assert!(error.message.contains(says), "{source}: {error:?}");
    }
}

/// Bodies and expressions on which hookwire's evaluator must answer as the `cel` crate's
/// interpreter does: the same value, or an error for both.
#[test]
fn answers_as_the_cel_interpreter_does() {
    let bodies: [&[u8]; 3] = [
        RUN,
        br#"{"n":3,"neg":-2,"f":1.5,"s":"abc","e":"","l":[1,2,3],"m":{"a":1,"b":[true,null]},"t":true,"z":null,"u":"h\u00e9llo"}"#,
        br#"{"items":[{"name":"a","qty":2},{"name":"b"},{"name":"c","qty":0}],"tags":[]}"#,
    ];
    let sources = [
        "body.n == 3",
        "body.n == 3u",
        "body.n == 3.0",
        "body.n > 2",
        "body.n < 2.5",
        "body.neg < 0",
        "body.n + 1 == 4",
        "body.n + 1u == 4u",
        "body.neg + 1 == -1",
        "body.f * 2.0 == 3.0",
        "body.n / 0u == 1u",
        "body.n % 2u == 1u",
        "-body.neg == 2",
        "-body.f < 0.0",
        "body.s + 'd' == 'abcd'",
        "body.s < 'abd'",
        "body.s.size() == 3",
        "size(body.u) == 5",
        "body.u.contains('él')",
        "body.s.startsWith('ab')",
        "body.s.endsWith('bc')",
        "body.s.matches('^a.c$')",
        "'b' in body.m",
        "'z' in body.m",
        "2 in body.l",
        "2u in body.l",
        "4 in body.l",
        "body.l[0] == 1",
        "body.l[5] == 1",
        "body.l[-1] == 1",
        "body.m['a'] == 1",
        "body.m.b[1] == null",
        "body.z == null",
        "has(body.m.a)",
        "has(body.m.c)",
        "has(body.s.x)",
        "body.t && body.n > 1",
        "body.missing || true",
        "true || body.missing",
        "body.missing && false",
        "false && body.missing",
        "body.missing && true",
        "body.t ? body.n == 3 : body.missing",
        "body.l.all(x, x > 0)",
        "body.l.exists(x, x == 2)",
        "body.l.exists_one(x, x > 1)",
        "body.l.map(x, x * 2u) == [2u, 4u, 6u]",
        "body.l.filter(x, x > 1u).size() == 2",
        "body.l.map(x, x > 1u, x + 1u) == [3u, 4u]",
        "body.m.all(k, k.size() == 1)",
        "body.m.exists(k, k == 'b')",
        "[1, 'a', 2.0] == [1, 'a', 2]",
        "{'a': 1} == {'a': 1u}",
        "{'a': 1, 'b': 2}.size() == 2",
        "type(body.s) == string",
        "type(body.n) == uint",
        "type(body.l) == list",
        "int(body.n) + 1 == 4",
        "uint(body.neg) == 1u",
        "double(body.n) == 3.0",
        "string(body.n) == '3'",
        "int('12') == 12",
        "int('x') == 1",
        "bool('true')",
        "bytes(body.s) == b'abc'",
        "string(b'abc') == 'abc'",
        "dyn(body.n) == 3",
        "size(body.l) == 3",
        "body.m.size() == 2",
        "body.s == 1",
        "body.s > 1",
        "body.l + [4] == [1, 2, 3, 4]",
        "body.n + body.neg == 1",
        "!body.t",
        "!body.n",
        "body.e == ''",
        "body.items.exists(i, has(i.qty) && i.qty > 1)",
        "body.items.all(i, i.qty >= 0)",
        "body.items.exists(i, i.qty == 0)",
        "body.items.map(i, i.name).exists(n, n == 'b')",
        "body.tags.all(t, t == 'x')",
        "body.tags.exists(t, t == 'x')",
        "body.report_run_url.matches('/runs/[0-9]+$')",
        "event_type == 'report_run_completed'",
        "event_type.startsWith('report')",
        "body.tags.size() == 2",
        "9223372036854775807 + 1 > 0",
        "body.n - 4u == 0u",
        "body.n",
        "body.l",
    ];
    let context_for = |body: &[u8]| {
        let json: serde_json::Value = serde_json::from_slice(body).expect("json");
        let mut context = cel::Context::with_env(ENV.clone());
        context.add_variable_from_value("body", cel::to_value(json).expect("value"));
        context.add_variable_from_value("event_type", "report_run_completed");
        context
    };
    let mut compared = 0;
    for body in bodies {
        let context = context_for(body);
        for source in sources {
            let ours = eval(source, body);
            let program = ENV.parser().parse(source).expect("parses");
            let theirs = match cel::Value::resolve(&program, &context) {
                Ok(cel::Value::Bool(b)) => Ok(b),
                Ok(_) => Err("not a boolean".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{source} on {}: ours {ours:?}, cel {theirs:?}",
                String::from_utf8_lossy(body)
            );
            if let (Ok(a), Ok(b)) = (&ours, &theirs) {
                assert_eq!(a, b, "{source} on {}", String::from_utf8_lossy(body));
                compared += 1;
            }
        }
    }
    assert!(compared > 90, "{compared} answers compared");
}

#[test]
fn a_stored_filter_refused_by_the_current_rules_still_loads_and_fails_alone() {
    let input = FilterInput::new("report_run_completed", RUN);
    // Over the static bound: it runs, the runtime budget keeping it in check.
    let costly = Filter::load(EIGHT_STAGES);
    assert!(!costly.cost().within(BUDGET), "{:?}", costly.cost());
    let error = costly.matches(&input).expect_err("stopped");
    assert!(error.budget_exceeded, "{error}");
    let costly = Filter::load("body.tags.map(x, x + x + x + x).map(x, x + x + x + x).size() == 2");
    assert_eq!(
        costly.matches(&input),
        Ok(true),
        "a small body is within the budget"
    );
    // Refused for another reason: every evaluation fails, saying why.
    for source in ["body.report_run_url.matches(body.event)", "body.a ="] {
        let refused = Filter::load(source);
        assert_eq!(refused.source(), source);
        let error = refused.matches(&input).expect_err("refused");
        assert!(
            error.to_string().contains("refused by the current rules") && !error.budget_exceeded,
            "{error}"
        );
    }
    // A valid filter loads as parsed.
    assert_eq!(
        Filter::load("body.tags.size() == 2").matches(&input),
        Ok(true)
    );
}
