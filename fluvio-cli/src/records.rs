//! `fluvio produce` and `fluvio consume`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::output::{OutputType, RecordPrinter};
use clap::Args;
use fluvio_client::producer::DeliverySemantic;
use fluvio_client::{ConsumerConfig, Fluvio, FluvioError, OffsetSpec, ProduceOutput, ProducerConfig, RecordKey};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

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
    #[arg(long, value_name = "SEPARATOR", conflicts_with = "key")]
    pub key_separator: Option<String>,
    /// Give every record this key.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Send the whole input as one record (line breaks included).
    #[arg(long, conflicts_with = "key_separator")]
    pub raw: bool,
    /// Send a batch at the latest this long after its first record (e.g.
    /// 10ms, 1s).
    #[arg(long, value_name = "DURATION", value_parser = crate::output::parse_duration_ms)]
    pub linger: Option<u64>,
    /// Send a batch once it holds this many bytes of records (e.g. 16KiB).
    #[arg(long = "batch-size", value_name = "SIZE", value_parser = crate::output::parse_size)]
    pub batch_size: Option<u64>,
    /// Refuse a record larger than this, and send no batch larger than
    /// this (e.g. 4MiB; 1MiB by default).
    #[arg(long = "max-request-size", value_name = "SIZE", value_parser = crate::output::parse_size)]
    pub max_request_size: Option<u64>,
    /// Compress batches before sending; they are stored compressed too:
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, value_name = "CODEC", default_value = "none")]
    pub compression: fluvio_client::Compression,
    /// at-least-once (resend until acknowledged; the default) or
    /// at-most-once (send each batch once).
    #[arg(long = "delivery-semantic", value_enum, default_value_t = Delivery::AtLeastOnce)]
    pub delivery_semantic: Delivery,
    /// Write every record to this partition. Without it, records with a
    /// key go to the partition their key hashes to, and the others to each
    /// partition in turn, a batch at a time.
    #[arg(short, long)]
    pub partition: Option<u32>,
    /// SmartModules applied before sending.
    #[command(flatten)]
    pub smartmodules: SmartModuleArgs,
}

/// `--delivery-semantic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// Send each batch once.
    AtMostOnce,
    /// Resend a batch until it is acknowledged.
    AtLeastOnce,
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
    let defaults = ProducerConfig::default();
    if args.batch_size == Some(0) {
        return Err(CliError::failed("--batch-size must be at least 1 byte"));
    }
    let config = ProducerConfig {
        partition: args.partition,
        smartmodules: args.smartmodules.chain()?,
        policy: args.smartmodules.policy(),
        dead_letters: args.smartmodules.dead_letters(),
        linger: args.linger.map_or(defaults.linger, std::time::Duration::from_millis),
        batch_bytes: args.batch_size.map_or(defaults.batch_bytes, |bytes| bytes.min(usize::MAX as u64) as usize),
        delivery_semantic: match args.delivery_semantic {
            Delivery::AtMostOnce => DeliverySemantic::AtMostOnce,
            Delivery::AtLeastOnce => DeliverySemantic::default(),
        },
        compression: args.compression,
        max_request_size: args
            .max_request_size
            .map_or(defaults.max_request_size, |bytes| bytes.clamp(1, usize::MAX as u64) as usize),
        ..defaults
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
    let fixed_key = || args.key.as_ref().map_or(RecordKey::NULL, |key| RecordKey::from(key.as_str()));
    let mut pending = Vec::new();
    let mut failures = Vec::new();
    if args.raw {
        let mut value = Vec::new();
        let mut input = input;
        input.read_to_end(&mut value).await.map_err(|e| CliError::failed(format!("cannot read input: {e}")))?;
        pending.push(producer.send(fixed_key(), value).await?);
        settle(&mut pending, &producer, &mut failures).await?;
        return match failures.first() {
            Some(error) => Err(CliError::failed(format!("the record was not sent: {error}"))),
            None => Ok(()),
        };
    }
    let mut lines = BufReader::new(input).lines();
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
            None => (fixed_key(), line),
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
    #[arg(short = 'o', long, alias = "start", value_name = "OFFSET", conflicts_with = "beginning")]
    pub offset: Option<i64>,
    /// Start this many records after the beginning.
    #[arg(short = 'H', long = "head", value_name = "N", conflicts_with_all = ["beginning", "offset"])]
    pub head: Option<u64>,
    /// Start this many records before the end.
    #[arg(short = 'T', long = "tail", value_name = "N", conflicts_with_all = ["beginning", "offset", "head"])]
    pub tail: Option<u64>,
    /// Stop after the record at this offset (in every partition read).
    #[arg(long, value_name = "OFFSET")]
    pub end: Option<i64>,
    /// Stop at the end of the topic instead of waiting for new records.
    #[arg(short = 'd', long = "disable-continuous")]
    pub disable_continuous: bool,
    /// Print each record's key before its value: `[key] value`.
    #[arg(short = 'k', long = "key-value")]
    pub key_value: bool,
    /// How to print values: text, dynamic, json, binary (hex dump) or raw
    /// (the bytes as stored, nothing added).
    #[arg(short = 'O', long, value_enum, default_value_t = OutputType::Text)]
    pub output: OutputType,
    /// Print each record through a template: {{key}}, {{value}},
    /// {{offset}}, {{partition}}, {{time}} (RFC 3339), {{timestamp}} (ms).
    #[arg(short = 'F', long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Most bytes of stored batches the server reads per step.
    #[arg(short = 'b', long = "maxbytes", value_name = "BYTES", value_parser = parse_size_u32)]
    pub max_bytes: Option<u32>,
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
    } else if let Some(n) = args.head {
        (
            OffsetSpec::FromBeginning(n),
            format!("Consuming records starting {n} from the beginning of topic '{}'", args.topic),
        )
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
        max_bytes: args.max_bytes.unwrap_or(ConsumerConfig::default().max_bytes),
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
    chunks: &mut futures::stream::ReadyChunks<fluvio_client::RecordStream>,
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
    let printer = RecordPrinter { output: args.output, format: args.format.clone(), key_value: args.key_value };
    // With --end: the stream stops once every partition is past it (checked
    // on records, and on a timer for partitions whose records a filter
    // dropped).
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        let past_end = |chunks: &futures::stream::ReadyChunks<fluvio_client::RecordStream>| {
            args.end.is_some_and(|end| {
                chunks.get_ref().next_offsets().iter().all(|(_, next)| next.is_some_and(|next| next > end))
            })
        };
        let items = tokio::select! {
            items = chunks.next() => items,
            _ = &mut interrupted => return Ok(()),
            _ = ticks.tick(), if args.end.is_some() => {
                if past_end(chunks) {
                    return Ok(());
                }
                continue;
            }
        };
        let Some(items) = items else { return Ok(()) };
        let mut out = stdout.lock();
        for item in items {
            match item {
                Ok(record) if args.end.is_some_and(|end| record.offset > end) => {}
                Ok(record) => {
                    if printer.write(&mut out, &record).is_err() {
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
        drop(out);
        if past_end(chunks) {
            return Ok(());
        }
    }
}

fn parse_size_u32(text: &str) -> Result<u32, fluvio_client::protocol::units::UnitError> {
    fluvio_client::protocol::units::parse_size_within(text)
}
