//! `http-source` and `http-sink`: records from and to HTTP endpoints.
//!
//! `http-source` polls an endpoint every `interval`, each response one
//! record, or (with `stream: true`) holds one request open and makes each
//! line of the streaming response a record:
//!
//! ```yaml
//! http:
//!   endpoint: http://127.0.0.1:8080/readings
//!   method: GET                  # default GET
//!   interval: 10s                # polling period (default 10s)
//!   headers: [ "Authorization: Bearer ${{ secrets.TOKEN }}" ]   # or a map
//!   body: '{"since": "today"}'   # request body, if any
//!   stream: false                # true: one streaming request, a record per line
//!   delimiter: "\n"              # what separates records in a stream
//!   output_parts: body           # body (default), or full: {"status", "headers", "body"}
//!   request-timeout: 30s         # polling only: the whole request
//! ```
//!
//! `http-sink` sends each record as a request body (or each batch as one
//! JSON array), retrying with backoff while the endpoint is unreachable or
//! answers 408, 429 or 5xx. It delivers at least once: it records the
//! position after each batch it delivered in `offsets-file` (by default in
//! the directory the cluster runs it in) and resumes there.
//!
//! ```yaml
//! http:
//!   endpoint: http://127.0.0.1:8080/ingest
//!   method: POST                 # default POST
//!   headers: [ "Content-Type: application/json" ]
//!   mode: record                 # record (default): a request per record; json-array: one per batch
//!   request-timeout: 30s
//!   offsets-file: /var/lib/my-sink.offsets   # default: $FLUVIO_CONNECTOR_STATE_DIR/offsets.json
//! ```
//!
//! Run by the cluster (`FLUVIO_CONNECTOR_STATE_DIR` set), `offsets-file` is
//! a file name in the connector's own directory: a path outside it is
//! refused.
//!
//! Any other answer (a 4xx) stops the connector with the endpoint's reason:
//! retrying a request the endpoint refuses would not deliver it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fluvio_client::ConsumerBatch;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::config::{ConfigError, ConfigNode, ConnectorConfig};
use crate::connector::{ConnectorError, ResumeKey, Sink, Source, SourceRecord, WriteReport};

/// The environment variable that names where a connector may keep state;
/// the cluster sets it to the connector's own directory.
pub const STATE_DIR_ENV: &str = "FLUVIO_CONNECTOR_STATE_DIR";

/// Settings both HTTP connectors share.
#[derive(Debug, Clone)]
struct Endpoint {
    url: reqwest::Url,
    method: Method,
    headers: HeaderMap,
    timeout: Duration,
    /// Under an egress list: the addresses the host was checked at, the
    /// only ones the client connects to.
    pinned: Option<Vec<std::net::SocketAddr>>,
}

impl Endpoint {
    fn from_section(section: &ConfigNode<'_>, default_method: Method) -> Result<Endpoint, ConfigError> {
        let endpoint = section.string("endpoint")?;
        let url = reqwest::Url::parse(&endpoint)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| section.invalid("endpoint", format!("{endpoint:?} is not an http:// or https:// URL")))?;
        let pinned =
            match crate::egress::EgressPolicy::from_env().map_err(|error| section.invalid("endpoint", error))? {
                None => None,
                Some(policy) => {
                    let host = url.host_str().unwrap_or_default();
                    let port = url.port_or_known_default().unwrap_or(80);
                    Some(policy.check(host, port).map_err(|error| section.invalid("endpoint", error))?)
                }
            };
        let method = match section.opt_string("method")? {
            None => default_method,
            Some(method) => Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| section.invalid("method", format!("{method:?} is not an HTTP method")))?,
        };
        let mut headers = HeaderMap::new();
        let pairs: Vec<(String, String)> = match section.opt_node("headers")? {
            None => Vec::new(),
            Some(node) if node.list().is_ok() => section
                .opt_strings("headers")?
                .unwrap_or_default()
                .into_iter()
                .map(|line| match line.split_once(':') {
                    Some((name, value)) => Ok((name.trim().to_string(), value.trim().to_string())),
                    None => Err(section.invalid("headers", "each header is written `Name: value`")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => section.opt_string_map("headers")?.unwrap_or_default().into_iter().collect(),
        };
        for (name, value) in pairs {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| section.invalid("headers", format!("{name:?} is not a header name")))?;
            // The value may hold a secret: never echo it.
            let value = HeaderValue::from_str(&value)
                .map_err(|_| section.invalid("headers", format!("the value of {name} is not a valid header value")))?;
            headers.append(header, value);
        }
        let timeout = section.opt_duration("request-timeout")?.unwrap_or(Duration::from_secs(30));
        Ok(Endpoint { url, method, headers, timeout, pinned })
    }

    /// Where it is, for messages: without credentials or query.
    fn display(&self) -> String {
        format!("the HTTP endpoint {}", shown_url(&self.url))
    }

    fn transient(&self, reason: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Transient { system: self.display(), reason: reason.to_string() }
    }

    /// A client builder that connects only where the egress list allowed.
    fn client_builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        match (&self.pinned, self.url.host_str()) {
            (Some(addresses), Some(host)) => builder.resolve_to_addrs(host, addresses),
            _ => builder,
        }
    }

    /// Sorts a failed answer: worth retrying, or not.
    fn refused(&self, status: StatusCode, body: &[u8]) -> ConnectorError {
        let body = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
        {
            self.transient(format!("answered {status}: {body}"))
        } else {
            ConnectorError::Fatal(format!("{} refused the request with {status}: {body}", self.display()))
        }
    }
}

