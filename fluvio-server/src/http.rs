//! The HTTP listener (`fluvio-server --http ADDR`): `/metrics` in
//! Prometheus's text format.
//!
//! It is off unless asked for, listens on loopback unless the server serves
//! TLS (then it does too) or `--insecure` is given, and under an access
//! file answers only requests bearing an admin principal's token
//! (`Authorization: Bearer TOKEN`), except `/metrics` when
//! `--metrics-public` says scrapers need none.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::ServerContext;
use crate::security::Role;

/// How long a client may take to send its request headers: a connection
/// that says nothing is closed rather than held.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP connections served at once; past it, new ones wait in the kernel's
/// backlog.
const MAX_HTTP_CONNECTIONS: usize = 64;

/// The HTTP listener's settings.
#[derive(Debug, Clone, Copy)]
pub struct HttpConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Serve `/metrics` without a token under an access file.
    pub metrics_public: bool,
}

/// Serves HTTP on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, context: Arc<ServerContext>, metrics_public: bool) {
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let Ok(place) = Arc::clone(&places).acquire_owned().await else { return };
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let context = Arc::clone(&context);
        tokio::spawn(async move {
            let _place = place;
            let service = hyper::service::service_fn(|request| {
                let context = Arc::clone(&context);
                async move { Ok::<_, Infallible>(answer(&context, metrics_public, request).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let served = match &context.tls {
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(socket)).await {
                    Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), service).await,
                    _ => return,
                },
                None => builder.serve_connection(TokioIo::new(socket), service).await,
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "HTTP connection ended");
            }
        });
    }
}

/// Answers one request.
async fn answer(context: &ServerContext, metrics_public: bool, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let public = metrics_public && path == "/metrics";
    if !public && let Err(refusal) = authorize(context, &request) {
        return refusal;
    }
    match (request.method(), path) {
        (&Method::GET, "/metrics") => {
            let text = context.metrics.render(context).await;
            respond(StatusCode::OK, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, text)
        }
        (_, "/metrics") => respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n".into()),
        _ => respond(StatusCode::NOT_FOUND, TEXT, format!("no page at {path}; the metrics are at /metrics\n")),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Under an access file: the request must bear an admin's token.
#[allow(clippy::result_large_err)]
fn authorize(context: &ServerContext, request: &Request<Incoming>) -> Result<(), Response<Full<Bytes>>> {
    let Some(access) = &context.access else { return Ok(()) };
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        let mut refusal = respond(
            StatusCode::UNAUTHORIZED,
            TEXT,
            "this server requires a token: send `Authorization: Bearer TOKEN` with an admin principal's token\n".into(),
        );
        refusal.headers_mut().insert(WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
        return Err(refusal);
    };
    match access.by_token(token) {
        Some(principal) if principal.role == Role::Admin => Ok(()),
        Some(principal) => Err(respond(
            StatusCode::FORBIDDEN,
            TEXT,
            format!("{} is not an admin; the HTTP listener serves admins only\n", principal.name),
        )),
        None => {
            Err(respond(StatusCode::UNAUTHORIZED, TEXT, "the token is not one of this server's principals\n".into()))
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}
