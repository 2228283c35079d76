//! Watching the cluster's objects change, by Fluvio's calls:
//! [`FluvioAdmin::watch`], [`FluvioAdmin::watch_topics`] and
//! [`FluvioAdmin::watch_partitions`], [`FluvioAdmin::watch_spus`], and the partitions as an admin object
//! ([`PartitionSpec`]).
//!
//! The server pushes no changes: a watch lists the objects every
//! [`WATCH_PERIOD`] and reports what differs from its last list, so a change
//! is seen within that period. The first item holds every object (Fluvio's
//! first item does too). A topic's status holds where each partition ends,
//! so a topic being written shows up as updated at most once a period.
//!
//! ```no_run
//! use futures::StreamExt;
//!
//! # async fn run() -> Result<(), fluvio_client::FluvioError> {
//! let admin = fluvio_client::Fluvio::connect().await?.admin().await;
//! let mut changes = admin.watch_topics();
//! while let Some(change) = changes.next().await {
//!     let (updated, deleted) = change.parts();
//!     println!("{} updated, {} deleted", updated.len(), deleted.len());
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::admin::{AdminSpec, FluvioAdmin, Metadata, TopicSpec};
use super::spu::SpuSpec;
use crate::{Fluvio, FluvioError};

/// How often a watch lists the objects it watches.
pub const WATCH_PERIOD: Duration = Duration::from_millis(500);

/// What changed between two lists: objects new or changed, and objects
/// gone (Fluvio's `MetadataChanges`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataChanges<S: AdminSpec> {
    /// Counts the lists that found a change, from 1.
    pub epoch: i64,
    /// Objects new or changed since the last item.
    pub updates: Vec<Metadata<S>>,
    /// Objects gone since the last item, as they were last seen.
    pub deletes: Vec<Metadata<S>>,
}

impl<S: AdminSpec> MetadataChanges<S> {
    /// The updates and the deletes.
    pub fn parts(self) -> (Vec<Metadata<S>>, Vec<Metadata<S>>) {
        (self.updates, self.deletes)
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.deletes.is_empty()
    }
}

/// Whether a watched object was updated or deleted (Fluvio's names).
#[allow(clippy::upper_case_acronyms, reason = "Fluvio's variant names, which ported code matches on")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// New or changed.
    UPDATE,
    /// Gone.
    DELETE,
}

/// One change: its kind and the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<C> {
    /// Updated or deleted.
    pub header: MsgType,
    /// The object (as last seen, for a deletion).
    pub content: C,
}

/// One item of [`FluvioAdmin::watch`]: the changes and every object now.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataUpdate<S: AdminSpec> {
    /// Counts the lists that found a change, from 1.
    pub epoch: i64,
    /// What changed since the last item.
    pub changes: Vec<Message<Metadata<S>>>,
    /// Every object now.
    pub all: Vec<Metadata<S>>,
}

/// An item of [`FluvioAdmin::watch`] (Fluvio's `WatchResponse`).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchResponse<S: AdminSpec> {
    update: MetadataUpdate<S>,
}

impl<S: AdminSpec> WatchResponse<S> {
    /// The update.
    pub fn inner(self) -> MetadataUpdate<S> {
        self.update
    }
}

/// What changed from `before` to `now`, by name.
fn compare<S: AdminSpec>(before: &[Metadata<S>], now: &[Metadata<S>]) -> (Vec<Metadata<S>>, Vec<Metadata<S>>) {
    let updates = now.iter().filter(|object| !before.contains(object)).cloned().collect();
    let deletes = before.iter().filter(|old| !now.iter().any(|object| object.name == old.name)).cloned().collect();
    (updates, deletes)
}

/// Lists `S` every period and yields each change (the first list whole).
/// A list that fails is logged and tried again next period.
/// Boxed, so that callers can poll it without pinning it first.
fn watch_changes<S: AdminSpec>(fluvio: Fluvio) -> BoxStream<'static, (MetadataChanges<S>, Vec<Metadata<S>>)> {
    use futures::StreamExt;
    futures::stream::unfold((fluvio, None::<Vec<Metadata<S>>>, 0i64), |(fluvio, before, epoch)| async move {
        let mut first = before.is_none();
        let before = before.unwrap_or_default();
        loop {
            if !first {
                tokio::time::sleep(WATCH_PERIOD).await;
            }
            let now = match S::all(&fluvio).await {
                Ok(now) => now,
                Err(error) => {
                    tracing::warn!(%error, "a watch could not list the cluster's objects; trying again");
                    first = false;
                    continue;
                }
            };
            let (updates, deletes) = compare(&before, &now);
            if first || !updates.is_empty() || !deletes.is_empty() {
                let changes = MetadataChanges { epoch: epoch + 1, updates, deletes };
                return Some(((changes, now.clone()), (fluvio, Some(now), epoch + 1)));
            }
        }
    })
    .boxed()
}

