//! The transport: one connection to one server, with requests multiplexed
//! by correlation id and their responses routed back by a reader task. It
//! knows frames and encoded requests, not what any request means; retries
//! and moving between servers are the client's ([`crate::client`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use fluvio_protocol::requests::{AuthenticateRequest, AuthenticateResponse, Message, Request};
use fluvio_protocol::{ApiKind, DEFAULT_MAX_FRAME_BYTES, ErrorResponse, Frame, PROTOCOL_VERSION, RESPONSE_BIT};

use crate::FluvioError;
use crate::security::Security;

/// A request encoded once: a retry sends the same bytes again.
#[derive(Clone)]
pub(crate) struct EncodedRequest {
    kind: ApiKind,
    control: Vec<u8>,
    payload: Vec<u8>,
}

impl EncodedRequest {
    pub(crate) fn new<R: Request>(mut request: R) -> EncodedRequest {
        let payload = request.take_payload();
        EncodedRequest { kind: R::KIND, control: fluvio_protocol::frame::encode(&request), payload }
    }
}

/// Decodes a response frame as `M`, or the error it carries.
pub(crate) fn response<M: Message>(frame: Frame) -> Result<M, FluvioError> {
    Ok(check(frame)?.into_message()?)
}

/// How long opening a connection (TCP, then TLS) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type Pending = Arc<Mutex<PendingRequests>>;

/// Requests waiting for responses, and whether the connection has closed:
/// both under one lock, so that no request is registered after the reader
/// has given up (it would wait for ever).
#[derive(Default)]
struct PendingRequests {
    senders: HashMap<u32, mpsc::Sender<Result<Frame, FluvioError>>>,
    closed: Option<FluvioError>,
}

