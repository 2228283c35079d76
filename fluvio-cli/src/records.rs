//! `fluvio produce` and `fluvio consume`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use fluvio_client::{ConsumerConfig, Fluvio, FluvioError, OffsetSpec, ProduceOutput, ProducerConfig, RecordKey};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::chain::SmartModuleArgs;
use crate::error::{CliError, CliResult};

/// `fluvio produce TOPIC`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic.
    pub topic: String,
    /// Read records from this file (one per line) instead of stdin.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Split each line into key and value at the first occurrence of this text.
    #[arg(long, value_name = "SEPARATOR")]
    pub key_separator: Option<String>,
    /// Write every record to this partition. Without it, records with a
    /// key go to the partition their key hashes to, and the others to each
    /// partition in turn, a batch at a time.
    #[arg(short, long)]
    pub partition: Option<u32>,
    /// SmartModules applied before sending.
    #[command(flatten)]
    pub smartmodules: SmartModuleArgs,
}

/// Records acknowledged in between: bounds memory and reports errors early.
const ACK_WINDOW: usize = 10_000;

async fn settle(
    pending: &mut Vec<ProduceOutput>,
    producer: &fluvio_client::TopicProducer,
    failures: &mut Vec<FluvioError>,
) -> CliResult {
    producer.flush().await?;
    for output in pending.drain(..) {
        if let Err(error) = output.wait().await {
            failures.push(error);
        }
    }
    Ok(())
}

/// Sends one record per input line.
pub async fn produce(fluvio: Fluvio, args: ProduceArgs) -> CliResult {
    let config = ProducerConfig {
        partition: args.partition,
        smartmodules: args.smartmodules.chain()?,
        policy: args.smartmodules.policy(),
        dead_letters: args.smartmodules.dead_letters(),
        ..Default::default()
    };
    let producer = fluvio.topic_producer_with(&args.topic, config).await?;
    let (input, progress): (Box<dyn AsyncRead + Unpin + Send>, Option<indicatif::ProgressBar>) = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| CliError::failed(format!("cannot read {}: {e}", path.display())))?;
            let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let bar = (std::io::stderr().is_terminal() && size > 0).then(|| {
                let bar = indicatif::ProgressBar::new(size);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                        .expect("valid template"),
                );
                bar
            });
            (Box::new(file), bar)
        }
        None => (Box::new(tokio::io::stdin()), None),
    };
    let mut lines = BufReader::new(input).lines();
    let mut pending = Vec::new();
    let mut failures = Vec::new();
    let mut line_number = 0u64;
    let mut malformed = 0u64;
    while let Some(line) = lines.next_line().await.map_err(|e| CliError::failed(format!("cannot read input: {e}")))? {
        line_number += 1;
        if let Some(bar) = &progress {
            bar.inc(line.len() as u64 + 1);
        }
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (RecordKey::from(key), value.to_string()),
                None => {
                    eprintln!("line {line_number} has no key separator {separator:?}; skipped");
                    malformed += 1;
                    continue;
                }
            },
            None => (RecordKey::NULL, line),
        };
        pending.push(producer.send(key, value).await?);
        if pending.len() >= ACK_WINDOW {
            settle(&mut pending, &producer, &mut failures).await?;
        }
    }
    settle(&mut pending, &producer, &mut failures).await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if producer.skipped() > 0 {
        eprintln!("{} record(s) skipped by SmartModule errors", producer.skipped());
    }
    if malformed > 0 {
        eprintln!("{malformed} line(s) without the key separator were not sent");
    }
    if let Some(first) = failures.first() {
        return Err(CliError::failed(format!("{} record(s) were not sent; the first error: {first}", failures.len())));
    }
    Ok(())
}

