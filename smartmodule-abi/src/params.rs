//! Parameters passed to a SmartModule's `init` function, and what the host
//! does around the module: the look-back it was configured with, and the
//! event-time window an aggregate runs in.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The `key=value` parameters a user gave for one SmartModule invocation
/// (for example `fluvio consume -e key=value`), and its look-back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SmartModuleExtraParams {
    inner: BTreeMap<String, String>,
    lookback: Option<Lookback>,
    #[cfg_attr(feature = "serde", serde(default))]
    window: Option<Window>,
}

/// An aggregate run per key per window of event time instead of once over
/// the whole stream: the host keeps one accumulator per (key, window),
/// hands the module the right one for each record, and emits the final
/// accumulator of each window once the watermark (the highest event time
/// seen, minus `lateness`) passes the window's end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Window {
    /// Which windows a record falls in.
    pub shape: WindowShape,
    /// How long a window stays open after its end, for late records.
    pub lateness: Duration,
    /// A JSON pointer into the value naming the group key; `None`: the
    /// record's key.
    pub key: Option<String>,
    /// A JSON pointer into the value naming the event time (epoch
    /// milliseconds, or an RFC 3339 string); `None`: the record's timestamp.
    pub time: Option<String>,
    /// When results go out.
    pub emit: WindowEmit,
}

/// The windows of event time a record falls in. Tumbling and hopping
/// windows are aligned to the Unix epoch: a 1-minute window starts on a
/// minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WindowShape {
    /// Back-to-back windows of `size`: each record is in exactly one.
    Tumbling {
        /// The window's length.
        size: Duration,
    },
    /// Windows of `size` starting every `advance`: a record is in
    /// `size / advance` of them.
    Hopping {
        /// The window's length.
        size: Duration,
        /// The time between the starts of consecutive windows.
        advance: Duration,
    },
    /// A key's records until `gap` passes without one: the window runs from
    /// its first record's time to its last record's time plus `gap`.
    Session {
        /// The silence that ends a session.
        gap: Duration,
    },
}

/// When a windowed aggregate's results go out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WindowEmit {
    /// Once per (key, window), when the window closes.
    #[default]
    OnClose,
    /// After every record, the updated accumulator of its window (and the
    /// final one again when the window closes).
    EveryRecord,
}

impl Window {
    /// A window of `shape` with no lateness, keyed by the record's key and
    /// timed by its timestamp, emitting on close.
    pub fn new(shape: WindowShape) -> Window {
        Window { shape, lateness: Duration::ZERO, key: None, time: None, emit: WindowEmit::OnClose }
    }

    /// Why the window cannot be used, if it cannot: a zero length, or a
    /// hopping window that advances by more than its size (records would
    /// fall between windows).
    pub fn check(&self) -> Result<(), String> {
        let millis = |d: Duration| d.as_millis();
        match self.shape {
            WindowShape::Tumbling { size } if millis(size) == 0 => {
                Err("a tumbling window needs a size of at least 1ms".into())
            }
            WindowShape::Hopping { size, advance } => {
                if millis(size) == 0 || millis(advance) == 0 {
                    Err("a hopping window needs a size and an advance of at least 1ms".into())
                } else if advance > size {
                    Err(format!("a hopping window's advance ({advance:?}) must not exceed its size ({size:?})"))
                } else {
                    Ok(())
                }
            }
            WindowShape::Session { gap } if millis(gap) == 0 => {
                Err("a session window needs a gap of at least 1ms".into())
            }
            _ => Ok(()),
        }
    }
}

/// Which stored records a `look_back` function is given before a stream
/// starts: the last `last` records, or those younger than `age`, or the
/// last `last` of those younger than `age` when both are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Lookback {
    /// How many of the latest records (0: no count limit).
    pub last: u64,
    /// How old the oldest may be.
    pub age: Option<Duration>,
}

impl Lookback {
    /// The last `n` records.
    pub fn last(n: u64) -> Lookback {
        Lookback { last: n, age: None }
    }

