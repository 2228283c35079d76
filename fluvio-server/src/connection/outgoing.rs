//! The frames waiting to be written to one client, and the task that
//! writes them: bounded in bytes per connection and per stream, so that a
//! client that stops reading holds little of the server's memory.

use std::sync::Arc;
use std::time::Duration;

use fluvio_protocol::Frame;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::outbound::{FrameWriter, Outbound};

/// Bytes one stream may have queued for its client, not yet written: a
/// stream reads ahead of the socket by this much and no more, so a fast
/// reader of a long partition keeps a few MiB in flight rather than the
/// connection's whole budget (and the memory churn that comes with it).
pub(super) const STREAM_AHEAD_BYTES: usize = 4 << 20;

/// What a queued frame holds until it is written: its share of the
/// connection's budget and, for a stream's frames, of the stream's.
type Permits = (tokio::sync::OwnedSemaphorePermit, Option<tokio::sync::OwnedSemaphorePermit>);

/// The frames waiting to be written to one client, bounded in bytes: a
/// client that stops reading holds at most `max_queued_bytes` of the
/// server's memory, and its streams wait (they do not read ahead) until it
/// reads again or the write timeout closes the connection.
#[derive(Clone)]
pub(super) struct Outgoing {
    frames: mpsc::UnboundedSender<(Outbound, Permits)>,
    budget: Arc<Semaphore>,
    max_queued_bytes: u32,
}

impl Outgoing {
    /// Starts the task that writes queued frames to `writer`, giving up on
    /// a client that reads nothing for `write_timeout`; the task's end
    /// means the connection is closing.
    pub(super) fn start<W: FrameWriter + 'static>(
        mut writer: W,
        max_queued_bytes: usize,
        write_timeout: Duration,
    ) -> (Outgoing, JoinHandle<()>) {
        let (queue, mut outgoing) = mpsc::unbounded_channel::<(Outbound, Permits)>();
        let max_queued_bytes = u32::try_from(max_queued_bytes).unwrap_or(u32::MAX).max(1);
        let budget = Arc::new(Semaphore::new(max_queued_bytes as usize));
        let frames = Outgoing { frames: queue, budget: Arc::clone(&budget), max_queued_bytes };
        let writer_task = tokio::spawn(async move {
            while let Some((frame, _permit)) = outgoing.recv().await {
                match tokio::time::timeout(write_timeout, frame.write(&mut writer)).await {
                    Ok(Ok(())) => frame.recycle(),
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::info!(
                            "a client read nothing for {} s; closing its connection",
                            write_timeout.as_secs_f64()
                        );
                        break;
                    }
                }
            }
            // Wakes streams waiting for queue space: the connection is closing.
            budget.close();
            let _ = writer.shutdown().await;
        });
        (frames, writer_task)
    }

    /// Queues a frame; `Err` once the connection is closing.
    pub(super) async fn send(&self, frame: Frame) -> Result<(), ()> {
        self.send_within(frame.into(), None).await
    }

    /// Queues a frame that also counts against `stream`'s own budget until
    /// it is written.
    pub(super) async fn send_within(&self, frame: Outbound, stream: Option<&Arc<Semaphore>>) -> Result<(), ()> {
        // A frame larger than the whole budget waits for the queue to empty.
        let size = frame.encoded_len();
        let cost = |limit: u32| u32::try_from(size).unwrap_or(u32::MAX).min(limit).max(1);
        let stream = match stream {
            Some(budget) => {
                let cost = cost(STREAM_AHEAD_BYTES as u32);
                Some(Arc::clone(budget).acquire_many_owned(cost).await.map_err(|_| ())?)
            }
            None => None,
        };
        let connection =
            Arc::clone(&self.budget).acquire_many_owned(cost(self.max_queued_bytes)).await.map_err(|_| ())?;
        self.frames.send((frame, (connection, stream))).map_err(|_| ())
    }

    /// Resolves once the connection is closing.
    pub(super) async fn closed(&self) {
        self.frames.closed().await
    }
}