/// `fluvio consume TOPIC`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic.
    pub topic: String,
    /// Start from the beginning of the topic.
    #[arg(short = 'B', long = "beginning")]
    pub beginning: bool,
    /// Start at this absolute offset.
    #[arg(short = 'o', long, value_name = "OFFSET", conflicts_with = "beginning")]
    pub offset: Option<i64>,
    /// Start this many records before the end.
    #[arg(short = 'T', long = "tail", value_name = "N", conflicts_with_all = ["beginning", "offset"])]
    pub tail: Option<u64>,
    /// Stop at the end of the topic instead of waiting for new records.
    #[arg(short = 'd', long = "disable-continuous")]
    pub disable_continuous: bool,
    /// Print each record's key before its value: `[key] value`.
    #[arg(short = 'k', long = "key-value")]
    pub key_value: bool,
    /// The consumer's id: the stream starts where this id's stored offsets
    /// are (or where the other options say, the first time), and stores
    /// its position as it goes (every second, and at the end).
    #[arg(short = 'c', long = "consumer", value_name = "ID")]
    pub consumer: Option<String>,
    /// Read only this partition (repeat for several). Without it, every
    /// partition of the topic is read, as one stream.
    #[arg(short, long)]
    pub partition: Vec<u32>,
    /// SmartModules run on the server before records are sent.
    #[command(flatten)]
    pub smartmodules: SmartModuleArgs,
}

/// Prints records, one per line.
pub async fn consume(fluvio: Fluvio, args: ConsumeArgs) -> CliResult {
    let (offset, banner) = if args.beginning {
        (OffsetSpec::Beginning, format!("Consuming records from the beginning of topic '{}'", args.topic))
    } else if let Some(offset) = args.offset {
        (OffsetSpec::Absolute(offset), format!("Consuming records from offset {offset} in topic '{}'", args.topic))
    } else if let Some(n) = args.tail {
        (OffsetSpec::FromEnd(n), format!("Consuming records starting {n} from the end of topic '{}'", args.topic))
    } else {
        (
            OffsetSpec::End,
            format!("Consuming records from the end of topic '{}'. This will wait for new records", args.topic),
        )
    };
    let config = ConsumerConfig {
        partitions: args.partition.clone(),
        offset,
        continuous: !args.disable_continuous,
        smartmodules: args.smartmodules.chain()?,
        policy: args.smartmodules.policy(),
        dead_letters: args.smartmodules.dead_letters(),
        consumer_id: args.consumer.clone(),
        offset_flush: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let stream = fluvio.consumer_stream(&args.topic, config).await?;
    eprintln!("{banner}");
    let mut chunks = stream.ready_chunks(1024);
    let result = print_records(&mut chunks, &args).await;
    if args.consumer.is_some() {
        // Store where the consumer got to, even after Ctrl-C.
        chunks.get_mut().offset_flush().await?;
    }
    result
}

/// Prints records until the stream ends, the reader of stdout goes away,
/// or Ctrl-C.
async fn print_records(
    chunks: &mut futures::stream::ReadyChunks<fluvio_client::ConsumerStream>,
    args: &ConsumeArgs,
) -> CliResult {
    let stdout = std::io::stdout();
    // With a consumer id, Ctrl-C stops the stream so that its position is
    // stored; without one, it ends the process as usual.
    let mut interrupted: futures::future::BoxFuture<'_, ()> = match args.consumer {
        Some(_) => Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
        }),
        None => Box::pin(std::future::pending()),
    };
    loop {
        let items = tokio::select! {
            items = chunks.next() => items,
            _ = &mut interrupted => return Ok(()),
        };
        let Some(items) = items else { return Ok(()) };
        let mut out = stdout.lock();
        for item in items {
            match item {
                Ok(record) => {
                    let value = String::from_utf8_lossy(&record.value);
                    let written = if args.key_value {
                        let key = record.key.as_deref().map_or_else(|| "null".into(), String::from_utf8_lossy);
                        writeln!(out, "[{key}] {value}")
                    } else {
                        writeln!(out, "{value}")
                    };
                    if written.is_err() {
                        // The reader went away (`| head`): stop quietly.
                        return Ok(());
                    }
                }
                Err(FluvioError::DeadLetter(failure)) => eprintln!("dead letter: {failure}"),
                Err(error) => {
                    let _ = out.flush();
                    return Err(error.into());
                }
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
    }
}
