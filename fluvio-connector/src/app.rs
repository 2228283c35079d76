//! The command line every connector program shares, so a connector you
//! write runs exactly as the built-in ones do:
//!
//! ```text
//! my-connector --config FILE [--secrets FILE [--cluster-run]] [--addr HOST:PORT] [--metrics-file FILE] [--metrics-addr ADDR] [--check | --describe]
//! ```
//!
//! Exit codes: 0 after a clean stop (SIGTERM or Ctrl-C), 1 when the
//! connector failed, 2 when the config was refused.
//!
//! ```no_run
//! use fluvio_connector::app::source_main;
//! use fluvio_connector::config::ConnectorConfig;
//! use fluvio_connector::{ConnectorError, Source, SourceRecord};
//!
//! struct Ticks(u64);
//!
//! impl Source for Ticks {
//!     async fn connect(&mut self) -> Result<(), ConnectorError> {
//!         Ok(())
//!     }
//!     async fn next(&mut self) -> Result<Option<SourceRecord>, ConnectorError> {
//!         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
//!         self.0 += 1;
//!         Ok(Some(SourceRecord::new(None, format!("tick {}", self.0).into_bytes())))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     source_main(|_config: &ConnectorConfig| Ok(Ticks(0)))
//! }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::config::{ConnectorConfig, Secrets};
use crate::runtime::{RunOptions, run_sink, run_source, shutdown_on_signals};
use crate::{ConnectorError, Sink, Source};

/// Exit code when the config is refused.
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Runs one connector in the foreground, from a config in Fluvio's
/// connector format, until SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// The connector's config (YAML, Fluvio's connector format).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Secrets as NAME=value lines (the environment is used too, unless
    /// --cluster-run).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// Take secrets from --secrets only, never from the environment (a
    /// cluster runs its connectors so: its environment is the server's).
    #[arg(long, requires = "secrets")]
    pub cluster_run: bool,
    /// The cluster's address.
    #[arg(long, env = "FLUVIO_ADDR", default_value = "127.0.0.1:9003", value_name = "HOST:PORT")]
    pub addr: String,
    /// Write metrics here as JSON, every few seconds.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Serve the metrics at http://ADDR/metrics for Prometheus (loopback
    /// only).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Check the config and exit.
    #[arg(long)]
    pub check: bool,
    /// Check the config, print its name, type and topic as one JSON line,
    /// and exit (the cluster reads this when a connector is created).
    #[arg(long, conflicts_with = "check")]
    pub describe: bool,
}

/// The main function of a source connector program: `make` builds the
/// source from the config (read and checked first; its errors exit with
/// code 2), and the runtime runs it.
pub fn source_main<S, F>(make: F) -> ExitCode
where
    S: Source + 'static,
    F: Fn(&ConnectorConfig) -> Result<S, ConnectorError>,
{
    let make = &make;
    main_with(
        |config| make(config).map(drop),
        |config, options| async move {
            let source = make(&config)?;
            run_source(&config, source, options).await.map(drop)
        },
    )
}

/// The main function of a sink connector program: `make` builds the sink
/// from the config and the cluster's address (for a dead-letter producer).
pub fn sink_main<K, F>(make: F) -> ExitCode
where
    K: Sink + 'static,
    F: Fn(&ConnectorConfig, &str) -> Result<K, ConnectorError>,
{
    let make = &make;
    main_with(
        |config| make(config, "").map(drop),
        |config, options| async move {
            let addr = options.addr.clone();
            run_sink(&config, || make(&config, &addr), options).await.map(drop)
        },
    )
}

/// Parses the arguments, reads the config, then checks, describes or runs
/// it. `check` reads the connector's own section without connecting.
pub fn main_with<C, R, Fut>(check: C, run: R) -> ExitCode
where
    C: Fn(&ConnectorConfig) -> Result<(), ConnectorError>,
    R: FnOnce(ConnectorConfig, RunOptions) -> Fut,
    Fut: Future<Output = Result<(), ConnectorError>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // The cluster writes this output to a log file: no colour codes there.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let secrets = match &args.secrets {
        Some(file) if args.cluster_run => Secrets::from_file(file).map(Secrets::cluster_run),
        Some(file) => Secrets::from_file(file),
        None => Ok(Secrets::from_env()),
    };
    let config = match secrets.and_then(|secrets| ConnectorConfig::from_file(&args.config, &secrets)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Err(error) = check(&config) {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    if args.describe {
        let description = serde_json::json!({ "name": config.name, "type": config.kind, "topic": config.topic });
        println!("{description}");
        return ExitCode::SUCCESS;
    }
    if args.check {
        println!("{}: {} connector {:?} is valid", args.config.display(), config.kind, config.name);
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let name = config.name.clone();
    let result = runtime.block_on(async move {
        tracing::info!(connector = %config.name, r#type = %config.kind, topic = %config.topic, "starting");
        let mut options = RunOptions::new(args.addr, shutdown_on_signals());
        options.metrics_file = args.metrics_file;
        let _exposition = match args.metrics_addr {
            Some(addr) => {
                let listener = crate::exposition::bind(addr).await?;
                tracing::info!(%addr, "serving metrics at /metrics");
                let serving = crate::exposition::serve(listener, config.name.clone(), Arc::clone(&options.metrics));
                Some(AbortOnDrop(tokio::spawn(serving)))
            }
            None => None,
        };
        run(config, options).await
    });
    match result {
        Ok(()) => {
            tracing::info!(connector = %name, "stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Stops the metrics listener when the connector's run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
