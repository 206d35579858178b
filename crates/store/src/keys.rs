//! How keys are laid out: an organization, then a separator, then what is keyed within
//! it. The subscriptions, their event index, the dead letters and the subscriber cache
//! all share this layout, so that one organization's keys form one prefix.

use uuid::Uuid;

/// Ends a variable-length part of a key. No organization or event type contains it.
pub(crate) const SEP: u8 = 0;

/// `org ‖ 0`: the prefix of every key of `org`.
pub(crate) fn org_prefix(org: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(org.len() + 17);
    key.extend_from_slice(org.as_bytes());
    key.push(SEP);
    key
}

/// `org ‖ 0 ‖ id`: a subscription's or a dead letter's key.
pub(crate) fn org_key(org: &str, id: &Uuid) -> Vec<u8> {
    let mut key = org_prefix(org);
    key.extend_from_slice(id.as_bytes());
    key
}

/// `org ‖ 0 ‖ event ‖ 0`: the prefix of the index entries of `org`'s subscribers to
/// `event`.
pub(crate) fn event_prefix(org: &str, event: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(org.len() + event.len() + 18);
    key.extend_from_slice(org.as_bytes());
    key.push(SEP);
    key.extend_from_slice(event.as_bytes());
    key.push(SEP);
    key
}

/// `org ‖ 0 ‖ event ‖ 0 ‖ id`: one subscriber's entry in the event index.
pub(crate) fn event_key(org: &str, event: &str, id: &Uuid) -> Vec<u8> {
    let mut key = event_prefix(org, event);
    key.extend_from_slice(id.as_bytes());
    key
}
