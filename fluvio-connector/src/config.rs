//! Connector configuration, in Fluvio's connector config format.
//!
//! ```yaml
//! apiVersion: 0.1.0
//! meta:
//!   version: 0.1.0
//!   name: my-sql-sink
//!   type: sql-sink
//!   topic: sensors
//!   consumer: { id: my-sql-sink, offset: { strategy: auto, start: beginning } }
//!   secrets: [ { name: DB_PASSWORD } ]
//! sql:
//!   url: postgres://postgres:${{ secrets.DB_PASSWORD }}@127.0.0.1:5432/test
//! transforms:
//!   - uses: my-filter
//!     with: { key: value }
//! ```
//!
//! The file is read into a YAML tree and walked with [`ConfigNode`], which
//! knows the path of every value: an unknown key, a missing key, a value of
//! the wrong type or a bad duration or size is reported with the file and
//! the key (`meta.producer.linger`), so the user knows where to look.
//!
//! Secrets (`${{ secrets.NAME }}`) must be declared in `meta.secrets`; they
//! are taken from the environment or a secrets file of `NAME=value` lines,
//! replaced in the connector's own section and in transform parameters, and
//! never shown: the config's `Debug` prints the placeholders, not the values.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fluvio_client::protocol::MAX_WASM_BYTES;
use fluvio_client::protocol::secrets_file::{self, SecretsFileError};
use fluvio_client::protocol::units::{self, UnitError};
use fluvio_client::protocol::window::{HoppingParts, SessionParts, Window, WindowParts};
use fluvio_client::{Compression, Lookback, SmartModuleInvocation};
use serde_norway::Value;

/// The config versions this crate reads.
pub const API_VERSIONS: &[&str] = &["0.0.0", "0.1.0", "0.2.0"];

/// A config that cannot be used, with the file and the key it is about.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{problem}", file.display(), key.as_deref().map(|k| format!("`{k}` ")).unwrap_or_default())]
pub struct ConfigError {
    /// The config file (or the secrets file).
    pub file: PathBuf,
    /// The dotted path of the key, when the problem is about one.
    pub key: Option<String>,
    /// What is wrong.
    pub problem: ConfigProblem,
}

/// What is wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    /// The file cannot be read.
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// The file is not YAML.
    #[error("is not valid YAML: {0}")]
    NotYaml(String),
    /// A required key is absent.
    #[error("is missing")]
    Missing,
    /// A key that is not part of the format.
    #[error("is not a known key here; the keys here are: {}", allowed.join(", "))]
    Unknown {
        /// The keys that are allowed at this place.
        allowed: Vec<String>,
    },
    /// A value of the wrong type.
    #[error("should be {expected}, but is {found}")]
    WrongType {
        /// What the key needs.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },
    /// A value that does not read as a duration or a size.
    #[error(transparent)]
    BadUnit(#[from] UnitError),
    /// A value outside what the key allows.
    #[error("{0}")]
    Invalid(String),
    /// A secret is used but not declared in `meta.secrets`.
    #[error("uses the secret {0}, which is not declared; add `- name: {0}` to meta.secrets")]
    UndeclaredSecret(String),
    /// A declared secret has no value.
    #[error(
        "needs the secret {0}, which is neither in the environment nor in the secrets file; set {0} or pass --secrets FILE with a line {0}=value"
    )]
    MissingSecret(String),
    /// A declared secret is not in the secrets file, the only place a
    /// connector the cluster runs takes secrets from.
    #[error(
        "needs the secret {0}, which its secrets file does not hold; connectors the cluster runs take secrets from that file only, never from the server's environment: give it when you create the connector (`fluvio connector create --config FILE --secrets FILE` with a line {0}=value, or {0} set where you run that command)"
    )]
    MissingFileSecret(String),
    /// A secrets file that does not read.
    #[error(transparent)]
    Secrets(#[from] SecretsFileError),
}

/// Where secrets come from: a secrets file, and (unless
/// [`cluster_run`](Secrets::cluster_run)) the environment.
#[derive(Clone)]
pub struct Secrets {
    values: HashMap<String, String>,
    file: Option<PathBuf>,
    /// Whether a secret the file lacks is taken from the environment: yes
    /// for a connector run by hand, on the user's own machine; never for
    /// one the cluster runs, whose environment is the server's.
    from_environment: bool,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets { values: HashMap::new(), file: None, from_environment: true }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("Secrets").field("names", &names).field("file", &self.file).finish()
    }
}

impl Secrets {
    /// Secrets from the environment only.
    pub fn from_env() -> Secrets {
        Secrets::default()
    }

    /// Secrets from a file of `NAME=value` lines (blank lines and lines
    /// starting with `#` are ignored), ahead of the environment.
    pub fn from_file(path: &Path) -> Result<Secrets, ConfigError> {
        let error = |problem| ConfigError { file: path.to_path_buf(), key: None, problem };
        let text = std::fs::read_to_string(path).map_err(|e| error(ConfigProblem::Unreadable(e.to_string())))?;
        Secrets::parse(&text, path)
    }

    /// Secrets from the text of a secrets file.
    pub fn parse(text: &str, path: &Path) -> Result<Secrets, ConfigError> {
        let values = secrets_file::parse(text).map_err(|error| ConfigError {
            file: path.to_path_buf(),
            key: None,
            problem: error.into(),
        })?;
        Ok(Secrets { values: values.into_iter().collect(), file: Some(path.to_path_buf()), from_environment: true })
    }

    /// For a connector the cluster runs: secrets never taken from the
    /// environment (so that a config cannot name a variable of the server's
    /// environment as a secret and send it anywhere), and `uses:` files only
    /// under the config's own directory.
    pub fn cluster_run(self) -> Secrets {
        Secrets { from_environment: false, ..self }
    }

    fn get(&self, name: &str) -> Option<String> {
        let from_environment = || self.from_environment.then(|| std::env::var(name).ok()).flatten();
        self.values.get(name).cloned().or_else(from_environment)
    }

    fn missing(&self, name: &str) -> ConfigProblem {
        match self.from_environment {
            true => ConfigProblem::MissingSecret(name.to_string()),
            false => ConfigProblem::MissingFileSecret(name.to_string()),
        }
    }

    /// Values for `names` taken from the environment, so that a process
    /// that runs the connector elsewhere gets the same secrets.
    pub fn with_env(mut self, names: &[String]) -> Secrets {
        for name in names {
            if !self.values.contains_key(name)
                && let Ok(value) = std::env::var(name)
            {
                self.values.insert(name.clone(), value);
            }
        }
        self
    }
}

