//! {{project-name}}: a {{connector_kind}} connector built on `fluvio-connector`.
//!
//! The runtime around it comes with the library: the cluster connection,
//! the transforms in the config (run here for a source before sending, on
//! the server for a sink), retries with backoff, a clean stop on SIGTERM,
//! metrics, and the command line the built-in connectors have.
{%- if connector_kind == "source" %}

use std::process::ExitCode;
use std::time::Duration;

use fluvio_connector::config::{ConfigError, ConnectorConfig};
use fluvio_connector::{ConnectorError, Source, SourceRecord};

/// Emits a numbered JSON record every `interval`; stops after `count`.
#[derive(Debug)]
pub struct Ticker {
    interval: Duration,
    message: String,
    count: Option<u64>,
    sent: u64,
}

impl Ticker {
    /// Reads this connector's section of the config; unknown keys and bad
    /// values are errors that name the key and the file.
    pub fn from_config(config: &ConnectorConfig) -> Result<Ticker, ConfigError> {
        let section = config.section()?;
        section.only(&["interval", "message", "count"])?;
        Ok(Ticker {
            interval: section.opt_duration("interval")?.unwrap_or(Duration::from_secs(1)),
            message: section.opt_string("message")?.unwrap_or_else(|| "hello".to_string()),
            count: section.opt_u64("count")?,
            sent: 0,
        })
    }

    /// The record numbered `n`, keyed by its number.
    pub fn record(&self, n: u64) -> SourceRecord {
        let value = serde_json::json!({ "n": n, "message": self.message });
        SourceRecord::new(Some(n.to_string().into_bytes()), value.to_string().into_bytes())
    }
}

impl Source for Ticker {
    /// A real source connects to its system here; the runtime calls this
    /// again, with backoff, after a transient error.
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<SourceRecord>, ConnectorError> {
        if self.count.is_some_and(|count| self.sent >= count) {
            return Ok(None);
        }
        if self.sent > 0 {
            tokio::time::sleep(self.interval).await;
        }
        let record = self.record(self.sent);
        self.sent += 1;
        Ok(Some(record))
    }
}

fn main() -> ExitCode {
    fluvio_connector::app::source_main(|config| Ok(Ticker::from_config(config)?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fluvio_connector::config::Secrets;

    use super::*;

    fn config(section: &str) -> Result<ConnectorConfig, ConfigError> {
        let text = format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: t\n  type: {{project-name}}\n  topic: t\n{section}"
        );
        ConnectorConfig::parse(&text, Path::new("test.yaml"), &Secrets::from_env())
    }

    #[test]
    fn records_are_numbered_json() {
        let config = config("{{ project-name | remove: "-source" | remove: "-sink" }}:\n  message: hi\n").unwrap();
        let ticker = Ticker::from_config(&config).unwrap();
        let record = ticker.record(3);
        assert_eq!(record.key.as_deref(), Some(&b"3"[..]));
        let value: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(value, serde_json::json!({ "n": 3, "message": "hi" }));
    }

    #[tokio::test]
    async fn it_stops_after_count() {
        let config = config("{{ project-name | remove: "-source" | remove: "-sink" }}:\n  interval: 1ms\n  count: 2\n").unwrap();
        let mut ticker = Ticker::from_config(&config).unwrap();
        assert!(ticker.next().await.unwrap().is_some());
        assert!(ticker.next().await.unwrap().is_some());
        assert!(ticker.next().await.unwrap().is_none());
    }

    #[test]
    fn bad_settings_name_the_key() {
        let error = Ticker::from_config(&config("{{ project-name | remove: "-source" | remove: "-sink" }}:\n  interval: soon\n").unwrap());
        assert!(error.unwrap_err().to_string().contains("interval"));
    }
}
{%- else %}

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use fluvio_connector::config::{ConfigError, ConnectorConfig};
use fluvio_connector::{ConnectorError, ConsumerBatch, ResumeKey, Sink, WriteReport};

/// Appends each record's value to a file, one per line, and keeps the
/// position after the last batch in `<path>.offset`, so a restart resumes
/// where it stopped. A crash between the two writes repeats that batch
/// (at least once); a sink whose system has transactions can store the
/// position with the data instead, as `sql-sink` does, for exactly once.
#[derive(Debug)]
pub struct LineFile {
    path: PathBuf,
}

impl LineFile {
    /// Reads this connector's section of the config; unknown keys and bad
    /// values are errors that name the key and the file.
    pub fn from_config(config: &ConnectorConfig) -> Result<LineFile, ConfigError> {
        let section = config.section()?;
        section.only(&["path"])?;
        Ok(LineFile { path: PathBuf::from(section.string("path")?) })
    }

    fn offset_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".offset");
        PathBuf::from(name)
    }

    /// What one batch adds to the file.
    pub fn lines(batch: &ConsumerBatch) -> Vec<u8> {
        let mut text = Vec::new();
        for record in &batch.records {
            text.extend_from_slice(&record.value);
            text.push(b'\n');
        }
        text
    }

    fn append(&self, batch: &ConsumerBatch) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        file.write_all(&Self::lines(batch))?;
        file.sync_all()?;
        // Replace the position file whole: write a copy, then rename.
        let offset = self.offset_path();
        let temporary = offset.with_extension("offset.tmp");
        std::fs::write(&temporary, batch.next_offset.to_string())?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, &offset)
    }
}

