//! The host's HTTP front door: `wasi:http/proxy` plugins behind route prefixes, plus the
//! host's own small endpoints (`GET /v1/status`, `POST /v1/bus/{topic}` ingest, `GET /healthz`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::appliance::Appliance;
use crate::error::CallError;
use crate::plugin::{Plugin, arm_deadline};
use crate::state::StoreState;

type Body = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Largest body accepted by the ingest endpoint.
const MAX_INGEST_BYTES: usize = 1 << 20;

/// One `http` plugin behind its route prefix.
pub struct HttpRoute {
    /// The prefix, e.g. `/hello` (matches `/hello` and `/hello/...`).
    pub prefix: String,
    plugin: Arc<Plugin>,
    pre: ProxyPre<StoreState>,
}

impl HttpRoute {
    /// Prepares `plugin` (which must implement `wasi:http/proxy`) to serve `prefix`.
    pub fn new(prefix: &str, plugin: Arc<Plugin>) -> Result<HttpRoute, crate::RuntimeError> {
        let pre = ProxyPre::new(plugin.instance_pre().clone()).map_err(|e| {
            crate::RuntimeError::plugin(
                plugin.name(),
                format!("not a wasi:http/proxy component: {e:#}"),
            )
        })?;
        Ok(HttpRoute {
            prefix: prefix.to_string(),
            plugin,
            pre,
        })
    }

    fn matches(&self, path: &str) -> bool {
        self.prefix == "/"
            || path == self.prefix
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|e: Infallible| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(body: String) -> Response<Body> {
    let mut resp = text(StatusCode::OK, body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    appliance: Arc<Appliance>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                continue;
            }
        };
        let appliance = appliance.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let appliance = appliance.clone();
                async move { Ok::<_, Infallible>(route(&appliance, req, peer).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}

async fn route(
    appliance: &Arc<Appliance>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/v1/status") => {
            return json(serde_json::to_string_pretty(&appliance.status()).unwrap_or_default());
        }
        (&Method::POST, p) if p.starts_with("/v1/bus/") => return ingest(appliance, req).await,
        _ => {}
    }
    let Some(route) = appliance.http_routes().iter().find(|r| r.matches(&path)) else {
        return text(StatusCode::NOT_FOUND, format!("no plugin serves {path}\n"));
    };
    tracing::debug!(%peer, plugin = route.plugin.name(), %path, "http request");
    let started = Instant::now();
    let result = call_plugin(route, req).await;
    route.plugin.record(started, result.as_ref().map(|_| ()));
    match result {
        Ok(resp) => resp,
        Err(CallError::DeadlineExceeded { .. }) => {
            text(StatusCode::GATEWAY_TIMEOUT, "plugin deadline exceeded\n")
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn ingest(appliance: &Arc<Appliance>, req: Request<Incoming>) -> Response<Body> {
    let topic = req.uri().path().trim_start_matches("/v1/bus/").to_string();
    let body = match Limited::new(req.into_body(), MAX_INGEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body refused: {e}\n"),
            );
        }
    };
    match appliance
        .bus()
        .publish("http-ingest", &topic, body.to_vec())
    {
        Ok(d) => text(
            StatusCode::ACCEPTED,
            format!("delivered to {} subscriber(s)\n", d.delivered),
        ),
        Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

async fn call_plugin(
    route: &HttpRoute,
    req: Request<Incoming>,
) -> Result<Response<Body>, CallError> {
    let plugin = &route.plugin;
    let internal = |message: String| CallError::Trap {
        plugin: plugin.name().to_string(),
        message,
    };
    let mut store = plugin.new_store()?;
    arm_deadline(&mut store);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .map_err(|e| internal(format!("bad request: {e:#}")))?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(|e| internal(format!("{e:#}")))?;
    let pre = route.pre.clone();
    // The guest keeps running in its own task after sending the head, to stream the body.
    let task = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, out)
            .await
    });
    match receiver.await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(code)) => Err(CallError::Guest {
            plugin: plugin.name().to_string(),
            message: format!("responded with error code {code:?}"),
        }),
        Err(_) => match task.await {
            Ok(Ok(())) => Err(CallError::Guest {
                plugin: plugin.name().to_string(),
                message: "returned without setting a response".into(),
            }),
            Ok(Err(e)) => Err(plugin.classify(&e)),
            Err(e) => Err(internal(format!("handler task failed: {e}"))),
        },
    }
}