/// Where a sink starts when it has no committed offset of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The first record still stored.
    Beginning,
    /// Only records produced from now on.
    End,
    /// An absolute offset.
    Absolute(i64),
    /// This many records before the end.
    FromEnd(u64),
}

/// The settings of a topic a connector creates (`meta.topic` as a mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// `partition.count` (or `partitions`); 1 by default.
    pub partitions: u32,
    /// `partition.replication` (or `replication`); 1 by default.
    pub replication: u32,
    /// `retention.time`, `retention.segment-size` and `partition.max-size`.
    pub retention: fluvio_client::protocol::RetentionSpec,
}

/// `meta.consumer.partition`: which of the topic's partitions a sink reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PartitionSelection {
    /// Every partition the topic has when the sink starts (`all`, and the
    /// default).
    #[default]
    All,
    /// These partitions (`partition: 2` or `partition: [0, 2]`), sorted,
    /// without repeats.
    Listed(Vec<u32>),
}

/// `meta.consumer`: how a sink reads its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// The consumer's id (the connector's name by default).
    pub id: String,
    /// The partitions to read (every partition by default, as in Fluvio).
    pub partitions: PartitionSelection,
    /// Where to start without a committed offset.
    pub start: StartOffset,
    /// Most bytes of stored records the server reads per batch (1 MiB by
    /// default): smaller batches mean smaller transactions in a sink.
    pub max_bytes: u32,
}

/// `meta.producer`: how a source batches what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSettings {
    /// Longest wait before a batch is sent.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes.
    pub batch_size: usize,
    /// How batches are compressed before they are sent and stored.
    pub compression: Compression,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings { linger: Duration::from_millis(100), batch_size: 64 << 10, compression: Compression::None }
    }
}

/// A connector's configuration, read and checked.
#[derive(Clone)]
pub struct ConnectorConfig {
    /// The config file.
    pub file: PathBuf,
    /// `apiVersion`.
    pub api_version: String,
    /// `meta.name`: the connector's name.
    pub name: String,
    /// `meta.type`: which connector to run (`sql-sink`, `mqtt-source`, ...).
    pub kind: String,
    /// `meta.version`: the connector's version.
    pub version: String,
    /// `meta.topic`.
    pub topic: String,
    /// The topic's settings, when `meta.topic` gives them (Fluvio's 0.2.0
    /// shape): the connector creates the topic with them if it does not
    /// exist yet.
    pub topic_settings: Option<TopicSettings>,
    /// `meta.consumer`, with defaults filled in.
    pub consumer: ConsumerSettings,
    /// `meta.producer`, with defaults filled in.
    pub producer: ProducerSettings,
    /// `meta.secrets`: the declared secret names.
    pub secret_names: Vec<String>,
    /// The connector's own section (`sql:`, `mqtt:`, ...), secrets resolved.
    section: Option<(String, Value)>,
    /// `transforms`, secrets resolved.
    pub transforms: Vec<SmartModuleInvocation>,
    /// The secrets filled in, as `(value, name)`, kept out of messages.
    filled_secrets: Vec<(String, String)>,
}

impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The section and the transform parameters may hold secrets.
        f.debug_struct("ConnectorConfig")
            .field("file", &self.file)
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("topic", &self.topic)
            .field("consumer", &self.consumer)
            .field("producer", &self.producer)
            .field("secrets", &self.secret_names)
            .field("transforms", &self.transforms.iter().map(SmartModuleInvocation::name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ConnectorConfig {
    /// Reads and checks a config file; `section` is the name of the
    /// connector's own section for its type (see [`section_name`]).
    pub fn from_file(path: &Path, secrets: &Secrets) -> Result<ConnectorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: None,
            problem: ConfigProblem::Unreadable(e.to_string()),
        })?;
        ConnectorConfig::parse(&text, path, secrets)
    }

    /// Reads and checks the text of a config file named `path`.
    pub fn parse(text: &str, path: &Path, secrets: &Secrets) -> Result<ConnectorConfig, ConfigError> {
        let value: Value = serde_norway::from_str(text).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: None,
            problem: ConfigProblem::NotYaml(e.to_string()),
        })?;
        let root = ConfigNode::root(path, &value)?;
        // Without one, Fluvio reads a config as version 0.0.0, of the 0.1.0
        // shape.
        let api_version = root.opt_string("apiVersion")?.unwrap_or_else(|| "0.0.0".into());
        if !API_VERSIONS.contains(&api_version.as_str()) {
            return Err(root.error_at(
                "apiVersion",
                ConfigProblem::Invalid(format!(
                    "version {api_version:?} is not supported; use one of {}",
                    API_VERSIONS.join(", ")
                )),
            ));
        }
        let meta = root.node("meta")?;
        let name = meta.string("name")?;
        let kind = meta.string("type")?;
        // Required, as Fluvio requires it.
        let version = meta.string("version")?;
        let (topic, topic_settings) = meta.topic()?;
        let secret_names: Vec<String> = match meta.opt_node("secrets")? {
            None => Vec::new(),
            Some(list) => list
                .list()?
                .into_iter()
                .map(|item| {
                    item.only(&["name"])?;
                    let name = item.string("name")?;
                    // Fluvio's rule, so that a name it refuses is refused here.
                    let problem = if name.is_empty() {
                        Some("a secret name cannot be empty")
                    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        Some("a secret name can only contain ASCII letters, digits and underscores")
                    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
                        Some("a secret name cannot start with a digit")
                    } else {
                        None
                    };
                    match problem {
                        Some(problem) => Err(item.invalid("name", format!("{name:?}: {problem}"))),
                        None => Ok(name),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let consumer = match meta.opt_node("consumer")? {
            None => ConsumerSettings {
                id: name.clone(),
                partitions: PartitionSelection::All,
                start: StartOffset::Beginning,
                max_bytes: 1 << 20,
            },
            Some(consumer) => consumer.consumer(&name)?,
        };
        let producer = match meta.opt_node("producer")? {
            None => ProducerSettings::default(),
            Some(producer) => producer.producer()?,
        };
        // Fluvio's parser ignores keys it does not know (`create_topic` in
        // older configs): so do we, saying so.
        for key in meta.map()?.keys().map(key_text) {
            if !["name", "type", "version", "topic", "secrets", "consumer", "producer"].contains(&key.as_str()) {
                tracing::warn!(file = %path.display(), key = %format!("meta.{key}"), "ignoring a key this connector does not use, as Fluvio does");
            }
        }

        let resolver = SecretResolver { declared: &secret_names, secrets, file: path, filled: Default::default() };
        let section_key = section_name(&kind);
        let mut section = None;
        let mut allowed = vec!["apiVersion".to_string(), "meta".into(), "transforms".into()];
        allowed.push(section_key.to_string());
        if let Some(raw) = root.map()?.get(section_key) {
            section = Some((section_key.to_string(), resolver.resolve(raw, section_key)?));
        }
        let transforms = match root.opt_node("transforms")? {
            None => Vec::new(),
            Some(list) => {
                list.list()?.into_iter().map(|item| item.transform(&resolver)).collect::<Result<Vec<_>, _>>()?
            }
        };
        root.only(&allowed.iter().map(String::as_str).collect::<Vec<_>>())?;
        let filled_secrets = resolver.filled.into_inner();
        Ok(ConnectorConfig {
            file: path.to_path_buf(),
            api_version,
            name,
            kind,
            version,
            topic,
            topic_settings,
            consumer,
            producer,
            secret_names,
            section,
            transforms,
            filled_secrets,
        })
    }

    /// The connector's own section (`sql:`, `mqtt:`, `http:`), for the
    /// connector to read; an error naming the file if it is absent.
    pub fn section(&self) -> Result<ConfigNode<'_>, ConfigError> {
        let key = section_name(&self.kind);
        match &self.section {
            Some((name, value)) => {
                Ok(ConfigNode { file: &self.file, path: name.clone(), value, filled: &self.filled_secrets })
            }
            None => Err(ConfigError {
                file: self.file.clone(),
                key: Some(key.to_string()),
                problem: ConfigProblem::Missing,
            }),
        }
    }
}

/// The module name of a SmartModule Hub reference, `OWNER/NAME@VERSION`
/// or `OWNER/NAME` (`infinyon/jolt@0.4.1`, `infinyon/sql`), or `None` for
/// anything else. The caller takes a file of that path first.
pub fn hub_module_name(uses: &str) -> Option<&str> {
    let (reference, version) = uses.split_once('@').unwrap_or((uses, "latest"));
    let (owner, name) = reference.split_once('/')?;
    let word = |text: &str| {
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let module = word(owner) && word(name) && word(version) && !name.ends_with(".wasm") && !owner.starts_with('.');
    module.then_some(name)
}

/// The name of a connector type's own section: its type without the
/// `-source`/`-sink` suffix (`sql-sink` → `sql`, `mqtt-source` → `mqtt`).
pub fn section_name(kind: &str) -> &str {
    kind.strip_suffix("-source").or_else(|| kind.strip_suffix("-sink")).unwrap_or(kind)
}

struct SecretResolver<'a> {
    declared: &'a [String],
    /// Also says where `uses:` files may be (see [`Secrets::cluster_run`]).
    secrets: &'a Secrets,
    file: &'a Path,
    /// Each secret filled in, as `(value, name)`.
    filled: std::cell::RefCell<Vec<(String, String)>>,
}

/// `message` with each of the `filled` secret values in it replaced by the
/// reference it came from (longest values first, so that one value that
/// holds another is hidden whole).
fn hide_secrets(mut message: String, filled: &[(String, String)]) -> String {
    let mut filled: Vec<&(String, String)> = filled.iter().filter(|(value, _)| !value.is_empty()).collect();
    filled.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
    for (value, name) in filled {
        if message.contains(value.as_str()) {
            message = message.replace(value.as_str(), &format!("${{{{ secrets.{name} }}}}"));
        }
    }
    message
}

impl SecretResolver<'_> {
    /// Replaces `${{ secrets.NAME }}` in every string of `value`.
    fn resolve(&self, value: &Value, path: &str) -> Result<Value, ConfigError> {
        Ok(match value {
            Value::String(text) => Value::String(self.resolve_str(text, path)?),
            Value::Sequence(items) => Value::Sequence(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.resolve(item, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Mapping(map) => {
                let mut out = serde_norway::Mapping::new();
                for (key, item) in map {
                    let child = format!("{path}.{}", key_text(key));
                    out.insert(key.clone(), self.resolve(item, &child)?);
                }
                Value::Mapping(out)
            }
            other => other.clone(),
        })
    }

    fn resolve_str(&self, text: &str, path: &str) -> Result<String, ConfigError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let expression = after[..end].trim();
            let error = |problem| ConfigError { file: self.file.to_path_buf(), key: Some(path.to_string()), problem };
            let Some(name) = expression.strip_prefix("secrets.") else {
                return Err(error(ConfigProblem::Invalid(format!(
                    "`${{{{ {expression} }}}}` is not a secret reference; write ${{{{ secrets.NAME }}}}"
                ))));
            };
            if !self.declared.iter().any(|declared| declared == name) {
                return Err(error(ConfigProblem::UndeclaredSecret(name.to_string())));
            }
            let value = self.secrets.get(name).ok_or_else(|| error(self.secrets.missing(name)))?;
            out.push_str(&value);
            self.filled.borrow_mut().push((value, name.to_string()));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A value of a config file with its path, for reading with errors that
/// say where the value is.
#[derive(Debug, Clone)]
pub struct ConfigNode<'a> {
    file: &'a Path,
    path: String,
    value: &'a Value,
    /// The secrets filled into this value, as `(value, name)`: a message
    /// that would echo one shows `${{ secrets.NAME }}` instead.
    filled: &'a [(String, String)],
}

impl<'a> ConfigNode<'a> {
    fn root(file: &'a Path, value: &'a Value) -> Result<ConfigNode<'a>, ConfigError> {
        let node = ConfigNode { file, path: String::new(), value, filled: &[] };
        node.map()?;
        Ok(node)
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    fn error(&self, problem: ConfigProblem) -> ConfigError {
        let key = (!self.path.is_empty()).then(|| self.path.clone());
        ConfigError { file: self.file.to_path_buf(), key, problem: self.without_secrets(problem) }
    }

    fn error_at(&self, key: &str, problem: ConfigProblem) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: Some(self.child_path(key)),
            problem: self.without_secrets(problem),
        }
    }

    /// The problem with every secret value its message echoes put back as
    /// the reference the file holds: errors are logged and shown.
    fn without_secrets(&self, problem: ConfigProblem) -> ConfigProblem {
        match problem {
            ConfigProblem::Invalid(message) => ConfigProblem::Invalid(hide_secrets(message, self.filled)),
            other => other,
        }
    }

    /// The dotted path of this value (`meta.consumer`).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn map(&self) -> Result<&'a serde_norway::Mapping, ConfigError> {
        match self.value {
            Value::Mapping(map) => Ok(map),
            other => Err(self.error(ConfigProblem::WrongType { expected: "a map", found: type_name(other) })),
        }
    }

    /// The items of a list.
    pub fn list(&self) -> Result<Vec<ConfigNode<'a>>, ConfigError> {
        match self.value {
            Value::Sequence(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| ConfigNode {
                    file: self.file,
                    path: format!("{}[{i}]", self.path),
                    value,
                    filled: self.filled,
                })
                .collect()),
            other => Err(self.error(ConfigProblem::WrongType { expected: "a list", found: type_name(other) })),
        }
    }

    fn get(&self, key: &str) -> Result<Option<&'a Value>, ConfigError> {
        Ok(self.map()?.get(key).filter(|v| !v.is_null()))
    }

    /// The value under `key`, which must be there.
    pub fn node(&self, key: &str) -> Result<ConfigNode<'a>, ConfigError> {
        self.opt_node(key)?.ok_or_else(|| self.error_at(key, ConfigProblem::Missing))
    }

    /// The value under `key`, if there is one.
    pub fn opt_node(&self, key: &str) -> Result<Option<ConfigNode<'a>>, ConfigError> {
        Ok(self.get(key)?.map(|value| ConfigNode {
            file: self.file,
            path: self.child_path(key),
            value,
            filled: self.filled,
        }))
    }

    /// Fails naming the first key that is not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        for key in self.map()?.keys() {
            let key = key_text(key);
            if !allowed.contains(&key.as_str()) {
                let allowed = allowed.iter().map(|k| k.to_string()).collect();
                return Err(self.error_at(&key, ConfigProblem::Unknown { allowed }));
            }
        }
        Ok(())
    }

    /// Text under `key`, which must be there.
    pub fn string(&self, key: &str) -> Result<String, ConfigError> {
        self.opt_string(key)?.ok_or_else(|| self.error_at(key, ConfigProblem::Missing))
    }

    /// Text under `key`; numbers and booleans are taken as their text.
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(key_text(value))),
            Some(other) => {
                Err(self.error_at(key, ConfigProblem::WrongType { expected: "text", found: type_name(other) }))
            }
        }
    }

    /// A whole number under `key`.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(other) => Err(self.error_at(
                key,
                ConfigProblem::WrongType { expected: "a whole number of at least 0", found: type_name(other) },
            )),
        }
    }

    /// A boolean under `key`.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => {
                Err(self.error_at(key, ConfigProblem::WrongType { expected: "true or false", found: type_name(other) }))
            }
        }
    }

    /// A duration under `key`: `500ms`, `10s`, `5m`, `1h` (with its unit,
    /// as Fluvio reads it: [`units::parse_duration`]).
    pub fn opt_duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(text) = self.opt_string(key)? else { return Ok(None) };
        units::parse_duration(&text).map(Some).map_err(|error| self.error_at(key, ConfigProblem::BadUnit(error)))
    }

    /// A flush period under `key`: a duration (`10s`), or the map Fluvio's
    /// serde writes a duration as (`{ secs: 10, nanos: 0 }`).
    pub fn opt_flush_period(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        if let Some(Value::Mapping(_)) = self.get(key)? {
            let period = self.node(key)?;
            period.only(&["secs", "nanos"])?;
            let secs = period.opt_u64("secs")?.unwrap_or(0);
            let nanos = period.opt_u64("nanos")?.unwrap_or(0);
            let nanos = u32::try_from(nanos)
                .ok()
                .filter(|nanos| *nanos < 1_000_000_000)
                .ok_or_else(|| period.invalid("nanos", "nanoseconds are below 1,000,000,000"))?;
            return Ok(Some(Duration::new(secs, nanos)));
        }
        self.opt_duration(key)
    }

    /// A size in bytes under `key`: `1000`, `64KiB`, `1MiB`, `1MB`, `2GB`
    /// ([`units::parse_size`]).
    pub fn opt_size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.opt_string(key)? else { return Ok(None) };
        units::parse_size(&text).map(Some).map_err(|error| self.error_at(key, ConfigProblem::BadUnit(error)))
    }

    /// A list of text under `key` (a single text counts as a list of one).
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error_at(
                        &format!("{key}[{i}]"),
                        ConfigProblem::WrongType { expected: "text", found: type_name(other) },
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => {
                Err(self
                    .error_at(key, ConfigProblem::WrongType { expected: "a list of text", found: type_name(other) }))
            }
        }
    }

    /// A map of text to text under `key` (header lists and the like).
    pub fn opt_string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        let Some(node) = self.opt_node(key)? else { return Ok(None) };
        let mut out = BTreeMap::new();
        for name in node.map()?.keys().map(key_text) {
            out.insert(name.clone(), node.string(&name)?);
        }
        Ok(Some(out))
    }

    /// An error about the value under `key`, explained.
    pub fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        self.error_at(key, ConfigProblem::Invalid(reason.into()))
    }

    /// `meta.topic`: a name, or the topic's settings as Fluvio 0.2 configs
    /// write them (`{ meta: { name }, partition: { count, max-size,
    /// replication }, retention: { time, segment-size }, compression }`).
    fn topic(&self) -> Result<(String, Option<TopicSettings>), ConfigError> {
        match self.get("topic")? {
            Some(Value::Mapping(_)) => {
                let topic = self.node("topic")?;
                // Fluvio's 0.2.0 topic config names the topic under
                // `meta.name`; ours under `name`.
                let name = match topic.opt_node("meta")? {
                    Some(meta) => {
                        meta.only(&["name"])?;
                        meta.string("name")?
                    }
                    None => topic.string("name")?,
                };
                topic.only(&[
                    "name",
                    "partition",
                    "partitions",
                    "replication",
                    "retention",
                    "version",
                    "meta",
                    "compression",
                    "deduplication",
                ])?;
                Ok((name, Some(topic.topic_settings()?)))
            }
            _ => Ok((self.string("topic")?, None)),
        }
    }

    /// The settings in a `meta.topic` mapping.
    fn topic_settings(&self) -> Result<TopicSettings, ConfigError> {
        let count = |node: &ConfigNode<'_>, key: &str| -> Result<Option<u32>, ConfigError> {
            match node.opt_u64(key)? {
                None => Ok(None),
                Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => Ok(Some(n as u32)),
                Some(_) => Err(node.invalid(key, "give a number from 1 up")),
            }
        };
        let mut settings = TopicSettings {
            partitions: count(self, "partitions")?.unwrap_or(1),
            replication: count(self, "replication")?.unwrap_or(1),
            retention: Default::default(),
        };
        if let Some(partition) = self.opt_node("partition")? {
            partition.only(&["count", "max-size", "replication", "ignore-rack-assignment", "maps"])?;
            if let Some(partitions) = count(&partition, "count")? {
                settings.partitions = partitions;
            }
            if let Some(replication) = count(&partition, "replication")? {
                settings.replication = replication;
            }
            settings.retention.max_bytes = partition.opt_size("max-size")?;
        }
        if let Some(retention) = self.opt_node("retention")? {
            retention.only(&["time", "segment-size"])?;
            settings.retention.max_age_ms = retention.opt_duration("time")?.map(|age| age.as_millis() as u64);
            settings.retention.segment_bytes = retention.opt_size("segment-size")?;
        }
        if let Some(compression) = self.opt_node("compression")? {
            compression.only(&["type"])?;
            if let Some(codec) = compression.opt_string("type")?
                && !["any", "none", "gzip", "snappy", "lz4", "zstd"].contains(&codec.as_str())
            {
                return Err(
                    compression.invalid("type", format!("{codec:?} is not any, none, gzip, snappy, lz4 or zstd"))
                );
            }
        }
        Ok(settings)
    }

    fn consumer(&self, name: &str) -> Result<ConsumerSettings, ConfigError> {
        self.only(&["id", "partition", "offset", "max-bytes", "max_bytes"])?;
        let id = self.opt_string("id")?.unwrap_or_else(|| name.to_string());
        let partitions = self.partition_selection()?;
        let start = match self.opt_node("offset")? {
            None => StartOffset::Beginning,
            Some(offset) => {
                offset.only(&["strategy", "start", "flush-period"])?;
                if let Some(strategy) = offset.opt_string("strategy")?
                    && !["auto", "manual", "none"].contains(&strategy.as_str())
                {
                    return Err(offset.invalid("strategy", format!("{strategy:?} is not auto, manual or none")));
                }
                offset.opt_flush_period("flush-period")?;
                match offset.get("start")? {
                    None => StartOffset::Beginning,
                    Some(Value::String(s)) if s == "beginning" => StartOffset::Beginning,
                    Some(Value::String(s)) if s == "end" => StartOffset::End,
                    Some(Value::Mapping(_)) => {
                        let start = offset.node("start")?;
                        start.only(&["absolute", "offset-from-end", "from-end", "from-beginning"])?;
                        if let Some(n) = start.opt_u64("absolute")? {
                            StartOffset::Absolute(n as i64)
                        } else if let Some(n) = start.opt_u64("from-end")? {
                            StartOffset::FromEnd(n)
                        } else if let Some(n) = start.opt_u64("offset-from-end")? {
                            StartOffset::FromEnd(n)
                        } else if let Some(n) = start.opt_u64("from-beginning")? {
                            StartOffset::Absolute(n as i64)
                        } else {
                            return Err(offset.invalid("start", "give absolute: N, from-beginning: N or from-end: N"));
                        }
                    }
                    Some(other) => {
                        return Err(offset.invalid(
                            "start",
                            format!(
                                "{} is not a start; use beginning, end, {{ absolute: N }} or {{ offset-from-end: N }}",
                                key_text(other)
                            ),
                        ));
                    }
                }
            }
        };
        let max_bytes_key = if self.get("max_bytes")?.is_some() { "max_bytes" } else { "max-bytes" };
        let max_bytes = match self.opt_size(max_bytes_key)? {
            None => 1 << 20,
            Some(size) if (1..=16 << 20).contains(&size) => size as u32,
            Some(_) => return Err(self.invalid(max_bytes_key, "give a size from 1 byte to 16MiB")),
        };
        Ok(ConsumerSettings { id, partitions, start, max_bytes })
    }

    /// `partition`: a number, a list of numbers, or `all`.
    fn partition_selection(&self) -> Result<PartitionSelection, ConfigError> {
        let expected = "give a partition number, a list of them ([0, 2]) or `all`";
        let number = |value: &Value| value.as_u64().and_then(|n| u32::try_from(n).ok());
        match self.get("partition")? {
            None => Ok(PartitionSelection::All),
            Some(Value::String(text)) if text == "all" => Ok(PartitionSelection::All),
            Some(Value::Sequence(items)) if !items.is_empty() => {
                let mut partitions = items.iter().map(number).collect::<Option<Vec<u32>>>().ok_or_else(|| {
                    self.invalid("partition", format!("a list of partition numbers holds something else; {expected}"))
                })?;
                partitions.sort_unstable();
                partitions.dedup();
                Ok(PartitionSelection::Listed(partitions))
            }
            Some(value) => match number(value) {
                Some(partition) => Ok(PartitionSelection::Listed(vec![partition])),
                None => Err(self.invalid("partition", format!("{} is not a partition; {expected}", key_text(value)))),
            },
        }
    }

    fn producer(&self) -> Result<ProducerSettings, ConfigError> {
        self.only(&["linger", "batch-size", "batch_size", "compression"])?;
        let defaults = ProducerSettings::default();
        let linger = self.opt_duration("linger")?.unwrap_or(defaults.linger);
        // Fluvio takes `batch_size` too.
        let batch_key = if self.get("batch_size")?.is_some() { "batch_size" } else { "batch-size" };
        let batch_size = match self.opt_size(batch_key)? {
            None => defaults.batch_size,
            Some(0) => return Err(self.invalid(batch_key, "a batch needs room for at least one byte")),
            Some(size) => usize::try_from(size).map_err(|_| self.invalid(batch_key, "too large"))?,
        };
        let compression = match self.opt_string("compression")? {
            None => defaults.compression,
            Some(name) => name.parse::<Compression>().map_err(|e| self.invalid("compression", e.to_string()))?,
        };
        Ok(ProducerSettings { linger, batch_size, compression })
    }

    /// One item of `transforms`: `uses` (a registered name, or a path to a
    /// `.wasm` file relative to the config), `with` (params), and
    /// `initial` (an aggregate's initial accumulator).
    fn transform(&self, secrets: &SecretResolver<'_>) -> Result<SmartModuleInvocation, ConfigError> {
        self.only(&["uses", "with", "initial", "lookback", "window"])?;
        let uses = self.string("uses")?;
        let base = self.file.parent().unwrap_or(Path::new(""));
        let path = base.join(&uses);
        let mut invocation = if let Some(name) = hub_module_name(&uses).filter(|_| !path.is_file()) {
            // A SmartModule Hub reference, as Fluvio's configs name them:
            // the module registered under the Hub module's name stands in.
            tracing::info!(uses = %uses, module = %name, "a Hub reference is taken as the registered SmartModule of its name");
            SmartModuleInvocation::predefined(name)
        } else if uses.ends_with(".wasm") || uses.contains('/') || path.is_file() {
            let outside = Path::new(&uses).is_absolute()
                || Path::new(&uses).components().any(|part| part == std::path::Component::ParentDir);
            if !secrets.secrets.from_environment && outside {
                return Err(self.invalid(
                    "uses",
                    format!("{uses:?} is outside the connector's directory; a connector the cluster runs uses registered SmartModules (`fluvio smart-module create NAME --wasm-file FILE`, then `uses: NAME`)"),
                ));
            }
            // Only a regular file, of at most the size a module may have:
            // not `/dev/zero`, not a file that fills the memory.
            match std::fs::metadata(&path) {
                Ok(meta) if !meta.is_file() => {
                    return Err(self.invalid("uses", format!("{} is not a regular file", path.display())));
                }
                Ok(meta) if meta.len() > MAX_WASM_BYTES => {
                    return Err(self.invalid(
                        "uses",
                        format!("{} has {} bytes; a SmartModule may have {MAX_WASM_BYTES}", path.display(), meta.len()),
                    ));
                }
                _ => {}
            }
            SmartModuleInvocation::from_file(&path).map_err(|e| self.invalid("uses", e.to_string()))?
        } else {
            SmartModuleInvocation::predefined(&uses)
        };
        if let Some(with) = self.opt_node("with")? {
            for (key, value) in with.map()? {
                let key = key_text(key);
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => key_text(value),
                    // Structured params travel as JSON, as Fluvio does.
                    other => serde_json::to_string(other).map_err(|e| with.invalid(&key, e.to_string()))?,
                };
                invocation = invocation.param(key.clone(), secrets.resolve_str(&value, &with.child_path(&key))?);
            }
        }
        if let Some(initial) = self.opt_string("initial")? {
            invocation = invocation.initial_accumulator(initial);
        }
        if let Some(lookback) = self.opt_node("lookback")? {
            lookback.only(&["last", "age"])?;
            let last = lookback.opt_u64("last")?;
            let age = lookback.opt_duration("age")?;
            if last.is_none() && age.is_none() {
                return Err(self.invalid("lookback", "give `last: N`, `age: DURATION` or both"));
            }
            invocation = invocation.lookback(Lookback { last: last.unwrap_or(0), age });
        }
        if let Some(window) = self.opt_node("window")? {
            invocation = invocation.window(window.window()?);
        }
        Ok(invocation)
    }

    /// A transform's `window:` (see `fluvio_protocol::window`): `tumbling:
    /// 60s`, `hopping: {size, advance}` or `session: {gap}`, with
    /// `lateness`, `key`, `time` and `emit`.
    fn window(&self) -> Result<Window, ConfigError> {
        self.only(&["tumbling", "hopping", "session", "lateness", "key", "time", "emit"])?;
        let hopping = match self.opt_node("hopping")? {
            Some(node) => {
                node.only(&["size", "advance"])?;
                Some(HoppingParts { size: node.string("size")?, advance: node.string("advance")? })
            }
            None => None,
        };
        let session = match self.opt_node("session")? {
            Some(node) => {
                node.only(&["gap"])?;
                Some(SessionParts { gap: node.string("gap")? })
            }
            None => None,
        };
        let parts = WindowParts {
            tumbling: self.opt_string("tumbling")?,
            hopping,
            session,
            lateness: self.opt_string("lateness")?,
            key: self.opt_string("key")?,
            time: self.opt_string("time")?,
            emit: self.opt_string("emit")?,
        };
        parts.build().map_err(|error| self.error(ConfigProblem::Invalid(error.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINK: &str = r#"
apiVersion: 0.1.0
meta:
  version: 0.1.0
  name: my-sql-sink
  type: sql-sink
  topic: sensors
  consumer: { id: my-sql-sink, offset: { strategy: auto, start: beginning } }
  producer: { linger: 100ms, batch-size: 64KiB, compression: zstd }
  secrets: [ { name: DB_PASSWORD } ]
sql:
  url: postgres://postgres:${{ secrets.DB_PASSWORD }}@127.0.0.1:5432/test
transforms:
  - uses: my-filter
    with: { key: value, limits: { max: 3 }, on: true }
    lookback: { last: 10, age: 1h }
"#;

    fn secrets() -> Secrets {
        Secrets::parse("# a comment\nDB_PASSWORD=s3cr=t\n", Path::new("secrets.env")).unwrap()
    }

    fn parse(text: &str) -> Result<ConnectorConfig, ConfigError> {
        ConnectorConfig::parse(text, Path::new("sink.yaml"), &secrets())
    }

    #[test]
    fn a_transform_may_carry_a_window() {
        let with_window = |window: &str| {
            SINK.replace("    lookback: { last: 10, age: 1h }", &format!("    window: {window}"))
                .replace("my-filter", "sum-v")
        };
        let config =
            parse(&with_window("{ hopping: { size: 5m, advance: 1m }, lateness: 30s, key: /k, time: /ts }")).unwrap();
        let window = config.transforms[0].params.window().expect("a window");
        assert_eq!(
            window.shape,
            fluvio_client::protocol::window::WindowShape::Hopping {
                size: Duration::from_secs(300),
                advance: Duration::from_secs(60)
            }
        );
        assert_eq!((window.lateness, window.key.as_deref()), (Duration::from_secs(30), Some("/k")));
        let error = parse(&with_window("{ tumbling: 1m, colour: red }")).unwrap_err();
        assert!(error.to_string().contains("transforms[0].window.colour"), "{error}");
        let error = parse(&with_window("{ lateness: 1m }")).unwrap_err();
        assert!(error.to_string().contains("exactly one of tumbling, hopping or session"), "{error}");
    }

    #[test]
    fn a_cluster_run_connector_takes_secrets_from_its_file_only() {
        // HOME is set in any test environment; as a secret it would be the
        // server's own.
        let config = SINK.replace("name: DB_PASSWORD", "name: HOME").replace("secrets.DB_PASSWORD", "secrets.HOME");
        let path = Path::new("sink.yaml");
        assert!(std::env::var("HOME").is_ok());
        ConnectorConfig::parse(&config, path, &secrets()).expect("run by hand: the environment serves");
        let error = ConnectorConfig::parse(&config, path, &secrets().cluster_run()).unwrap_err();
        assert_eq!(error.problem, ConfigProblem::MissingFileSecret("HOME".into()));
        assert!(error.to_string().contains("never from the server's environment"), "{error}");
        ConnectorConfig::parse(SINK, path, &secrets().cluster_run()).expect("what the file holds serves");
    }

    #[test]
    fn uses_reads_only_regular_files_of_a_module_s_size_and_in_the_cluster_only_its_own() {
        let dir = std::env::temp_dir().join(format!("fluvio-uses-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sink.yaml");
        let with_uses = |uses: &str| SINK.replace("uses: my-filter", &format!("uses: {uses}"));
        let problem = |text: String, secrets: &Secrets| match ConnectorConfig::parse(&text, &path, secrets) {
            Err(error) => error.to_string(),
            Ok(_) => String::new(),
        };
        assert!(problem(with_uses("/dev/zero"), &secrets()).contains("not a regular file"));
        let huge = dir.join("huge.wasm");
        std::fs::File::create(&huge).unwrap().set_len(MAX_WASM_BYTES + 1).unwrap();
        assert!(problem(with_uses("huge.wasm"), &secrets()).contains("a SmartModule may have"));
        std::fs::remove_file(&huge).unwrap();
        // Run by the cluster: nothing outside the connector's directory.
        for outside in ["/etc/hostname", "../elsewhere/module.wasm"] {
            let error = problem(with_uses(outside), &secrets().cluster_run());
            assert!(error.contains("outside the connector's directory"), "{outside}: {error}");
        }
        // A registered name is fine anywhere.
        ConnectorConfig::parse(SINK, &path, &secrets().cluster_run()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_message_about_a_value_never_shows_the_secret_filled_into_it() {
        let config = parse(&SINK.replace("postgres://postgres:", "mysql://postgres:")).unwrap();
        let section = config.section().unwrap();
        let url = section.string("url").unwrap();
        assert!(url.contains("s3cr=t"), "the value itself has the secret: {url}");
        let error = section.invalid("url", format!("{url:?} is not a postgres:// URL"));
        let shown = error.to_string();
        assert!(!shown.contains("s3cr=t"), "{shown}");
        assert!(shown.contains("mysql://postgres:${{ secrets.DB_PASSWORD }}@127.0.0.1"), "{shown}");
        assert_eq!(
            hide_secrets("a-b-ab".into(), &[("a".into(), "A".into()), ("ab".into(), "AB".into())]),
            "${{ secrets.A }}-b-${{ secrets.AB }}"
        );
    }

    fn error(text: &str) -> String {
        parse(text).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn fluvios_format_reads_with_secrets_resolved() {
        let config = parse(SINK).unwrap();
        assert_eq!(
            (config.name.as_str(), config.kind.as_str(), config.topic.as_str()),
            ("my-sql-sink", "sql-sink", "sensors")
        );
        assert_eq!(
            config.consumer,
            ConsumerSettings {
                id: "my-sql-sink".into(),
                partitions: PartitionSelection::All,
                start: StartOffset::Beginning,
                max_bytes: 1 << 20
            }
        );
        assert_eq!(
            config.producer,
            ProducerSettings {
                linger: Duration::from_millis(100),
                batch_size: 64 << 10,
                compression: Compression::Zstd
            }
        );
        let section = config.section().unwrap();
        assert_eq!(section.string("url").unwrap(), "postgres://postgres:s3cr=t@127.0.0.1:5432/test");
        let transform = &config.transforms[0];
        assert_eq!(transform.name(), "my-filter");
        assert_eq!(transform.params["key"], "value");
        assert_eq!(transform.params["limits"], r#"{"max":3}"#);
        assert_eq!(transform.params["on"], "true");
        assert_eq!(transform.params.lookback(), Some(&Lookback::age(Duration::from_secs(3600), Some(10))));
    }

    #[test]
    fn secrets_are_never_shown() {
        let config = parse(SINK).unwrap();
        let shown = format!("{config:?} {:?}", secrets());
        assert!(!shown.contains("s3cr=t"), "{shown}");
        assert!(shown.contains("DB_PASSWORD"), "{shown}");
    }

    #[test]
    fn a_missing_secret_is_named() {
        let config = ConnectorConfig::parse(SINK, Path::new("sink.yaml"), &Secrets::default());
        let message = config.map(|_| ()).unwrap_err().to_string();
        assert!(message.starts_with("sink.yaml: `sql.url` needs the secret DB_PASSWORD"), "{message}");
        let undeclared = error(&SINK.replace("secrets: [ { name: DB_PASSWORD } ]", "secrets: []"));
        assert!(undeclared.contains("uses the secret DB_PASSWORD, which is not declared"), "{undeclared}");
    }

    #[test]
    fn every_mistake_names_the_file_and_the_key() {
        // Fluvio ignores keys it does not know in `meta` (a warning says
        // so); anywhere else an unknown key is a mistake.
        parse(&SINK.replace("  topic: sensors", "  topic: sensors\n  colour: blue")).expect("ignored, as in Fluvio");
        let unknown = error(&SINK.replace("max-bytes", "colour").replace("offset: {", "colour: blue, offset: {"));
        assert!(unknown.starts_with("sink.yaml: `meta.consumer.colour` is not a known key here"), "{unknown}");
        let unknown_top = error(&format!("{SINK}\nhttp: {{ url: x }}\n"));
        assert!(unknown_top.starts_with("sink.yaml: `http` is not a known key here"), "{unknown_top}");
        let missing = error(&SINK.replace("  topic: sensors\n", ""));
        assert_eq!(missing, "sink.yaml: `meta.topic` is missing");
        let wrong_type = error(&SINK.replace("  name: my-sql-sink", "  name: [a, b]"));
        assert_eq!(wrong_type, "sink.yaml: `meta.name` should be text, but is a list");
        let duration = error(&SINK.replace("linger: 100ms", "linger: soon"));
        assert!(duration.starts_with("sink.yaml: `meta.producer.linger` \"soon\" is not a duration"), "{duration}");
        let size = error(&SINK.replace("batch-size: 64KiB", "batch-size: 64 parsecs"));
        assert!(size.starts_with("sink.yaml: `meta.producer.batch-size` \"64 parsecs\" is not a size"), "{size}");
        let start = error(&SINK.replace("start: beginning", "start: middle"));
        assert!(start.contains("`meta.consumer.offset.start` middle is not a start"), "{start}");
        let with = error(&SINK.replace("with: { key: value", "colour: red\n    with: { key: value"));
        assert!(with.starts_with("sink.yaml: `transforms[0].colour` is not a known key"), "{with}");
        let yaml = error("apiVersion: [");
        assert!(yaml.starts_with("sink.yaml: is not valid YAML"), "{yaml}");
        let version = error(&SINK.replace("apiVersion: 0.1.0", "apiVersion: 9.9.9"));
        assert!(version.contains("`apiVersion` version \"9.9.9\" is not supported"), "{version}");
    }

    #[test]
    fn the_types_own_section_is_required_when_read() {
        let config = parse(
            &SINK.replace("sql:\n  url: postgres://postgres:${{ secrets.DB_PASSWORD }}@127.0.0.1:5432/test\n", ""),
        )
        .unwrap();
        assert_eq!(config.section().unwrap_err().to_string(), "sink.yaml: `sql` is missing");
    }

    #[test]
    fn durations_and_sizes_read_like_fluvios() {
        use units::{parse_duration, parse_size};
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        // Fluvio's reader (humantime) wants a unit, and takes fractions.
        assert!(parse_duration("250").is_err());
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("-1").is_err());
        assert_eq!(section_name("sql-sink"), "sql");
        assert_eq!(section_name("mqtt-source"), "mqtt");
    }

    /// Configs as Fluvio's connector tooling reads them: its test files'
    /// shapes (no `apiVersion`, `batch_size`, `max_bytes`, "44.0 MB",
    /// `from-end`, a serde duration for `flush-period`, keys it ignores),
    /// and what it refuses, refused naming the key.
    #[test]
    fn fluvio_shaped_configs_read_as_fluvio_reads_them() {
        let fluvio = r#"
meta:
  version: 0.1.0
  name: my-test-mqtt
  type: sql-sink
  topic: my-mqtt
  create_topic: true
  producer:
    linger: 1ms
    compression: gzip
    batch_size: "44.0 MB"
  consumer:
    max_bytes: "1 MB"
    offset:
      strategy: manual
      start: { from-end: 5 }
      flush-period: { secs: 10, nanos: 0 }
  secrets:
    - name: secret1
sql:
  url: postgres://x
"#;
        let config = parse(fluvio).unwrap();
        assert_eq!(config.api_version, "0.0.0");
        assert_eq!((config.producer.batch_size, config.producer.compression), (44_000_000, Compression::Gzip));
        assert_eq!(config.producer.linger, Duration::from_millis(1));
        assert_eq!((config.consumer.max_bytes, config.consumer.start), (1_000_000, StartOffset::FromEnd(5)));
        assert_eq!(config.consumer.partitions, PartitionSelection::All, "Fluvio's default: every partition");
        assert_eq!(config.secret_names, ["secret1"]);
        let partitions =
            |text: &str| parse(&fluvio.replace("max_bytes: \"1 MB\"", text)).map(|c| c.consumer.partitions);
        assert_eq!(partitions("partition: all").unwrap(), PartitionSelection::All);
        assert_eq!(partitions("partition: 2").unwrap(), PartitionSelection::Listed(vec![2]));
        assert_eq!(partitions("partition: [2, 0, 2]").unwrap(), PartitionSelection::Listed(vec![0, 2]));
        for bad in ["partition: some", "partition: []", "partition: [0, x]", "partition: -1"] {
            let error = partitions(bad).unwrap_err().to_string();
            assert!(error.contains("`meta.consumer.partition`"), "{bad}: {error}");
        }
        let versioned = parse(&format!("apiVersion: 0.1.0{fluvio}")).unwrap();
        assert_eq!(versioned.api_version, "0.1.0");

        // What Fluvio refuses, refused here, naming the key.
        let refused = |from: &str, to: &str, key: &str| {
            let error = parse(&fluvio.replace(from, to)).unwrap_err().to_string();
            assert!(error.contains(key), "{to:?}: {error}");
        };
        refused("linger: 1ms", "linger: \"1\"", "`meta.producer.linger`");
        refused("compression: gzip", "compression: gzipaoeu", "`meta.producer.compression`");
        refused("batch_size: \"44.0 MB\"", "batch_size: aoeu", "`meta.producer.batch_size`");
        refused("- name: secret1", "- name: 1secret", "cannot start with a digit");
        refused("- name: secret1", "- name: secret name", "only contain ASCII letters");
        refused("- name: secret1", "- name: secret-name", "only contain ASCII letters");
        refused("meta:\n", "apiVersion: 9.9.9\nmeta:\n", "`apiVersion`");
        refused("  version: 0.1.0\n  name: my-test-mqtt", "  name: my-test-mqtt", "`meta.version` is missing");
        refused("start: { from-end: 5 }", "start: { to-end: 5 }", "to-end");
        refused("nanos: 0", "nanos: 2000000000", "nanos");
    }

    #[test]
    fn fluvios_0_2_0_topic_config_names_the_topic_under_meta() {
        let v2 = SINK.replace("apiVersion: 0.1.0", "apiVersion: 0.2.0").replace(
            "  topic: sensors\n",
            "  topic:\n    version: 0.1.0\n    meta: { name: sensors }\n    partition: { count: 3, max-size: 1 GB, replication: 1 }\n    retention: { time: 2 days, segment-size: 10 MB }\n    compression: { type: gzip }\n",
        );
        let config = parse(&v2).unwrap();
        assert_eq!(config.topic, "sensors");
        let settings = config.topic_settings.expect("the settings of the topic to create");
        assert_eq!((settings.partitions, settings.replication), (3, 1));
        assert_eq!(settings.retention.max_bytes, Some(1_000_000_000));
        assert_eq!(settings.retention.max_age_ms, Some(2 * 24 * 3600 * 1000));
        assert_eq!(settings.retention.segment_bytes, Some(10_000_000));
        assert_eq!(parse(SINK).unwrap().topic_settings, None, "a topic named alone is not created");
        let nameless = error(&v2.replace("meta: { name: sensors }", "meta: {}"));
        assert_eq!(nameless, "sink.yaml: `meta.topic.meta.name` is missing");
        for (from, to, key) in [
            ("count: 3", "count: 0", "`meta.topic.partition.count`"),
            ("time: 2 days", "time: soon", "`meta.topic.retention.time`"),
            ("type: gzip", "type: brotli", "`meta.topic.compression.type`"),
            ("replication: 1 }", "replicas: 1 }", "replicas"),
        ] {
            let refused = error(&v2.replace(from, to));
            assert!(refused.contains(key), "{to}: {refused}");
        }
    }

    #[test]
    fn hub_references_stand_for_the_module_registered_under_their_name() {
        assert_eq!(hub_module_name("infinyon/jolt@0.4.1"), Some("jolt"));
        assert_eq!(hub_module_name("infinyon/sql-json@0.2.0"), Some("sql-json"));
        assert_eq!(hub_module_name("infinyon/sql"), Some("sql"));
        for path in ["./my.wasm", "modules/my.wasm", "../up/mod", "a/b/c@1", "jolt@0.4.1", "x/y.wasm@1", "/abs/mod"] {
            assert_eq!(hub_module_name(path), None, "{path}");
        }
        let config = parse(&SINK.replace("uses: my-filter", "uses: infinyon/jolt@0.4.1")).unwrap();
        assert_eq!(config.transforms[0].name(), "jolt");
    }

    #[test]
    fn bad_secret_files_name_the_line() {
        let error = Secrets::parse("A=1\nnot a pair\n", Path::new("s.env")).unwrap_err();
        assert_eq!(error.to_string(), "s.env: line 2 is not NAME=value");
    }
}
