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
    /// The pause before the first retry; each later pause doubles.
    pub initial_delay: Duration,
    /// The longest pause between retries.
    pub max_delay: Duration,
    /// How long a batch is retried in all.
    pub timeout: Duration,
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
