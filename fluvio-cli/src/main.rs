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
        /// Serve the web console and /metrics over HTTP here (see
        /// docs/operations.md).
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
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
    /// Where a derived topic's records come from, and its pipelines.
    #[serde(skip_serializing_if = "Option::is_none")]
    derived: Option<DerivedView>,
}

/// A derived topic's derivation as `topic describe` prints it.
#[derive(Debug, serde::Serialize)]
struct DerivedView {
    source: String,
    transforms: Vec<String>,
    on_error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_topic: Option<String>,
    pipelines: Vec<PipelineView>,
}

/// One pipeline of a derived topic.
#[derive(Debug, serde::Serialize)]
struct PipelineView {
    partition: u32,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    source_offset: i64,
    lag: i64,
    records_in: u64,
    records_out: u64,
    skipped: u64,
    dead_letters: u64,
}

impl TopicView {
    /// The topic, with its derivation if it is among `derived`.
    fn with_derivation(
        topic: fluvio_client::protocol::TopicInfo,
        derived: &[fluvio_client::protocol::requests::DerivedTopicInfo],
    ) -> TopicView {
        use fluvio_client::protocol::requests::PipelineState;
        let derived = derived.iter().find(|info| info.name == topic.name).map(|info| DerivedView {
            source: info.source.clone(),
            transforms: info.transforms.iter().map(|t| t.name().into_owned()).collect(),
            on_error: info.policy.to_string(),
            dead_letter_topic: info.dead_letter_topic.clone(),
            pipelines: info
                .pipelines
                .iter()
                .map(|pipeline| {
                    let (state, error) = match &pipeline.state {
                        PipelineState::Starting => ("starting".to_string(), None),
                        PipelineState::Running => ("running".to_string(), None),
                        PipelineState::Elsewhere { server, address } => (format!("on-server-{server}@{address}"), None),
                        PipelineState::Failed { error, .. } => ("failed".to_string(), Some(error.clone())),
                    };
                    PipelineView {
                        partition: pipeline.source_partition,
                        state,
                        error,
                        source_offset: pipeline.source_offset,
                        lag: (pipeline.source_end - pipeline.source_offset).max(0),
                        records_in: pipeline.records_in,
                        records_out: pipeline.records_out,
                        skipped: pipeline.skipped,
                        dead_letters: pipeline.dead_letters,
                    }
                })
                .collect(),
        });
        TopicView {
            name: topic.name,
            partitions: topic.partitions,
            replication: topic.replication,
            retention_time_ms: topic.retention.max_age_ms,
            max_partition_size: topic.retention.max_bytes,
            segment_size: topic.retention.segment_bytes,
            next_offsets: topic.next_offsets,
            derived,
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
            // The derivation column only where there is a derived topic.
            let any_derived = topics.iter().any(|t| t.derived.is_some());
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    let mut row = vec![
                        t.name.clone(),
                        t.partitions.to_string(),
                        t.replication.to_string(),
                        t.next_offsets.iter().sum::<i64>().to_string(),
                    ];
                    if any_derived {
                        row.push(t.derived.as_ref().map_or_else(|| "-".into(), |d| d.source.clone()));
                    }
                    row
                })
                .collect();
            if any_derived {
                table(&["NAME", "PARTITIONS", "REPLICATION", "RECORDS", "DERIVED FROM"], &rows)
            } else {
                table(&["NAME", "PARTITIONS", "REPLICATION", "RECORDS"], &rows)
            }
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
            if let Some(derived) = &t.derived {
                text.push_str(&format!(
                    " Derived from: {}\n Transforms: {}\n On error: {}\n",
                    derived.source,
                    if derived.transforms.is_empty() { "none".into() } else { derived.transforms.join(", ") },
                    derived.on_error,
                ));
                if let Some(topic) = &derived.dead_letter_topic {
                    text.push_str(&format!(" Dead-letter topic: {topic}\n"));
                }
            }
            text.push_str(&table(&["PARTITION", "NEXT OFFSET"], &rows));
            if let Some(derived) = &t.derived {
                // A pipeline per source partition.
                let rows: Vec<Vec<String>> = derived
                    .pipelines
                    .iter()
                    .map(|p| {
                        vec![p.partition.to_string(), p.state.clone(), p.source_offset.to_string(), p.lag.to_string()]
                    })
                    .collect();
                text.push_str(&table(&["SOURCE PARTITION", "STATE", "SOURCE OFFSET", "LAG"], &rows));
                for pipeline in &derived.pipelines {
                    if let Some(error) = &pipeline.error {
                        text.push_str(&format!(" source partition {}: stopped: {error}\n", pipeline.partition));
                    }
                }
            }
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
        /// Number of partitions (default 1; a derived topic's, its
        /// source's).
        #[arg(short, long)]
        partitions: Option<u32>,
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
        /// Make a derived topic: the server passes this topic's records
        /// through the chain of --transforms into the new one, exactly once.
        #[arg(long = "derive-from", value_name = "TOPIC")]
        derive_from: Option<String>,
        /// The derived topic's chain: a transforms file of registered
        /// SmartModules.
        #[arg(long, value_name = "FILE", requires = "derive_from")]
        transforms: Option<PathBuf>,
        /// One transform of the chain as JSON (`{"uses":"my-filter"}`);
        /// repeat for a chain.
        #[arg(long = "transforms-line", value_name = "JSON", requires = "derive_from", conflicts_with = "transforms")]
        transforms_line: Vec<String>,
        /// What a record a module fails on does: fail (stop the pipeline
        /// there), skip, or dead-letter (default with --dead-letter-topic).
        #[arg(long = "on-error", value_name = "POLICY", requires = "derive_from")]
        on_error: Option<fluvio_client::ErrorPolicy>,
        /// Where records a module fails on go, with headers naming the
        /// module, the error and the source record (created when missing).
        #[arg(long = "dead-letter-topic", value_name = "TOPIC", requires = "derive_from")]
        dead_letter_topic: Option<String>,
    },
    /// Start a derived topic's stopped pipelines again, from the record
    /// each stopped at (after the module was fixed or replaced).
    Resume {
        /// The derived topic.
        name: String,
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
        /// Delete a topic even though derived topics read it (their
        /// pipelines stop) or send it their dead letters.
        #[arg(long)]
        force: bool,
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
            http,
        }) => {
            let mut server_args: Vec<std::ffi::OsString> = Vec::new();
            if let Some(urls) = jetstream {
                server_args.extend(["--jetstream".into(), urls.into()]);
            }
            if let Some(http) = http {
                server_args.extend(["--http".into(), http.into()]);
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
            derive_from,
            transforms,
            transforms_line,
            on_error,
            dead_letter_topic,
        }) => {
            let retention = fluvio_client::protocol::RetentionSpec {
                max_age_ms: retention_ms,
                max_bytes: max_partition_size,
                segment_bytes: segment_size,
            };
            let fluvio = connect(addr).await?;
            match derive_from {
                None => {
                    fluvio.create_replicated_topic(&name, partitions.unwrap_or(1), replication, retention).await?;
                    println!("topic \"{name}\" created");
                }
                Some(source) => {
                    let chain = chain::SmartModuleArgs { transforms, transforms_line, ..Default::default() }.chain()?;
                    let policy = on_error.unwrap_or(if dead_letter_topic.is_some() {
                        fluvio_client::ErrorPolicy::DeadLetter
                    } else {
                        fluvio_client::ErrorPolicy::Fail
                    });
                    let request = fluvio_client::protocol::requests::CreateDerivedTopicRequest {
                        name: name.clone(),
                        partitions: partitions.unwrap_or(0),
                        replication,
                        retention,
                        source: source.clone(),
                        transforms: chain,
                        policy,
                        dead_letter_topic,
                    };
                    fluvio.create_derived_topic(request).await?;
                    println!("topic \"{name}\" created, derived from \"{source}\"");
                }
            }
            Ok(())
        }
        Command::Topic(TopicCommand::Resume { name }) => {
            let resumed = connect(addr).await?.resume_derived_topic(&name).await?;
            println!("topic \"{name}\": {resumed} pipeline(s) started again");
            Ok(())
        }
        Command::Topic(TopicCommand::List { output }) => {
            let fluvio = connect(addr).await?;
            let (topics, derived) = (fluvio.list_topics().await?, fluvio.list_derived_topics().await?);
            let views = topics.into_iter().map(|topic| TopicView::with_derivation(topic, &derived)).collect();
            print_topics(views, output, false)
        }
        Command::Topic(TopicCommand::Describe { name, output }) => {
            let fluvio = connect(addr).await?;
            let (topic, derived) = (fluvio.topic_info(&name).await?, fluvio.list_derived_topics().await?);
            print_topics(vec![TopicView::with_derivation(topic, &derived)], output, true)
        }
        Command::Topic(TopicCommand::Delete { names, force }) => {
            let fluvio = connect(addr).await?;
            let mut first_error = None;
            for name in names {
                let deleted =
                    if force { fluvio.force_delete_topic(&name).await } else { fluvio.delete_topic(&name).await };
                match deleted {
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
