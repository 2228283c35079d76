//! Frames: the unit of the wire protocol (`docs/protocol.md`).
//!
//! Every message is a frame: a length, a versioned header with a request
//! kind and a correlation id, a control part encoded with bincode (serde),
//! and a payload of raw bytes. Record batches travel as payload, in the one
//! batch layout, so the server sends what it read from disk without
//! re-encoding it. Both sides refuse frames larger than their limit before
//! reading them.
//!
//! Encoding and decoding here are synchronous and runtime-free; with the
//! `tokio` feature, [`Frame::read`] and [`Frame::write`] move frames over
//! tokio streams.

use serde::{Deserialize, Serialize};
use smartmodule_abi::codec::{ByteReader, FormatError, PutBytes};

/// The protocol version this crate speaks (7: a produce request names the
/// batch it follows).
pub const PROTOCOL_VERSION: u16 = 7;

/// Frames larger than this are refused unless configured otherwise.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 64 << 20;
/// Bytes after the length prefix and before the control part: version
/// (u16), kind (u16), correlation id (u32), control length (u32).
pub const FRAME_HEADER_LEN: usize = 12;
/// The address clients connect to by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9003";
/// Largest control part accepted (the payload carries bulk data).
pub const MAX_CONTROL_BYTES: usize = 16 << 20;

/// What a frame carries. A response uses its request's kind with
/// [`RESPONSE_BIT`] set; errors use [`ApiKind::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ApiKind {
    /// Create a topic.
    CreateTopic = 1,
    /// Delete a topic and its data.
    DeleteTopic = 2,
    /// List topics.
    ListTopics = 3,
    /// Append one batch to a partition.
    Produce = 4,
    /// Stream records from a partition, optionally through SmartModules.
    StreamFetch = 5,
    /// Register a SmartModule.
    CreateSmartModule = 6,
    /// List registered SmartModules.
    ListSmartModules = 7,
    /// Delete a registered SmartModule.
    DeleteSmartModule = 8,
    /// Download a registered SmartModule's wasm.
    GetSmartModule = 9,
    /// Hand a connector to the cluster to run.
    CreateConnector = 10,
    /// List the cluster's connectors.
    ListConnectors = 11,
    /// Stop a connector and forget it.
    DeleteConnector = 12,
    /// Read part of a connector's log.
    ConnectorLogs = 13,
    /// Store where a consumer has got to in a partition.
    CommitOffset = 14,
    /// Read where a consumer has got to in a partition.
    FetchOffset = 15,
    /// List every consumer's stored offsets.
    ListConsumers = 16,
    /// Forget a consumer's stored offsets.
    DeleteConsumer = 17,
    /// Present a token: the connection then acts as the token's principal.
    Authenticate = 18,
    /// List one page of the stored consumer offsets.
    ListConsumersPage = 19,
    /// Forget a consumer's stored offset in one partition.
    DeleteConsumerOffset = 20,
    /// The server's version.
    ServerInfo = 21,
    /// The registered SmartModules with the ABI each is built for.
    DescribeSmartModules = 22,
    /// The servers serving the cluster now.
    ListServers = 23,
    /// Create a topic whose records are another's passed through a chain
    /// of registered SmartModules by the server.
    CreateDerivedTopic = 24,
    /// The derived topics, with each pipeline's state.
    ListDerivedTopics = 25,
    /// Start a derived topic's stopped pipelines again.
    ResumeDerivedTopic = 26,
    /// An error answer to any request.
    Error = 0x7fff,
}

/// Set in the kind of every frame a server sends in answer to a request.
pub const RESPONSE_BIT: u16 = 0x8000;

impl ApiKind {
    /// The kind with this number, if there is one.
    pub fn from_u16(kind: u16) -> Option<ApiKind> {
        Some(match kind & !RESPONSE_BIT {
            1 => ApiKind::CreateTopic,
            2 => ApiKind::DeleteTopic,
            3 => ApiKind::ListTopics,
            4 => ApiKind::Produce,
            5 => ApiKind::StreamFetch,
            6 => ApiKind::CreateSmartModule,
            7 => ApiKind::ListSmartModules,
            8 => ApiKind::DeleteSmartModule,
            9 => ApiKind::GetSmartModule,
            10 => ApiKind::CreateConnector,
            11 => ApiKind::ListConnectors,
            12 => ApiKind::DeleteConnector,
            13 => ApiKind::ConnectorLogs,
            14 => ApiKind::CommitOffset,
            15 => ApiKind::FetchOffset,
            16 => ApiKind::ListConsumers,
            17 => ApiKind::DeleteConsumer,
            18 => ApiKind::Authenticate,
            19 => ApiKind::ListConsumersPage,
            20 => ApiKind::DeleteConsumerOffset,
            21 => ApiKind::ServerInfo,
            22 => ApiKind::DescribeSmartModules,
            23 => ApiKind::ListServers,
            24 => ApiKind::CreateDerivedTopic,
            25 => ApiKind::ListDerivedTopics,
            26 => ApiKind::ResumeDerivedTopic,
            0x7fff => ApiKind::Error,
            _ => return None,
        })
    }
}

