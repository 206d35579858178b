//! The operations routes: a webhook's attempt log, and the dead-letter archive.

use anyhow::Result;
use hookwire_api::operations::{AttemptPage, DeadLetterList, PurgeResult, ReplayResult};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use super::{ApiClient, Reply, query};

/// Filters and position of one page of a webhook's attempt log; `None` is no filter.
#[derive(Debug, Default, Clone)]
pub struct AttemptFilter {
    /// Only `delivered`, `retry`, `permanent` or `gone`.
    pub outcome: Option<String>,
    /// Not before (RFC 3339).
    pub since: Option<String>,
    /// Before (RFC 3339).
    pub until: Option<String>,
    /// A previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size; the API's default when `None`.
    pub limit: Option<usize>,
}

impl AttemptFilter {
    fn query(&self) -> Option<String> {
        query(&[
            ("outcome", self.outcome.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("cursor", self.cursor.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
        ])
    }
}

/// Filters of a dead-letter list; `None` is no filter.
#[derive(Debug, Default, Clone)]
pub struct DeadLetterFilter {
    /// Only this webhook's.
    pub webhook_id: Option<Uuid>,
    /// Dead since (RFC 3339).
    pub since: Option<String>,
    /// Dead before (RFC 3339).
    pub until: Option<String>,
    /// A previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size; the API's default when `None`.
    pub limit: Option<usize>,
    /// Ask for each letter's body too (`include=body`).
    pub bodies: bool,
}

impl DeadLetterFilter {
    fn query(&self) -> Option<String> {
        query(&[
            ("webhook_id", self.webhook_id.map(|id| id.to_string())),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("cursor", self.cursor.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
            ("include", self.bodies.then(|| "body".to_owned())),
        ])
    }
}

/// Which dead letters to replay. The API replays those that match every given field.
#[derive(Debug, Default, Clone)]
pub struct ReplaySelection {
    /// These dead letters.
    pub ids: Option<Vec<Uuid>>,
    /// Every dead letter of this webhook.
    pub webhook_id: Option<Uuid>,
    /// Dead since (RFC 3339).
    pub since: Option<String>,
    /// Dead before (RFC 3339).
    pub until: Option<String>,
}

impl ReplaySelection {
    fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(ids) = &self.ids {
            body.insert("ids".into(), ids_json(ids));
        }
        if let Some(webhook_id) = self.webhook_id {
            body.insert("webhook_id".into(), webhook_id.to_string().into());
        }
        if let Some(since) = &self.since {
            body.insert("since".into(), since.clone().into());
        }
        if let Some(until) = &self.until {
            body.insert("until".into(), until.clone().into());
        }
        Value::Object(body)
    }
}

/// Which dead letters to purge: by ids, or all dead before a time.
#[derive(Debug, Default, Clone)]
pub struct PurgeSelection {
    /// These dead letters.
    pub ids: Option<Vec<Uuid>>,
    /// Every dead letter archived before this time (RFC 3339).
    pub before: Option<String>,
}

impl PurgeSelection {
    fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(ids) = &self.ids {
            body.insert("ids".into(), ids_json(ids));
        }
        if let Some(before) = &self.before {
            body.insert("before".into(), before.clone().into());
        }
        Value::Object(body)
    }
}

fn ids_json(ids: &[Uuid]) -> Value {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .into()
}

impl ApiClient {
    /// `GET /v1/orgs/{org}/webhooks/{id}/attempts`: one page, oldest first.
    pub async fn attempts(
        &self,
        org: &str,
        id: &str,
        filter: &AttemptFilter,
    ) -> Result<Reply<AttemptPage>> {
        let query = filter.query();
        self.call(
            Method::GET,
            &["v1", "orgs", org, "webhooks", id, "attempts"],
            query.as_deref(),
            None,
        )
        .await
    }

    /// `GET /v1/orgs/{org}/dead-letters`, or with no `org`, `GET /v1/admin/dead-letters`
    /// (the dead letters that belong to no organization).
    pub async fn dead_letters(
        &self,
        org: Option<&str>,
        filter: &DeadLetterFilter,
    ) -> Result<Reply<DeadLetterList>> {
        let query = filter.query();
        self.call(
            Method::GET,
            &dead_letters_path(org, None),
            query.as_deref(),
            None,
        )
        .await
    }

    /// `POST /v1/orgs/{org}/dead-letters/replay`, or with no `org`,
    /// `POST /v1/admin/dead-letters/replay`.
    pub async fn replay(
        &self,
        org: Option<&str>,
        selection: &ReplaySelection,
    ) -> Result<Reply<ReplayResult>> {
        self.call(
            Method::POST,
            &dead_letters_path(org, Some("replay")),
            None,
            Some(selection.to_json()),
        )
        .await
    }

    /// `POST /v1/orgs/{org}/dead-letters/purge`, or with no `org`,
    /// `POST /v1/admin/dead-letters/purge`.
    pub async fn purge(
        &self,
        org: Option<&str>,
        selection: &PurgeSelection,
    ) -> Result<Reply<PurgeResult>> {
        self.call(
            Method::POST,
            &dead_letters_path(org, Some("purge")),
            None,
            Some(selection.to_json()),
        )
        .await
    }
}

/// `v1/orgs/{org}/dead-letters[/action]`, or `v1/admin/dead-letters[/action]` without an
/// organization.
fn dead_letters_path<'a>(org: Option<&'a str>, action: Option<&'a str>) -> Vec<&'a str> {
    let mut path = match org {
        Some(org) => vec!["v1", "orgs", org, "dead-letters"],
        None => vec!["v1", "admin", "dead-letters"],
    };
    path.extend(action);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_queries_and_bodies_hold_only_what_was_given() {
        assert_eq!(AttemptFilter::default().query(), None);
        let filter = AttemptFilter {
            outcome: Some("retry".into()),
            since: Some("2024-05-01T10:00:00+02:00".into()),
            cursor: Some("a b&c".into()),
            limit: Some(2),
            ..AttemptFilter::default()
        };
        assert_eq!(
            filter.query().as_deref(),
            Some("outcome=retry&since=2024-05-01T10%3A00%3A00%2B02%3A00&cursor=a+b%26c&limit=2")
        );
        let id = Uuid::nil();
        let filter = DeadLetterFilter {
            webhook_id: Some(id),
            ..DeadLetterFilter::default()
        };
        assert_eq!(
            filter.query().as_deref(),
            Some("webhook_id=00000000-0000-0000-0000-000000000000")
        );
        let with_bodies = DeadLetterFilter {
            bodies: true,
            ..DeadLetterFilter::default()
        };
        assert_eq!(with_bodies.query().as_deref(), Some("include=body"));
        let replay = ReplaySelection {
            webhook_id: Some(id),
            until: Some("2999-01-01T00:00:00Z".into()),
            ..ReplaySelection::default()
        };
        assert_eq!(
            replay.to_json(),
            serde_json::json!({"webhook_id": id.to_string(), "until": "2999-01-01T00:00:00Z"})
        );
        let purge = PurgeSelection {
            ids: Some(vec![id]),
            before: None,
        };
        assert_eq!(
            purge.to_json(),
            serde_json::json!({"ids": [id.to_string()]})
        );
        assert_eq!(
            dead_letters_path(None, Some("purge")),
            ["v1", "admin", "dead-letters", "purge"]
        );
        assert_eq!(
            dead_letters_path(Some("acme"), None),
            ["v1", "orgs", "acme", "dead-letters"]
        );
    }
}
