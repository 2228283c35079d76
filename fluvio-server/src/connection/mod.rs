//! One client connection, split by job as mini-redis splits its server:
//!
//! - this file: accepting a socket (TLS first, when the server serves it)
//!   and the serve loop, which reads frames and hands each request to its
//!   place;
//! - [`admission`]: the budget of connections that have not logged in yet,
//!   apart from the authenticated ones;
//! - [`session`]: the limit on authenticated connections, authentication
//!   and what the principal may do;
//! - [`quota`]: what one principal may hold of what all share;
//! - [`consumer_ids`]: how many consumer ids have stored offsets, in all
//!   and per principal;
//! - [`dispatch`]: requests answered once, dispatched by type to their
//!   [`Handle`](dispatch::Handle) implementations in [`admin`] and
//!   [`produce`];
//! - [`produce`]: appends run side by side across partitions, in order
//!   within one;
//! - [`stream`]: consumers' streams, each a task of its own, through their
//!   SmartModule chains;
//! - [`outgoing`]: the frames queued for the client, bounded in bytes, and
//!   the task that writes them;
//! - [`error`]: the one place where errors become wire [`ErrorCode`](fluvio_protocol::ErrorCode)s
//!   ([`ServerError`]).
//!
//! Requests other than appends and streams are answered in order, after the
//! appends before them: what a client sent earlier is done when it gets
//! the answer.

mod admin;
pub mod admission;
pub mod consumer_ids;
mod dispatch;
mod error;
mod outgoing;
mod produce;
pub mod quota;
mod session;
mod stream;
mod stream_windows;

use std::sync::Arc;
use std::time::Duration;

use fluvio_protocol::requests::RequestError;
use fluvio_protocol::{AnyRequest, Frame, FrameError, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub use error::ServerError;
pub use produce::MAX_PRODUCES_IN_FLIGHT;
pub(crate) use stream::{MemoryReservation, look_back};

use crate::ServerContext;
use crate::outbound::FrameWriter;
use crate::security::Principal;
use dispatch::answer;
use error::{bad_frame, error_frame, limit_reached};
use outgoing::Outgoing;
use produce::InFlightProduces;
use quota::Quota;
use session::{CountedConnection, Session};

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted socket: the TLS handshake first when the server
/// serves TLS (a client certificate naming a principal authenticates the
/// connection), then [`serve`].
pub async fn accept(socket: TcpStream, peer: std::net::SocketAddr, context: Arc<ServerContext>) {
    // Until it has said who it is (and finished its handshake), a
    // connection counts against the budget before login, not the limit
    // authenticated connections count against.
    let mut pre_login = (context.tls.is_some() || context.access.is_some()).then(|| context.pre_login.admit(peer.ip()));
    let Some(acceptor) = context.tls.clone() else {
        let (reader, writer) = socket.into_split();
        return serve(reader, writer, None, pre_login, context).await;
    };
    // A client speaking plain frames to a TLS port is told so in its own
    // language, instead of waiting on a handshake that never comes.
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.peek(&mut first)) => peeked,
        () = evicted(&mut pre_login) => return,
    };
    match peeked {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => {
            let error = bad_frame(
                "this server accepts only TLS connections: give the client TLS settings with the server's CA (`tls` of the profile in ~/.fluvio/config, or FLUVIO_TLS_CA)",
            );
            let mut socket = socket;
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, error_frame(0, &error).write(&mut socket)).await;
            let _ = socket.shutdown().await;
            return;
        }
        Ok(Ok(1)) => {}
        _ => return,
    }
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)) => handshake,
        () = evicted(&mut pre_login) => {
            tracing::info!(%peer, "closing a TLS handshake to make room for a newer connection");
            return;
        }
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake not finished in {} s", HANDSHAKE_TIMEOUT.as_secs());
            return;
        }
    };
    let principal = match (&context.access, tls.get_ref().1.peer_certificates()) {
        (Some(access), Some([leaf, ..])) => {
            let principal = access.by_certificate(leaf);
            if principal.is_none() {
                tracing::info!(%peer, "a client certificate names no principal of the access file");
            }
            principal
        }
        _ => None,
    };
    let (reader, writer) = tokio::io::split(tls);
    serve(reader, writer, principal, pre_login, context).await
}

/// Resolves when the connection's place before login is needed for a newer
/// one; never for a connection that holds none.
async fn evicted(pre_login: &mut Option<admission::PreLoginPass>) {
    match pre_login {
        Some(pass) => pass.evicted().await,
        None => std::future::pending().await,
    }
}