impl FluvioAdmin {
    /// Every change to the objects of a type: the first item holds them all.
    pub async fn watch<S: AdminSpec>(
        &self,
    ) -> Result<impl Stream<Item = Result<WatchResponse<S>, std::io::Error>> + Send + Unpin + use<S>, FluvioError> {
        use futures::StreamExt;
        Ok(watch_changes::<S>(self.fluvio().clone()).map(|(changes, all)| {
            let updated = changes.updates.into_iter().map(|content| Message { header: MsgType::UPDATE, content });
            let deleted = changes.deletes.into_iter().map(|content| Message { header: MsgType::DELETE, content });
            let update = MetadataUpdate { epoch: changes.epoch, changes: updated.chain(deleted).collect(), all };
            Ok(WatchResponse { update })
        }))
    }

    /// Every change to the topics: the first item holds them all.
    pub fn watch_topics(&self) -> impl Stream<Item = MetadataChanges<TopicSpec>> + Send + Unpin + use<> {
        use futures::StreamExt;
        watch_changes::<TopicSpec>(self.fluvio().clone()).map(|(changes, _)| changes)
    }

    /// Every change to the servers of the cluster, as Fluvio's SPUs: the
    /// first item holds them all; a server that stops is deleted within
    /// seconds of its last heartbeat.
    pub fn watch_spus(&self) -> impl Stream<Item = MetadataChanges<SpuSpec>> + Send + Unpin + use<> {
        use futures::StreamExt;
        watch_changes::<SpuSpec>(self.fluvio().clone()).map(|(changes, _)| changes)
    }

    /// Every change to the partitions: the first item holds them all.
    pub fn watch_partitions(&self) -> impl Stream<Item = MetadataChanges<PartitionSpec>> + Send + Unpin + use<> {
        use futures::StreamExt;
        watch_changes::<PartitionSpec>(self.fluvio().clone()).map(|(changes, _)| changes)
    }
}

/// A partition as an admin object, named `TOPIC-N` as Fluvio names them.
/// One server (or the JetStream cluster behind it) holds every partition,
/// so the leader is SPU 0 and the replicas are numbered 0, 1...
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSpec {
    /// The SPU leading the partition.
    pub leader: i32,
    /// The SPUs holding its copies.
    pub replicas: Vec<i32>,
}

/// Where a partition ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionStatus {
    /// The leader's replica.
    pub leader: ReplicaStatus,
}

/// Where one copy of a partition ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The SPU.
    pub spu: i32,
    /// The high watermark: the next offset consumers can read.
    pub hw: i64,
    /// The log end offset: the next offset to be written (the same as `hw`
    /// here: a record is readable once stored).
    pub leo: i64,
}

impl AdminSpec for PartitionSpec {
    type Status = PartitionStatus;

    fn all(fluvio: &Fluvio) -> BoxFuture<'_, Result<Vec<Metadata<Self>>, FluvioError>> {
        Box::pin(async move {
            let topics = fluvio.list_topics().await?;
            Ok(topics
                .into_iter()
                .flat_map(|topic| {
                    let replicas: Vec<i32> = (0..topic.replication as i32).collect();
                    (0..topic.partitions).map(move |partition| {
                        let end = topic.next_offsets.get(partition as usize).copied().unwrap_or(0);
                        Metadata {
                            name: format!("{}-{partition}", topic.name),
                            spec: PartitionSpec { leader: 0, replicas: replicas.clone() },
                            status: PartitionStatus { leader: ReplicaStatus { spu: 0, hw: end, leo: end } },
                        }
                    })
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::admin::TopicStatus;

    fn topic(name: &str, end: i64) -> Metadata<TopicSpec> {
        Metadata {
            name: name.into(),
            spec: TopicSpec::new_computed(1, 1, None),
            status: TopicStatus { next_offsets: vec![end] },
        }
    }

    #[test]
    fn changes_are_new_or_changed_objects_and_names_gone() {
        let before = [topic("a", 0), topic("b", 3)];
        let now = [topic("b", 4), topic("c", 0)];
        let (updates, deletes) = compare(&before, &now);
        assert_eq!(updates, [topic("b", 4), topic("c", 0)]);
        assert_eq!(deletes, [topic("a", 0)]);
        assert_eq!(compare(&now, &now), (vec![], vec![]));
    }
}
