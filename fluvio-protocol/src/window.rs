//! Writing an event-time window for an aggregate: the one reader of the
//! ways users write one, so that the CLI's `--window`, a transforms file's
//! `window:` block and a connector config's mean the same thing.
//!
//! ```
//! use std::time::Duration;
//! use fluvio_protocol::window::{Window, WindowShape, parse_window};
//!
//! let window = parse_window("tumbling=60s,lateness=30s,key=/k,time=/ts").unwrap();
//! assert_eq!(window.shape, WindowShape::Tumbling { size: Duration::from_secs(60) });
//! assert_eq!(window.lateness, Duration::from_secs(30));
//! assert_eq!(window.key.as_deref(), Some("/k"));
//! ```

use std::time::Duration;

pub use smartmodule_abi::params::{Window, WindowEmit, WindowShape};

use crate::units::{UnitError, parse_duration};

/// A window that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// No shape, or more than one.
    #[error("a window needs exactly one of tumbling, hopping or session")]
    Shape,
    /// A duration that does not parse.
    #[error("the window's {field} is not a duration: {error}")]
    Duration {
        /// Which field.
        field: &'static str,
        /// Why.
        error: UnitError,
    },
    /// A part of `--window` that is not `name=value`, or a name it does not know.
    #[error(
        "{0:?} is not a window setting; use tumbling=, hopping= with advance=, session=, lateness=, key=, time= or emit="
    )]
    Unknown(String),
    /// A JSON pointer that does not start with `/`.
    #[error("the window's {field} {pointer:?} is not a JSON pointer (it starts with `/`, as in /customer/id)")]
    Pointer {
        /// `key` or `time`.
        field: &'static str,
        /// What was given.
        pointer: String,
    },
    /// An `emit` that is not `on-close` or `every-record`.
    #[error("the window's emit {0:?} is unknown; use on-close or every-record")]
    Emit(String),
    /// Sizes that do not make windows.
    #[error("{0}")]
    Invalid(String),
}

/// The parts of a window as written, durations still text: what every
/// form is read into before [`build`](WindowParts::build) checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowParts {
    /// `tumbling: 60s`.
    #[serde(default)]
    pub tumbling: Option<String>,
    /// `hopping: {size: 5m, advance: 1m}`.
    #[serde(default)]
    pub hopping: Option<HoppingParts>,
    /// `session: {gap: 30m}`.
    #[serde(default)]
    pub session: Option<SessionParts>,
    /// `lateness: 30s` (default: none).
    #[serde(default)]
    pub lateness: Option<String>,
    /// `key: /customer` (default: the record's key).
    #[serde(default)]
    pub key: Option<String>,
    /// `time: /ts` (default: the record's timestamp).
    #[serde(default)]
    pub time: Option<String>,
    /// `emit: on-close` (the default) or `every-record`.
    #[serde(default)]
    pub emit: Option<String>,
}

/// `hopping: {size, advance}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoppingParts {
    /// The window's length.
    pub size: String,
    /// The time between window starts.
    pub advance: String,
}

/// `session: {gap}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionParts {
    /// The silence that ends a session.
    pub gap: String,
}

fn duration(field: &'static str, text: &str) -> Result<Duration, WindowError> {
    parse_duration(text).map_err(|error| WindowError::Duration { field, error })
}

fn pointer(field: &'static str, text: Option<String>) -> Result<Option<String>, WindowError> {
    match text {
        Some(pointer) if !pointer.starts_with('/') => Err(WindowError::Pointer { field, pointer }),
        other => Ok(other),
    }
}