    /// The records younger than `age`, at most the last `last` of them.
    pub fn age(age: Duration, last: Option<u64>) -> Lookback {
        Lookback { last: last.unwrap_or(0), age: Some(age) }
    }
}

/// Errors an `init` function reports, by Fluvio's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmartModuleInitError {
    /// A parameter the module needs was not given.
    MissingParam(String),
}

impl fmt::Display for SmartModuleInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmartModuleInitError::MissingParam(name) => {
                write!(f, "missing parameter `{name}`: pass it as `-e {name}=VALUE`")
            }
        }
    }
}

impl std::error::Error for SmartModuleInitError {}

impl SmartModuleExtraParams {
    /// Parameters from a map, with a look-back.
    pub fn new(params: BTreeMap<String, String>, lookback: Option<Lookback>) -> Self {
        SmartModuleExtraParams { inner: params, lookback, window: None }
    }

    /// The window an aggregate runs in, if any.
    pub fn window(&self) -> Option<&Window> {
        self.window.as_ref()
    }

    /// Sets the window.
    pub fn set_window(&mut self, window: Option<Window>) {
        self.window = window;
    }

    /// The look-back the invocation asked for, if any.
    pub fn lookback(&self) -> Option<&Lookback> {
        self.lookback.as_ref()
    }

    /// Sets the look-back.
    pub fn set_lookback(&mut self, lookback: Option<Lookback>) {
        self.lookback = lookback;
    }

    /// The raw value of a parameter, if it was given.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.inner.get(name)
    }

    /// The value of a parameter that must be present.
    pub fn require(&self, name: &str) -> Result<&str, ParamError> {
        self.inner.get(name).map(String::as_str).ok_or_else(|| ParamError::Missing { name: name.to_string() })
    }

    /// The value of a required parameter, parsed as `T`.
    ///
    /// ```
    /// # use smartmodule_abi::params::SmartModuleExtraParams;
    /// let params: SmartModuleExtraParams = [("limit", "ten")].into_iter().collect();
    /// let error = params.parse::<u32>("limit").unwrap_err();
    /// assert_eq!(error.to_string(), "parameter `limit` is invalid: \"ten\" is not a valid u32 (invalid digit found in string)");
    /// ```
    pub fn parse<T>(&self, name: &str) -> Result<T, ParamError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.require(name)?;
        raw.parse::<T>().map_err(|error| ParamError::Invalid {
            name: name.to_string(),
            value: raw.to_string(),
            reason: format!("not a valid {} ({error})", std::any::type_name::<T>()),
        })
    }

    /// The value of an optional parameter parsed as `T`, or `default` when absent.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ParamError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        if self.inner.contains_key(name) { self.parse(name) } else { Ok(default) }
    }

    /// Every parameter, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no parameter was given.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Adds or replaces a parameter.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.inner.insert(name.into(), value.into());
    }
}

/// `params["name"]`: the value of a parameter that must be there (panics
/// when it is not, like a map's index).
impl std::ops::Index<&str> for SmartModuleExtraParams {
    type Output = String;

    fn index(&self, name: &str) -> &String {
        self.inner.get(name).unwrap_or_else(|| panic!("no parameter {name:?}"))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SmartModuleExtraParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        SmartModuleExtraParams {
            inner: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            lookback: None,
            window: None,
        }
    }
}

/// A parameter that is missing or has a value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// The parameter was not given.
    Missing {
        /// The parameter's name.
        name: String,
    },
    /// The parameter's value is not acceptable.
    Invalid {
        /// The parameter's name.
        name: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Missing { name } => {
                write!(f, "missing parameter `{name}`: pass it as `-e {name}=VALUE`")
            }
            ParamError::Invalid { name, value, reason } => {
                write!(f, "parameter `{name}` is invalid: {value:?} is {reason}")
            }
        }
    }
}

impl std::error::Error for ParamError {}
