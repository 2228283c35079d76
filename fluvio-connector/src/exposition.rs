//! A connector's own `/metrics` (`--metrics-addr ADDR`), for a connector
//! run alone (`fluvio connector run`), outside a cluster that would expose
//! its counters itself: the same counters as the metrics file, in
//! Prometheus's text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::ConnectorError;
use crate::runtime::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabel {
    connector: String,
}

/// Binds `addr`, on loopback only: the listener has no TLS and no tokens.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ConnectorError> {
    if !addr.ip().is_loopback() {
        return Err(ConnectorError::Fatal(format!(
            "--metrics-addr {addr} is beyond loopback; the connector serves its metrics on loopback only (127.0.0.1:PORT), for a local Prometheus or a proxy"
        )));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|error| ConnectorError::Fatal(format!("cannot serve metrics on {addr}: {error}")))
}

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, name: String, metrics: Arc<Metrics>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (name, metrics) = (name.clone(), Arc::clone(&metrics));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| {
                let answer = if request.uri().path() == "/metrics" {
                    let text = render(&name, &metrics);
                    let mut response = Response::new(Full::new(Bytes::from(text)));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        ),
                    );
                    response
                } else {
                    let mut response = Response::new(Full::new(Bytes::from("the metrics are at /metrics\n")));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                };
                async move { Ok::<_, Infallible>(answer) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
            let _ = builder.serve_connection(TokioIo::new(socket), service).await;
        });
    }
}

/// The connector's counters in Prometheus's text format.
fn render(name: &str, metrics: &Metrics) -> String {
    let label = ConnectorLabel { connector: name.to_string() };
    let mut registry = Registry::with_prefix("fluvio_connector");
    let counters = [
        ("records_in", "Records read: from the other system (sources) or the topic (sinks)", &metrics.records_in),
        ("records_out", "Records delivered: to the topic (sources) or the other system (sinks)", &metrics.records_out),
        ("filtered", "Records the transforms dropped", &metrics.filtered),
        ("failed", "Records that failed, in a transform or refused by the other system", &metrics.failed),
        ("bytes", "Bytes of records sent to or received from the cluster", &metrics.bytes),
    ];
    for (metric, help, value) in counters {
        let family = Family::<ConnectorLabel, Counter>::default();
        family.get_or_create(&label).inc_by(value.load(Ordering::Relaxed));
        registry.register(metric, help, family);
    }
    let gauges = [
        ("lag", "A sink's records stored but not yet written (-1: not known yet)", &metrics.lag),
        ("last_offset", "The offset of the last record delivered (-1: none yet)", &metrics.last_offset),
    ];
    for (metric, help, value) in gauges {
        let family = Family::<ConnectorLabel, Gauge>::default();
        family.get_or_create(&label).set(value.load(Ordering::Relaxed));
        registry.register(metric, help, family);
    }
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}
