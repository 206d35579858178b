//! Replaying the dead letters that belong to no organization: operators' tokens only, and
//! only those letters, whatever ids are sent.

use std::time::Duration;

use hookwire_testkit::{Harness, eventually};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Api, error_code};

const WAIT: Duration = Duration::from_secs(30);
const REPLAY: &str = "/v1/admin/dead-letters/replay";

/// The ids of a dead-letter listing.
fn ids(list: &Value) -> Vec<String> {
    list["dead_letters"]
        .as_array()
        .expect("a listing")
        .iter()
        .map(|d| d["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn orgless_dead_letters_replay_for_operators_only_and_never_an_orgs() {
    let h = Harness::start(|_| {}).await;
    let api = Api::new(&h);
    h.publish_orgless().await;
    h.publish_raw_report("not-json", b"{not json").await;
    h.wait_dead_letters(2, WAIT).await;
    let (_, orgless) = api.get("/v1/admin/dead-letters").await;
    let orgless_ids = ids(&orgless);
    assert_eq!(orgless_ids.len(), 1, "{orgless}");
    assert_eq!(orgless["dead_letters"][0]["reason"], "missing_org");
    let (_, acme) = api.get("/v1/orgs/acme/dead-letters").await;
    let acme_ids = ids(&acme);
    assert_eq!(acme_ids.len(), 1, "{acme}");
    assert_eq!(acme["dead_letters"][0]["reason"], "invalid_json");

    // A token limited to an organization is refused outright.
    let (status, minted) = api
        .call(
            Method::POST,
            "/v1/orgs/acme/access-tokens",
            Some(json!({"ttl": "5m"})),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().expect("token");
    let (status, refused) = api
        .send(
            api.request_as(token, Method::POST, REPLAY)
                .json(&json!({"ids": orgless_ids})),
        )
        .await;
    assert_eq!((status, error_code(&refused)), (403, "forbidden"));

    // An organization's letter is not selected by the orgless route, even by its id.
    let (status, result) = api.post(REPLAY, json!({"ids": acme_ids})).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result, json!({"replayed": [], "failed": []}));
    let (_, still) = api.get("/v1/orgs/acme/dead-letters").await;
    assert_eq!(ids(&still), acme_ids, "the org's letter stays");

    // Bad selections.
    let (status, empty) = api.post(REPLAY, json!({})).await;
    assert_eq!((status, error_code(&empty)), (422, "invalid_selection"));
    let (status, bad_time) = api.post(REPLAY, json!({"since": "yesterday"})).await;
    assert_eq!((status, error_code(&bad_time)), (400, "invalid_time"));

    // Replayed: it leaves the archive and, published again still without an
    // organization, comes back as a new `missing_org` letter.
    let (status, result) = api
        .post(REPLAY, json!({"since": "2000-01-01T00:00:00Z"}))
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["replayed"], json!(orgless_ids), "{result}");
    assert_eq!(result["failed"], json!([]), "{result}");
    let again = eventually(WAIT, "the replayed event dead-lettered again", || async {
        let (_, list) = api.get("/v1/admin/dead-letters").await;
        let now = ids(&list);
        (now.len() == 1 && now != orgless_ids).then_some(list)
    })
    .await;
    assert_eq!(again["dead_letters"][0]["reason"], "missing_org");
    let (_, acme_after) = api.get("/v1/orgs/acme/dead-letters").await;
    assert_eq!(ids(&acme_after), acme_ids);
    h.finish().await;
}
