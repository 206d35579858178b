//! Filters' cost: every filter the parser accepts, however hostile, evaluates within the
//! bound the static check computed for it, and so within the budget, on the costliest
//! bodies of 64 KiB. Measured by the evaluator's own accounting of steps and bytes, never
//! by the clock.

use hookwire_core::filter::{BUDGET, Cost, MAX_BODY_BYTES};
use hookwire_core::{Filter, FilterInput};
use proptest::prelude::*;

/// A body of at most [`MAX_BODY_BYTES`] whose fields `tags` (strings), `nums`, `items`
/// (objects with a `name`), `s` (a string) and `m` (an object) all exist, one of them
/// taking nearly all the room.
fn body(dominant: &str) -> Vec<u8> {
    let room = MAX_BODY_BYTES as usize - 200;
    let fill = |unit: &str, open: &str, close: &str| {
        let count = (room - open.len() - close.len()) / (unit.len() + 1);
        format!("{open}{}{close}", vec![unit; count].join(","))
    };
    let mut fields = vec![
        ("tags", r#"["a","b"]"#.to_owned()),
        ("nums", "[1,2]".to_owned()),
        ("items", r#"[{"name":"a"}]"#.to_owned()),
        ("s", r#""abc""#.to_owned()),
        ("m", r#"{"k":"v"}"#.to_owned()),
    ];
    let big = match dominant {
        "tags" => fill(r#""""#, "[", "]"),
        "nums" => fill("1", "[", "]"),
        "items" => fill(r#"{"name":""}"#, "[", "]"),
        "s" => format!("\"{}\"", "y".repeat(room - 2)),
        "m" => {
            let count = room / 12;
            let entries: Vec<String> = (0..count).map(|i| format!("\"{i:05x}\":0")).collect();
            format!("{{{}}}", entries.join(","))
        }
        _ => unreachable!(),
    };
    for field in &mut fields {
        if field.0 == dominant {
            field.1.clone_from(&big);
        }
    }
    let text: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let body = format!("{{{}}}", text.join(","));
    assert!(body.len() as u64 <= MAX_BODY_BYTES, "{}", body.len());
    body.into_bytes()
}

fn bodies() -> Vec<Vec<u8>> {
    ["tags", "nums", "items", "s", "m"].map(body).to_vec()
}

/// Evaluates an accepted `filter` on every costly body: each evaluation stays within the
/// filter's static bound, which is within the budget.
fn within_bound(filter: &Filter, bodies: &[Vec<u8>]) -> Result<Cost, TestCaseError> {
    let bound = filter.cost();
    prop_assert!(bound.within(BUDGET), "{filter:?} accepted with {bound:?}");
    let mut most = Cost { steps: 0, bytes: 0 };
    for body in bodies {
        let evaluation = filter.evaluate(&FilterInput::new("report_run_completed", body));
        if let Err(error) = &evaluation.result {
            prop_assert!(!error.budget_exceeded, "{filter:?}: {error}");
        }
        let used = evaluation.used;
        prop_assert!(
            used.within(bound),
            "{filter:?} used {used:?}, over its bound {bound:?}"
        );
        most.steps = most.steps.max(used.steps);
        most.bytes = most.bytes.max(used.bytes);
    }
    Ok(most)
}

/// A string literal of up to 1,500 bytes.
fn literal() -> impl Strategy<Value = String> {
    (0usize..1500, prop::sample::select(vec!["y", "é", "ab"]))
        .prop_map(|(n, unit)| format!("'{}'", unit.repeat(n / unit.len())))
}

/// An expression over the element `x` of a comprehension: copies, concatenations, lists,
/// maps, conversions.
fn element_expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => Just("x".to_owned()),
        1 => literal(),
        1 => Just("1".to_owned()),
        1 => Just("x.name".to_owned()),
    ];
    leaf.prop_recursive(4, 32, 8, |inner| {
        prop_oneof![
            4 => prop::collection::vec(inner.clone(), 2..9).prop_map(|v| v.join(" + ")),
            1 => prop::collection::vec(inner.clone(), 1..6).prop_map(|v| format!("[{}]", v.join(", "))),
            1 => inner.clone().prop_map(|v| format!("{{'k': {v}, 'l': {v}}}")),
            1 => inner.clone().prop_map(|v| format!("string({v})")),
            1 => inner.clone().prop_map(|v| format!("size({v})")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} == {b})")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}).contains({b})")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("(size(x) > 2 ? {a} : {b})")),
            1 => (inner.clone(), inner).prop_map(|(a, b)| format!("({a} in [{b}, {b}])")),
        ]
    })
}

/// A boolean over the element `x`.
fn element_predicate() -> impl Strategy<Value = String> {
    prop_oneof![
        element_expression().prop_map(|e| format!("size({e}) > 0")),
        element_expression().prop_map(|e| format!("{e} == x")),
        element_expression().prop_map(|e| format!("string({e}).matches('y+z')")),
        Just("true".to_owned()),
    ]
}

/// Something to iterate: the body's lists and map, copies of them, big literals.
fn range() -> impl Strategy<Value = String> {
    let source = prop_oneof![
        Just("body.tags".to_owned()),
        Just("body.nums".to_owned()),
        Just("body.items".to_owned()),
        Just("body.m".to_owned()),
        Just("[event_type]".to_owned()),
        Just("[body.s]".to_owned()),
        Just("[body]".to_owned()),
        literal().prop_map(|l| format!("[{l}]")),
        (1usize..9).prop_map(|n| format!("[{}]", vec!["body.s"; n].join(", "))),
        (1usize..5).prop_map(|n| vec!["body.tags"; n].join(" + ")),
        Just("body.tags.map(t, t)".to_owned()),
    ];
    source
}

/// A stage after a range: `map`, `filter`, or a `map` with a filter.
fn stage() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => element_expression().prop_map(|e| format!(".map(x, {e})")),
        1 => element_predicate().prop_map(|p| format!(".filter(x, {p})")),
        1 => (element_predicate(), element_expression()).prop_map(|(p, e)| format!(".map(x, {p}, {e})")),
    ]
}

