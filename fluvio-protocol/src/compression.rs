//! Batch compression: the codecs a producer may compress a batch's records
//! with (`gzip`, `snappy`, `lz4`, `zstd`), by Fluvio's names.
//!
//! A compressed batch keeps its 32-byte header as it is (base offset,
//! record count, base timestamp; the codec in the attributes byte) and
//! holds its records compressed after it. It is stored and sent as it is;
//! whoever needs the records (a consumer, a SmartModule chain) decompresses
//! it, at most [`decompressed_limit`] bytes: [`MAX_DECOMPRESSION_RATIO`]
//! times its compressed size, and never more than
//! [`MAX_DECOMPRESSED_BATCH_BYTES`].

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use smartmodule_abi::abi::FormatError;

/// Most bytes a compressed batch may decompress to: a small compressed
/// batch must not make its reader allocate without bound.
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 256 << 20;

/// Most times its compressed size a batch of more than
/// [`RATIO_FREE_DECOMPRESSED_BYTES`] may decompress to. Real record data
/// compresses 3 to 30 times, very repetitive data some 100 times; 256 stops
/// a bomb (zeros compress a thousand times and more) long before the
/// absolute cap.
pub const MAX_DECOMPRESSION_RATIO: usize = 256;

/// What any compressed batch may decompress to whatever its ratio: small
/// batches of very repetitive records are never refused.
pub const RATIO_FREE_DECOMPRESSED_BYTES: usize = 4 << 20;

/// The most bytes `compressed_len` bytes of a batch's records may
/// decompress to: [`MAX_DECOMPRESSION_RATIO`] times as many, at least
/// [`RATIO_FREE_DECOMPRESSED_BYTES`] and at most
/// [`MAX_DECOMPRESSED_BATCH_BYTES`].
pub fn decompressed_limit(compressed_len: usize) -> usize {
    compressed_len
        .saturating_mul(MAX_DECOMPRESSION_RATIO)
        .clamp(RATIO_FREE_DECOMPRESSED_BYTES, MAX_DECOMPRESSED_BATCH_BYTES)
}

/// The bits of a batch's attributes byte that name its codec.
pub const COMPRESSION_MASK: u8 = 0x07;

/// How a batch's records are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// gzip (DEFLATE).
    Gzip,
    /// Snappy (raw format).
    Snappy,
    /// LZ4 (block format, size prepended).
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Every codec, in a fixed order.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The name users write: `none`, `gzip`, `snappy`, `lz4`, `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec's number in a batch's attributes byte.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec an attributes byte names.
    pub fn from_attributes(attributes: u8) -> Result<Compression, FormatError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            code => Err(FormatError::new(format!("batch compression code {code} is unknown"))),
        }
    }

    /// Compresses `data`.
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(data).expect("writing to a Vec cannot fail");
                encoder.finish().expect("writing to a Vec cannot fail")
            }
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(data).expect("snappy compresses any input"),
            Compression::Lz4 => lz4_flex::compress_prepend_size(data),
            Compression::Zstd => zstd::bulk::compress(data, 1).expect("zstd compresses any input"),
        }
    }

    /// Decompresses `data`, refusing more than `limit` bytes of output.
    pub fn decompress(self, data: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
        let failed = |error: &dyn std::fmt::Display| {
            FormatError::new(format!("cannot decompress the {} batch: {error}", self.name()))
        };
        let too_large = || {
            FormatError::new(format!(
                "the {} batch decompresses past {limit} bytes, the most a batch of {} compressed bytes may hold ({MAX_DECOMPRESSION_RATIO} times its size, at least {RATIO_FREE_DECOMPRESSED_BYTES} and at most {MAX_DECOMPRESSED_BATCH_BYTES} bytes); send smaller batches",
                self.name(),
                data.len()
            ))
        };
        let capped = |reader: &mut dyn Read| -> Result<Vec<u8>, FormatError> {
            let mut out = Vec::new();
            reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| failed(&e))?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(out)
        };
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => capped(&mut flate2::read::GzDecoder::new(data)),
            Compression::Snappy => {
                let len = snap::raw::decompress_len(data).map_err(|e| failed(&e))?;
                if len > limit {
                    return Err(too_large());
                }
                snap::raw::Decoder::new().decompress_vec(data).map_err(|e| failed(&e))
            }
            Compression::Lz4 => {
                let prefix: [u8; 4] =
                    data.get(..4).and_then(|p| p.try_into().ok()).ok_or_else(|| failed(&"truncated"))?;
                if u32::from_le_bytes(prefix) as usize > limit {
                    return Err(too_large());
                }
                lz4_flex::decompress_size_prepended(data).map_err(|e| failed(&e))
            }
            Compression::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(data).map_err(|e| failed(&e))?;
                capped(&mut decoder)
            }
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}; use none, gzip, snappy, lz4 or zstd")]
pub struct UnknownCompression(pub String);

impl std::str::FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Compression::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| UnknownCompression(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_bombs_are_refused() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| format!("record {i};").into_bytes()).collect();
        for codec in Compression::ALL {
            let packed = codec.compress(&data);
            if codec != Compression::None {
                assert!(packed.len() * 2 < data.len(), "{codec}: {} of {}", packed.len(), data.len());
            }
            assert_eq!(codec.decompress(&packed, data.len()).unwrap(), data, "{codec}");
            if codec != Compression::None {
                let error = codec.decompress(&packed, data.len() - 1).unwrap_err();
                assert!(error.to_string().contains("decompresses past"), "{codec}: {error}");
                let error = codec.decompress(&packed[..packed.len() / 2], data.len()).unwrap_err();
                assert!(
                    error.to_string().contains("cannot decompress") || error.to_string().contains("past"),
                    "{codec}: {error}"
                );
            }
            assert_eq!(codec.name().parse::<Compression>().unwrap(), codec);
            assert_eq!(Compression::from_attributes(codec.code()).unwrap(), codec);
        }
        assert!("brotli".parse::<Compression>().is_err());
        assert!(Compression::from_attributes(7).is_err());
    }
}
