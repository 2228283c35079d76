//! Frames on their way to a client, and how they are written.
//!
//! A frame's payload may go on past the bytes it holds in memory: a stream
//! without SmartModules sends stored batches as they lie in a segment file,
//! and on plain TCP those bytes go from the file to the socket with
//! `sendfile`, never copied through this process. Over TLS (the bytes must
//! be encrypted here) they are read into memory and written as any payload.

use std::future::Future;
use std::io;
use std::pin::Pin;

use fluvio_protocol::Frame;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::storage::StoredRun;
use crate::storage::local::segment_log::read_at;

/// What a frame's payload goes on with, after the bytes the frame holds.
pub enum Tail {
    /// Bytes in memory (a stored batch read by a backend without files).
    Memory(Vec<u8>),
    /// Stored batches, straight from their segment file.
    Stored(StoredRun),
}

impl Tail {
    fn len(&self) -> usize {
        match self {
            Tail::Memory(bytes) => bytes.len(),
            Tail::Stored(run) => run.len,
        }
    }
}

/// One frame to write: the frame, then its tail, as one frame on the wire.
pub struct Outbound {
    /// The frame (its length prefix counts the tail too).
    pub frame: Frame,
    /// The rest of its payload.
    pub tail: Vec<Tail>,
}

impl From<Frame> for Outbound {
    fn from(frame: Frame) -> Outbound {
        Outbound { frame, tail: Vec::new() }
    }
}

impl Outbound {
    /// Bytes on the wire.
    pub fn encoded_len(&self) -> usize {
        self.frame.encoded_len() + self.tail.iter().map(Tail::len).sum::<usize>()
    }

    /// Writes the frame and its tail.
    pub async fn write<W: FrameWriter>(&self, writer: &mut W) -> io::Result<()> {
        let tail_len = self.tail.iter().map(Tail::len).sum();
        let head = self.frame.head_followed_by(tail_len);
        let mut first = bytes::Buf::chain(head.as_slice(), self.frame.payload.as_slice());
        writer.write_all_buf(&mut first).await?;
        for part in &self.tail {
            match part {
                Tail::Memory(bytes) => writer.write_all(bytes).await?,
                Tail::Stored(run) => writer.write_stored(run).await?,
            }
        }
        Ok(())
    }

    /// Gives its buffers back for reuse, once written.
    pub fn recycle(self) {
        fluvio_protocol::buffers::give(self.frame.payload);
        for part in self.tail {
            if let Tail::Memory(bytes) = part {
                fluvio_protocol::buffers::give(bytes);
            }
        }
    }
}

type WriteFuture<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>;

/// A connection's writing half, which also writes stored runs.
pub trait FrameWriter: AsyncWrite + Unpin + Send {
    /// Writes `run`'s bytes. By default they are read into memory a piece
    /// at a time and written.
    fn write_stored<'a>(&'a mut self, run: &'a StoredRun) -> WriteFuture<'a> {
        Box::pin(async move {
            const PIECE: usize = 256 << 10;
            let mut done = 0;
            while done < run.len {
                let piece = PIECE.min(run.len - done);
                let bytes = read_at(&run.file, run.position + done as u64, piece)?;
                self.write_all(&bytes).await?;
                fluvio_protocol::buffers::give(bytes);
                done += piece;
            }
            Ok(())
        })
    }
}

/// Plain TCP: stored runs go from the file to the socket in the kernel.
impl FrameWriter for tokio::net::tcp::OwnedWriteHalf {
    fn write_stored<'a>(&'a mut self, run: &'a StoredRun) -> WriteFuture<'a> {
        Box::pin(async move {
            use std::os::fd::AsRawFd;
            let socket: &tokio::net::TcpStream = self.as_ref();
            let mut position = libc::off_t::try_from(run.position)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "position past what sendfile takes"))?;
            let mut left = run.len;
            while left > 0 {
                socket.writable().await?;
                let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
                    // SAFETY: both descriptors are open for the call (the
                    // run holds the file, `self` the socket); `position` is
                    // a valid offset the kernel advances by what it sent.
                    let sent = unsafe { libc::sendfile(socket.as_raw_fd(), run.file.as_raw_fd(), &mut position, left) };
                    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
                });
                match sent {
                    // The file is shorter than its index said.
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{} ends before the batches its index lists", run.path.display()),
                        ));
                    }
                    Ok(sent) => left -= sent,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        })
    }
}

/// TLS: the bytes are encrypted here, so they are read into memory.
impl<S: tokio::io::AsyncRead + AsyncWrite + Unpin + Send> FrameWriter for tokio::io::WriteHalf<S> {}
