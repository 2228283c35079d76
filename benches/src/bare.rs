//! The engine benchmark's functions as plain loops over `Vec<u8>` values,
//! outputs allocated and no batch format: what a user would write without
//! a sandbox, and the limit the engine is measured against.

use fluvio_protocol::Batch;

/// The values of every batch, as a plain program would hold them.
pub fn plain_values(input: &[Batch]) -> Vec<Vec<Vec<u8>>> {
    input.iter().map(|batch| batch.records().map(|record| record.value.to_vec()).collect()).collect()
}

/// A plain loop over one batch's values; returns how many outputs it made.
pub type Bare = fn(&[Vec<u8>]) -> usize;

/// Keeps the values that contain `#`, as the `bench-filter` module does.
pub fn bare_filter(values: &[Vec<u8>]) -> usize {
    let kept: Vec<Vec<u8>> = values.iter().filter(|value| value.contains(&b'#')).cloned().collect();
    kept.len()
}

/// ASCII upper-cases every value, as the `uppercase-map` example does.
pub fn bare_uppercase(values: &[Vec<u8>]) -> usize {
    let mapped: Vec<Vec<u8>> = values.iter().map(|value| value.to_ascii_uppercase()).collect();
    mapped.len()
}

/// Masks what looks like an SSN, as the `regex-scrubbing` example does.
pub fn bare_regex_scrub(values: &[Vec<u8>]) -> usize {
    static SSN: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\d{3}-\d{2}-\d{4}").unwrap());
    let mapped: Vec<Vec<u8>> = values
        .iter()
        .map(|value| SSN.replace_all(std::str::from_utf8(value).unwrap(), "***-**-****").into_owned().into_bytes())
        .collect();
    mapped.len()
}

/// Counts values, as the `bench-count` module does: the count kept as
/// text, as the module keeps its accumulator, and every accumulator an
/// output, since an aggregate answers each record with the value so far.
pub fn bare_count(values: &[Vec<u8>]) -> usize {
    let mut outputs: Vec<Vec<u8>> = Vec::with_capacity(values.len());
    for _ in values {
        let count: u64 = outputs.last().map_or(0, |last| std::str::from_utf8(last).unwrap().parse().unwrap());
        outputs.push((count + 1).to_string().into_bytes());
    }
    outputs.len()
}