/// One frame, decoded up to its control part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Protocol version of the sender.
    pub version: u16,
    /// The raw kind (with [`RESPONSE_BIT`] for responses).
    pub kind: u16,
    /// Matches a response to its request.
    pub correlation_id: u32,
    /// bincode-encoded control message.
    pub control: Vec<u8>,
    /// Raw bytes: record batches, wasm.
    pub payload: Vec<u8>,
}

/// Why a frame could not be read, written or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The frame is larger than the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// The limit.
        limit: u32,
    },
    /// The frame's header is malformed.
    #[error("malformed frame: {0}")]
    Malformed(#[from] FormatError),
    /// The control part does not decode as the message its kind promises.
    #[error("malformed frame: cannot decode the control message: {reason}")]
    BadControl {
        /// The decoder's explanation.
        reason: String,
    },
}

impl Frame {
    /// A frame of `kind` with a control message and a payload.
    pub fn new<T: Serialize>(kind: u16, correlation_id: u32, control: &T, payload: Vec<u8>) -> Frame {
        Frame { version: PROTOCOL_VERSION, kind, correlation_id, control: encode(control), payload }
    }

    /// Decodes the control part as `T`.
    pub fn control<T: for<'de> Deserialize<'de>>(&self) -> Result<T, FrameError> {
        decode(&self.control)
    }

    /// Whether the frame is a response.
    pub fn is_response(&self) -> bool {
        self.kind & RESPONSE_BIT != 0
    }

    /// Encoded size, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + FRAME_HEADER_LEN + self.control.len() + self.payload.len()
    }

    /// Everything before the payload: length prefix, header and control
    /// part. Writers send this, then the payload, so that a large payload
    /// is never copied into a second buffer.
    pub fn head(&self) -> Vec<u8> {
        self.head_followed_by(0)
    }

    /// The head of a frame whose payload goes on for `more` bytes after
    /// [`payload`](Self::payload): a sender that writes those bytes from
    /// elsewhere (a file, say) announces them here.
    pub fn head_followed_by(&self, more: usize) -> Vec<u8> {
        let len = FRAME_HEADER_LEN + self.control.len() + self.payload.len() + more;
        let mut head = Vec::with_capacity(4 + FRAME_HEADER_LEN + self.control.len());
        head.put_u32(len as u32);
        head.put_u16(self.version);
        head.put_u16(self.kind);
        head.put_u32(self.correlation_id);
        head.put_len_prefixed(&self.control);
        head
    }

    /// The body length a length prefix announces, refused when it is above
    /// `max_bytes` (before any of the body is read) or below the header.
    pub fn body_len(prefix: [u8; 4], max_bytes: u32) -> Result<usize, FrameError> {
        let len = u32::from_le_bytes(prefix);
        if len > max_bytes {
            return Err(FrameError::TooLarge { size: len as u64, limit: max_bytes });
        }
        if (len as usize) < FRAME_HEADER_LEN {
            return Err(FormatError::new(format!(
                "frame of {len} bytes is shorter than its {FRAME_HEADER_LEN}-byte header"
            ))
            .into());
        }
        Ok(len as usize)
    }

    /// The fixed header at the start of a body: version, kind, correlation
    /// id and the control part's length.
    fn parse_header(body: &[u8]) -> Result<(u16, u16, u32, usize), FormatError> {
        let mut fields = ByteReader::new(body);
        let version = fields.u16("frame version")?;
        let kind = fields.u16("frame kind")?;
        let correlation_id = fields.u32("correlation id")?;
        let control_len = fields.u32("control part")? as usize;
        Ok((version, kind, correlation_id, control_len))
    }

    /// Decodes a frame from its body (everything after the length prefix).
    pub fn from_body(mut body: Vec<u8>) -> Result<Frame, FrameError> {
        let (version, kind, correlation_id, control_len) = Frame::parse_header(&body)?;
        ByteReader::at(&body, FRAME_HEADER_LEN).bytes(control_len, "control part")?;
        let payload = body.split_off(FRAME_HEADER_LEN + control_len);
        let control = body.split_off(FRAME_HEADER_LEN);
        Ok(Frame { version, kind, correlation_id, control, payload })
    }

    /// Writes the frame.
    #[cfg(feature = "tokio")]
    pub async fn write<W: tokio::io::AsyncWrite + Unpin>(&self, writer: &mut W) -> Result<(), FrameError> {
        use bytes::Buf;
        use tokio::io::AsyncWriteExt;
        // One vectored write for head and payload where the writer takes it
        // (a socket does): a system call per frame, not two.
        let head = self.head();
        let mut frame = head.as_slice().chain(self.payload.as_slice());
        writer.write_all_buf(&mut frame).await?;
        Ok(())
    }

    /// Reads one frame, refusing any larger than `max_bytes` before reading
    /// its body. The control part and the payload are read into buffers of
    /// their own (a payload is not copied out of the body afterwards); wrap
    /// a socket in a `BufReader` so that the small reads do not each cost a
    /// system call.
    #[cfg(feature = "tokio")]
    pub async fn read<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, max_bytes: u32) -> Result<Frame, FrameError> {
        use tokio::io::AsyncReadExt;
        let mut prefix = [0u8; 4];
        match reader.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
            Err(e) => return Err(e.into()),
        }
        let len = Frame::body_len(prefix, max_bytes)?;
        let truncated = |e: std::io::Error| -> FrameError {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                FrameError::Malformed(FormatError::new(format!("connection closed inside a frame of {len} bytes")))
            } else {
                e.into()
            }
        };
        let mut header = [0u8; FRAME_HEADER_LEN];
        reader.read_exact(&mut header).await.map_err(truncated)?;
        let (version, kind, correlation_id, control_len) = Frame::parse_header(&header)?;
        let Some(payload_len) = (len - FRAME_HEADER_LEN).checked_sub(control_len) else {
            return Err(FormatError::new(format!(
                "control part: needs {control_len} bytes, {} remain",
                len - FRAME_HEADER_LEN
            ))
            .into());
        };
        let control = read_exactly(reader, control_len).await.map_err(truncated)?;
        let payload = read_exactly(reader, payload_len).await.map_err(truncated)?;
        Ok(Frame { version, kind, correlation_id, control, payload })
    }
}

