//! Per-principal quotas: on a server with an access file, what one
//! principal may hold of what all share (connections, streams, SmartModule
//! stages and their memory, compile places), so that one tenant cannot take
//! what the others need. Each is counted while held and given back when
//! the holder is dropped; a server without an access file has one anonymous
//! tenant and applies the server-wide limits only.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ServerError, limit_reached};

/// What one principal may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalQuotas {
    /// Authenticated connections.
    pub connections: usize,
    /// Streams (consumers) open, over all its connections.
    pub streams: usize,
    /// SmartModules running in its streams' chains (each reserves the
    /// per-module memory cap of the server-wide SmartModule memory).
    pub smartmodule_stages: usize,
    /// Chains with ad hoc modules being built (compiled) at once; more wait.
    pub compilations: usize,
}

impl Default for PrincipalQuotas {
    fn default() -> Self {
        PrincipalQuotas { connections: 256, streams: 1024, smartmodule_stages: 16, compilations: 1 }
    }
}

/// A counted quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    /// [`PrincipalQuotas::connections`].
    Connections,
    /// [`PrincipalQuotas::streams`].
    Streams,
    /// [`PrincipalQuotas::smartmodule_stages`].
    SmartModuleStages,
}

impl Quota {
    fn flag(self) -> &'static str {
        match self {
            Quota::Connections => "--max-connections-per-principal",
            Quota::Streams => "--max-streams-per-principal",
            Quota::SmartModuleStages => "--max-smartmodule-stages-per-principal",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Quota::Connections => "connections",
            Quota::Streams => "streams open",
            Quota::SmartModuleStages => "SmartModules running in its streams",
        }
    }
}

/// The quotas and what each principal holds.
pub struct Quotas {
    limits: PrincipalQuotas,
    held: Mutex<HashMap<(String, Quota), usize>>,
    compile_places: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A share of a quota, given back when dropped.
pub struct Held {
    quotas: Arc<Quotas>,
    principal: String,
    quota: Quota,
    amount: usize,
}

impl Quotas {
    /// Quotas of `limits` for every principal.
    pub fn new(limits: PrincipalQuotas) -> Arc<Quotas> {
        Arc::new(Quotas { limits, held: Mutex::default(), compile_places: Mutex::default() })
    }

    fn limit(&self, quota: Quota) -> usize {
        match quota {
            Quota::Connections => self.limits.connections,
            Quota::Streams => self.limits.streams,
            Quota::SmartModuleStages => self.limits.smartmodule_stages,
        }
    }

    /// Takes `amount` of `principal`'s `quota`, or says which quota is full.
    pub fn take(self: &Arc<Self>, principal: &str, quota: Quota, amount: usize) -> Result<Held, ServerError> {
        let limit = self.limit(quota);
        let mut held = self.held.lock();
        let now = held.entry((principal.to_string(), quota)).or_default();
        if now.saturating_add(amount) > limit {
            return Err(limit_reached(format!(
                "{principal:?} holds {now} {} already and may hold {limit} (its quota); this needs {amount} more. Close some, or ask the operator to raise {}",
                quota.what(),
                quota.flag()
            )));
        }
        *now += amount;
        Ok(Held { quotas: Arc::clone(self), principal: principal.to_string(), quota, amount })
    }

    /// Waits for one of `principal`'s compile places: a principal builds at
    /// most so many chains with ad hoc modules at once, so that it cannot
    /// take every compile place of the server.
    pub async fn compile_place(&self, principal: &str) -> OwnedSemaphorePermit {
        let places = Arc::clone(
            self.compile_places
                .lock()
                .entry(principal.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.compilations.max(1)))),
        );
        places.acquire_owned().await.expect("a principal's compile places are never closed")
    }

    /// How much of `quota` `principal` holds now.
    pub fn held(&self, principal: &str, quota: Quota) -> usize {
        self.held.lock().get(&(principal.to_string(), quota)).copied().unwrap_or(0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.quotas.held.lock();
        let key = (std::mem::take(&mut self.principal), self.quota);
        if let Some(now) = held.get_mut(&key) {
            *now -= self.amount;
            if *now == 0 {
                held.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_quota_names_itself_and_frees_with_its_holders() {
        let quotas = Quotas::new(PrincipalQuotas { smartmodule_stages: 3, ..PrincipalQuotas::default() });
        let two = quotas.take("a", Quota::SmartModuleStages, 2).unwrap();
        let error = quotas.take("a", Quota::SmartModuleStages, 2).err().unwrap();
        assert!(error.to_string().contains("--max-smartmodule-stages-per-principal"), "{error}");
        // Another principal has a quota of its own.
        let other = quotas.take("b", Quota::SmartModuleStages, 3).unwrap();
        let one = quotas.take("a", Quota::SmartModuleStages, 1).unwrap();
        drop(two);
        assert_eq!(quotas.held("a", Quota::SmartModuleStages), 1);
        drop((one, other));
        assert!(quotas.held.lock().is_empty());
    }

    #[tokio::test]
    async fn compile_places_are_per_principal() {
        let quotas = Quotas::new(PrincipalQuotas { compilations: 1, ..PrincipalQuotas::default() });
        let held = quotas.compile_place("a").await;
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), quotas.compile_place("b")).await;
        assert!(other.is_ok(), "another principal does not wait");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(100), quotas.compile_place("a")).await;
        assert!(waiting.is_err(), "the same principal waits for its place");
        drop(held);
        let _place = tokio::time::timeout(std::time::Duration::from_secs(5), quotas.compile_place("a")).await.unwrap();
    }
}
