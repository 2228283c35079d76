//! The error type SmartModule functions return.

use std::fmt;

/// What a SmartModule function returns: `Ok` with its answer, or an [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error raised by a SmartModule function for one record.
///
/// Any `std::error::Error` converts into it through `?` (UTF-8, JSON and
/// number parsing errors, for example). The host receives the error's kind
/// (the Rust type name of the original error) and its message with every
/// cause, and reports them with the offset of the record that failed.
pub struct Error {
    kind: String,
    message: String,
}

impl Error {
    /// An error with a message and kind `error`.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error { kind: "error".to_string(), message: message.to_string() }
    }

    /// An error with an explicit kind, such as `invalid-input`.
    pub fn new(kind: impl Into<String>, message: impl fmt::Display) -> Error {
        Error { kind: kind.into(), message: message.to_string() }
    }

    /// A short classification: the original error's type name, or the kind
    /// given to [`Error::new`].
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The message, followed by each cause after `: `.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error { kind: std::any::type_name::<E>().to_string(), message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

/// Builds an [`Error`] from a format string, like `eyre!` in Fluvio modules.
///
/// ```
/// use fluvio_smartmodule::{eyre, Result};
/// fn check(n: i64) -> Result<i64> {
///     if n < 0 { return Err(eyre!("{n} is negative")); }
///     Ok(n)
/// }
/// assert_eq!(check(-1).unwrap_err().to_string(), "-1 is negative");
/// ```
#[macro_export]
macro_rules! eyre {
    ($($arg:tt)*) => {
        $crate::Error::msg(::std::format!($($arg)*))
    };
}
