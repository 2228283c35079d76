//! The one byte codec of the project: a checked reader and a writer for the
//! little-endian integers and `u32 length, bytes` fields that every layout
//! here is made of (batches, records, headers, setup blobs, output areas,
//! frames, segment index entries).
//!
//! The reader never trusts a length: every read is bounds-checked, and a
//! failed read yields a [`FormatError`] that names the field and the byte
//! where it was expected, so a malformed input says what was wrong with it.
//!
//! ```
//! use smartmodule_abi::codec::{ByteReader, PutBytes};
//!
//! let mut bytes = Vec::new();
//! bytes.put_u32(7);
//! bytes.put_len_prefixed(b"name");
//! let mut reader = ByteReader::new(&bytes);
//! assert_eq!(reader.u32("count").unwrap(), 7);
//! assert_eq!(reader.len_prefixed("name").unwrap(), b"name");
//! assert!(reader.u32("missing").unwrap_err().to_string().contains("missing (4 bytes) at byte 12"));
//! ```

use std::fmt;

/// A malformed batch, record, blob or output area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// What was wrong, with the position where it was found.
    pub reason: String,
}

impl FormatError {
    /// A format error with the given description.
    pub fn new(reason: impl Into<String>) -> Self {
        FormatError { reason: reason.into() }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for FormatError {}

/// Reads fields one after the other from a byte slice, checking each
/// against the end of the slice.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    /// A reader at the start of `bytes`.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> ByteReader<'a> {
        ByteReader { bytes, pos: 0 }
    }

    /// A reader at byte `pos` of `bytes` (positions in errors count from
    /// the start of `bytes`).
    #[inline]
    pub fn at(bytes: &'a [u8], pos: usize) -> ByteReader<'a> {
        ByteReader { bytes, pos }
    }

    /// Where the next field starts.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left after the position.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// Takes the next `len` bytes, or fails naming `what`.
    #[inline]
    pub fn bytes(&mut self, len: usize, what: &str) -> Result<&'a [u8], FormatError> {
        match self.pos.checked_add(len).and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += len;
                Ok(slice)
            }
            None => Err(self.past_end(len, what)),
        }
    }

    #[cold]
    fn past_end(&self, len: usize, what: &str) -> FormatError {
        FormatError::new(format!(
            "{what} ({len} bytes) at byte {} is past the end ({} bytes)",
            self.pos,
            self.bytes.len()
        ))
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        let bytes = self.bytes(N, what)?;
        Ok(bytes.try_into().expect("N bytes were taken"))
    }

    /// Reads a byte.
    #[inline]
    pub fn u8(&mut self, what: &str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a little-endian `u16`.
    #[inline]
    pub fn u16(&mut self, what: &str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u32`.
    #[inline]
    pub fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `i32`.
    #[inline]
    pub fn i32(&mut self, what: &str) -> Result<i32, FormatError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u64`.
    #[inline]
    pub fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `i64`.
    #[inline]
    pub fn i64(&mut self, what: &str) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u32` length, then that many bytes.
    #[inline]
    pub fn len_prefixed(&mut self, what: &str) -> Result<&'a [u8], FormatError> {
        let len = self.u32(what)? as usize;
        self.bytes(len, what)
    }

    /// Fails unless every byte was read, naming what the bytes were.
    pub fn finish(&self, what: &str) -> Result<(), FormatError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(FormatError::new(format!("{left} bytes left over after {what}"))),
        }
    }
}

/// Appends little-endian fields to a byte buffer: the writing half of the
/// codec, for every layout [`ByteReader`] reads.
pub trait PutBytes {
    /// Appends a byte.
    fn put_u8(&mut self, value: u8);
    /// Appends a little-endian `u16`.
    fn put_u16(&mut self, value: u16);
    /// Appends a little-endian `u32`.
    fn put_u32(&mut self, value: u32);
    /// Appends a little-endian `i32`.
    fn put_i32(&mut self, value: i32);
    /// Appends a little-endian `u64`.
    fn put_u64(&mut self, value: u64);
    /// Appends a little-endian `i64`.
    fn put_i64(&mut self, value: i64);
    /// Appends a `u32` length, then the bytes.
    fn put_len_prefixed(&mut self, bytes: &[u8]);
}

impl PutBytes for Vec<u8> {
    #[inline]
    fn put_u8(&mut self, value: u8) {
        self.push(value);
    }

    #[inline]
    fn put_u16(&mut self, value: u16) {
        self.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn put_u32(&mut self, value: u32) {
        self.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn put_i32(&mut self, value: i32) {
        self.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn put_u64(&mut self, value: u64) {
        self.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn put_i64(&mut self, value: i64) {
        self.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn put_len_prefixed(&mut self, bytes: &[u8]) {
        self.put_u32(bytes.len() as u32);
        self.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips() {
        let mut out = Vec::new();
        out.put_u8(0xab);
        out.put_u16(0xbeef);
        out.put_u32(u32::MAX - 1);
        out.put_i32(-5);
        out.put_u64(1 << 40);
        out.put_i64(-(1 << 40));
        out.put_len_prefixed(b"hello");
        out.put_len_prefixed(b"");
        let mut reader = ByteReader::new(&out);
        assert_eq!(reader.u8("a").unwrap(), 0xab);
        assert_eq!(reader.u16("b").unwrap(), 0xbeef);
        assert_eq!(reader.u32("c").unwrap(), u32::MAX - 1);
        assert_eq!(reader.i32("d").unwrap(), -5);
        assert_eq!(reader.u64("e").unwrap(), 1 << 40);
        assert_eq!(reader.i64("f").unwrap(), -(1 << 40));
        assert_eq!(reader.len_prefixed("g").unwrap(), b"hello");
        assert_eq!(reader.len_prefixed("h").unwrap(), b"");
        assert_eq!(reader.remaining(), 0);
        reader.finish("the fields").unwrap();
    }

    #[test]
    fn errors_name_the_field_and_the_position() {
        let mut reader = ByteReader::new(&[1, 0, 0, 0, 9]);
        assert_eq!(reader.u32("count").unwrap(), 1);
        let error = reader.u32("record length").unwrap_err();
        assert_eq!(error.reason, "record length (4 bytes) at byte 4 is past the end (5 bytes)");
        // A failed read does not move the reader.
        assert_eq!(reader.position(), 4);
        assert_eq!(reader.u8("tag").unwrap(), 9);
    }

    #[test]
    fn lying_lengths_are_refused_without_overflow() {
        let mut out = Vec::new();
        out.put_u32(u32::MAX);
        out.extend_from_slice(b"abc");
        assert!(ByteReader::new(&out).len_prefixed("header value").unwrap_err().reason.contains("header value"));
        let mut reader = ByteReader::at(&out, usize::MAX - 1);
        assert!(reader.bytes(4, "far").is_err());
    }

    #[test]
    fn leftover_bytes_are_named() {
        let reader = ByteReader::new(&[0, 1]);
        assert_eq!(reader.finish("the setup blob").unwrap_err().reason, "2 bytes left over after the setup blob");
    }
}
