//! The HTTP listener (`fluvio-server --http ADDR`): `/metrics` in
//! Prometheus's text format, and the web console ([`crate::console`]).
//!
//! It is off unless asked for, listens on loopback unless the server serves
//! TLS (then it does too) or `--insecure` is given, and under an access
//! file answers only requests bearing an admin principal's token
//! (`Authorization: Bearer TOKEN`, or for a browser the cookie the
//! console's `/login` sets), except `/metrics` when `--metrics-public`
//! says scrapers need none.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::security::Role;
use crate::{ServerContext, console};

/// A response's body: a whole page, or a live tail's events.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The cookie the console's login sets: the admin token, sent back by the
/// browser with every page.
const TOKEN_COOKIE: &str = "fluvio_token";

/// Largest login form accepted.
const MAX_FORM_BYTES: usize = 4 << 10;

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
async fn answer(context: &Arc<ServerContext>, metrics_public: bool, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    if path == "/login" {
        return login(context, request).await;
    }
    let public = metrics_public && path == "/metrics";
    if !public && let Err(refusal) = authorize(context, &request) {
        return refusal;
    }
    if request.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n".into());
    }
    if path == "/metrics" {
        let text = context.metrics.render(context).await;
        return respond(StatusCode::OK, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, text);
    }
    if let Some(topic) = path.strip_prefix("/tail/").and_then(|rest| rest.strip_suffix("/events")) {
        let topic = console::percent_decode(topic);
        // `module=a,b`: a chain, in that order.
        let modules: Vec<String> = query_value(request.uri().query(), "module")
            .map(|modules| modules.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        return match console::tail(context, &topic, &modules).await {
            Ok(events) => {
                let mut response = Response::new(BodyExt::boxed_unsync(events));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }
            Err(error) => respond(StatusCode::NOT_FOUND, TEXT, format!("{error}\n")),
        };
    }
    match console::page(context, &path).await {
        Some(page) => {
            let status = if page.found { StatusCode::OK } else { StatusCode::NOT_FOUND };
            respond(status, HTML, page.html)
        }
        None => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no page at {path}; the console is at /, the metrics at /metrics\n"),
        ),
    }
}

/// `key`'s value in a query string, decoded.
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == key).then(|| console::percent_decode(value))
    })
}

/// `GET /login`: a form for an admin's token; `POST /login`: checks it and
/// keeps it in a cookie for the console's pages.
async fn login(context: &ServerContext, request: Request<Incoming>) -> Response<Body> {
    if request.method() == Method::GET {
        return respond(StatusCode::OK, HTML, LOGIN_FORM.to_string());
    }
    if request.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET or POST\n".into());
    }
    let form = match Limited::new(request.into_body(), MAX_FORM_BYTES).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, TEXT, "the form is too large\n".into()),
    };
    let token = query_value(Some(&form), "token").unwrap_or_default();
    if let Some(access) = &context.access
        && !access.by_token(&token).is_some_and(|principal| principal.role == Role::Admin)
    {
        return respond(
            StatusCode::UNAUTHORIZED,
            HTML,
            LOGIN_FORM.replace("<!--error-->", "<p>That is not an admin's token.</p>"),
        );
    }
    let mut response = respond(StatusCode::SEE_OTHER, TEXT, "logged in\n".into());
    let cookie = format!("{TOKEN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", console::percent_decode(&token));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response.headers_mut().insert(LOCATION, HeaderValue::from_static("/"));
    response
}

const LOGIN_FORM: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · Fluvio console</title></head>\
<body><h1>Fluvio console</h1><!--error--><form method=\"post\" action=\"/login\"><label>Admin token \
<input type=\"password\" name=\"token\" autofocus></label> <button>Log in</button></form></body></html>\n";

const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Under an access file: the request must bear an admin's token, in the
/// `Authorization` header or the console's cookie.
#[allow(clippy::result_large_err)]
fn authorize(context: &ServerContext, request: &Request<Incoming>) -> Result<(), Response<Body>> {
    let Some(access) = &context.access else { return Ok(()) };
    let headers = request.headers();
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let cookie = headers.get_all(COOKIE).iter().filter_map(|value| value.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|cookie| cookie.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
    });
    let Some(token) = bearer.or(cookie) else {
        let mut refusal = if request.uri().path() == "/metrics" {
            respond(
                StatusCode::UNAUTHORIZED,
                TEXT,
                "this server requires a token: send `Authorization: Bearer TOKEN` with an admin principal's token\n"
                    .into(),
            )
        } else {
            // A browser: the login form.
            respond(StatusCode::UNAUTHORIZED, HTML, LOGIN_FORM.to_string())
        };
        refusal.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed_unsync(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
