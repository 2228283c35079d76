//! `fluvio connector create|list|logs|delete|run`: connectors run by the
//! cluster, or in the foreground for development.
//!
//! The `fluvio-connector` program does the connector work; this module only
//! finds it, gathers the secrets a config names, and talks to the cluster.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Subcommand;
use fluvio_client::protocol::secrets_file;

use crate::error::{CliError, CliResult};

/// Connector commands.
#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Hand a connector to the cluster, which runs it, restarts it if it
    /// stops, and starts it again with the cluster.
    Create {
        /// The connector's config (Fluvio's connector format).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Secrets as NAME=value lines (else taken from the environment).
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
    },
    /// List the cluster's connectors.
    List,
    /// Print a connector's log.
    Logs {
        /// The connector's name.
        name: String,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop a connector and delete it.
    Delete {
        /// The connector's name.
        name: String,
    },
    /// Run a connector in the foreground (for development); Ctrl-C stops it.
    Run {
        /// The connector's config.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Secrets as NAME=value lines (else taken from the environment).
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        /// Serve the connector's metrics at http://ADDR/metrics for
        /// Prometheus (loopback only).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
    },
}

/// The `fluvio-connector` program: `$FLUVIO_CONNECTOR_BIN`, next to this
/// executable, then on PATH.
fn connector_program() -> PathBuf {
    crate::home::sibling_program("fluvio-connector", "FLUVIO_CONNECTOR_BIN")
}

/// The secret names a config declares in `meta.secrets`.
fn declared_secrets(config: &Path, text: &str) -> CliResult<Vec<String>> {
    let value: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| CliError::failed(format!("{}: not valid YAML: {e}", config.display())))?;
    let names = value
        .get("meta")
        .and_then(|meta| meta.get("secrets"))
        .and_then(|secrets| secrets.as_sequence())
        .map(|secrets| {
            secrets.iter().filter_map(|s| s.get("name").and_then(|n| n.as_str()).map(str::to_string)).collect()
        })
        .unwrap_or_default();
    Ok(names)
}

/// Values of the declared secrets: from the secrets file first, then the
/// environment. A missing one is an error that names it.
fn gather_secrets(config: &Path, text: &str, secrets_file: Option<&Path>) -> CliResult<Vec<(String, String)>> {
    let mut from_file = std::collections::HashMap::new();
    if let Some(file) = secrets_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::failed(format!("cannot read the secrets file {}: {e}", file.display())))?;
        let secrets = secrets_file::parse(&text).map_err(|e| CliError::failed(format!("{}: {e}", file.display())))?;
        from_file.extend(secrets);
    }
    let mut secrets = Vec::new();
    for name in declared_secrets(config, text)? {
        let value = from_file.get(&name).cloned().or_else(|| std::env::var(&name).ok()).ok_or_else(|| {
            CliError::failed(format!(
                "{}: the secret {name} (meta.secrets) is not set; put `{name}=...` in a --secrets file or set it \
                 in the environment",
                config.display()
            ))
        })?;
        secrets.push((name, value));
    }
    Ok(secrets)
}

/// Checks the config with the local connector program, so errors name the
/// user's file; the cluster checks it again.
fn check_locally(config: &Path, secrets: &[(String, String)]) -> CliResult {
    let program = connector_program();
    let mut command = Command::new(&program);
    command.arg("--check").arg("--config").arg(config);
    for (name, value) in secrets {
        command.env(name, value);
    }
    let output = match command.output() {
        Ok(output) => output,
        // No local program: the cluster's check is the one that counts.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(CliError::failed(format!("cannot run {}: {error}", program.display()))),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr.trim();
    Err(CliError::failed(format!("invalid connector config: {}", reason.strip_prefix("error: ").unwrap_or(reason))))
}

/// Runs a connector command.
pub async fn run(addr: Option<&str>, command: ConnectorCommand) -> CliResult {
    match command {
        ConnectorCommand::Create { config, secrets } => {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| CliError::failed(format!("cannot read {}: {e}", config.display())))?;
            let secrets = gather_secrets(&config, &text, secrets.as_deref())?;
            check_locally(&config, &secrets)?;
            let info = crate::connect(addr).await?.create_connector(&text, secrets).await?;
            println!("connector \"{}\" ({}) created", info.name, info.kind);
            Ok(())
        }
        ConnectorCommand::List => {
            let connectors = crate::connect(addr).await?.list_connectors().await?;
            let rows: Vec<Vec<String>> = connectors
                .into_iter()
                .map(|c| {
                    let restarts = match c.restarts {
                        1 => "1 restart".to_string(),
                        n => format!("{n} restarts"),
                    };
                    let status = match (c.pid, c.restarts) {
                        (Some(pid), 0) => format!("{} (pid {pid})", c.status),
                        (Some(pid), _) => format!("{} (pid {pid}, {restarts})", c.status),
                        (None, 0) => c.status,
                        (None, _) => format!("{}, {restarts}", c.status),
                    };
                    vec![c.name, c.kind, c.topic, status]
                })
                .collect();
            print!("{}", crate::table(&["NAME", "TYPE", "TOPIC", "STATUS"], &rows));
            Ok(())
        }
        ConnectorCommand::Logs { name, follow } => {
            let fluvio = crate::connect(addr).await?;
            let mut offset = 0;
            let mut stdout = std::io::stdout();
            loop {
                let (text, next) = fluvio.connector_logs(&name, offset).await?;
                if next < offset {
                    // The log was rotated: it starts over.
                    offset = 0;
                    continue;
                }
                offset = next;
                if text.is_empty() {
                    if !follow {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                use std::io::Write;
                stdout
                    .write_all(&text)
                    .and_then(|()| stdout.flush())
                    .map_err(|e| CliError::failed(format!("cannot write the log: {e}")))?;
            }
        }
        ConnectorCommand::Delete { name } => {
            crate::connect(addr).await?.delete_connector(&name).await?;
            println!("connector \"{name}\" deleted");
            Ok(())
        }
        ConnectorCommand::Run { config, secrets, metrics_addr } => {
            let program = connector_program();
            let mut command = Command::new(&program);
            command.arg("--config").arg(&config).arg("--addr").arg(crate::home::server_addr(addr));
            if let Some(secrets) = secrets {
                command.arg("--secrets").arg(secrets);
            }
            if let Some(metrics_addr) = metrics_addr {
                command.arg("--metrics-addr").arg(metrics_addr);
            }
            // The connector takes over this process, so Ctrl-C and SIGTERM
            // reach it directly and it stops cleanly.
            let error = command.exec();
            Err(CliError::failed(format!(
                "cannot run {}: {error}; build it with `cargo build --release -p fluvio-connector`",
                program.display()
            )))
        }
    }
}
