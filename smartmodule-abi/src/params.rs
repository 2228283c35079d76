//! Parameters passed to a SmartModule's `init` function, and the look-back
//! it was configured with.

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
        SmartModuleExtraParams { inner: params, lookback }
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
        SmartModuleExtraParams { inner: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), lookback: None }
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
