//! Who reaches what: every `/v1` route × {operator, a token for this organization, a token
//! for another organization, an expired token, a tampered token}, plus configured tokens
//! limited to organizations, read-only tokens and minting.

use std::time::Duration;

use hookwire_api::access::{AccessTokenKeys, Claims};
use hookwire_core::{Config, now_ms};
use hookwire_testkit::harness::API_TOKEN;
use hookwire_testkit::{Harness, Receiver, new_subscription};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Api, error_code};

/// A configured token limited to `acme`.
const ACME_TOKEN: &str = "acme-static-token-0123456789";
/// A configured read-only token limited to `acme` and `initech`.
const ACME_READER: &str = "acme-reader-token-0123456789";

fn with_org_tokens(c: &mut Config) {
    c.api.org_tokens = vec![
        hookwire_core::config::OrgToken {
            token: ACME_TOKEN.into(),
            orgs: vec!["acme".into()],
            read_only: false,
        },
        hookwire_core::config::OrgToken {
            token: ACME_READER.into(),
            orgs: vec!["acme".into(), "initech".into()],
            read_only: true,
        },
    ];
}

/// The access-token keys of a config, as `serve` derives them.
fn keys(config: &Config) -> AccessTokenKeys {
    AccessTokenKeys::derive(
        &config.secrets_key().expect("key"),
        &config.previous_secrets_keys().expect("keys"),
        &config.amqp.namespace,
        config.api.access_token_max_ttl,
    )
}