/// Reads exactly `len` bytes into a new buffer, without zeroing it first.
#[cfg(feature = "tokio")]
async fn read_exactly<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, len: usize) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = crate::buffers::take(len);
    // `take` stops at the frame's end; `read_to_end` reads into the spare
    // capacity as it is.
    (&mut *reader).take(len as u64).read_to_end(&mut bytes).await?;
    if bytes.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(bytes)
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_CONTROL_BYTES>()
}

/// Encodes a control message.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode_config()).expect("control messages always encode")
}

/// Decodes a control message, which must use all of `bytes`.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, FrameError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| FrameError::BadControl { reason: e.to_string() })?;
    if used != bytes.len() {
        return Err(FrameError::BadControl {
            reason: format!("{} bytes left after the control message", bytes.len() - used),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{ListTopicsRequest, ProduceRequest};

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut bytes = frame.head();
        bytes.extend_from_slice(&frame.payload);
        bytes
    }

    fn parse(bytes: &[u8], max: u32) -> Result<Frame, FrameError> {
        let prefix: [u8; 4] = bytes.get(..4).ok_or(FrameError::Closed)?.try_into().expect("4 bytes");
        let len = Frame::body_len(prefix, max)?;
        let body = bytes.get(4..4 + len).ok_or_else(|| FormatError::new("short"))?;
        Frame::from_body(body.to_vec())
    }

    #[test]
    fn frames_round_trip() {
        let frame = Frame::request(
            7,
            ProduceRequest { topic: "t".into(), partition: 0, producer: None, follows: None, batch: vec![1, 2, 3] },
        );
        let bytes = encoded(&frame);
        assert_eq!(bytes.len(), frame.encoded_len());
        let read = parse(&bytes, DEFAULT_MAX_FRAME_BYTES).unwrap();
        assert_eq!(read, frame);
        assert_eq!(read.control::<ProduceRequest>().unwrap().topic, "t");
    }

    #[test]
    fn oversize_and_malformed_frames_are_refused() {
        let frame = Frame::new(1, 1, &ListTopicsRequest, vec![0; 100]);
        let bytes = encoded(&frame);
        assert!(matches!(parse(&bytes, 50), Err(FrameError::TooLarge { .. })));
        let mut lying = bytes.clone();
        lying[12..16].copy_from_slice(&9999u32.to_le_bytes());
        let error = parse(&lying, 1000).unwrap_err();
        assert!(error.to_string().contains("control part"), "{error}");
        let mut short = bytes.clone();
        short[..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(parse(&short, 1000), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn control_messages_must_decode_whole() {
        let mut bytes = encode(&ProduceRequest {
            topic: "t".into(),
            partition: 3,
            producer: None,
            follows: None,
            batch: Vec::new(),
        });
        bytes.push(0);
        assert!(matches!(decode::<ProduceRequest>(&bytes), Err(FrameError::BadControl { .. })));
        assert!(matches!(decode::<ProduceRequest>(&[0xff; 3]), Err(FrameError::BadControl { .. })));
    }
}
