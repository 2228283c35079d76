//! The connector secrets file: one `NAME=value` per line, blank lines and
//! lines starting with `#` ignored. The `fluvio` command reads it (`fluvio
//! cloud connector create --secrets`), the server writes it for each
//! connector it runs, and the `fluvio-connector` program reads it back
//! (`--secrets`); all three go through this module.
//!
//! ```
//! use fluvio_protocol::secrets_file;
//!
//! let text = secrets_file::render(&[("DB_PASSWORD".into(), "s3cret=yes".into())]).unwrap();
//! assert_eq!(text, "DB_PASSWORD=s3cret=yes\n");
//! assert_eq!(secrets_file::parse(&text).unwrap(), [("DB_PASSWORD".to_string(), "s3cret=yes".to_string())]);
//! ```

/// What is wrong with a secrets file, or with a secret to write into one.
/// Values never appear in these messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsFileError {
    /// A line that is not `NAME=value` with a name.
    #[error("line {0} is not NAME=value")]
    BadLine(usize),
    /// A secret that one line cannot hold.
    #[error(
        "secret {0:?}: names cannot be empty or hold '=' or line breaks, values cannot hold line breaks or end in blanks"
    )]
    Unwritable(String),
}

/// The `(NAME, value)` pairs of a secrets file's text, in file order. A
/// name is trimmed; a value is everything after the first `=`, as it is.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, SecretsFileError> {
    let mut secrets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                secrets.push((name.trim().to_string(), value.to_string()))
            }
            _ => return Err(SecretsFileError::BadLine(number + 1)),
        }
    }
    Ok(secrets)
}

/// The text of a secrets file holding `secrets`, one line each, which
/// [`parse`] reads back as they are.
pub fn render(secrets: &[(String, String)]) -> Result<String, SecretsFileError> {
    let mut text = String::new();
    for (name, value) in secrets {
        let name_fits = !name.trim().is_empty() && name.trim() == name && !name.contains(['=', '\n', '\r']);
        // A line is trimmed as it is read: trailing blanks would be lost.
        let value_fits = !value.contains(['\n', '\r']) && value.trim_end() == value;
        if !name_fits || !value_fits {
            return Err(SecretsFileError::Unwritable(name.clone()));
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blank_lines_are_skipped_and_values_kept_whole() {
        let secrets = parse("# database\n\nDB_USER = app\nDB_PASSWORD=a=b=c\n  TOKEN=x  \n").unwrap();
        let expected = [("DB_USER", " app"), ("DB_PASSWORD", "a=b=c"), ("TOKEN", "x")];
        assert_eq!(secrets, expected.map(|(name, value)| (name.to_string(), value.to_string())));
    }

    #[test]
    fn a_line_without_a_name_is_refused_by_its_number() {
        assert_eq!(parse("A=1\nnot a pair\n"), Err(SecretsFileError::BadLine(2)));
        assert_eq!(parse("A=1\n=value\n"), Err(SecretsFileError::BadLine(2)), "an empty name");
        assert_eq!(SecretsFileError::BadLine(2).to_string(), "line 2 is not NAME=value");
    }

    #[test]
    fn what_is_written_reads_back_and_what_cannot_be_is_refused() {
        let secrets =
            vec![("A".to_string(), "x=y".to_string()), ("B".to_string(), String::new()), ("C".into(), " lead".into())];
        assert_eq!(parse(&render(&secrets).unwrap()).unwrap(), secrets);
        for (name, value) in [("", "v"), ("A=B", "v"), ("A", "hunter2\nx"), (" A", "v"), ("A", "hunter2 ")] {
            let refused = render(&[(name.to_string(), value.to_string())]).unwrap_err();
            assert_eq!(refused, SecretsFileError::Unwritable(name.to_string()));
            assert!(!refused.to_string().contains("hunter2"), "values are never shown: {refused}");
        }
    }
}
