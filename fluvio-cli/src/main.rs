//! The `fluvio` command: a local cluster, topics, producing and consuming
//! records, SmartModules (register, list, delete, test, build) and
//! connectors.
//!
//! It is a thin layer over the SDK (`fluvio-client`): every network call and
//! every SmartModule run goes through it, so the CLI behaves as programs do.

mod chain;
mod cluster;
mod connector;
mod error;
mod home;
mod records;
mod smartmodule;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliResult;

/// Streaming with SmartModules: WebAssembly functions that filter, map and
/// aggregate records inline.
#[derive(Debug, Parser)]
#[command(name = "fluvio", version, propagate_version = true)]
struct Cli {
    /// The server's address, or several comma-separated (servers sharing a
    /// JetStream cluster; the client fails over between them). Default:
    /// $FLUVIO_ADDR, the local cluster's, or 127.0.0.1:9003.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    addr: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, stop or inspect the local server.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Create, list or delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Write records to a topic, one per line of stdin or of a file.
    Produce(records::ProduceArgs),
    /// Read records from a topic, optionally through SmartModules run on the server.
    Consume(records::ConsumeArgs),
    /// Register, list, delete, test and build SmartModules.
    #[command(subcommand, name = "smart-module", aliases = ["smartmodule", "sm"])]
    SmartModule(smartmodule::SmartModuleCommand),
    /// List or delete the offsets consumers stored (`fluvio consume -c ID`).
    #[command(subcommand)]
    Consumer(ConsumerCommand),
    /// Create, list, follow and delete connectors run by the cluster, or
    /// run one in the foreground.
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Start the local server in the background.
    Start {
        /// Data directory (default: ~/.fluvio/data, or $FLUVIO_HOME/data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long = "listen", default_value = fluvio_client::protocol::DEFAULT_ADDR, value_name = "HOST:PORT")]
        listen: String,
        /// Keep topics in this NATS JetStream cluster (comma-separated
        /// nats:// URLs) instead of the data directory.
        #[arg(long, env = "FLUVIO_JETSTREAM", value_name = "URLS")]
        jetstream: Option<String>,
    },
    /// Stop the local server.
    Stop,
    /// Say whether the local server is running, and where.
    Status,
}

#[derive(Debug, Subcommand)]
enum ConsumerCommand {
    /// List every consumer's stored offset in each partition, and its lag.
    List,
    /// Forget a consumer's stored offsets: it starts afresh next time.
    Delete {
        /// The consumer's id.
        id: String,
        /// Only its offsets in this topic.
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// The topic's name.
        name: String,
        /// Number of partitions.
        #[arg(short, long, default_value_t = 1)]
        partitions: u32,
        /// Copies kept of each partition (more than 1 needs servers on a
        /// JetStream cluster).
        #[arg(short, long, default_value_t = 1)]
        replication: u32,
        /// Delete records older than this many seconds.
        #[arg(long, value_name = "SECONDS")]
        retention_secs: Option<u64>,
        /// Keep at most this many bytes per partition.
        #[arg(long, value_name = "BYTES")]
        retention_bytes: Option<u64>,
        /// Start a new segment at this size.
        #[arg(long, value_name = "BYTES")]
        segment_bytes: Option<u64>,
    },
    /// List topics.
    List,
    /// Delete a topic and its records.
    Delete {
        /// The topic's name.
        name: String,
    },
}

async fn connect(addr: Option<&str>) -> CliResult<fluvio_client::Fluvio> {
    Ok(fluvio_client::Fluvio::connect_to(&home::server_addr(addr)).await?)
}

async fn run(cli: Cli) -> CliResult {
    let addr = cli.addr.as_deref();
    match cli.command {
        Command::Cluster(ClusterCommand::Start { data_dir, listen, jetstream }) => {
            cluster::start(data_dir, &listen, jetstream.as_deref())
        }
        Command::Cluster(ClusterCommand::Stop) => cluster::stop(),
        Command::Cluster(ClusterCommand::Status) => cluster::status().await,
        Command::Topic(TopicCommand::Create {
            name,
            partitions,
            replication,
            retention_secs,
            retention_bytes,
            segment_bytes,
        }) => {
            let retention = fluvio_client::protocol::RetentionSpec {
                max_age_ms: retention_secs.map(|s| s.saturating_mul(1000)),
                max_bytes: retention_bytes,
                segment_bytes,
            };
            connect(addr).await?.create_replicated_topic(&name, partitions, replication, retention).await?;
            println!("topic \"{name}\" created");
            Ok(())
        }
        Command::Topic(TopicCommand::List) => {
            let topics = connect(addr).await?.list_topics().await?;
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.partitions.to_string(),
                        t.replication.to_string(),
                        t.next_offsets.iter().sum::<i64>().to_string(),
                    ]
                })
                .collect();
            print!("{}", table(&["NAME", "PARTITIONS", "REPLICATION", "RECORDS"], &rows));
            Ok(())
        }
        Command::Topic(TopicCommand::Delete { name }) => {
            connect(addr).await?.delete_topic(&name).await?;
            println!("topic \"{name}\" deleted");
            Ok(())
        }
        Command::Consumer(ConsumerCommand::List) => {
            let fluvio = connect(addr).await?;
            let (consumers, topics) = (fluvio.list_consumers().await?, fluvio.list_topics().await?);
            let rows: Vec<Vec<String>> = consumers
                .iter()
                .map(|c| {
                    let end = topics
                        .iter()
                        .find(|t| t.name == c.topic)
                        .and_then(|t| t.next_offsets.get(c.partition as usize).copied());
                    vec![
                        c.consumer.clone(),
                        c.topic.clone(),
                        c.partition.to_string(),
                        c.offset.to_string(),
                        end.map_or_else(|| "-".into(), |end| (end - c.offset).max(0).to_string()),
                        age(c.modified_ms),
                    ]
                })
                .collect();
            print!("{}", table(&["CONSUMER", "TOPIC", "PARTITION", "OFFSET", "LAG", "LAST SEEN"], &rows));
            Ok(())
        }
        Command::Consumer(ConsumerCommand::Delete { id, topic }) => {
            connect(addr).await?.delete_consumer(&id, topic.as_deref()).await?;
            println!("consumer \"{id}\" deleted");
            Ok(())
        }
        Command::Produce(args) => records::produce(connect(addr).await?, args).await,
        Command::Consume(args) => records::consume(connect(addr).await?, args).await,
        Command::SmartModule(command) => smartmodule::run(addr, command).await,
        Command::Connector(command) => connector::run(addr, command).await,
    }
}

/// How long ago a time in milliseconds since the Unix epoch was: `42s`,
/// `3m`, `5h`, `2d`.
fn age(ms: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// A table as the CLI prints it: a leading space, columns two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::from(" ");
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error.message);
            ExitCode::from(error.code)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_line_up_like_the_seed() {
        let out = super::table(
            &["NAME", "STATUS", "SIZE"],
            &[vec!["my-filter".into(), "SmartModuleStatus".into(), "108754".into()]],
        );
        assert_eq!(out, " NAME       STATUS             SIZE\n my-filter  SmartModuleStatus  108754\n");
    }
}
