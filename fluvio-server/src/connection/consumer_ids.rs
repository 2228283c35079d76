//! The consumer-id census: which consumer ids have stored offsets and which
//! principal made each, so that committing under ever new ids cannot grow
//! the offsets store without bound (a server-wide cap), nor one tenant take
//! the whole of it (a per-principal quota, on a server with an access file).
//!
//! An id belongs to the principal whose commit created it; later commits
//! under it, by anyone allowed to, keep that owner. The census is read from
//! storage when first needed and kept up to date by this server's commits
//! and deletes. Servers sharing a JetStream cluster each keep their own:
//! before an id is refused, a census older than [`REFRESH_AFTER`] is read
//! again, so ids another server made or deleted count within seconds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::error::{ServerError, limit_reached};
use crate::storage::Storage;

/// How old a census may be before a refusal reads it again from storage.
pub const REFRESH_AFTER: Duration = Duration::from_secs(5);

/// How many consumer ids may have stored offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerIdLimits {
    /// On the whole server (all principals together).
    pub total: usize,
    /// Made by one principal, on a server with an access file.
    pub per_principal: usize,
}

impl Default for ConsumerIdLimits {
    fn default() -> Self {
        ConsumerIdLimits { total: 100_000, per_principal: 1_000 }
    }
}

/// The census and its limits.
pub struct ConsumerIds {
    limits: ConsumerIdLimits,
    census: Mutex<Option<Census>>,
}

struct Census {
    /// Each id with stored offsets, and its owner.
    owners: HashMap<String, Option<String>>,
    /// How many ids each principal owns.
    owned: HashMap<String, usize>,
    read_at: Instant,
}

impl Census {
    async fn read(storage: &dyn Storage) -> Result<Census, ServerError> {
        let mut census = Census { owners: HashMap::new(), owned: HashMap::new(), read_at: Instant::now() };
        for stored in storage.list_offsets().await? {
            census.owners.entry(stored.offset.consumer).or_insert(stored.owner);
        }
        for owner in census.owners.values().flatten() {
            *census.owned.entry(owner.clone()).or_default() += 1;
        }
        Ok(census)
    }

    /// Why a new id of `principal` does not fit, if it does not.
    fn refusal(&self, limits: ConsumerIdLimits, consumer: &str, principal: Option<&str>) -> Option<String> {
        if self.owners.len() >= limits.total {
            return Some(format!(
                "consumer id {consumer:?} is new and the server holds offsets for {} consumer ids, its limit; delete unused ones with `fluvio consumer delete ID`, or ask the operator to raise --max-consumer-ids",
                self.owners.len()
            ));
        }
        let principal = principal?;
        let owned = self.owned.get(principal).copied().unwrap_or(0);
        (owned >= limits.per_principal).then(|| {
            format!(
                "consumer id {consumer:?} is new and {principal:?} made {owned} consumer ids already and may make {} (its quota); delete unused ones with `fluvio consumer delete ID`, or ask the operator to raise --max-consumer-ids-per-principal",
                limits.per_principal
            )
        })
    }
}

impl ConsumerIds {
    /// An empty census, read from storage when first needed.
    pub fn new(limits: ConsumerIdLimits) -> ConsumerIds {
        ConsumerIds { limits, census: Mutex::new(None) }
    }

    /// Stores `offset` for `consumer` in a partition, after the census
    /// admits the id: a known id always, a new one within the limits
    /// (`principal` is `None` on a server without an access file).
    pub async fn commit(
        &self,
        storage: &dyn Storage,
        consumer: &str,
        (topic, partition, offset): (&str, u32, i64),
        principal: Option<&str>,
    ) -> Result<(), ServerError> {
        let mut census = self.census.lock().await;
        if census.is_none() {
            *census = Some(Census::read(storage).await?);
        }
        let known = census.as_ref().and_then(|census| census.owners.get(consumer).cloned());
        if let Some(owner) = known {
            // Known ids wait for no one: commits are most of the traffic.
            drop(census);
            storage.commit_offset(consumer, topic, partition, offset, owner.as_deref()).await?;
            return Ok(());
        }
        let mut refusal = census.as_ref().and_then(|census| census.refusal(self.limits, consumer, principal));
        if refusal.is_some() && census.as_ref().is_some_and(|census| census.read_at.elapsed() > REFRESH_AFTER) {
            let fresh = Census::read(storage).await?;
            refusal = fresh.refusal(self.limits, consumer, principal);
            *census = Some(fresh);
        }
        if let Some(refusal) = refusal {
            return Err(limit_reached(refusal));
        }
        // The lock is held while a new id is stored, so that two new ids
        // cannot both take the last place.
        storage.commit_offset(consumer, topic, partition, offset, principal).await?;
        let census = census.as_mut().expect("the census was read above");
        census.owners.insert(consumer.to_string(), principal.map(str::to_string));
        if let Some(principal) = principal {
            *census.owned.entry(principal.to_string()).or_default() += 1;
        }
        Ok(())
    }

    /// Forgets what the census knows: offsets were deleted (an id may be
    /// gone in some topics and not in others), so it is read again.
    pub async fn forget(&self) {
        *self.census.lock().await = None;
    }
}
