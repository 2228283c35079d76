//! How the client sends again what the cluster did not answer: the
//! [`RetryPolicy`] of requests and batches, and a producer's
//! [`DeliverySemantic`] (Fluvio's names for both, and the native ones).

use std::time::Duration;

use crate::client::FAILOVER_TIMEOUT;

/// How a producer retries a batch the cluster did not acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most times a batch is sent again.
    pub max_retries: usize,
    /// The pause before the first retry; later pauses grow by `strategy`.
    pub initial_delay: Duration,
    /// The longest pause between retries.
    pub max_delay: Duration,
    /// How long a batch is retried in all.
    pub timeout: Duration,
    /// How the pauses grow from `initial_delay` to `max_delay`.
    pub strategy: RetryStrategy,
}

/// How the pauses between retries grow (Fluvio's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetryStrategy {
    /// Every pause is `initial_delay`.
    FixedDelay,
    /// Each pause doubles the last, up to `max_delay`.
    #[default]
    ExponentialBackoff,
    /// Pauses follow the Fibonacci series from `initial_delay`
    /// (1, 1, 2, 3, 5... times it), up to `max_delay`.
    FibonacciBackoff,
}

impl RetryPolicy {
    /// The pauses before each retry, in order (at most `max_retries` of
    /// them).
    pub fn iter(&self) -> impl Iterator<Item = Duration> + Send + 'static {
        let (strategy, max_delay) = (self.strategy, self.max_delay);
        let mut pair = (self.initial_delay, self.initial_delay);
        std::iter::from_fn(move || {
            let (current, next) = pair;
            pair = match strategy {
                RetryStrategy::FixedDelay => (current, next),
                RetryStrategy::ExponentialBackoff => (current.saturating_mul(2), next),
                RetryStrategy::FibonacciBackoff => (next, current.saturating_add(next)),
            };
            Some(current.min(max_delay))
        })
        .take(self.max_retries)
    }
}

impl Default for RetryPolicy {
    /// Retries for up to 30 s, pausing 50 ms, then 100 ms... up to 1 s, and
    /// moves to another server of the cluster when one goes away.
    fn default() -> Self {
        RetryPolicy {
            max_retries: usize::MAX,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            timeout: FAILOVER_TIMEOUT,
            strategy: RetryStrategy::ExponentialBackoff,
        }
    }
}

/// What a producer promises about each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverySemantic {
    /// Each batch is sent once; if the connection breaks first, its
    /// records are reported failed and not sent again (never stored
    /// twice, maybe not at all).
    AtMostOnce,
    /// Each batch is sent until acknowledged, within the policy; a batch
    /// resent after a lost acknowledgement is stored once (the producer
    /// stamps it).
    AtLeastOnce(RetryPolicy),
}

impl Default for DeliverySemantic {
    fn default() -> Self {
        DeliverySemantic::AtLeastOnce(RetryPolicy::default())
    }
}

impl DeliverySemantic {
    /// The retries this semantic allows.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        match self {
            DeliverySemantic::AtMostOnce => RetryPolicy { max_retries: 0, ..RetryPolicy::default() },
            DeliverySemantic::AtLeastOnce(policy) => policy.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pauses(strategy: RetryStrategy) -> Vec<u64> {
        let policy = RetryPolicy {
            max_retries: 6,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(45),
            strategy,
            ..RetryPolicy::default()
        };
        policy.iter().map(|pause| pause.as_millis() as u64).collect()
    }

    #[test]
    fn each_strategy_grows_its_pauses_its_own_way_up_to_the_cap() {
        assert_eq!(pauses(RetryStrategy::FixedDelay), [10, 10, 10, 10, 10, 10]);
        assert_eq!(pauses(RetryStrategy::ExponentialBackoff), [10, 20, 40, 45, 45, 45]);
        assert_eq!(pauses(RetryStrategy::FibonacciBackoff), [10, 10, 20, 30, 45, 45]);
        let never = RetryPolicy { max_retries: 0, ..RetryPolicy::default() };
        assert_eq!(never.iter().count(), 0);
    }
}
