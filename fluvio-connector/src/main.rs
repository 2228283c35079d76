//! `fluvio-connector`: runs one connector in the foreground, from a config
//! in Fluvio's connector format. The cluster starts connectors this way;
//! `fluvio connector run` does the same for development.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fluvio_connector::config::{ConnectorConfig, Secrets};
use fluvio_connector::runtime::{RunOptions, shutdown_on_signals};

/// Runs a source or sink connector until SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "fluvio-connector", version)]
struct Args {
    /// The connector's config (YAML, Fluvio's connector format).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Secrets as NAME=value lines (the environment is used too).
    #[arg(long, value_name = "FILE")]
    secrets: Option<PathBuf>,
    /// The cluster's address.
    #[arg(long, env = "FLUVIO_ADDR", default_value = "127.0.0.1:9003", value_name = "HOST:PORT")]
    addr: String,
    /// Write metrics here as JSON, every few seconds.
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Check the config and exit.
    #[arg(long)]
    check: bool,
    /// Check the config, print its name, type and topic as one JSON line,
    /// and exit (the cluster reads this when a connector is created).
    #[arg(long, conflicts_with = "check")]
    describe: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // The cluster writes this output to a log file: no colour codes there.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let secrets = match &args.secrets {
        Some(file) => Secrets::from_file(file),
        None => Ok(Secrets::from_env()),
    };
    let config = secrets.and_then(|secrets| ConnectorConfig::from_file(&args.config, &secrets));
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = fluvio_connector::check(&config) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
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
    tracing::info!(connector = %config.name, r#type = %config.kind, topic = %config.topic, "starting");
    let mut options = RunOptions::new(args.addr, shutdown_on_signals());
    options.metrics_file = args.metrics_file;
    match fluvio_connector::run(&config, options).await {
        Ok(()) => {
            tracing::info!(connector = %config.name, "stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
