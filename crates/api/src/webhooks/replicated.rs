//! A webhook written through the changes stream is checked on apply as the API checks
//! the request that writes it: a create whole, an update by what it changes (the API
//! checks a new URL, not one it accepted before), so that an entry no API would have
//! written, published to the stream by someone else, changes nothing.

use hookwire_core::custom_headers::{check_name, check_set, check_value};
use hookwire_core::{Catalog, Subscription, TargetPolicy};

use super::{
    check_description, check_events, check_filter, check_limits, check_org, check_transform,
};

/// `Err` with why the API would refuse to turn `current` (`None` for a new webhook) into
/// `new`. The target is checked by the policy's rules on the URL itself (scheme, port,
/// literal addresses, refused hosts); its host is not resolved here, because a name may
/// resolve differently on each node and at each moment, and every delivery checks the
/// addresses it connects to anyway.
pub fn check_replicated(
    new: &Subscription,
    current: Option<&Subscription>,
    policy: &TargetPolicy,
    catalog: &Catalog,
) -> Result<(), String> {
    let changed = |same: &dyn Fn(&Subscription) -> bool| current.is_none_or(|c| !same(c));
    let api = |e: crate::ApiError| e.to_string();
    if let Some(current) = current
        && current.org != new.org
    {
        return Err("a webhook cannot move to another organization".into());
    }
    check_org(&new.org).map_err(api)?;
    if changed(&|c| c.description == new.description) {
        check_description(&new.description).map_err(api)?;
    }
    if changed(&|c| c.events == new.events) {
        check_events(catalog, &new.events).map_err(api)?;
    }
    if changed(&|c| {
        c.max_concurrency == new.max_concurrency && c.rate_limit_per_sec == new.rate_limit_per_sec
    }) {
        check_limits(new.max_concurrency, new.rate_limit_per_sec).map_err(api)?;
    }
    if changed(&|c| {
        c.filter.as_ref().map(|f| f.source()) == new.filter.as_ref().map(|f| f.source())
    }) && let Some(filter) = &new.filter
    {
        check_filter(filter.source()).map_err(api)?;
    }
    if changed(&|c| {
        c.transform.as_ref().map(|t| t.source()) == new.transform.as_ref().map(|t| t.source())
    }) && let Some(transform) = &new.transform
    {
        check_transform(transform.source()).map_err(api)?;
    }
    if changed(&|c| c.headers == new.headers) {
        for header in &new.headers {
            check_name(&header.name)?;
            check_value(&header.name, &header.value)?;
        }
        check_set(&new.headers)?;
    }
    if changed(&|c| c.retry == new.retry) {
        new.retry.check_shape()?;
    }
    if changed(&|c| c.url == new.url) {
        policy
            .check_url(&new.url)
            .map_err(|e| format!("target URL refused: {e}"))?;
    }
    Ok(())
}
