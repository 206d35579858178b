//! A webhook's own retry policy: checked against the configured tiers and
//! `delivery.max_age` (422 `invalid_retry_policy`), shown as set, changed part by part,
//! and removed by null.

use std::time::Duration;

use hookwire_testkit::{Harness, Receiver};
use serde_json::{Value, json};

use crate::{Api, webhook};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn harness() -> Harness {
    Harness::start(|c| {
        c.delivery.retry_schedule = vec![secs(1), secs(5), secs(15)];
        c.delivery.max_age = secs(3600);
    })
    .await
}

#[tokio::test]
async fn a_retry_policy_outside_the_configured_tiers_is_refused_with_422() {
    let h = harness().await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let refused = [
        (
            json!({"schedule": ["1s", "2s"]}),
            "retry.schedule: 2s is not a configured retry tier (delivery.retry_schedule: 1s, 5s, 15s)",
        ),
        (
            json!({"schedule": ["5s", "1s"]}),
            "retry.schedule: delays must not decrease",
        ),
        (
            json!({"schedule": ["1s", "1s", "5s", "15s"]}),
            "retry.schedule: at most 3 delays, as many as delivery.retry_schedule has",
        ),
        (
            json!({"schedule": ["soon"]}),
            "retry.schedule: `soon` is not a duration (e.g. `30s`, `5m`, `1h`)",
        ),
        (json!({"max_age": "0s"}), "retry.max_age must be positive"),
        (
            json!({"max_age": "2h"}),
            "retry.max_age is at most delivery.max_age (1h)",
        ),
    ];
    for (retry, message) in &refused {
        let got = api
            .create_refused(
                webhook(&receiver.url()).with(json!({ "retry": retry })),
                422,
                "invalid_retry_policy",
            )
            .await;
        assert_eq!(got, *message, "{retry}");
    }
    let created = api.create(webhook(&receiver.url())).await;
    for (retry, _) in refused {
        api.patch_refused(
            &created.path,
            json!({ "retry": retry }),
            422,
            "invalid_retry_policy",
        )
        .await;
    }
    let (status, _) = api
        .patch(&created.path, json!({"retry": {"delay": "1s"}}))
        .await;
    assert_eq!(status, 422, "an unknown field of retry is refused");
}

#[tokio::test]
async fn a_retry_policy_is_shown_changed_part_by_part_and_removed_by_null() {
    let h = harness().await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let plain = api.create(webhook(&receiver.url())).await;
    assert_eq!(plain.answer["retry"], Value::Null, "{}", plain.answer);

    let created = api
        .create(
            webhook(&receiver.url())
                .with(json!({"retry": {"schedule": ["1s", "15s"], "max_age": "45m"}})),
        )
        .await;
    assert_eq!(
        created.answer["retry"],
        json!({"schedule": ["1s", "15s"], "max_age": "45m"}),
        "{}",
        created.answer
    );
    let (status, got) = api.get(&created.path).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["retry"], created.answer["retry"]);

    // Absent parts stay; null removes one part.
    let (status, got) = api
        .patch(&created.path, json!({"retry": {"schedule": []}}))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["retry"], json!({"schedule": [], "max_age": "45m"}));
    let (status, got) = api
        .patch(&created.path, json!({"retry": {"max_age": null}}))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["retry"], json!({"schedule": [], "max_age": null}));
    // A PATCH without `retry` keeps it.
    let (status, got) = api
        .patch(&created.path, json!({"description": "kept"}))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["retry"], json!({"schedule": [], "max_age": null}));

    // Null removes the whole policy: the operator's again.
    let (status, got) = api.patch(&created.path, json!({"retry": null})).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["retry"], Value::Null);
    let (_, got) = api.get(&created.path).await;
    assert_eq!(got["retry"], Value::Null, "{got}");
    let (_, listed) = api.get(crate::WEBHOOKS).await;
    let row = listed["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .find(|w| w["id"] == created.id.as_str())
        .expect("listed");
    assert_eq!(row["retry"], Value::Null);
}

#[tokio::test]
async fn the_openapi_document_describes_the_retry_policy() {
    let h = harness().await;
    let api = Api::new(&h);
    let (status, spec) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    let schemas = &spec["components"]["schemas"];
    for (schema, field) in [
        ("Webhook", "retry"),
        ("CreateWebhook", "retry"),
        ("UpdateWebhook", "retry"),
        ("RetryPolicyView", "schedule"),
        ("RetryPolicyView", "max_age"),
        ("RetryPolicyRequest", "schedule"),
        ("RetryPolicyRequest", "max_age"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field} is documented: {}",
            schemas[schema]
        );
    }
}