async fn mint(api: &Api, org: &str, body: Value) -> Value {
    let (status, minted) = api
        .call(
            Method::POST,
            &format!("/v1/orgs/{org}/access-tokens"),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    minted
}

async fn as_token(
    api: &Api,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = api.request_as(token, method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    api.send(request).await
}

/// Asserts that a node of its own namespace, configured by `adjust`, refuses `token`.
async fn refused_by_a_node(token: &str, adjust: impl FnOnce(&mut Config)) {
    let node = Harness::start(adjust).await;
    let (status, answer) = as_token(
        &Api::new(&node),
        token,
        Method::GET,
        "/v1/orgs/acme/webhooks",
        None,
    )
    .await;
    assert_eq!((status, error_code(&answer)), (401, "unauthorized"));
    node.finish().await;
}

/// One `/v1` route, made concrete against a fresh webhook of `acme`.
struct Route {
    method: Method,
    template: &'static str,
    body: Option<Value>,
    /// What an operator's token gets.
    operator_status: u16,
    /// Operators only: `/v1/admin/*` and minting.
    operators_only: bool,
    /// Not under `/v1/orgs/{org}`.
    orgless: bool,
}

fn routes(receiver_url: &str) -> Vec<Route> {
    let route = |method: Method, template, body: Option<Value>, operator_status| Route {
        method,
        template,
        body,
        operator_status,
        operators_only: false,
        orgless: false,
    };
    let no_ids = json!({"ids": ["0190c5b8-0000-7000-8000-000000000000"]});
    let mut all = vec![
        route(
            Method::POST,
            "/v1/orgs/acme/webhooks",
            Some(json!({"url": receiver_url, "events": ["report_created"]})),
            201,
        ),
        route(Method::GET, "/v1/orgs/acme/webhooks", None, 200),
        route(Method::GET, "/v1/orgs/acme/webhooks/{id}", None, 200),
        route(
            Method::PATCH,
            "/v1/orgs/acme/webhooks/{id}",
            Some(json!({"description": "changed"})),
            200,
        ),
        route(Method::DELETE, "/v1/orgs/acme/webhooks/{id}", None, 204),
        route(Method::POST, "/v1/orgs/acme/webhooks/{id}/test", None, 200),
        route(
            Method::POST,
            "/v1/orgs/acme/webhooks/{id}/rotate-secret",
            None,
            200,
        ),
        route(
            Method::GET,
            "/v1/orgs/acme/webhooks/{id}/attempts",
            None,
            200,
        ),
        // The route's own answer to a webhook without Ed25519 signing: it reached the
        // handler, which is what the matrix checks.
        route(
            Method::POST,
            "/v1/orgs/acme/webhooks/{id}/rotate-ed25519-key",
            None,
            422,
        ),
        route(
            Method::POST,
            "/v1/orgs/acme/webhooks/{id}/transform/preview",
            Some(
                json!({"event_type": "report_created", "transform": "{'text': body.report_run_url}"}),
            ),
            200,
        ),
        route(
            Method::POST,
            "/v1/orgs/acme/webhooks/transform/preview",
            Some(
                json!({"event_type": "report_created", "transform": "{'text': body.report_run_url}"}),
            ),
            200,
        ),
        route(
            Method::POST,
            "/v1/orgs/acme/webhooks/{id}/resend",
            Some(json!({"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"})),
            200,
        ),
        route(Method::GET, "/v1/orgs/acme/dead-letters", None, 200),
        route(
            Method::POST,
            "/v1/orgs/acme/dead-letters/replay",
            Some(no_ids.clone()),
            200,
        ),
        route(
            Method::POST,
            "/v1/orgs/acme/dead-letters/purge",
            Some(no_ids.clone()),
            200,
        ),
    ];
    let mut mint = route(
        Method::POST,
        "/v1/orgs/acme/access-tokens",
        Some(json!({"ttl": "5m"})),
        201,
    );
    mint.operators_only = true;
    all.push(mint);
    for (method, template, body) in [
        (Method::GET, "/v1/admin/dead-letters", None),
        (
            Method::POST,
            "/v1/admin/dead-letters/replay",
            Some(no_ids.clone()),
        ),
        (Method::POST, "/v1/admin/dead-letters/purge", Some(no_ids)),
        (Method::GET, "/v1/admin/orgs", None),
        (Method::GET, "/v1/admin/store/export", None),
    ] {
        let mut r = route(method, template, body, 200);
        r.operators_only = true;
        r.orgless = true;
        all.push(r);
    }
    for template in ["/v1/event-types", "/v1/whoami"] {
        let mut r = route(Method::GET, template, None, 200);
        r.orgless = true;
        all.push(r);
    }
    all
}

/// What a credential gets on a route.
type Rule = fn(&Route) -> Expect;

/// What a credential should get on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The route's own answer.
    Served,
    /// 404, exactly as a route that does not exist.
    AsIfAbsent,
    /// 403 with this code.
    Forbidden(&'static str),
    /// 401 with this code.
    Unauthorized(&'static str),
}

#[tokio::test]
async fn every_route_against_every_credential() {
    let h = Harness::start(with_org_tokens).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    // Something to find in the other organization, to show it stays unseen.
    h.subscribe(&new_subscription(
        "globex",
        &receiver.url(),
        &["report_created"],
    ));

    let this_org = mint(&api, "acme", json!({"ttl": "10m"})).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let other_org = mint(&api, "globex", json!({})).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let keys = keys(&h.config);
    let mut expired = Claims::new("acme", false, Duration::from_secs(60));
    expired.exp = now_ms() - 1;
    let expired = keys.mint(&expired);
    let tampered = {
        // The claims of a token for another organization under this token's signature.
        let (_, tag) = this_org.rsplit_once('.').expect("signed");
        let (other_claims, _) = other_org.rsplit_once('.').expect("signed");
        format!("{other_claims}.{tag}")
    };
    let (_, absent) = api.call(Method::GET, "/v1/no-such-route", None).await;
    assert_eq!(error_code(&absent), "not_found");

    let credentials: [(&str, &str, Rule); 7] = [
        ("operator", API_TOKEN, |_| Expect::Served),
        ("this org's access token", &this_org, |r| {
            if r.operators_only {
                Expect::Forbidden("forbidden")
            } else {
                Expect::Served
            }
        }),
        ("this org's configured token", ACME_TOKEN, |r| {
            if r.operators_only {
                Expect::Forbidden("forbidden")
            } else {
                Expect::Served
            }
        }),
        ("another org's access token", &other_org, |r| {
            if r.operators_only && r.orgless {
                Expect::Forbidden("forbidden")
            } else if r.orgless {
                Expect::Served
            } else {
                Expect::AsIfAbsent
            }
        }),
        ("expired", &expired, |_| {
            Expect::Unauthorized("token_expired")
        }),
        ("tampered", &tampered, |_| {
            Expect::Unauthorized("unauthorized")
        }),
        ("no token", "", |_| Expect::Unauthorized("unauthorized")),
    ];

    let routes = routes(&receiver.url());
    // The matrix covers every `/v1` route the router serves: its OpenAPI document is built
    // from the same registrations, so a new route fails here until it has an entry.
    let (status, spec) = api.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if !path.starts_with("/v1/") {
            continue;
        }
        for method in item.as_object().expect("path item").keys() {
            let covered = routes.iter().any(|r| {
                r.method.as_str().eq_ignore_ascii_case(method)
                    && r.template.replace("/orgs/acme/", "/orgs/{org}/") == *path
            });
            assert!(
                covered,
                "{} {path} has no entry in the access matrix: add one",
                method.to_uppercase()
            );
        }
    }

    for route in routes {
        for (who, token, expect) in &credentials {
            let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
            h.subscribe(&sub);
            let path = route.template.replace("{id}", &sub.id.to_string());
            let what = format!("{} {path} as {who}", route.method);
            let before = h.store.get("acme", &sub.id).expect("store");
            let (status, body) =
                as_token(&api, token, route.method.clone(), &path, route.body.clone()).await;
            match expect(&route) {
                Expect::Served => assert_eq!(status, route.operator_status, "{what}: {body}"),
                Expect::AsIfAbsent => {
                    assert_eq!((status, &body), (404, &absent), "{what}");
                }
                Expect::Forbidden(code) => {
                    assert_eq!(status, 403, "{what}: {body}");
                    assert_eq!(error_code(&body), code, "{what}");
                }
                Expect::Unauthorized(code) => {
                    assert_eq!(status, 401, "{what}: {body}");
                    assert_eq!(error_code(&body), code, "{what}");
                }
            }
            if !matches!(expect(&route), Expect::Served) {
                assert_eq!(
                    h.store.get("acme", &sub.id).expect("store"),
                    before,
                    "{what}: a refused request changed nothing"
                );
            }
        }
    }

    // Nothing another organization's token did reached `acme`, and `globex` kept its one.
    assert_eq!(h.store.count("globex").expect("count"), 1);
    h.finish().await;
}

#[tokio::test]
async fn read_only_tokens_read_and_change_nothing() {
    let h = Harness::start(with_org_tokens).await;
    let api = Api::new(&h);
    let receiver = Receiver::ok().await;
    let sub = new_subscription("acme", &receiver.url(), &["report_created"]);
    h.subscribe(&sub);
    let minted = mint(&api, "acme", json!({"read_only": true})).await;
    assert_eq!(minted["read_only"], true);
    let reader = minted["token"].as_str().expect("token").to_owned();
    for token in [reader.as_str(), ACME_READER] {
        let (status, list) =
            as_token(&api, token, Method::GET, "/v1/orgs/acme/webhooks", None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["webhooks"][0]["id"], sub.id.to_string());
        for (method, path, body) in [
            (
                Method::PATCH,
                format!("/v1/orgs/acme/webhooks/{}", sub.id),
                Some(json!({"enabled": false})),
            ),
            (
                Method::DELETE,
                format!("/v1/orgs/acme/webhooks/{}", sub.id),
                None,
            ),
            (
                Method::POST,
                format!("/v1/orgs/acme/webhooks/{}/test", sub.id),
                None,
            ),
            (
                Method::POST,
                "/v1/orgs/acme/webhooks".to_owned(),
                Some(json!({"url": receiver.url(), "events": ["report_created"]})),
            ),
            (
                Method::POST,
                format!("/v1/orgs/acme/webhooks/{}/resend", sub.id),
                Some(json!({"event_id": "evt-1"})),
            ),
        ] {
            let (status, body) = as_token(&api, token, method.clone(), &path, body).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert_eq!(error_code(&body), "read_only_token");
        }
    }
    assert!(receiver.requests().is_empty(), "no test event was sent");
    let now = h.store.get("acme", &sub.id).expect("store").expect("kept");
    assert!(now.enabled);
    // The configured reader sees its second organization too, and no third.
    let (status, _) = as_token(
        &api,
        ACME_READER,
        Method::GET,
        "/v1/orgs/initech/webhooks",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = as_token(
        &api,
        ACME_READER,
        Method::GET,
        "/v1/orgs/globex/webhooks",
        None,
    )
    .await;
    assert_eq!(status, 404);
    h.finish().await;
}

#[tokio::test]
async fn whoami_says_what_a_token_reaches() {
    let h = Harness::start(with_org_tokens).await;
    let api = Api::new(&h);
    let (status, me) = api.call(Method::GET, "/v1/whoami", None).await;
    assert_eq!(
        (status, me),
        (
            200,
            json!({"kind": "operator", "orgs": null, "read_only": false, "expires_at": null})
        )
    );
    let (_, me) = as_token(&api, ACME_READER, Method::GET, "/v1/whoami", None).await;
    assert_eq!(
        me,
        json!({"kind": "organization", "orgs": ["acme", "initech"], "read_only": true, "expires_at": null})
    );
    let minted = mint(&api, "acme", json!({"ttl": "2m"})).await;
    let (_, me) = as_token(
        &api,
        minted["token"].as_str().expect("token"),
        Method::GET,
        "/v1/whoami",
        None,
    )
    .await;
    assert_eq!(me["kind"], "organization");
    assert_eq!(me["orgs"], json!(["acme"]));
    assert_eq!(me["expires_at"], minted["expires_at"]);
    h.finish().await;
}

#[tokio::test]
async fn minting_checks_its_input_and_tokens_verify_on_another_node() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    let minted = mint(&api, "acme", json!({"ttl": "1m"})).await;
    let token = minted["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("hwa_"), "{token}");
    assert_eq!(minted["org"], "acme");
    assert_eq!(minted["read_only"], false);
    assert_eq!(minted["console_path"], format!("/console/#token={token}"));
    let expires =
        humantime::parse_rfc3339(minted["expires_at"].as_str().expect("time")).expect("rfc3339");
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(50),
        "{left:?}"
    );

    for (body, code) in [
        (json!({"ttl": "30s"}), "invalid_ttl"),
        (json!({"ttl": "2days"}), "invalid_ttl"),
        (json!({"ttl": "soon"}), "invalid_ttl"),
        (json!({"org": "acme"}), "invalid_body"),
    ] {
        let (status, answer) = api
            .call(
                Method::POST,
                "/v1/orgs/acme/access-tokens",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(error_code(&answer), code, "{body}");
    }
    let (status, answer) = api
        .call(
            Method::POST,
            "/v1/orgs/a%20b/access-tokens",
            Some(json!({})),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (400, "invalid_org"));

    // A second node with the same configuration (and its own, empty store) accepts the
    // token: verifying it needs no store.
    let mut other = Harness::start(|c| {
        c.secrets.key = h.config.secrets.key.clone();
        c.amqp.namespace = h.config.amqp.namespace.clone();
    })
    .await;
    let other_api = Api::new(&other);
    let (status, list) = as_token(
        &other_api,
        &token,
        Method::GET,
        "/v1/orgs/acme/webhooks",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    // Nor does a node of another namespace that shares the key.
    let key = h.config.secrets.key.clone();
    refused_by_a_node(&token, |c| c.secrets.key = key).await;
    // A node with another secrets.key does not.
    refused_by_a_node(&token, |c| {
        c.secrets.key = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMTI=".into();
    })
    .await;
    // `h` deletes the namespace they share.
    other.stop_daemon().await.expect("the second node stops");
    drop(other);
    h.finish().await;
}

#[tokio::test]
async fn operators_list_the_organizations_that_have_webhooks() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    for org in ["globex", "acme", "acme-eu", "initech"] {
        h.subscribe(&new_subscription(
            org,
            "http://127.0.0.1:9/",
            &["report_created"],
        ));
    }
    h.subscribe(&new_subscription(
        "acme",
        "http://127.0.0.1:9/",
        &["report_created"],
    ));
    let (status, page) = api.call(Method::GET, "/v1/admin/orgs?limit=2", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["orgs"], json!(["acme", "acme-eu"]));
    let cursor = page["next_cursor"].as_str().expect("more");
    let (_, rest) = api
        .call(
            Method::GET,
            &format!("/v1/admin/orgs?cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["orgs"], json!(["globex", "initech"]));
    assert!(rest["next_cursor"].is_null());
    h.finish().await;
}
