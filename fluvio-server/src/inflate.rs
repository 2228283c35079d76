//! Inflating compressed batches: off the async runtime's threads, and
//! under one byte budget for the whole server.
//!
//! A compressed batch is small on the wire and up to
//! [`decompressed_limit`] bytes once inflated (256 MiB at most). Inflated on
//! a runtime thread, one such batch stalls every connection that thread
//! serves; inflated by many clients at once, they take what memory they
//! like. So every compressed batch the server checks or opens is inflated
//! on a blocking thread, once its limit fits in the budget; an uncompressed
//! one is checked where it is, as it costs no more than reading it.

use std::sync::Arc;

use fluvio_protocol::abi::FormatError;
use fluvio_protocol::compression::decompressed_limit;
use fluvio_protocol::{Batch, CheckedBatch, Compression, StoredBatch};
use tokio::sync::Semaphore;

/// The server's budget for inflating batches.
#[derive(Debug, Clone)]
pub struct Inflater {
    budget: Arc<Semaphore>,
    total: u32,
}

impl Inflater {
    /// A budget of `total_bytes` inflated at once (at least the largest
    /// batch, so that every batch can be inflated).
    pub fn new(total_bytes: u64) -> Inflater {
        let most = fluvio_protocol::compression::MAX_DECOMPRESSED_BATCH_BYTES as u64;
        let total = total_bytes.clamp(most, u32::MAX as u64) as u32;
        Inflater { budget: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// Checks a batch a client sent, whole: see [`CheckedBatch::from_bytes`].
    pub async fn check(&self, bytes: Vec<u8>) -> Result<CheckedBatch, FormatError> {
        let Some(compressed) = compressed_len(&bytes) else { return CheckedBatch::from_bytes(bytes) };
        self.off_runtime(compressed, move || CheckedBatch::from_bytes(bytes)).await
    }

    /// Checks a stored batch whole and decompresses it: see
    /// [`StoredBatch::open`].
    pub async fn open(&self, batch: StoredBatch) -> Result<Batch, FormatError> {
        if batch.compression() == Compression::None {
            return batch.open();
        }
        let compressed = batch.as_bytes().len().saturating_sub(fluvio_protocol::abi::BATCH_HEADER_LEN);
        self.off_runtime(compressed, move || batch.open()).await
    }

    /// Bytes of the budget in use now.
    pub fn in_use(&self) -> u64 {
        (self.total as usize - self.budget.available_permits()) as u64
    }

    async fn off_runtime<T: Send + 'static>(
        &self,
        compressed_len: usize,
        inflate: impl FnOnce() -> Result<T, FormatError> + Send + 'static,
    ) -> Result<T, FormatError> {
        let reserve = (decompressed_limit(compressed_len) as u64).min(self.total as u64) as u32;
        let permit = Arc::clone(&self.budget)
            .acquire_many_owned(reserve)
            .await
            .map_err(|_| FormatError::new("the server is shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let inflated = inflate();
            drop(permit);
            inflated
        })
        .await
        .map_err(|error| FormatError::new(format!("inflating the batch failed inside the server: {error}")))?
    }
}

/// The length of a batch's compressed records, or `None` when its header
/// says they are not compressed (or it has no whole header: the check
/// refuses it).
fn compressed_len(bytes: &[u8]) -> Option<usize> {
    let attributes = *bytes.get(fluvio_protocol::abi::BATCH_ATTRIBUTES_AT)?;
    if bytes.len() < fluvio_protocol::abi::BATCH_HEADER_LEN
        || attributes & fluvio_protocol::compression::COMPRESSION_MASK == 0
    {
        return None;
    }
    Some(bytes.len() - fluvio_protocol::abi::BATCH_HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_protocol::BatchBuilder;

    fn batch(values: &[&str]) -> Batch {
        let mut builder = BatchBuilder::new(0, 0);
        for value in values {
            builder.push_value(None, value.as_bytes());
        }
        builder.finish()
    }

    #[tokio::test]
    async fn compressed_batches_are_checked_within_the_budget_and_give_it_back() {
        let inflater = Inflater::new(0);
        let plain = batch(&["alpha", "beta", "gamma"]);
        let packed = plain.clone().compressed(Compression::Zstd).into_bytes();
        let checked = inflater.check(packed).await.unwrap();
        assert_eq!(checked.compression(), Compression::Zstd);
        assert_eq!(inflater.open(StoredBatch::from(checked)).await.unwrap(), plain);
        assert_eq!(inflater.in_use(), 0);
        let mut corrupt = plain.clone().compressed(Compression::Gzip).into_bytes();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(inflater.check(corrupt).await.is_err());
        assert_eq!(inflater.in_use(), 0);
        // Uncompressed and truncated batches are checked in place.
        assert_eq!(inflater.check(plain.clone().into_bytes()).await.unwrap().open().unwrap(), plain);
        assert!(inflater.check(vec![1, 2, 3]).await.is_err());
    }

    #[tokio::test]
    async fn a_full_budget_makes_the_next_inflation_wait() {
        let inflater = Inflater::new(0);
        let held = Arc::clone(&inflater.budget).acquire_many_owned(inflater.total).await.unwrap();
        let packed = batch(&["x"]).compressed(Compression::Gzip).into_bytes();
        let waiting = tokio::spawn({
            let inflater = inflater.clone();
            async move { inflater.check(packed).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "no budget left: the inflation waits");
        drop(held);
        assert!(waiting.await.unwrap().is_ok());
    }
}
