//! A webhook's retry policy in the stored subscription record.

use serde::{Deserialize, Serialize};

/// A webhook's retry policy as stored: durations in milliseconds.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredRetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule_ms: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age_ms: Option<u64>,
}

impl StoredRetry {
    pub(super) fn of(policy: &hookwire_core::RetryPolicy) -> Option<Self> {
        let ms = |d: &std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        (!policy.is_empty()).then(|| Self {
            schedule_ms: policy.schedule.as_ref().map(|s| s.iter().map(ms).collect()),
            max_age_ms: policy.max_age.as_ref().map(ms),
        })
    }

    pub(super) fn policy(&self) -> hookwire_core::RetryPolicy {
        hookwire_core::RetryPolicy {
            schedule: self.schedule_ms.as_ref().map(|s| {
                s.iter()
                    .copied()
                    .map(std::time::Duration::from_millis)
                    .collect()
            }),
            max_age: self.max_age_ms.map(std::time::Duration::from_millis),
        }
    }
}
