//! The web console: plain ES modules, CSS and one HTML page, embedded in the binary and
//! served at `/console/` with a strict Content-Security-Policy. The pages call the `/v1`
//! API with the token the user signed in with; this module only serves files.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::ApiState;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../console/", $name)),
        }
    };
}

/// Every file of the console. A test checks that every file in `console/` is listed.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("webhooks.js", "text/javascript; charset=utf-8"),
    asset!("options.js", "text/javascript; charset=utf-8"),
    asset!("transform.js", "text/javascript; charset=utf-8"),
    asset!("dead-letters.js", "text/javascript; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// The console's routes: `/console` (redirect), `/console/` and `/console/{file}`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("console/") }),
        )
        .route("/console/", get(index))
        .route("/console/{file}", get(file))
        .with_state(state)
}

async fn index(State(state): State<ApiState>) -> Response {
    serve("index.html", &state)
}

async fn file(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    serve(&name, &state)
}

fn serve(name: &str, state: &ApiState) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return crate::error::no_such_route().into_response();
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(
        &state.config.console_frame_ancestors,
    )) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The files change with the binary, which has no build hash in their names.
        (header::CACHE_CONTROL, "no-cache"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    (StatusCode::OK, headers, asset.body).into_response()
}

/// Scripts and styles from the console's own files only (no inline script or style, no
/// `eval`), requests to this origin only, and framing only by `api.console_frame_ancestors`.
pub fn content_security_policy(frame_ancestors: &[String]) -> String {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors {ancestors}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_console_folder_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/console");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("console folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut served: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        served.sort_unstable();
        assert_eq!(on_disk, served);
    }

    #[test]
    fn no_file_carries_inline_script_or_markup_injection() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("UTF-8");
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!text.contains(banned), "{} uses {banned}", asset.name);
            }
        }
        let index = std::str::from_utf8(ASSETS[0].body).expect("UTF-8");
        assert_eq!(index.matches("<script").count(), 1, "one script tag");
        assert!(index.contains(r#"<script type="module" src="app.js"></script>"#));
        assert!(!index.contains("style="), "no inline style");
    }

    #[test]
    fn the_policy_names_only_configured_frame_ancestors() {
        assert!(content_security_policy(&[]).ends_with("frame-ancestors 'none'"));
        assert!(
            content_security_policy(&["https://app.example.com".into()])
                .ends_with("frame-ancestors https://app.example.com")
        );
    }
}
