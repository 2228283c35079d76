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
mod output;
mod profile;
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
    /// $FLUVIO_ADDR, the current profile's (~/.fluvio/config), the local
    /// cluster's, or 127.0.0.1:9003.
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
    /// List partitions.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Manage the profiles of ~/.fluvio/config: which cluster commands talk to.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Print the versions of this CLI and of the protocol it speaks.
    Version,
    /// Print a shell's completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum PartitionCommand {
    /// List every topic's partitions.
    List {
        /// table (the default), json or yaml.
        #[arg(short = 'O', long, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
}

/// A partition as `partition list` prints it.
#[derive(Debug, serde::Serialize)]
struct PartitionView {
    topic: String,
    partition: u32,
    leader: u32,
    replicas: u32,
    status: &'static str,
    high_watermark: i64,
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
        /// Serve TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Accept client certificates signed by these authorities (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Require every client to authenticate as a principal of this
        /// access file (see docs/security.md).
        #[arg(long, value_name = "FILE")]
        access: Option<PathBuf>,
    },
    /// Stop the local server.
    #[command(alias = "shutdown")]
    Stop,
    /// Say whether the local server is running, and where.
    Status,
    /// The servers of the cluster (Fluvio's SPUs).
    #[command(subcommand)]
    Spu(SpuCommand),
}

#[derive(Debug, Subcommand)]
enum SpuCommand {
    /// List the servers serving the cluster now: this one alone on a local
    /// log; every server sharing a JetStream cluster.
    List {
        /// table (the default), json or yaml.
        #[arg(short = 'O', long, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
}

/// A server as `cluster spu list` prints it.
#[derive(Debug, serde::Serialize)]
struct SpuView {
    id: i32,
    name: String,
    status: &'static str,
    #[serde(rename = "type")]
    spu_type: &'static str,
    public: String,
    version: String,
    started: String,
}

/// How a list is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListFormat {
    /// Columns for people.
    Table,
    /// A JSON array.
    Json,
    /// A YAML list.
    Yaml,
}

/// A topic as `topic list -O json|yaml` and `topic describe` print it.
#[derive(Debug, serde::Serialize)]
struct TopicView {
    name: String,
    partitions: u32,
    replication: u32,
    retention_time_ms: Option<u64>,
    max_partition_size: Option<u64>,
    segment_size: Option<u64>,
    next_offsets: Vec<i64>,
}

impl From<fluvio_client::protocol::TopicInfo> for TopicView {
    fn from(topic: fluvio_client::protocol::TopicInfo) -> Self {
        TopicView {
            name: topic.name,
            partitions: topic.partitions,
            replication: topic.replication,
            retention_time_ms: topic.retention.max_age_ms,
            max_partition_size: topic.retention.max_bytes,
            segment_size: topic.retention.segment_bytes,
            next_offsets: topic.next_offsets,
        }
    }
}

