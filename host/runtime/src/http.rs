//! The data-plane HTTP front door: `wasi:http/proxy` plugins behind route prefixes, plus an
//! unauthenticated `GET /healthz`. The management API (status, manifests, ingest, metrics) is
//! served separately, with TLS and tokens, by [`crate::api`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::appliance::Appliance;
use crate::error::CallError;
use crate::plugin::{Plugin, arm_deadline};
use crate::slot::PluginSlot;

type Body = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// One `http` plugin behind its route prefix. The route holds the plugin's slot, so a hot swap
/// of the plugin takes effect for the next request without touching the route table.
#[derive(Clone)]
pub struct HttpRoute {
    /// The prefix, e.g. `/hello` (matches `/hello` and `/hello/...`).
    pub prefix: String,
    slot: Arc<PluginSlot>,
}

impl HttpRoute {
    /// Serves `prefix` with the plugin in `slot`.
    pub fn new(prefix: &str, slot: Arc<PluginSlot>) -> HttpRoute {
        HttpRoute {
            prefix: prefix.to_string(),
            slot,
        }
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

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    appliance: Arc<Appliance>,
    shutdown: watch::Receiver<bool>,
) {
    accept_until(listener, shutdown, "http", move |stream, peer| {
        let appliance = appliance.clone();
        serve_http1(stream, peer, move |req| {
            let appliance = appliance.clone();
            async move { route(&appliance, req, peer).await }
        })
    })
    .await
}

/// Accepts connections until `shutdown` turns true and runs `on_connection` for each in a task
/// of its own. `what` names the listener in logs.
pub(crate) async fn accept_until<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    on_connection: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(on_connection(stream, peer));
            }
            Err(e) => tracing::warn!(listener = what, error = %e, "accept failed"),
        }
    }
}

/// Serves HTTP/1.1 with keep-alive on one connection, answering each request with `handle`.
pub(crate) async fn serve_http1<S, H, Fut, B>(stream: S, peer: SocketAddr, handle: H)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = hyper::service::service_fn(move |req| {
        let answer = handle(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}

async fn route(
    appliance: &Arc<Appliance>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    if req.method() == Method::GET && path.starts_with(outpost_security::HTTP01_PREFIX) {
        return match appliance.acme_challenge(&path) {
            Some(key_authorization) => text(StatusCode::OK, key_authorization),
            None => text(
                StatusCode::NOT_FOUND,
                "no such ACME challenge\n".to_string(),
            ),
        };
    }
    let routes = appliance.http_routes();
    let Some(route) = routes.iter().find(|r| r.matches(&path)) else {
        return text(StatusCode::NOT_FOUND, format!("no plugin serves {path}\n"));
    };
    // The version serving now handles the whole request, even if a swap lands meanwhile.
    let plugin = route.slot.active();
    tracing::debug!(%peer, plugin = plugin.name(), %path, "http request");
    let started = Instant::now();
    let result = call_plugin(&plugin, req).await;
    plugin.record(started, result.as_ref().map(|_| ()));
    if let Err(e) = &result
        && e.is_trap()
    {
        route.slot.record_failure(&plugin, e);
    }
    match result {
        Ok(resp) => resp,
        Err(CallError::DeadlineExceeded { .. }) => {
            text(StatusCode::GATEWAY_TIMEOUT, "plugin deadline exceeded\n")
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn call_plugin(
    plugin: &Arc<Plugin>,
    req: Request<Incoming>,
) -> Result<Response<Body>, CallError> {
    let internal = |message: String| CallError::Trap {
        plugin: plugin.name().to_string(),
        message,
    };
    let Some(pre) = plugin.proxy_pre().cloned() else {
        return Err(CallError::Refused {
            plugin: plugin.name().to_string(),
            message: "is not an http plugin".into(),
        });
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
