//! The one reading of sizes and durations people write, for every place
//! that takes them: the `fluvio` command's flags, connector configs and the
//! server's flags. The rules are Fluvio's, which uses the `bytesize` and
//! `humantime` crates for the same: `1 MB` is 1,000,000 bytes and `1 MiB`
//! 1,048,576 (`k`, `m`, `g` alone are decimal too); a bare number is bytes.
//! A duration needs its unit (`500ms`, `10s`, `5m`, `1h`, `7d`, `1h30m`): a
//! bare number is refused rather than guessed at.
//!
//! ```
//! use fluvio_protocol::units::{parse_duration, parse_size};
//! use std::time::Duration;
//!
//! assert_eq!(parse_size("64 KiB").unwrap(), 65_536);
//! assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
//! assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
//! assert!(parse_duration("10").is_err());
//! ```

use std::time::Duration;

/// A size or a duration that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a size.
    #[error("{text:?} is not a size ({reason}); write it like 512, 64KiB, 1MiB or 1MB")]
    Size {
        /// What was written.
        text: String,
        /// Why it does not read.
        reason: String,
    },
    /// Not a duration.
    #[error("{text:?} is not a duration ({reason}); write it like 500ms, 10s, 5m or 1h")]
    Duration {
        /// What was written.
        text: String,
        /// Why it does not read.
        reason: String,
    },
}

/// A size in bytes: `512`, `64KiB`, `10 MiB`, `1GB`, `44.5 MB`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let refuse = |reason: String| UnitError::Size { text: text.to_string(), reason };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    let size: bytesize::ByteSize = trimmed.parse().map_err(refuse)?;
    // The parser saturates: a size it cannot hold comes back as the
    // largest there is.
    match size.as_u64() {
        u64::MAX => Err(refuse("it is too large".into())),
        bytes => Ok(bytes),
    }
}

/// A size that must fit in `T` (an unsigned integer), such as a `u32`
/// limit.
pub fn parse_size_within<T: TryFrom<u64>>(text: &str) -> Result<T, UnitError> {
    let bytes = parse_size(text)?;
    T::try_from(bytes).map_err(|_| {
        let bits = 8 * std::mem::size_of::<T>() as u32;
        let largest = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        UnitError::Size {
            text: text.to_string(),
            reason: format!("it is more than the largest allowed, {largest} bytes"),
        }
    })
}

/// A duration: `250ms`, `30s`, `10m`, `1h`, `7 days`, `1h30m`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim())
        .map_err(|error| UnitError::Duration { text: text.to_string(), reason: error.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_fluvio_reads_them() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1m"), Ok(1_000_000), "a bare m is decimal, as 1MB");
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("44.0 MB"), Ok(44_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in ["", "ten MB", "-1", "1e3", "64 parsecs"] {
            let error = parse_size(bad).unwrap_err().to_string();
            assert!(error.starts_with(&format!("{bad:?} is not a size (")), "{error}");
        }
        assert!(parse_size("99999999999TiB").unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn a_size_too_large_for_its_setting_says_how_large_it_may_be() {
        assert!(parse_size_within::<u32>("4GiB").unwrap_err().to_string().contains("4294967295 bytes"));
        assert_eq!(parse_size_within::<u32>("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size_within::<usize>("2 GB"), Ok(2_000_000_000));
    }

    #[test]
    fn durations_need_their_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7 days"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
        let bare = parse_duration("10").unwrap_err().to_string();
        assert!(bare.starts_with("\"10\" is not a duration (time unit needed"), "{bare}");
        assert!(parse_duration("soon").is_err());
    }
}