/// The largest frame a connection may send before it has authenticated (on
/// a server that requires credentials): an `Authenticate` request is a few
/// dozen bytes, and nothing else is read before it.
pub const PRE_LOGIN_MAX_FRAME_BYTES: u32 = 4 << 10;

/// Serves one connection until the client closes it, sends a frame that
/// cannot be understood (answered with an error, then closed), stays idle
/// past the idle timeout, or stops reading past the write timeout.
///
/// `pre_login` is the connection's place in the budget before login, when
/// it must still authenticate: the connection counts against
/// `--max-connections` only once it has.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    principal: Option<Arc<Principal>>,
    mut pre_login: Option<admission::PreLoginPass>,
    context: Arc<ServerContext>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: FrameWriter + 'static,
{
    let mut session = Session::new(context.access.clone(), principal);
    let limits = context.config.connection_limits.clone();
    // Small reads (a frame's prefix and header) come from the buffer.
    let mut reader = BufReader::with_capacity(64 << 10, reader);
    let (frames, mut writer_task) = Outgoing::start(writer, limits.max_queued_bytes, limits.write_timeout);
    let mut admitted = None;
    // The principal's share of its connection quota, once it is known.
    let mut _principal_connection = None;
    if !session.awaits_login() {
        pre_login = None;
        let (counted, open) = CountedConnection::enter(&context);
        admitted = Some(counted);
        let quota = session.quota_key().map(|name| context.quotas.take(name, Quota::Connections, 1)).transpose();
        let refusal = match quota {
            _ if open > limits.max_connections => Some(over_limit(&context)),
            Err(error) => Some(error),
            Ok(held) => {
                _principal_connection = held;
                None
            }
        };
        if let Some(refusal) = refusal {
            refuse_first_request(&mut reader, &frames, &context, refusal).await;
            drop(frames);
            let _ = writer_task.await;
            return;
        }
    }
    let login_deadline = tokio::time::Instant::now() + limits.login_timeout;
    let mut streams: Vec<JoinHandle<()>> = Vec::new();
    // At most a quarter of the frame limit is held in batches being
    // appended before the next frame is read, so that a connection holds
    // little more than one largest frame, as when it handled one at a time.
    let mut produces = InFlightProduces::default();
    let produce_byte_budget = context.config.max_frame_bytes as usize / 4;
    loop {
        if produces.answer_while_full(&frames, produce_byte_budget).await.is_err() {
            break;
        }
        streams.retain(|stream| !stream.is_finished());
        // An idle connection (no stream, no request) is closed after the
        // idle timeout; one with streams or appends in flight is busy.
        let idle = streams.is_empty() && produces.is_empty();
        let idle_timeout = if idle { limits.idle_timeout } else { Duration::MAX };
        // Before login, a connection gets a deadline and small frames only:
        // what it sends is not read whole before it has said who it is.
        let awaits_login = session.awaits_login();
        let (timeout, max_frame_bytes) = match awaits_login {
            true => (login_deadline.saturating_duration_since(tokio::time::Instant::now()), PRE_LOGIN_MAX_FRAME_BYTES),
            false => (idle_timeout, context.config.max_frame_bytes),
        };
        let read = Frame::read(&mut reader, max_frame_bytes);
        let Some(frame) =
            next_frame(read, timeout, awaits_login, &mut pre_login, &mut produces, &frames, &mut writer_task).await
        else {
            break;
        };
        let id = frame.correlation_id;
        let request = match decode(frame) {
            Ok(request) => request,
            Err((error, close)) => {
                if frames.send(error_frame(id, &error)).await.is_err() || close {
                    break;
                }
                continue;
            }
        };
        if awaits_login && !matches!(request, AnyRequest::Authenticate(_)) {
            // Nothing but authenticating is answered, and the answer ends
            // the connection: an anonymous client holds no connection.
            if let Err(error) = session.principal() {
                let _ = frames.send(error_frame(id, &error)).await;
            }
            break;
        }
        match request {
            AnyRequest::Authenticate(request) => {
                let answer = match session.authenticate(request) {
                    Ok(response) if admitted.is_none() => {
                        // Logged in: from now on the connection counts
                        // against the limit on authenticated connections.
                        pre_login = None;
                        let (counted, open) = CountedConnection::enter(&context);
                        admitted = Some(counted);
                        if open > limits.max_connections {
                            let _ = frames.send(error_frame(id, &over_limit(&context))).await;
                            break;
                        }
                        let quota = session.quota_key().map(|name| context.quotas.take(name, Quota::Connections, 1));
                        match quota.transpose() {
                            Ok(held) => _principal_connection = held,
                            Err(error) => {
                                let _ = frames.send(error_frame(id, &error)).await;
                                break;
                            }
                        }
                        Frame::response::<fluvio_protocol::requests::AuthenticateRequest>(id, response)
                    }
                    Ok(response) => Frame::response::<fluvio_protocol::requests::AuthenticateRequest>(id, response),
                    Err(error) => {
                        // A wrong token ends the connection: guessing costs a
                        // connection (and the limit on them) per try.
                        tracing::info!("a connection presented an unknown token");
                        let _ = frames.send(error_frame(id, &error)).await;
                        break;
                    }
                };
                if frames.send(answer).await.is_err() {
                    break;
                }
            }
            AnyRequest::StreamFetch(request) => {
                match stream::start(&context, &session, &frames, id, request, streams.len()) {
                    Ok(stream) => streams.push(stream),
                    Err(error) if frames.send(error_frame(id, &error)).await.is_err() => break,
                    Err(_) => {}
                }
            }
            AnyRequest::Produce(request) => produces.start(&context, &session, id, request),
            request => {
                if produces.answer_all(&frames).await.is_err() {
                    break;
                }
                if frames.send(answer(&context, &session, id, request).await).await.is_err() {
                    break;
                }
            }
        }
    }
    for stream in streams {
        stream.abort();
    }
    drop(frames);
    if !writer_task.is_finished() {
        let _ = writer_task.await;
    }
}

