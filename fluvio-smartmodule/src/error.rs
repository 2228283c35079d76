//! The error type SmartModule functions return: [`eyre`]'s, as in Fluvio's
//! `fluvio-smartmodule`, so that `eyre!`, `bail!`, `ensure!`,
//! `.wrap_err(..)`, `.context(..)` and downcasting work as Fluvio modules
//! use them.
//!
//! ```
//! use fluvio_smartmodule::{bail, ensure, eyre, Result, WrapErr};
//!
//! fn amount(text: &str) -> Result<u32> {
//!     ensure!(!text.is_empty(), "the amount is empty");
//!     let amount: u32 = text.parse().wrap_err_with(|| format!("{text:?} is not an amount"))?;
//!     if amount > 1_000 {
//!         bail!("{amount} is over the limit");
//!     }
//!     Ok(amount)
//! }
//! assert_eq!(amount("12").unwrap(), 12);
//! assert_eq!(amount("").unwrap_err().to_string(), "the amount is empty");
//! let error = amount("x").unwrap_err();
//! assert!(error.downcast_ref::<std::num::ParseIntError>().is_some() || error.root_cause().is::<std::num::ParseIntError>());
//! assert_eq!(eyre!("plain").to_string(), "plain");
//! ```
//!
//! The host reports each error with the record's offset, a kind and a
//! message: the kind is the name of the error type at the root of the chain
//! (`ParseIntError`, `Utf8Error`, `ParamError`), or `error` for a message
//! made with `eyre!`/`bail!`; the message is every error of the chain,
//! outermost first, joined by `: `.

pub use eyre::{ContextCompat, OptionExt, Report, WrapErr, bail, ensure, eyre};

/// The error a SmartModule function returns.
pub type Error = eyre::Report;

/// What a SmartModule function returns: `Ok` with its answer, or an [`Error`].
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// The kind the host reports for an error: the root cause's type name.
pub(crate) fn kind_of(error: &Error) -> String {
    let root = error.root_cause();
    if root.is::<crate::params::ParamError>() {
        return "ParamError".into();
    }
    if root.is::<crate::params::SmartModuleInitError>() {
        return "SmartModuleInitError".into();
    }
    // A type's derived `Debug` starts with its name; a message's starts
    // with a quote.
    let shown = format!("{root:?}");
    let name: String = shown.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
    if name.starts_with(|c: char| c.is_ascii_uppercase()) { name } else { "error".into() }
}

/// The message the host reports: the chain, outermost first.
pub(crate) fn message_of(error: &Error) -> String {
    let mut message = String::new();
    for (i, cause) in error.chain().enumerate() {
        if i > 0 {
            message.push_str(": ");
        }
        message.push_str(&cause.to_string());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_the_root_cause_and_messages_carry_the_chain() {
        let parse: Result<u32> = "x".parse::<u32>().wrap_err("reading the count");
        let error = parse.unwrap_err();
        assert_eq!(kind_of(&error), "ParseIntError");
        assert_eq!(message_of(&error), "reading the count: invalid digit found in string");
        let bytes = vec![0xff];
        let utf8 = std::str::from_utf8(&bytes).map_err(Error::from).unwrap_err();
        assert_eq!(kind_of(&utf8), "Utf8Error");
        assert_eq!(kind_of(&eyre!("Plain words")), "error");
        let missing: Error = crate::params::ParamError::Missing { name: "n".into() }.into();
        assert_eq!(kind_of(&missing), "ParamError");
    }
}
