//! The store's reads: webhooks (one, an organization's whole or a page, the organizations
//! that have any, the delivery hot path's subscribers of an event), and the attempt log,
//! dead letters and kept events as the API lists them.

use std::collections::BTreeMap;

use super::*;
use crate::payloads::KeptPayloads;

impl Store {
    /// One subscription of `org`.
    /// A record that cannot be used is read as broken ([`Subscription::broken_reason`]).
    pub fn get(&self, org: &str, id: &Uuid) -> Result<Option<Subscription>> {
        Ok(self
            .subscriptions
            .get(org_key(org, id))?
            .map(|raw| self.decode_row(org, *id, &raw, true)))
    }

    /// Every subscription of `org`, oldest first (UUIDv7 order); broken ones as in
    /// [`Store::get`].
    pub fn list(&self, org: &str) -> Result<Vec<Subscription>> {
        let prefix = org_prefix(org);
        self.subscriptions
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, raw) = entry?;
                Ok(self.decode_row(org, id_after(&key, &prefix)?, &raw, true))
            })
            .collect()
    }

    /// A page of `org`'s subscriptions, oldest first (UUIDv7 order), after `cursor` (the
    /// previous page's `next_cursor`). Their `keys` are left empty: a listing never
    /// unseals a secret.
    pub fn list_page(
        &self,
        org: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Subscription>> {
        let prefix = org_prefix(org);
        let start = match cursor {
            None => prefix.clone(),
            Some(c) => {
                let after = Uuid::parse_str(c).map_err(|_| Error::InvalidCursor(c.to_owned()))?;
                // Just past the cursor's own key.
                let mut key = org_key(org, &after);
                key.push(0);
                key
            }
        };
        let limit = limit.max(1);
        let mut items = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for entry in self.subscriptions.range(start..) {
            let (key, raw) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(self.decode_row(org, id_after(&key, &prefix)?, &raw, false));
        }
        let next_cursor = more
            .then(|| items.last().map(|s: &Subscription| s.id.to_string()))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// The organizations that have webhooks, in name order, a page at a time after
    /// `after` (the previous page's `next_cursor`). One seek per organization: no
    /// subscription is read.
    pub fn orgs(&self, after: Option<&str>, limit: usize) -> Result<Page<String>> {
        // Just past every key of `org`: organizations hold no byte below SEP + 1.
        let past = |org: &[u8]| {
            let mut key = org.to_vec();
            key.push(SEP + 1);
            key
        };
        let mut start = after.map_or_else(Vec::new, |org| past(org.as_bytes()));
        let limit = limit.max(1);
        let mut items = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        while let Some(key) = self.subscriptions.range(start.as_slice()..).keys().next() {
            let key = key?;
            let org = key.split(|b| *b == SEP).next().unwrap_or_default();
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(String::from_utf8_lossy(org).into_owned());
            start = past(org);
        }
        let next_cursor = more.then(|| items.last().cloned()).flatten();
        Ok(Page { items, next_cursor })
    }

    /// Whether `org` has any webhook: one seek, nothing decoded.
    pub fn has_webhooks(&self, org: &str) -> Result<bool> {
        Ok(self
            .subscriptions
            .scan_prefix(org_prefix(org))
            .keys()
            .next()
            .transpose()?
            .is_some())
    }

    /// How many subscriptions `org` has (keys only, nothing decoded).
    pub fn count(&self, org: &str) -> Result<usize> {
        let mut n = 0;
        for entry in self.subscriptions.scan_prefix(org_prefix(org)).keys() {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    /// The enabled subscriptions of `org` that listen to `event`: the delivery hot path,
    /// served from a cache of decoded lists.
    pub fn subscribers(&self, org: &str, event: &str) -> Result<SubscriberList> {
        let prefix = event_prefix(org, event);
        let generation = match self.subscribers.get(&prefix) {
            Ok(list) => return Ok(list),
            Err(generation) => generation,
        };
        let list: SubscriberList = self.read_subscribers(org, &prefix)?.into();
        self.subscribers.insert(prefix, list.clone(), generation);
        Ok(list)
    }

    /// `org`'s webhook `id`, for a delivery of `event`: the entry of the event's cached
    /// subscriber list when that list is cached (its fan-out cached it), so a chunk of a
    /// large fan-out decodes no record and opens no secret; else read as [`Store::get`]
    /// reads it (a webhook disabled or no longer listening since, or a list not cached).
    /// Never fills the cache: with more large lists than it holds, a miss per task would
    /// read a whole list for one webhook.
    pub fn subscriber(
        &self,
        org: &str,
        event: &str,
        id: &Uuid,
    ) -> Result<Option<Arc<Subscription>>> {
        if let Ok(list) = self.subscribers.get(&event_prefix(org, event))
            && let Some(at) = position(&list, id)
        {
            return Ok(Some(list[at].clone()));
        }
        Ok(self.get(org, id)?.map(Arc::new))
    }

    fn read_subscribers(&self, org: &str, prefix: &[u8]) -> Result<Vec<Arc<Subscription>>> {
        let mut subs = Vec::new();
        for entry in self.by_event.scan_prefix(prefix) {
            let (key, _) = entry?;
            // A broken record reads as disabled: it costs its own deliveries only.
            if let Some(sub) = self.get(org, &id_after(&key, prefix)?)?
                && sub.enabled
            {
                subs.push(Arc::new(sub));
            }
        }
        Ok(subs)
    }

    /// One webhook's attempts, oldest first, a page at a time.
    pub fn attempts(
        &self,
        subscription_id: &Uuid,
        query: &AttemptQuery,
    ) -> Result<Page<AttemptRecord>> {
        attempt_log::page(&self.attempts, subscription_id, query)
    }

    /// Whether this node's attempt log shows the delivery `message_id` (a `webhook-id`)
    /// to `subscription_id` settled from its `attempt`-th attempt on: delivered by an
    /// attempt that started at or after `delivered_since_ms`, or attempt `attempt` or a
    /// later one made at or after `attempted_since_ms` (recorded once what it decided is
    /// durable). It costs a decode of the webhook's attempts since then, so only
    /// redeliveries ask.
    pub fn settled_since(
        &self,
        subscription_id: &Uuid,
        message_id: &str,
        delivered_since_ms: u64,
        attempted_since_ms: u64,
        attempt: u32,
    ) -> Result<bool> {
        attempt_log::settled_since(
            &self.attempts,
            subscription_id,
            message_id,
            delivered_since_ms,
            attempted_since_ms,
            attempt,
        )
    }

    /// When the newest attempt applied from the attempts stream ended (ms since the
    /// epoch, by the clock of the node that made it; 0 before the first). A batch
    /// holding an attempt that ended after some moment was published after it, so
    /// once this passes a moment, every batch published before it has been applied.
    pub fn attempts_replicated_through(&self) -> tokio::sync::watch::Receiver<u64> {
        self.replicated_attempts.subscribe()
    }

    /// The offset of the last batch applied from the attempts stream; `None` before the
    /// first.
    pub fn attempts_applied_offset(&self) -> Result<Option<u64>> {
        attempt_log::applied_offset(&self.attempts)
    }

    /// A page of the dead letters of `org` (`None`: invalid events without an org) that
    /// match, oldest first.
    pub fn dead_letters(
        &self,
        org: Option<&str>,
        query: &DeadLetterQuery,
    ) -> Result<Page<DeadLetter>> {
        self.dead.page(org, query)
    }

    /// One dead letter of `org`, with its body.
    pub fn dead_letter(&self, org: Option<&str>, id: &Uuid) -> Result<Option<DeadLetter>> {
        self.dead.get(org, id)
    }

    /// One event's kept body, for resending; `None` when it was never kept or is past
    /// its retention.
    pub fn payload(&self, org: &str, event_id: &str) -> Result<Option<Payload>> {
        self.payloads.get(org, event_id)
    }

    /// Whether the event `event_id` of `org` is kept: one index lookup, no body read.
    pub fn has_payload(&self, org: &str, event_id: &str) -> Result<bool> {
        self.payloads.contains(org, event_id)
    }

    /// `org`'s kept events received in `[from_ms, to_ms)`, oldest first, without their
    /// bodies ([`Store::payload`] reads one), a page at a time after `cursor`.
    pub fn payloads(
        &self,
        org: &str,
        from_ms: u64,
        to_ms: u64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Payload>> {
        self.payloads.page(org, from_ms, to_ms, cursor, limit)
    }

    /// The offset of the last batch applied from the payloads stream; `None` before the
    /// first.
    pub fn payloads_applied_offset(&self) -> Result<Option<u64>> {
        self.payloads.applied_offset()
    }

    /// How many event bodies are kept, and their bytes (a full scan of the records).
    pub fn payload_stats(&self) -> Result<(usize, u64)> {
        self.payloads.stats()
    }

    /// What the payload archive keeps of each organization, as the store counts it with
    /// every change (read at open, never by reading the archive).
    pub fn payload_usage(&self) -> BTreeMap<String, KeptPayloads> {
        self.payloads.usage()
    }

    /// [`Store::payload_usage`] counted by reading the whole archive: what the kept
    /// counts must equal. Slow.
    pub fn payload_usage_walked(&self) -> Result<BTreeMap<String, KeptPayloads>> {
        self.payloads.walk_usage()
    }

    /// Every dead letter of every organization (and those without one), oldest first per org.
    pub fn all_dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.dead.all()
    }
}
