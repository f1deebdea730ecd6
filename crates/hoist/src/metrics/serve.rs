//! The metrics listener: `--metrics-addr`, loopback only unless `--metrics-allow-remote`, serving
//! `GET /metrics` in the Prometheus text format, or OpenMetrics to a scraper that asks for it.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hoist_engine::Engine;
use tokio_util::sync::CancellationToken;

use super::SharedMetrics;
use crate::config::MetricsListener;

/// What a scraper sends when it can read OpenMetrics (Prometheus does).
const OPENMETRICS: &str = "application/openmetrics-text";
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound metrics listener, ready to serve.
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
}

/// Binds `--metrics-addr`. The metrics name the registries pushed to and how busy the daemon
/// is: an address other hosts can reach is refused unless `--metrics-allow-remote` accepts it,
/// as the API's TCP socket is refused there without TLS unless `--tls=false` accepts it.
pub async fn bind(settings: &MetricsListener) -> anyhow::Result<MetricsServer> {
    let addr = resolve(&settings.addr)?;
    if !addr.ip().to_canonical().is_loopback() {
        if !settings.allow_remote {
            bail!(
                "refusing to serve metrics on {}: it is not a loopback address, so other hosts could read them. \
                 Use a loopback address (127.0.0.1:9323), or pass --metrics-allow-remote (daemon.json \"metrics-allow-remote\": true) to accept that",
                settings.addr
            );
        }
        tracing::warn!(
            addr = %settings.addr,
            "serving metrics on a non-loopback address, as metrics-allow-remote asks: anyone who can reach it can read them"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", settings.addr))?;
    tracing::info!(addr = %settings.addr, "metrics listening at /metrics");
    Ok(MetricsServer { listener })
}

/// `host:port` as dockerd's `metrics-addr` takes it; an empty host is every interface, as Go's
/// `net.Listen` reads it.
fn resolve(text: &str) -> anyhow::Result<SocketAddr> {
    let invalid = || format!("invalid metrics-addr {text:?}: expected host:port");
    let (host, port) = text.rsplit_once(':').with_context(invalid)?;
    let port: u16 = port.parse().ok().with_context(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("invalid metrics-addr {text:?}: cannot resolve {host:?}"))?
        .next()
        .with_context(|| format!("invalid metrics-addr {text:?}: {host:?} has no address"))
}

impl MetricsServer {
    /// Serves until `shutdown` fires.
    pub async fn serve(
        self,
        metrics: SharedMetrics,
        engine: Engine,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state((metrics, engine));
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("metrics server")
    }
}

async fn scrape(
    State((metrics, engine)): State<(SharedMetrics, Engine)>,
    headers: HeaderMap,
) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(OPENMETRICS));
    // Measuring the store reads its directory: off the async threads.
    let encoded = tokio::task::spawn_blocking(move || {
        metrics.refresh(&engine);
        let mut text = String::new();
        let result = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.registry)
        };
        result.map(|()| text)
    })
    .await;
    match encoded {
        Ok(Ok(text)) => {
            let content_type = if openmetrics {
                OPENMETRICS_CONTENT_TYPE
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            };
            (
                [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
                text,
            )
                .into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_dockerd_reads_them() {
        assert_eq!(
            resolve("127.0.0.1:9323").unwrap(),
            "127.0.0.1:9323".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:9323").unwrap(),
            "[::1]:9323".parse().unwrap()
        );
        assert!(resolve(":9323").unwrap().ip().is_unspecified());
        assert!(resolve("localhost:9323").unwrap().ip().is_loopback());
        for bad in ["9323", "127.0.0.1", "127.0.0.1:port", "127.0.0.1:99999"] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }
}