impl Sink for LineFile {
    /// Where to resume: the position stored with the last batch written.
    async fn connect(&mut self, _key: &ResumeKey) -> Result<Option<i64>, ConnectorError> {
        match tokio::fs::read_to_string(self.offset_path()).await {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ConnectorError::Fatal(format!("cannot read {}: {error}", self.offset_path().display()))),
        }
    }

    async fn write(&mut self, batch: &ConsumerBatch) -> Result<WriteReport, ConnectorError> {
        self.append(batch)
            .map_err(|error| ConnectorError::Fatal(format!("cannot write {}: {error}", self.path.display())))?;
        Ok(WriteReport { written: batch.records.len() as u64, rejected: 0 })
    }
}

fn main() -> ExitCode {
    fluvio_connector::app::sink_main(|config, _cluster| Ok(LineFile::from_config(config)?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fluvio_connector::ConsumerRecord;
    use fluvio_connector::config::Secrets;

    use super::*;

    fn batch(values: &[&str], next_offset: i64) -> ConsumerBatch {
        let records = values
            .iter()
            .enumerate()
            .map(|(i, value)| ConsumerRecord {
                partition: 0,
                offset: next_offset - values.len() as i64 + i as i64,
                timestamp: 0,
                key: None,
                value: value.as_bytes().to_vec().into(),
                headers: Vec::new(),
            })
            .collect();
        ConsumerBatch { partition: 0, records, next_offset }
    }

    #[tokio::test]
    async fn batches_become_lines_and_the_position_is_kept() {
        let dir = std::env::temp_dir().join(format!("{{project-name}}-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(dir.join("out.txt.offset"));
        let key = ResumeKey { connector: "t".into(), topic: "t".into(), partition: 0 };
        let mut sink = LineFile { path: path.clone() };
        assert_eq!(sink.connect(&key).await.unwrap(), None);
        sink.write(&batch(&["a", "b"], 2)).await.unwrap();
        sink.write(&batch(&["c"], 3)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        assert_eq!(LineFile { path }.connect(&key).await.unwrap(), Some(3));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_section_needs_a_path() {
        let text = "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: t\n  type: {{project-name}}\n  topic: t\n{{ project-name | remove: "-source" | remove: "-sink" }}:\n  file: x\n";
        let config = ConnectorConfig::parse(text, Path::new("test.yaml"), &Secrets::from_env()).unwrap();
        assert!(LineFile::from_config(&config).unwrap_err().to_string().contains("file"));
    }
}
{%- endif %}