/// What a polled response becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputParts {
    Body,
    Full,
}

/// The `http-source` connector.
pub struct HttpSource {
    endpoint: Endpoint,
    body: Option<String>,
    interval: Duration,
    stream: bool,
    delimiter: Vec<u8>,
    output: OutputParts,
    client: reqwest::Client,
    ticker: Option<tokio::time::Interval>,
    response: Option<reqwest::Response>,
    pending: Vec<u8>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource").field("endpoint", &self.endpoint.display()).field("stream", &self.stream).finish()
    }
}

impl HttpSource {
    /// Reads the `http` section of a config.
    pub fn from_config(config: &ConnectorConfig) -> Result<HttpSource, ConfigError> {
        let section = config.section()?;
        section.only(&[
            "endpoint",
            "method",
            "interval",
            "headers",
            "body",
            "stream",
            "delimiter",
            "output_parts",
            "output-parts",
            "output_type",
            "request-timeout",
        ])?;
        let endpoint = Endpoint::from_section(&section, Method::GET)?;
        let interval = section.opt_duration("interval")?.unwrap_or(Duration::from_secs(10));
        if interval.is_zero() {
            return Err(section.invalid("interval", "must be longer than 0"));
        }
        let output = match section.opt_string("output_parts")?.or(section.opt_string("output-parts")?).as_deref() {
            None | Some("body") => OutputParts::Body,
            Some("full") => OutputParts::Full,
            Some(other) => return Err(section.invalid("output_parts", format!("{other:?} is not body or full"))),
        };
        // Fluvio's `output_type: text|json` changes nothing here: bodies
        // are passed through as they come.
        if let Some(kind) = section.opt_string("output_type")?
            && kind != "text"
            && kind != "json"
        {
            return Err(section.invalid("output_type", format!("{kind:?} is not text or json")));
        }
        let delimiter = section.opt_string("delimiter")?.unwrap_or_else(|| "\n".to_string()).into_bytes();
        if delimiter.is_empty() {
            return Err(section.invalid("delimiter", "must not be empty"));
        }
        let client = endpoint
            .client_builder()
            .build()
            .map_err(|e| section.invalid("endpoint", format!("cannot make an HTTP client: {e}")))?;
        Ok(HttpSource {
            endpoint,
            body: section.opt_string("body")?,
            interval,
            stream: section.opt_bool("stream")?.unwrap_or(false),
            delimiter,
            output,
            client,
            ticker: None,
            response: None,
            pending: Vec::new(),
        })
    }

    fn request(&self) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(self.endpoint.method.clone(), self.endpoint.url.clone())
            .headers(self.endpoint.headers.clone());
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        request
    }

    async fn poll_once(&self) -> Result<SourceRecord, ConnectorError> {
        let response = self
            .request()
            .timeout(self.endpoint.timeout)
            .send()
            .await
            .map_err(|e| self.endpoint.transient(without_url(e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| self.endpoint.transient(without_url(e)))?;
        if !status.is_success() {
            return Err(self.endpoint.refused(status, &body));
        }
        let value = match self.output {
            OutputParts::Body => body.to_vec(),
            OutputParts::Full => {
                let headers: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into()))
                    .collect();
                let body = serde_json::from_slice::<serde_json::Value>(&body)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned().into());
                serde_json::json!({ "status": status.as_u16(), "headers": headers, "body": body })
                    .to_string()
                    .into_bytes()
            }
        };
        Ok(SourceRecord::new(None, value))
    }

    /// The next complete line of the stream, if one is buffered.
    fn buffered_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let at = self.pending.windows(self.delimiter.len()).position(|w| w == self.delimiter.as_slice())?;
            let mut line: Vec<u8> = self.pending.drain(..at + self.delimiter.len()).collect();
            line.truncate(at);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.is_empty() {
                return Some(line);
            }
        }
    }
}