/// Prints topics as asked.
fn print_topics(topics: Vec<TopicView>, format: ListFormat, one: bool) -> CliResult {
    let text = match (format, one) {
        (ListFormat::Json, false) => serde_json::to_string_pretty(&topics).expect("topics print") + "\n",
        (ListFormat::Json, true) => serde_json::to_string_pretty(&topics[0]).expect("topics print") + "\n",
        (ListFormat::Yaml, false) => serde_norway::to_string(&topics).expect("topics print"),
        (ListFormat::Yaml, true) => serde_norway::to_string(&topics[0]).expect("topics print"),
        (ListFormat::Table, false) => {
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
            table(&["NAME", "PARTITIONS", "REPLICATION", "RECORDS"], &rows)
        }
        (ListFormat::Table, true) => {
            let t = &topics[0];
            let or_none =
                |value: Option<u64>, unit: &str| value.map_or_else(|| "none".into(), |v| format!("{v} {unit}"));
            let mut text = format!(
                " Name: {}\n Partitions: {}\n Replication: {}\n Retention time: {}\n Max partition size: {}\n Segment size: {}\n",
                t.name,
                t.partitions,
                t.replication,
                or_none(t.retention_time_ms, "ms"),
                or_none(t.max_partition_size, "bytes"),
                t.segment_size.map_or_else(|| "server default".into(), |v| format!("{v} bytes")),
            );
            let rows: Vec<Vec<String>> =
                t.next_offsets.iter().enumerate().map(|(p, end)| vec![p.to_string(), end.to_string()]).collect();
            text.push_str(&table(&["PARTITION", "NEXT OFFSET"], &rows));
            text
        }
    };
    print!("{text}");
    Ok(())
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
        /// Only its offset in this partition of --topic.
        #[arg(short, long, requires = "topic")]
        partition: Option<u32>,
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
        /// Delete records older than this (e.g. 1h, 7d).
        #[arg(long = "retention-time", value_name = "DURATION", value_parser = output::parse_duration_ms)]
        retention_ms: Option<u64>,
        /// Keep at most this much per partition (e.g. 1GiB).
        #[arg(long = "max-partition-size", value_name = "SIZE", value_parser = output::parse_size)]
        max_partition_size: Option<u64>,
        /// Start a new segment at this size (e.g. 10MiB; 1 MiB to 16 GiB).
        #[arg(long = "segment-size", value_name = "SIZE", value_parser = output::parse_size)]
        segment_size: Option<u64>,
    },
    /// Show one topic's settings and partitions.
    Describe {
        /// The topic's name.
        name: String,
        /// table (the default), json or yaml.
        #[arg(short = 'O', long, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
    /// List topics.
    List {
        /// table (the default), json or yaml.
        #[arg(short = 'O', long, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
    /// Delete topics and their records.
    Delete {
        /// The topics' names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// The cluster of `--addr`, else the configured one (`FLUVIO_ADDR`, the
/// profile, the local cluster), with the profile's and the environment's
/// TLS and token.
async fn connect(addr: Option<&str>) -> CliResult<fluvio_client::Fluvio> {
    Ok(match addr {
        Some(addr) => fluvio_client::Fluvio::connect_to(addr).await?,
        None => fluvio_client::Fluvio::connect().await?,
    })
}

async fn run(cli: Cli) -> CliResult {
    let addr = cli.addr.as_deref();
    match cli.command {
        Command::Cluster(ClusterCommand::Start {
            data_dir,
            listen,
            jetstream,
            tls_cert,
            tls_key,
            tls_client_ca,
            access,
        }) => {
            let mut server_args: Vec<std::ffi::OsString> = Vec::new();
            if let Some(urls) = jetstream {
                server_args.extend(["--jetstream".into(), urls.into()]);
            }
            let files = [
                ("--tls-cert", tls_cert),
                ("--tls-key", tls_key),
                ("--tls-client-ca", tls_client_ca),
                ("--access", access),
            ];
            for (flag, file) in files {
                if let Some(file) = file {
                    // The server runs in another directory's stead: give it
                    // absolute paths.
                    let file = std::path::absolute(&file).unwrap_or(file);
                    server_args.extend([flag.into(), file.into()]);
                }
            }
            cluster::start(data_dir, &listen, &server_args)
        }
        Command::Cluster(ClusterCommand::Stop) => cluster::stop(),
        Command::Partition(PartitionCommand::List { output }) => {
            let topics = connect(addr).await?.list_topics().await?;
            let partitions: Vec<PartitionView> = topics
                .iter()
                .flat_map(|topic| {
                    topic.next_offsets.iter().enumerate().map(|(partition, end)| PartitionView {
                        topic: topic.name.clone(),
                        partition: partition as u32,
                        leader: 0,
                        replicas: topic.replication,
                        status: "Online",
                        high_watermark: *end,
                    })
                })
                .collect();
            let text = match output {
                ListFormat::Json => serde_json::to_string_pretty(&partitions).expect("partitions print") + "\n",
                ListFormat::Yaml => serde_norway::to_string(&partitions).expect("partitions print"),
                ListFormat::Table => {
                    let rows: Vec<Vec<String>> = partitions
                        .iter()
                        .map(|p| {
                            vec![
                                p.topic.clone(),
                                p.partition.to_string(),
                                p.leader.to_string(),
                                p.replicas.to_string(),
                                p.status.to_string(),
                                p.high_watermark.to_string(),
                            ]
                        })
                        .collect();
                    table(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "RESOLUTION", "HW"], &rows)
                }
            };
            print!("{text}");
            Ok(())
        }
        Command::Profile(command) => profile::run(command),
        Command::Version => {
            println!("Fluvio CLI        : {}", env!("CARGO_PKG_VERSION"));
            println!("Protocol version  : {}", fluvio_client::protocol::PROTOCOL_VERSION);
            println!("OS details        : {} ({})", std::env::consts::OS, std::env::consts::ARCH);
            Ok(())
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "fluvio", &mut std::io::stdout());
            Ok(())
        }
        Command::Cluster(ClusterCommand::Status) => cluster::status().await,
        Command::Cluster(ClusterCommand::Spu(SpuCommand::List { output })) => {
            let servers = connect(addr).await?.list_servers().await?;
            let spus: Vec<SpuView> = servers
                .into_iter()
                .map(|server| SpuView {
                    id: server.id,
                    name: server.address.clone(),
                    status: "Online",
                    spu_type: "custom",
                    public: server.address,
                    version: server.version,
                    started: output::rfc3339(server.started_ms as i64),
                })
                .collect();
            let text = match output {
                ListFormat::Json => serde_json::to_string_pretty(&spus).expect("servers print") + "\n",
                ListFormat::Yaml => serde_norway::to_string(&spus).expect("servers print"),
                ListFormat::Table => {
                    let rows: Vec<Vec<String>> = spus
                        .iter()
                        .map(|spu| {
                            vec![
                                spu.id.to_string(),
                                spu.name.clone(),
                                spu.status.to_string(),
                                spu.spu_type.to_string(),
                                spu.public.clone(),
                                spu.version.clone(),
                                spu.started.clone(),
                            ]
                        })
                        .collect();
                    table(&["ID", "NAME", "STATUS", "TYPE", "PUBLIC", "VERSION", "STARTED"], &rows)
                }
            };
            print!("{text}");
            Ok(())
        }
        Command::Topic(TopicCommand::Create {
            name,
            partitions,
            replication,
            retention_ms,
            max_partition_size,
            segment_size,
        }) => {
            let retention = fluvio_client::protocol::RetentionSpec {
                max_age_ms: retention_ms,
                max_bytes: max_partition_size,
                segment_bytes: segment_size,
            };
            connect(addr).await?.create_replicated_topic(&name, partitions, replication, retention).await?;
            println!("topic \"{name}\" created");
            Ok(())
        }
        Command::Topic(TopicCommand::List { output }) => {
            let topics = connect(addr).await?.list_topics().await?;
            print_topics(topics.into_iter().map(TopicView::from).collect(), output, false)
        }
        Command::Topic(TopicCommand::Describe { name, output }) => {
            let topic = connect(addr).await?.topic_info(&name).await?;
            print_topics(vec![TopicView::from(topic)], output, true)
        }
        Command::Topic(TopicCommand::Delete { names }) => {
            let fluvio = connect(addr).await?;
            let mut first_error = None;
            for name in names {
                match fluvio.delete_topic(&name).await {
                    Ok(()) => println!("topic \"{name}\" deleted"),
                    Err(error) => {
                        eprintln!("error: {error}");
                        first_error.get_or_insert(error);
                    }
                }
            }
            match first_error {
                Some(error) => Err(error.into()),
                None => Ok(()),
            }
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
        Command::Consumer(ConsumerCommand::Delete { id, topic, partition }) => {
            let fluvio = connect(addr).await?;
            match (topic, partition) {
                (Some(topic), Some(partition)) => {
                    fluvio.delete_consumer_offset(&id, (topic.as_str(), partition)).await?;
                    println!("consumer \"{id}\" deleted from partition {partition} of \"{topic}\"");
                }
                (topic, _) => {
                    fluvio.delete_consumer(&id, topic.as_deref()).await?;
                    println!("consumer \"{id}\" deleted");
                }
            }
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
