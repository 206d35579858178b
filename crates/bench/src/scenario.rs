//! Which scenarios there are, in the order they run.

use serde::Serialize;

/// One scenario of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// RabbitMQ alone: the limit.
    Baseline,
    /// One subscriber per event.
    Fanout1,
    /// fanout1 on a second serve with replication on: what the streams cost.
    Fanout1Replicated,
    /// fanout1 with a payload filter that every event passes: the filter's cost.
    Fanout1Filter,
    /// fanout1 on a second serve exporting spans over OTLP: what tracing costs.
    Fanout1Traced,
    /// Ten subscribers per event.
    Fanout10,
    /// 1, 16 (the most attempted inline), 17, 100 and 1,000 subscribers per event: the
    /// cost of a large fan-out's chunk messages.
    FanoutCurve,
    /// A fixed rate, publish-to-receipt percentiles (and baseline's at the same rate).
    Latency,
    /// 30 % of first attempts answered 500.
    Retries,
    /// Two organizations, one publishing 20× the other's rate, to slow receivers: each
    /// one's latency while they share the attempt slots.
    Fairness,
    /// Events queued before serve starts, on the shipped defaults (and the bench's
    /// settings), against RabbitMQ alone draining the same queue (drain-baseline).
    Drain,
    /// Receivers answering 200 after a fixed delay: 100 webhooks at 100 ms, one at
    /// 100 ms, 100 at 10 ms, on the shipped defaults (and the bench's settings).
    SlowReceivers,
    /// One receiver slowing past 16 in flight and answering 429 past 40, on the shipped
    /// defaults: where hookwire settles, and the attempts it wastes.
    OverloadedReceiver,
    /// serve's RSS at a steady rate, then with deliveries parked in a tier.
    Memory,
    /// serve's RSS at a steady rate with replication on, and the attempt log's size.
    MemoryReplicated,
    /// Three replicated nodes: a change through node 1's API until node 3's shows it.
    Propagation,
    /// A node with an empty data directory rebuilding from the streams.
    Rebuild,
    /// serve restarted on a long attempt log and a full payload archive: its RSS idle
    /// and under attempt listings, and the listings' latency (plain, filtered, by time).
    AttemptLog,
    /// Lookups among many subscriptions in sled.
    Store,
    /// Webhooks created through the store's writer (and the API): the create rate, the
    /// store's disk against its export, and serve's readiness and RSS on it.
    StoreSize,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Self; 20] = [
        Self::Baseline,
        Self::Fanout1,
        Self::Fanout1Replicated,
        Self::Fanout1Filter,
        Self::Fanout1Traced,
        Self::Fanout10,
        Self::FanoutCurve,
        Self::Latency,
        Self::Retries,
        Self::Fairness,
        Self::Drain,
        Self::SlowReceivers,
        Self::OverloadedReceiver,
        Self::Memory,
        Self::MemoryReplicated,
        Self::Propagation,
        Self::Rebuild,
        Self::AttemptLog,
        Self::Store,
        Self::StoreSize,
    ];

    /// Whether it runs `hookwire serve`.
    pub fn needs_serve(self) -> bool {
        !matches!(self, Self::Baseline | Self::Store)
    }
}
