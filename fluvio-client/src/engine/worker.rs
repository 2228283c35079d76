//! A chain on a thread of its own, for async code.
//!
//! wasmer stores are not `Send`, so a [`SmartModuleChain`] cannot move
//! between the threads of an async runtime. A [`ChainWorker`] builds the chain
//! on a dedicated thread and keeps it there; async tasks hand it batches and
//! await the outputs. The thread ends when the worker is dropped.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{ChainOutput, EngineError, GuestLog, ModuleMetrics, SmartModuleChain};
use crate::batch::Batch;

/// Each module's metrics, and the log lines written since the last ask.
type MetricsAndLogs = (Vec<(String, ModuleMetrics)>, Vec<GuestLog>);

enum Job {
    Process(Batch, oneshot::Sender<Result<ChainOutput, EngineError>>),
    Metrics(oneshot::Sender<MetricsAndLogs>),
}

/// A [`SmartModuleChain`] running on its own thread.
pub struct ChainWorker {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for ChainWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainWorker")
    }
}

impl ChainWorker {
    /// Starts a thread, builds the chain there with `build` and waits for the
    /// result, so that a build error (a bad parameter, say) is returned here.
    pub async fn spawn<F>(build: F) -> Result<ChainWorker, EngineError>
    where
        F: FnOnce() -> Result<SmartModuleChain, EngineError> + Send + 'static,
    {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready, built) = oneshot::channel();
        std::thread::Builder::new()
            .name("smartmodule-chain".into())
            .spawn(move || {
                let mut chain = match build() {
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
                        Job::Metrics(reply) => {
                            let _ = reply.send((chain.metrics(), chain.take_logs()));
                        }
                    }
                }
            })
            .map_err(|e| EngineError::Instantiation {
                module: "chain".into(),
                reason: format!("cannot start a worker thread: {e}"),
            })?;
        match built.await {
            Ok(Ok(())) => Ok(ChainWorker { jobs }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(EngineError::Instantiation {
                module: "chain".into(),
                reason: "the worker thread stopped while building".into(),
            }),
        }
    }

    /// Runs a batch through the chain.
    pub async fn process(&self, batch: Batch) -> Result<ChainOutput, EngineError> {
        let (reply, answer) = oneshot::channel();
        let gone = || EngineError::Trap { module: "chain".into(), message: "the chain's worker thread is gone".into() };
        self.jobs.send(Job::Process(batch, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Each module's metrics, and the log lines written since the last call.
    pub async fn metrics_and_logs(&self) -> MetricsAndLogs {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job::Metrics(reply)).is_err() {
            return (Vec::new(), Vec::new());
        }
        answer.await.unwrap_or_default()
    }
}