/// One TCP connection with requests multiplexed by correlation id.
pub(crate) struct Connection {
    addr: String,
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    pending: Pending,
    next_id: AtomicU32,
    bytes_received: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    pub(crate) async fn open(addr: &str, security: &Security) -> Result<Connection, FluvioError> {
        let connect_error = |reason: String| FluvioError::Connect { addr: addr.to_string(), reason };
        let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("timed out after {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| connect_error(e.to_string()))?;
        let _ = socket.set_nodelay(true);
        let connection = match security.tls_for(addr)? {
            None => {
                let (reader, writer) = socket.into_split();
                Connection::start(addr, reader, Box::new(writer))
            }
            Some((connector, name)) => {
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, socket))
                    .await
                    .map_err(|_| FluvioError::Tls {
                        addr: addr.to_string(),
                        reason: format!(
                            "no TLS handshake in {} s; is the server serving TLS?",
                            CONNECT_TIMEOUT.as_secs()
                        ),
                    })?
                    .map_err(|e| FluvioError::Tls { addr: addr.to_string(), reason: e.to_string() })?;
                let (reader, writer) = tokio::io::split(tls);
                Connection::start(addr, reader, Box::new(writer))
            }
        };
        if let Some(token) = &security.token {
            let request = EncodedRequest::new(AuthenticateRequest { token: token.clone() });
            let principal: AuthenticateResponse = response(connection.request(request).await?)?;
            tracing::debug!(%addr, principal = %principal.principal, role = %principal.role, "authenticated");
        }
        Ok(connection)
    }

    /// Starts the task that reads responses from `reader`.
    fn start<R>(addr: &str, reader: R, writer: Box<dyn AsyncWrite + Send + Unpin>) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        // Small reads (a frame's prefix and header) come from the buffer.
        let mut reader = tokio::io::BufReader::with_capacity(64 << 10, reader);
        let pending: Pending = Arc::default();
        let bytes_received = Arc::new(AtomicU64::new(0));
        let reader = {
            let pending = Arc::clone(&pending);
            let bytes_received = Arc::clone(&bytes_received);
            let addr = addr.to_string();
            tokio::spawn(async move {
                let lost = |reason: String| FluvioError::ConnectionLost { addr: addr.clone(), reason };
                let reason = loop {
                    match Frame::read(&mut reader, DEFAULT_MAX_FRAME_BYTES.max(256 << 20)).await {
                        Ok(frame) => {
                            bytes_received.fetch_add(frame.encoded_len() as u64, Ordering::Relaxed);
                            if frame.correlation_id == 0 && frame.kind == ApiKind::Error as u16 | RESPONSE_BIT {
                                // The server's last word before closing: what
                                // it refuses here it refuses on a retry too.
                                break match frame.control::<ErrorResponse>() {
                                    Ok(error) => FluvioError::Server { code: error.code, message: error.message },
                                    Err(_) => lost("the server closed the connection".into()),
                                };
                            }
                            let sender =
                                pending.lock().expect("pending lock").senders.get(&frame.correlation_id).cloned();
                            if let Some(sender) = sender {
                                // A full queue stops this reader, and with it
                                // the socket: the server then waits (TCP's own
                                // flow control) instead of the client holding a
                                // whole partition in memory.
                                let _ = sender.send(Ok(frame)).await;
                            }
                        }
                        // A TLS alert (the server refused this client's
                        // certificate, which TLS 1.3 says after the
                        // handshake) is refused again on a retry.
                        Err(fluvio_protocol::FrameError::Io(error))
                            if error.get_ref().is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>()) =>
                        {
                            break FluvioError::Tls { addr: addr.clone(), reason: error.to_string() };
                        }
                        Err(error) => break lost(error.to_string()),
                    }
                };
                let mut pending = pending.lock().expect("pending lock");
                for (_, sender) in pending.senders.drain() {
                    // A full queue gets no error; its receiver sees the
                    // channel close, which it reads as the same loss.
                    let _ = sender.try_send(Err(reason.clone()));
                }
                // A server that closes an idle connection, or goes away,
                // fails the requests sent afterwards at once.
                pending.closed = Some(reason);
            })
        };
        Connection {
            addr: addr.to_string(),
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU32::new(1),
            bytes_received,
            reader,
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }

    /// Sends a request and returns the channel its responses arrive on.
    pub(crate) async fn send(
        &self,
        request: EncodedRequest,
    ) -> Result<(u32, mpsc::Receiver<Result<Frame, FluvioError>>), FluvioError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        let (sender, receiver) = mpsc::channel(RESPONSES_AHEAD);
        {
            let mut pending = self.pending.lock().expect("pending lock");
            if let Some(reason) = &pending.closed {
                return Err(reason.clone());
            }
            pending.senders.insert(id, sender);
        }
        let EncodedRequest { kind, control, payload } = request;
        let frame = Frame { version: PROTOCOL_VERSION, kind: kind as u16, correlation_id: id, control, payload };
        let mut writer = self.writer.lock().await;
        if let Err(error) = frame.write(&mut *writer).await {
            self.pending.lock().expect("pending lock").senders.remove(&id);
            return Err(FluvioError::ConnectionLost { addr: self.addr.clone(), reason: error.to_string() });
        }
        drop(writer);
        fluvio_protocol::buffers::give(frame.payload);
        Ok((id, receiver))
    }

    /// Stops routing responses for `id`.
    pub(crate) fn forget(&self, id: u32) {
        self.pending.lock().expect("pending lock").senders.remove(&id);
    }

    /// Sends a request and waits for its one response frame (an error
    /// frame becomes its error).
    pub(crate) async fn request(&self, request: EncodedRequest) -> Result<Frame, FluvioError> {
        self.request_then(request, || {}).await
    }

    /// As [`request`](Self::request); calls `written` once the request is
    /// written to the connection (or failed to be), before its answer: a
    /// request sent after that is read by the server after this one.
    pub(crate) async fn request_then(
        &self,
        request: EncodedRequest,
        written: impl FnOnce(),
    ) -> Result<Frame, FluvioError> {
        let sent = self.send(request).await;
        written();
        let (id, mut responses) = sent?;
        let response = responses.recv().await;
        self.forget(id);
        let frame = response
            .unwrap_or_else(|| Err(FluvioError::ConnectionLost { addr: self.addr.clone(), reason: "closed".into() }))?;
        check(frame)
    }
}

/// Opens a connection to the first address that answers, trying them in
/// turn from `start`.
pub(crate) async fn open_any(
    addrs: &[String],
    start: usize,
    security: &Security,
) -> Result<(Connection, usize), FluvioError> {
    let mut last_error = None;
    for step in 0..addrs.len() {
        let index = (start + step) % addrs.len();
        match Connection::open(&addrs[index], security).await {
            Ok(connection) => return Ok((connection, index)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.expect("at least one address"))
}

/// Turns an error frame into an error.
pub(crate) fn check(frame: Frame) -> Result<Frame, FluvioError> {
    if frame.kind == ApiKind::Error as u16 | RESPONSE_BIT {
        let error: ErrorResponse = frame.control()?;
        return Err(FluvioError::Server { code: error.code, message: error.message });
    }
    Ok(frame)
}

/// Responses to one request (a stream's frames, for a consumer) read from
/// the socket but not yet taken: about 2 MiB of stored batches.
const RESPONSES_AHEAD: usize = 32;