impl WindowParts {
    /// The window, checked.
    pub fn build(self) -> Result<Window, WindowError> {
        let shape = match (self.tumbling, self.hopping, self.session) {
            (Some(size), None, None) => WindowShape::Tumbling { size: duration("size", &size)? },
            (None, Some(hopping), None) => WindowShape::Hopping {
                size: duration("size", &hopping.size)?,
                advance: duration("advance", &hopping.advance)?,
            },
            (None, None, Some(session)) => WindowShape::Session { gap: duration("gap", &session.gap)? },
            _ => return Err(WindowError::Shape),
        };
        let emit = match self.emit.as_deref() {
            None | Some("on-close") => WindowEmit::OnClose,
            Some("every-record") => WindowEmit::EveryRecord,
            Some(other) => return Err(WindowError::Emit(other.to_string())),
        };
        let window = Window {
            shape,
            lateness: self.lateness.as_deref().map(|l| duration("lateness", l)).transpose()?.unwrap_or_default(),
            key: pointer("key", self.key)?,
            time: pointer("time", self.time)?,
            emit,
        };
        window.check().map_err(WindowError::Invalid)?;
        Ok(window)
    }
}

/// Reads the command line's form: comma-separated `name=value` settings,
/// `tumbling=60s`, `hopping=5m,advance=1m` or `session=30m`, with
/// `lateness=`, `key=`, `time=` and `emit=`.
pub fn parse_window(text: &str) -> Result<Window, WindowError> {
    let mut parts = WindowParts::default();
    let mut hopping: Option<String> = None;
    let mut advance: Option<String> = None;
    for setting in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, value)) = setting.split_once('=') else {
            return Err(WindowError::Unknown(setting.to_string()));
        };
        let value = Some(value.trim().to_string());
        match name.trim() {
            "tumbling" => parts.tumbling = value,
            "hopping" => hopping = value,
            "advance" => advance = value,
            "session" => parts.session = value.map(|gap| SessionParts { gap }),
            "lateness" => parts.lateness = value,
            "key" => parts.key = value,
            "time" => parts.time = value,
            "emit" => parts.emit = value,
            _ => return Err(WindowError::Unknown(setting.to_string())),
        }
    }
    parts.hopping = match (hopping, advance) {
        (Some(size), Some(advance)) => Some(HoppingParts { size, advance }),
        (None, None) => None,
        (Some(_), None) => return Err(WindowError::Invalid("a hopping window needs advance=DURATION".into())),
        (None, Some(_)) => return Err(WindowError::Invalid("advance= goes with hopping=SIZE".into())),
    };
    parts.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_reads_the_same_window() {
        let hopping = parse_window("hopping=5m, advance=1m, emit=every-record").unwrap();
        assert_eq!(
            hopping.shape,
            WindowShape::Hopping { size: Duration::from_secs(300), advance: Duration::from_secs(60) }
        );
        assert_eq!(hopping.emit, WindowEmit::EveryRecord);
        let yaml_like = WindowParts {
            hopping: Some(HoppingParts { size: "5m".into(), advance: "1m".into() }),
            emit: Some("every-record".into()),
            ..WindowParts::default()
        };
        assert_eq!(yaml_like.build().unwrap(), hopping);
        let session = parse_window("session=30m,time=/at").unwrap();
        assert_eq!(session.shape, WindowShape::Session { gap: Duration::from_secs(1800) });
        assert_eq!((session.key, session.time.as_deref()), (None, Some("/at")));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        let error = |text: &str| parse_window(text).unwrap_err().to_string();
        assert_eq!(error("lateness=1s"), "a window needs exactly one of tumbling, hopping or session");
        assert_eq!(error("tumbling=1m,session=1m"), "a window needs exactly one of tumbling, hopping or session");
        assert!(
            error("tumbling=soon").starts_with("the window's size is not a duration"),
            "{}",
            error("tumbling=soon")
        );
        assert!(error("tumbling=1m,colour=red").contains("\"colour=red\" is not a window setting"));
        assert!(error("tumbling=1m,key=k").contains("is not a JSON pointer"));
        assert_eq!(
            error("tumbling=1m,emit=never"),
            "the window's emit \"never\" is unknown; use on-close or every-record"
        );
        assert_eq!(error("hopping=1m"), "a hopping window needs advance=DURATION");
        assert!(error("hopping=1m,advance=2m").contains("must not exceed its size"));
        assert!(error("tumbling=0s").contains("at least 1ms"));
    }
}
