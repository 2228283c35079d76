//! A chain on a thread of its own, for async code.
//!
//! wasmer stores are not `Send`, so a [`SmartModuleChain`] cannot move
//! between the threads of an async runtime. A [`ChainWorker`] builds the chain
//! on a dedicated thread and keeps it there; async tasks hand it batches and
//! await the outputs. Compiling happens on that thread too, so a stream that
//! brings a new module never blocks the runtime. The thread ends when the
//! worker is dropped.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use fluvio_protocol::Batch;
use tokio::sync::oneshot;

use crate::{ChainBuilder, ChainOutput, EngineError, GuestLog, ModuleMetrics};

/// Each module's metrics, and the log lines written since the last ask.
pub type MetricsAndLogs = (Vec<(String, ModuleMetrics)>, Vec<GuestLog>);

enum Job {
    Process(Batch, oneshot::Sender<Result<ChainOutput, EngineError>>),
    LookBack(usize, Batch, oneshot::Sender<Result<(), EngineError>>),
    Metrics(oneshot::Sender<MetricsAndLogs>),
    Finish(i64, oneshot::Sender<Result<ChainOutput, EngineError>>),
    WindowStates(oneshot::Sender<Vec<(usize, Vec<u8>)>>),
}

/// A [`SmartModuleChain`](crate::SmartModuleChain) running on its own
/// thread. Made by [`ChainBuilder::spawn`].
///
/// Dropping the worker stops the batch it is running, if any, at the
/// module's next fuel settlement: a consumer that goes away does not leave a
/// module spinning on the server.
pub struct ChainWorker {
    jobs: mpsc::Sender<Job>,
    cancel: Arc<AtomicBool>,
}

impl Drop for ChainWorker {
    fn drop(&mut self) {
        tracing::debug!("chain worker dropped: cancelling its call");
        crate::watchdog::cancel(&self.cancel);
    }
}

impl std::fmt::Debug for ChainWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainWorker")
    }
}

fn gone(reason: &str) -> EngineError {
    EngineError::WorkerGone { reason: reason.to_string() }
}

impl ChainWorker {
    /// Starts a thread, builds the chain there and waits for the result.
    pub(crate) async fn start(builder: ChainBuilder) -> Result<ChainWorker, EngineError> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready, built) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let cancel_on_thread = Arc::clone(&cancel);
        std::thread::Builder::new()
            .name("smartmodule-chain".into())
            .spawn(move || {
                crate::watchdog::cancel_this_threads_calls_with(cancel_on_thread);
                let mut chain = match builder.build() {
                    Ok(chain) => {
                        let _ = ready.send(Ok(()));
                        chain
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                while let Ok(job) = receiver.recv() {
                    match job {
                        Job::Process(batch, reply) => {
                            let _ = reply.send(chain.process(&batch));
                        }
                        Job::LookBack(stage, batch, reply) => {
                            let _ = reply.send(chain.look_back(stage, &batch));
                        }
                        Job::Metrics(reply) => {
                            let _ = reply.send((chain.metrics(), chain.take_logs()));
                        }
                        Job::Finish(offset, reply) => {
                            let _ = reply.send(chain.finish(offset));
                        }
                        Job::WindowStates(reply) => {
                            let _ = reply.send(chain.window_states());
                        }
                    }
                }
            })
            .map_err(|e| gone(&format!("could not be started: {e}")))?;
        match built.await {
            Ok(Ok(())) => Ok(ChainWorker { jobs, cancel }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(gone("stopped while building the chain")),
        }
    }

    /// Runs a batch through the chain.
    pub async fn process(&self, batch: Batch) -> Result<ChainOutput, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Process(batch, reply)).map_err(|_| gone("has stopped"))?;
        answer.await.map_err(|_| gone("stopped while processing a batch"))?
    }

    /// Feeds stored records to the `look_back` function of the module at
    /// `stage` (see [`SmartModuleChain::look_back`](crate::SmartModuleChain::look_back)).
    pub async fn look_back(&self, stage: usize, batch: Batch) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::LookBack(stage, batch, reply)).map_err(|_| gone("has stopped"))?;
        answer.await.map_err(|_| gone("stopped while looking back"))?
    }

    /// Ends the input: open windows are emitted (see
    /// [`SmartModuleChain::finish`](crate::SmartModuleChain::finish)).
    pub async fn finish(&self, offset: i64) -> Result<ChainOutput, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Finish(offset, reply)).map_err(|_| gone("has stopped"))?;
        answer.await.map_err(|_| gone("stopped while finishing"))?
    }

    /// The windowed aggregates' state (see
    /// [`SmartModuleChain::window_states`](crate::SmartModuleChain::window_states)).
    pub async fn window_states(&self) -> Result<Vec<(usize, Vec<u8>)>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::WindowStates(reply)).map_err(|_| gone("has stopped"))?;
        answer.await.map_err(|_| gone("stopped while saving windows"))
    }

    /// Each module's metrics, and the log lines written since the last call.
    pub async fn metrics_and_logs(&self) -> Result<MetricsAndLogs, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Metrics(reply)).map_err(|_| gone("has stopped"))?;
        answer.await.map_err(|_| gone("stopped while reading metrics"))
    }
}