/// reqwest's messages include the URL, which may hold a secret.
/// A URL as messages show it: scheme, host, port and path, never the user
/// name, password, query or fragment (any of which may hold a secret).
fn shown_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

impl Source for HttpSource {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        self.response = None;
        self.pending.clear();
        if !self.stream {
            let mut ticker = tokio::time::interval(self.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            self.ticker = Some(ticker);
            return Ok(());
        }
        let response = self.request().send().await.map_err(|e| self.endpoint.transient(without_url(e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(self.endpoint.refused(status, &body));
        }
        tracing::info!(endpoint = %self.endpoint.display(), "streaming");
        self.response = Some(response);
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<SourceRecord>, ConnectorError> {
        if !self.stream {
            let Some(ticker) = self.ticker.as_mut() else { return Err(self.endpoint.transient("not connected")) };
            ticker.tick().await;
            return self.poll_once().await.map(Some);
        }
        loop {
            if let Some(line) = self.buffered_line() {
                return Ok(Some(SourceRecord::new(None, line)));
            }
            let Some(response) = self.response.as_mut() else {
                return Err(self.endpoint.transient("not connected"));
            };
            match response.chunk().await {
                Ok(Some(chunk)) => self.pending.extend_from_slice(&chunk),
                Err(error) => {
                    self.response = None;
                    return Err(self.endpoint.transient(without_url(error)));
                }
                Ok(None) => {
                    self.response = None;
                    // The last line may lack its delimiter.
                    let rest = std::mem::take(&mut self.pending);
                    let rest = String::from_utf8_lossy(&rest).trim().to_string();
                    if !rest.is_empty() {
                        return Ok(Some(SourceRecord::new(None, rest.into_bytes())));
                    }
                    return Err(self.endpoint.transient("the streaming response ended"));
                }
            }
        }
    }
}

/// How `http-sink` groups records into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// One request per record, its value the body.
    Record,
    /// One request per batch: a JSON array of the values (each parsed as
    /// JSON when it is, else a string).
    JsonArray,
}

/// The `http-sink` connector.
#[derive(Debug)]
pub struct HttpSink {
    endpoint: Endpoint,
    mode: SinkMode,
    offsets_file: Option<PathBuf>,
    client: reqwest::Client,
    key: Option<ResumeKey>,
}

impl HttpSink {
    /// Reads the `http` section of a config.
    pub fn from_config(config: &ConnectorConfig) -> Result<HttpSink, ConfigError> {
        let section = config.section()?;
        section.only(&["endpoint", "method", "headers", "mode", "request-timeout", "offsets-file"])?;
        let endpoint = Endpoint::from_section(&section, Method::POST)?;
        let mode = match section.opt_string("mode")?.as_deref() {
            None | Some("record") => SinkMode::Record,
            Some("json-array") => SinkMode::JsonArray,
            Some(other) => return Err(section.invalid("mode", format!("{other:?} is not record or json-array"))),
        };
        let state_dir = std::env::var_os(STATE_DIR_ENV).map(PathBuf::from);
        let offsets_file = match (section.opt_string("offsets-file")?, &state_dir) {
            (None, state_dir) => state_dir.as_ref().map(|dir| dir.join("offsets.json")),
            (Some(file), None) => Some(PathBuf::from(file)),
            // Run by the cluster: state lives in the connector's own
            // directory, never anywhere else the server may write.
            (Some(file), Some(dir)) => {
                let relative = Path::new(&file);
                let escapes = relative.is_absolute()
                    || relative.components().any(|part| !matches!(part, std::path::Component::Normal(_)));
                if escapes {
                    return Err(section.invalid(
                        "offsets-file",
                        format!("{file:?} is outside the connector's directory; give a file name, kept in the connector's directory"),
                    ));
                }
                Some(dir.join(relative))
            }
        };
        let client = endpoint
            .client_builder()
            .timeout(endpoint.timeout)
            .build()
            .map_err(|e| section.invalid("endpoint", format!("cannot make an HTTP client: {e}")))?;
        Ok(HttpSink { endpoint, mode, offsets_file, client, key: None })
    }

    async fn send(&self, body: Vec<u8>, json: bool) -> Result<(), ConnectorError> {
        let mut request = self
            .client
            .request(self.endpoint.method.clone(), self.endpoint.url.clone())
            .headers(self.endpoint.headers.clone());
        if json && !self.endpoint.headers.contains_key(reqwest::header::CONTENT_TYPE) {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        let response = request.body(body).send().await.map_err(|e| self.endpoint.transient(without_url(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(self.endpoint.refused(status, &body))
    }

    fn offsets_key(key: &ResumeKey) -> String {
        format!("{}/{}/{}", key.connector, key.topic, key.partition)
    }

    fn read_offsets(&self) -> Result<serde_json::Map<String, serde_json::Value>, ConnectorError> {
        let Some(file) = &self.offsets_file else { return Ok(Default::default()) };
        match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ConnectorError::Fatal(format!(
                    "the offsets file {} is damaged ({e}); delete it to start from the config's offset",
                    file.display()
                ))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(error) => Err(ConnectorError::Fatal(format!("cannot read {}: {error}", file.display()))),
        }
    }
}

impl Sink for HttpSink {
    async fn connect(&mut self, key: &ResumeKey) -> Result<Option<i64>, ConnectorError> {
        self.key = Some(key.clone());
        if self.offsets_file.is_none() {
            tracing::warn!(
                "no offsets-file and no {STATE_DIR_ENV}: a restart starts from meta.consumer's offset, not where it \
                 stopped"
            );
        }
        Ok(self.read_offsets()?.get(&Self::offsets_key(key)).and_then(|v| v.as_i64()))
    }

    async fn write(&mut self, batch: &ConsumerBatch) -> Result<WriteReport, ConnectorError> {
        match self.mode {
            SinkMode::Record => {
                for record in &batch.records {
                    self.send(record.value.to_vec(), false).await?;
                }
            }
            SinkMode::JsonArray => {
                if !batch.records.is_empty() {
                    let values: Vec<serde_json::Value> = batch
                        .records
                        .iter()
                        .map(|r| {
                            serde_json::from_slice(&r.value)
                                .unwrap_or_else(|_| String::from_utf8_lossy(&r.value).into_owned().into())
                        })
                        .collect();
                    let body = serde_json::to_vec(&values).expect("JSON values serialize");
                    self.send(body, true).await?;
                }
            }
        }
        // Delivered: remember where to resume. A crash before this line
        // sends the batch again (at least once).
        if let (Some(file), Some(key)) = (&self.offsets_file, &self.key) {
            // One sink per partition shares the file: each read, change and
            // write must see the others' last one.
            static OFFSETS_FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one_at_a_time = OFFSETS_FILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut offsets = self.read_offsets()?;
            offsets.insert(Self::offsets_key(key), batch.next_offset.into());
            let json = serde_json::to_vec(&offsets).expect("offsets serialize");
            fluvio_fs::write_atomic(file, &json)
                .map_err(|e| ConnectorError::Fatal(format!("cannot write the offsets file {}: {e}", file.display())))?;
        }
        Ok(WriteReport { written: batch.records.len() as u64, rejected: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConnectorConfig, Secrets};

    #[test]
    fn an_endpoint_is_shown_without_its_credentials_or_query() {
        let text = "apiVersion: 0.1.0\nmeta: { version: 0.1.0, name: h, type: http-sink, topic: t, secrets: [ { name: TOKEN } ] }\nhttp: { endpoint: \"https://ops:${{ secrets.TOKEN }}@example.com:8443/in?key=${{ secrets.TOKEN }}\" }\n";
        let secrets = Secrets::parse("TOKEN=hunter2-secret\n", std::path::Path::new("s.env")).unwrap();
        let config = ConnectorConfig::parse(text, std::path::Path::new("h.yaml"), &secrets).unwrap();
        let endpoint = Endpoint::from_section(&config.section().unwrap(), Method::POST).unwrap();
        assert_eq!(endpoint.display(), "the HTTP endpoint https://example.com:8443/in");
        let error = endpoint.transient("refused").to_string();
        assert!(!error.contains("hunter2-secret") && !error.contains("ops"), "{error}");
        // A URL that does not parse is named with its secrets as references.
        let broken = text.replace("https://", "htps:/");
        let config = ConnectorConfig::parse(&broken, std::path::Path::new("h.yaml"), &secrets).unwrap();
        let error = Endpoint::from_section(&config.section().unwrap(), Method::POST).unwrap_err().to_string();
        assert!(!error.contains("hunter2-secret") && error.contains("${{ secrets.TOKEN }}"), "{error}");
    }
}
