//! The console's files: served without a token, from the binary, under a strict policy.

use hookwire_testkit::Harness;
use reqwest::redirect::Policy;

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let h = Harness::start(|c| {
        c.api.console_frame_ancestors = vec!["https://app.example.com".into()];
    })
    .await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .expect("client");
    let get = |path: &str| http.get(format!("{}{path}", h.api_url())).send();

    let moved = get("/console").await.expect("answer");
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "console/");

    for (path, content_type, needle) in [
        (
            "/console/",
            "text/html; charset=utf-8",
            "<script type=\"module\" src=\"app.js\">",
        ),
        (
            "/console/app.js",
            "text/javascript; charset=utf-8",
            "whoami",
        ),
        ("/console/console.css", "text/css; charset=utf-8", "@media"),
    ] {
        let response = get(path).await.expect("answer");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors https://app.example.com",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        let body = response.text().await.expect("body");
        assert!(body.contains(needle), "{path}");
    }

    let missing = get("/console/secrets.toml").await.expect("answer");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "not_found");
    let traversal = get("/console/..%2F..%2Fconfig%2Fdefault.toml")
        .await
        .expect("answer");
    assert_eq!(traversal.status(), 404);
    h.finish().await;
}