/// How a chain ends in a boolean.
fn finish() -> impl Strategy<Value = String> {
    prop_oneof![
        element_predicate().prop_map(|p| format!(".exists(x, {p})")),
        element_predicate().prop_map(|p| format!(".all(x, {p})")),
        element_predicate().prop_map(|p| format!(".exists_one(x, {p})")),
        Just(".size() > 0".to_owned()),
        Just("[0].size() > 0".to_owned()),
        Just(" == []".to_owned()),
        Just(".map(x, string(x)).exists(x, x.contains('zz'))".to_owned()),
    ]
}

/// A hostile filter: chains of comprehensions over comprehensions, combined.
fn hostile_filter() -> impl Strategy<Value = String> {
    let chain = (range(), prop::collection::vec(stage(), 0..10), finish())
        .prop_map(|(r, stages, end)| format!("{r}{}{end}", stages.concat()))
        .boxed();
    prop_oneof![
        3 => chain.clone(),
        1 => (chain.clone(), chain).prop_map(|(a, b)| format!("{a} && {b}")),
        1 => (1usize..60).prop_map(|n| format!("size({}) > 0", vec!["body.s"; n].join(" + "))),
        1 => (1usize..60).prop_map(|n| format!("{} == body", vec!["body"; n].join(" == body && "))),
        1 => (1usize..40).prop_map(|n| format!("[{}] == [body]", vec!["body"; n].join(", "))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::CASES))]

    /// Whatever the parser accepts stays within its bound on every costly body.
    #[test]
    fn every_accepted_filter_stays_within_its_bound(source in hostile_filter()) {
        let bodies = bodies();
        if let Ok(filter) = Filter::parse(&source) {
            within_bound(&filter, &bodies)?;
        }
    }
}

/// The costliest kinds of filter the check accepts, run on the costliest bodies: within
/// their bounds, and well used (an estimate that allowed nothing would pass the property
/// above vacuously).
#[test]
fn the_costliest_accepted_filters_stay_within_their_bounds() {
    let bodies = bodies();
    let accepted = [
        "body.tags.map(x, x + x + x).exists(x, x == 'z')",
        "body.nums.map(x, [x, x]).map(x, x + x).size() > 0",
        "body.items.map(x, x.name + x.name).exists(x, x.contains('zz'))",
        "body.m.map(k, k + k + k).filter(k, k.matches('y+z')).size() > 0",
        "[body.s, body.s].map(x, x + x + x).exists(x, x.endsWith('z'))",
        "body.tags.filter(x, x == '').map(x, x + 'abc').all(x, size(x) == 3)",
        "size(body.s + body.s + body.s + body.s) > 0 && body.s.matches('y+z')",
        "[body, body, body, body] == [body, body, body, body]",
    ];
    for source in accepted {
        let filter = Filter::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        within_bound(&filter, &bodies).unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    let refused = [
        "body.tags.map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x + x + x + x + x).size() > 0",
        "body.s.matches('(a|b|c|d)+e') && [body.s, body.s, body.s, body.s].map(x, x + x + x + x + x).size() > 0",
    ];
    for source in refused {
        let error = Filter::parse(source).expect_err(source);
        assert!(error.message.contains("more than"), "{source}: {error}");
    }
}