/// The next frame from the client, while the answers of appends in flight
/// go out as they finish; `None` when the connection is to close (the
/// client left, idled past `idle_timeout`, sent what is not a frame, or the
/// writer gave up on it).
async fn next_frame(
    read: impl Future<Output = Result<Frame, FrameError>>,
    timeout: Duration,
    awaits_login: bool,
    pre_login: &mut Option<admission::PreLoginPass>,
    produces: &mut InFlightProduces,
    frames: &Outgoing,
    writer_task: &mut JoinHandle<()>,
) -> Option<Frame> {
    let read = tokio::time::timeout(timeout, read);
    tokio::pin!(read);
    // The read is polled to its end, never dropped half done.
    let read = loop {
        tokio::select! {
            read = &mut read => break read,
            Some(response) = produces.next(), if !produces.is_empty() => {
                frames.send(response).await.ok()?;
            }
            // The writer gave up on the client (it stopped reading).
            _ = &mut *writer_task => return None,
            // Its place before login went to a newer connection.
            () = evicted(pre_login) => {
                tracing::info!("closing a connection that had not logged in, to make room for a newer one");
                return None;
            }
        }
    };
    match read {
        Ok(Ok(frame)) => Some(frame),
        Ok(Err(FrameError::Closed | FrameError::Io(_))) => None,
        Ok(Err(error @ FrameError::TooLarge { .. })) if awaits_login => {
            let message = format!(
                "{error}: a connection that has not authenticated may send only an Authenticate request; authenticate first (a token: FLUVIO_TOKEN, or `token` in your profile)"
            );
            let _ = frames.send(error_frame(0, &bad_frame(message))).await;
            None
        }
        Ok(Err(error)) => {
            let _ = frames.send(error_frame(0, &bad_frame(format!("{error}; closing the connection")))).await;
            None
        }
        Err(_) if awaits_login => {
            tracing::info!("closing a connection that did not authenticate in time");
            None
        }
        Err(_) => {
            tracing::debug!("closing a connection idle for {} s", timeout.as_secs_f64());
            None
        }
    }
}

/// Decodes a request frame; an error says whether the connection closes
/// after it is answered (a protocol version this server does not speak).
fn decode(frame: Frame) -> Result<AnyRequest, (ServerError, bool)> {
    if frame.version != PROTOCOL_VERSION {
        let message = format!(
            "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
            frame.version
        );
        return Err((bad_frame(message), true));
    }
    AnyRequest::from_frame(frame).map_err(|error| match error {
        RequestError::UnknownKind(_) => (bad_frame(error.to_string()), false),
        RequestError::Malformed(error) => (bad_frame(error.to_string()), false),
    })
}

/// Answers the first request of a connection over the server's limit with
/// why, so that the client can tell a full server from a broken one.
async fn refuse_first_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    frames: &Outgoing,
    context: &ServerContext,
    refusal: ServerError,
) {
    let read = Frame::read(reader, context.config.max_frame_bytes);
    if let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_secs(5), read).await {
        let _ = frames.send(error_frame(frame.correlation_id, &refusal)).await;
    }
}

fn over_limit(context: &ServerContext) -> ServerError {
    let max = context.config.connection_limits.max_connections;
    limit_reached(format!(
        "the server already serves its limit of {max} connections; try again later, or raise --max-connections"
    ))
}
