//! How `fluvio consume` prints a record (`-O/--output`, `-F/--format`,
//! `-k`), and the human durations and sizes the commands take (`1h`,
//! `10MiB`).

use std::io::Write;

use fluvio_client::ConsumerRecord;
use fluvio_client::protocol::units::{self, UnitError};

/// How a record's value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputType {
    /// JSON objects and arrays pretty-printed, other UTF-8 as text,
    /// anything else as a hex dump.
    Dynamic,
    /// The value as UTF-8 text (invalid bytes replaced by `�`).
    #[default]
    Text,
    /// A hex dump of the value's bytes.
    Binary,
    /// The value parsed as JSON and printed on one line; a value that is
    /// not JSON is reported on stderr and skipped.
    Json,
    /// The value's bytes exactly as stored, with no line break added.
    Raw,
}

/// Writes records as the flags say.
#[derive(Debug, Clone)]
pub struct RecordPrinter {
    /// `-O`.
    pub output: OutputType,
    /// `-F`: a template with `{{key}}`, `{{value}}`, `{{offset}}`,
    /// `{{partition}}`, `{{time}}` and `{{timestamp}}`.
    pub format: Option<String>,
    /// `-k`: `[key] value`.
    pub key_value: bool,
}

impl RecordPrinter {
    /// Writes one record. `Err` only when `out` fails (the reader went
    /// away); records that cannot be shown as asked are reported on stderr.
    pub fn write(&self, out: &mut impl Write, record: &ConsumerRecord) -> std::io::Result<()> {
        if let Some(template) = &self.format {
            let key = record.key.as_deref().map_or_else(|| "null".into(), String::from_utf8_lossy);
            let line = template
                .replace("{{key}}", &key)
                .replace("{{value}}", &String::from_utf8_lossy(&record.value))
                .replace("{{offset}}", &record.offset.to_string())
                .replace("{{partition}}", &record.partition.to_string())
                .replace("{{time}}", &rfc3339(record.timestamp))
                .replace("{{timestamp}}", &record.timestamp.to_string());
            return writeln!(out, "{line}");
        }
        if self.output == OutputType::Raw {
            return out.write_all(&record.value);
        }
        let Some(value) = self.value(record) else { return Ok(()) };
        if self.key_value {
            let key = record.key.as_deref().map_or_else(|| "null".into(), String::from_utf8_lossy);
            writeln!(out, "[{key}] {value}")
        } else {
            writeln!(out, "{value}")
        }
    }

    fn value(&self, record: &ConsumerRecord) -> Option<String> {
        let bytes = &record.value;
        match self.output {
            OutputType::Text => Some(String::from_utf8_lossy(bytes).into_owned()),
            OutputType::Binary => Some(hex_dump(bytes)),
            OutputType::Json => match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(json) => Some(json.to_string()),
                Err(error) => {
                    eprintln!(
                        "record at offset {} of partition {} is not JSON: {error}",
                        record.offset, record.partition
                    );
                    None
                }
            },
            OutputType::Dynamic => Some(match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(json) if json.is_object() || json.is_array() => {
                    serde_json::to_string_pretty(&json).expect("JSON prints")
                }
                _ => match std::str::from_utf8(bytes) {
                    Ok(text) => text.to_string(),
                    Err(_) => hex_dump(bytes),
                },
            }),
            OutputType::Raw => None,
        }
    }
}

/// Bytes as lines of 16, in hex then as ASCII.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut lines = Vec::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String =
            chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        lines.push(format!("{:08x}  {:<47}  |{ascii}|", row * 16, hex.join(" ")));
    }
    lines.join("\n")
}

/// A timestamp in milliseconds since the Unix epoch, as RFC 3339 in UTC.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// A duration flag (`500ms`, `30s`, `10m`, `1h`, `7d`, `1h30m`), in
/// milliseconds; read by [`units::parse_duration`], the one reader of
/// durations.
pub fn parse_duration_ms(text: &str) -> Result<u64, UnitError> {
    units::parse_duration(text).map(|duration| duration.as_millis().min(u64::MAX as u128) as u64)
}

/// A size flag (`512`, `64KiB`, `10MiB`, `1GB`), in bytes; read by
/// [`units::parse_size`], the one reader of sizes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    units::parse_size(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_as_people_write_them() {
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("7 days"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_ms("10").unwrap_err().to_string().contains("time unit needed"));
        assert!(parse_duration_ms("soon").is_err());
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert!(parse_size("ten MB").is_err());
        assert!(parse_size("99999999999TiB").unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn outputs_show_values_as_asked() {
        let record = |value: &[u8]| ConsumerRecord {
            partition: 1,
            offset: 7,
            timestamp: 0,
            key: Some(fluvio_client::Bytes::from_static(b"k")),
            value: fluvio_client::Bytes::copy_from_slice(value),
            headers: Vec::new(),
        };
        let print = |printer: RecordPrinter, value: &[u8]| {
            let mut out = Vec::new();
            printer.write(&mut out, &record(value)).unwrap();
            String::from_utf8(out).unwrap()
        };
        let with = |output| RecordPrinter { output, format: None, key_value: false };
        assert_eq!(print(with(OutputType::Dynamic), br#"{"a":1}"#), "{\n  \"a\": 1\n}\n");
        assert_eq!(print(with(OutputType::Dynamic), b"plain"), "plain\n");
        assert_eq!(print(with(OutputType::Json), br#"{ "a" : 1 }"#), "{\"a\":1}\n");
        assert_eq!(print(with(OutputType::Json), b"not json"), "");
        assert_eq!(print(with(OutputType::Raw), b"\x00\x01"), "\u{0}\u{1}");
        assert!(print(with(OutputType::Binary), b"AB").starts_with("00000000  41 42"));
        let templated = RecordPrinter {
            format: Some("{{partition}}:{{offset}} {{key}}={{value}} {{time}}".into()),
            ..with(OutputType::Text)
        };
        assert_eq!(print(templated, b"v"), "1:7 k=v 1970-01-01T00:00:00.000Z\n");
        let keyed = RecordPrinter { key_value: true, ..with(OutputType::Text) };
        assert_eq!(print(keyed, b"v"), "[k] v\n");
    }
}
