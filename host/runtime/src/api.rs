//! The management API: status, desired-state manifests, plugins, rollback, ingest, metrics and
//! its own OpenAPI document, over TLS with the device certificate, behind bearer tokens.
//!
//! Every route is declared once in [`ENDPOINTS`]; the router, the authorisation check and the
//! OpenAPI document are all derived from that table, so they cannot drift apart. Roles:
//! `viewer` reads, `operator` reads and writes, `ingest` may only post to `/v1/ingest/{topic}`.
//! A call without a valid token is 401; a valid token without the role is 403.
//!
//! With `[host.tls.client_auth]` the API also asks for client certificates (mutual TLS): a
//! certificate from the operator's client CA whose name is mapped to a role authenticates a
//! call that carries no token; with `required = true` a connection without such a certificate
//! fails its handshake, so a token alone is not enough.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use outpost_manifest::{INGEST_SOURCE, Manifest};
use outpost_security::{Access, ClientAuth, Identity, Role, TOKENS_FILE, TokenStore, bearer_token};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::appliance::{Appliance, MAX_BUS_PAYLOAD};
use crate::error::RuntimeError;

/// Largest manifest accepted by `PUT /v1/manifest`.
const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Response bodies: whole (most routes) or streamed (share files).
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A whole body.
fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Reads a file in frames of up to 256 KiB: a multi-GiB share file is never held in memory.
struct FileBody {
    file: tokio::fs::File,
    left: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = self.left.min(256 << 10) as usize;
        let mut buf = vec![0u8; want];
        let mut read_buf = tokio::io::ReadBuf::new(&mut buf);
        match std::pin::Pin::new(&mut self.file).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    // The file shrank under us: end the body short; the client sees the length
                    // mismatch rather than made-up bytes.
                    self.left = 0;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was being sent",
                    ))));
                }
                buf.truncate(n);
                self.left -= n as u64;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(buf)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Healthz,
    Metrics,
    OpenApi,
    Status,
    GetManifest,
    PutManifest,
    ListPlugins,
    GetPlugin,
    Rollback,
    Ingest,
    Certificates,
    UploadCertificate,
    UseDeviceCertificate,
    IssueAcme,
    Keys,
    RotateKeys,
    Updates,
    Shares,
    ShareRefresh,
    ShareSync,
    PutFile,
    GetFile,
    ListFiles,
    RestartPlugin,
    Restart,
    Logs,
    Diagnostics,
}

/// One route of the API.
#[derive(Debug)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{x}` is one segment, but a trailing `{topic}` takes the rest of the path.
    pub path: &'static str,
    /// What the caller's role must allow; `None` is open (liveness only).
    pub access: Option<Access>,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// Response codes besides the auth ones, with their meaning.
    pub responses: &'static [(u16, &'static str)],
    /// Content type of the 200/202 response.
    pub produces: &'static str,
    /// Content type of the request body, if it has one.
    pub consumes: Option<&'static str>,
    handler: Handler,
}

/// Every route the API serves.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "GET",
        path: "/healthz",
        access: None,
        summary: "Liveness: 200 while the host runs",
        responses: &[(200, "alive")],
        produces: "text/plain",
        consumes: None,
        handler: Handler::Healthz,
    },
    Endpoint {
        method: "GET",
        path: "/metrics",
        access: Some(Access::Read),
        summary: "Prometheus metrics: per-plugin calls, errors, traps, latency, memory, swaps, rollbacks; bus, route and sink queues",
        responses: &[(200, "Prometheus text exposition format 0.0.4")],
        produces: "text/plain; version=0.0.4",
        consumes: None,
        handler: Handler::Metrics,
    },
    Endpoint {
        method: "GET",
        path: "/v1/openapi.json",
        access: Some(Access::Read),
        summary: "This document",
        responses: &[(200, "OpenAPI 3.0 document")],
        produces: "application/json",
        consumes: None,
        handler: Handler::OpenApi,
    },
    Endpoint {
        method: "GET",
        path: "/v1/status",
        access: Some(Access::Read),
        summary: "Host status, every plugin's desired and actual state, and the models",
        responses: &[(200, "status")],
        produces: "application/json",
        consumes: None,
        handler: Handler::Status,
    },
    Endpoint {
        method: "GET",
        path: "/v1/manifest",
        access: Some(Access::Read),
        summary: "The manifest applied last (the desired state), as TOML",
        responses: &[
            (200, "manifest text"),
            (404, "the host was started without manifest text"),
        ],
        produces: "application/toml",
        consumes: None,
        handler: Handler::GetManifest,
    },
    Endpoint {
        method: "PUT",
        path: "/v1/manifest",
        access: Some(Access::Write),
        summary: "Apply a new manifest: the host reconciles to it with the fewest changes. Query `dry_run=true` only plans; `base=DIR` resolves relative paths (default: the running manifest's directory); `now=true` applies code updates of `image` plugins outside the maintenance windows; `force_rollback=true` accepts an older signed version",
        responses: &[
            (200, "apply report (check `succeeded`)"),
            (400, "the manifest is invalid; nothing changed"),
            (413, "the manifest is too large"),
        ],
        produces: "application/json",
        consumes: Some("application/toml"),
        handler: Handler::PutManifest,
    },
    Endpoint {
        method: "GET",
        path: "/v1/plugins",
        access: Some(Access::Read),
        summary: "Every plugin's status",
        responses: &[(200, "plugin list")],
        produces: "application/json",
        consumes: None,
        handler: Handler::ListPlugins,
    },
    Endpoint {
        method: "GET",
        path: "/v1/plugins/{name}",
        access: Some(Access::Read),
        summary: "One plugin's status, including its swap and rollback history",
        responses: &[(200, "plugin status"), (404, "no such plugin")],
        produces: "application/json",
        consumes: None,
        handler: Handler::GetPlugin,
    },
    Endpoint {
        method: "POST",
        path: "/v1/plugins/{name}/rollback",
        access: Some(Access::Write),
        summary: "Roll a plugin back to its previous version",
        responses: &[
            (200, "rolled back; the plugin's status"),
            (404, "no such running plugin"),
            (409, "no previous version to roll back to"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::Rollback,
    },
    Endpoint {
        method: "POST",
        path: "/v1/plugins/{name}/restart",
        access: Some(Access::Write),
        summary: "Restart a plugin in place: a fresh instance of its desired version takes over without refusing a call",
        responses: &[
            (200, "restarted; the plugin's status"),
            (404, "no such plugin"),
            (
                409,
                "the plugin cannot be restarted now (a job, failed, rolled back, in a canary)",
            ),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::RestartPlugin,
    },
    Endpoint {
        method: "POST",
        path: "/v1/restart",
        access: Some(Access::Write),
        summary: "Restart the host gracefully: plugins drain, journals flush, the process starts again with the same arguments",
        responses: &[(202, "restarting")],
        produces: "application/json",
        consumes: None,
        handler: Handler::Restart,
    },
    Endpoint {
        method: "GET",
        path: "/v1/logs",
        access: Some(Access::Read),
        summary: "The host's recent log records, newest last; query `level` (at least), `plugin`, `limit`",
        responses: &[(200, "log records"), (400, "unknown level")],
        produces: "application/json",
        consumes: None,
        handler: Handler::Logs,
    },
    Endpoint {
        method: "GET",
        path: "/v1/diagnostics",
        access: Some(Access::Read),
        summary: "A support bundle (tar.gz): status, alerts, system use, metrics, recent log, versions, the manifest with secrets redacted",
        responses: &[(200, "the bundle")],
        produces: "application/gzip",
        consumes: None,
        handler: Handler::Diagnostics,
    },
    Endpoint {
        method: "POST",
        path: "/v1/ingest/{topic}",
        access: Some(Access::Ingest),
        summary: "Publish the request body on a bus topic (the rest of the path, `/` included); routes with `from = \"ingest/...\"` pick it up",
        responses: &[
            (202, "accepted"),
            (400, "not a valid concrete topic"),
            (413, "body larger than the bus limit"),
        ],
        produces: "application/json",
        consumes: Some("application/octet-stream"),
        handler: Handler::Ingest,
    },
    Endpoint {
        method: "GET",
        path: "/v1/certificates",
        access: Some(Access::Read),
        summary: "The TLS endpoints' certificates (served, intermediates, device endpoint, device CA) with expiry and alert level",
        responses: &[
            (200, "certificate list"),
            (404, "the API serves plain HTTP"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::Certificates,
    },
    Endpoint {
        method: "PUT",
        path: "/v1/certificates",
        access: Some(Access::Write),
        summary: "Upload a CA-issued certificate: PEM (chain plus private key) or PKCS#12 (password in the `X-Pkcs12-Password` header). It is checked (chain, key match, usage, names, validity) and served from the next handshake; `dry_run=true` only checks",
        responses: &[
            (200, "accepted (or would be); the certificate"),
            (400, "refused, with the reason"),
            (404, "the API serves plain HTTP"),
            (413, "too large"),
        ],
        produces: "application/json",
        consumes: Some("application/octet-stream"),
        handler: Handler::UploadCertificate,
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/certificates",
        access: Some(Access::Write),
        summary: "Serve the device's own certificate again",
        responses: &[
            (200, "the device certificate"),
            (404, "the API serves plain HTTP"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::UseDeviceCertificate,
    },
    Endpoint {
        method: "POST",
        path: "/v1/certificates/acme",
        access: Some(Access::Write),
        summary: "Issue a certificate with ACME now (host.tls.acme) and serve it",
        responses: &[
            (200, "issued and served"),
            (404, "no ACME configured, or plain HTTP"),
            (502, "the ACME server refused or validation failed"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::IssueAcme,
    },
    Endpoint {
        method: "GET",
        path: "/v1/keys",
        access: Some(Access::Read),
        summary: "The encryption-at-rest key provider: KEK id, version, availability",
        responses: &[(200, "key status"), (404, "encryption at rest is off")],
        produces: "application/json",
        consumes: None,
        handler: Handler::Keys,
    },
    Endpoint {
        method: "POST",
        path: "/v1/keys/rotate",
        access: Some(Access::Write),
        summary: "Rotate the key-encryption key: a new version re-wraps every store's data key (no data re-encrypted, no downtime)",
        responses: &[
            (200, "key status after rotation"),
            (404, "encryption at rest is off"),
            (500, "rotation failed"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::RotateKeys,
    },
    Endpoint {
        method: "GET",
        path: "/v1/updates",
        access: Some(Access::Read),
        summary: "Update control: trusted publishers, maintenance windows, verified updates waiting for a window, audit log size",
        responses: &[
            (200, "update status"),
            (404, "no trusted publishers configured"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::Updates,
    },
    Endpoint {
        method: "GET",
        path: "/v1/shares",
        access: Some(Access::Read),
        summary: "Every share: bytes and files local / unsynced / synced / evicted, upload queue and rate against the schedule, write throttling, the tiering policy's evaluations and refused actions",
        responses: &[(200, "share list")],
        produces: "application/json",
        consumes: None,
        handler: Handler::Shares,
    },
    Endpoint {
        method: "POST",
        path: "/v1/shares/{share}/refresh",
        access: Some(Access::Write),
        summary: "Refresh a cloud-tiered share now: objects added in the cloud since the last refresh appear as evicted files (recalled on read)",
        responses: &[
            (200, "what the refresh found: added, known, skipped"),
            (404, "no such share"),
            (409, "an edge-local share has no cloud copy to refresh from"),
            (502, "the object store failed"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::ShareRefresh,
    },
    Endpoint {
        method: "POST",
        path: "/v1/shares/{share}/sync",
        access: Some(Access::Write),
        summary: "Run one sync pass now: scan the share's directory, then upload what is due (within the bandwidth schedule)",
        responses: &[
            (200, "what the pass did: scan, uploaded, deferred, failed"),
            (404, "no such share"),
            (502, "the pass failed"),
        ],
        produces: "application/json",
        consumes: None,
        handler: Handler::ShareSync,
    },
    Endpoint {
        method: "PUT",
        path: "/v1/shares/{share}/files/{path}",
        access: Some(Access::Ingest),
        summary: "Write a file into a share (like a Blob PUT): the body replaces the file; a full cloud-tiered cache slows the writer to the upload rate instead of failing",
        responses: &[
            (201, "written"),
            (400, "an unsafe path (`..`, absolute, control characters)"),
            (404, "no such share"),
            (413, "larger than the upload limit"),
            (507, "an edge-local share is full"),
        ],
        produces: "application/json",
        consumes: Some("application/octet-stream"),
        handler: Handler::PutFile,
    },
    Endpoint {
        method: "GET",
        path: "/v1/shares/{share}/files/{path}",
        access: Some(Access::Read),
        summary: "Read a file (like a Blob GET); an evicted file is recalled transparently. `Range: bytes=A-B` reads part of it (206)",
        responses: &[
            (200, "the file"),
            (206, "the requested range"),
            (404, "no such share or file"),
        ],
        produces: "application/octet-stream",
        consumes: None,
        handler: Handler::GetFile,
    },
    Endpoint {
        method: "GET",
        path: "/v1/shares/{share}/files",
        access: Some(Access::Read),
        summary: "List a share's files (like a Blob LIST): path, size, state, pinned, SHA-256; `prefix=` filters; `comp=list` answers Blob-style XML",
        responses: &[(200, "file list"), (404, "no such share")],
        produces: "application/json",
        consumes: None,
        handler: Handler::ListFiles,
    },
];

/// Largest certificate upload.
const MAX_CERT_BYTES: usize = 256 << 10;

fn match_path<'a>(template: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let mut rest = path.trim_start_matches('/');
    for (i, seg) in t.iter().enumerate() {
        let last = i + 1 == t.len();
        let (head, tail) = match rest.split_once('/') {
            // Only a trailing `{topic}` takes the rest of the path (topics have levels).
            Some((h, tl)) if !(last && (*seg == "{topic}" || *seg == "{path}")) => (h, Some(tl)),
            _ => (rest, None),
        };
        if seg.starts_with('{') {
            if head.is_empty() {
                return None;
            }
            params.push(head);
        } else if *seg != head {
            return None;
        }
        match (last, tail) {
            (true, None) => return Some(params),
            (true, Some(_)) | (false, None) => return None,
            (false, Some(tl)) => rest = tl,
        }
    }
    None
}

/// Tokens, re-read when the file changes so `outpost token add` works on a running host.
struct Tokens {
    path: PathBuf,
    loaded: Mutex<(Option<SystemTime>, Option<TokenStore>)>,
}

impl Tokens {
    fn verify(&self, token: &str) -> Option<Identity> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.1.is_none() || loaded.0 != mtime {
            match TokenStore::open(&self.path) {
                Ok(store) => *loaded = (mtime, Some(store)),
                Err(e) => {
                    // Keep the tokens that worked; a broken file must not lock operators out
                    // or let anyone in.
                    tracing::error!(error = %e, "token file unreadable; keeping the tokens loaded before");
                    loaded.0 = mtime;
                }
            }
        }
        loaded.1.as_ref()?.verify(token)
    }
}

struct ApiState {
    appliance: Arc<Appliance>,
    tokens: Tokens,
    ui: Arc<crate::webui::WebUi>,
}

/// Where the management API ended up listening.
#[derive(Debug, Clone)]
pub struct ApiInfo {
    /// Bound address.
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    /// The device CA clients should pin (TLS only).
    pub ca_pem: Option<String>,
    /// Where the CA is stored.
    pub ca_path: Option<PathBuf>,
    /// The operator token created on first start, if this start created it.
    pub new_admin_token: Option<String>,
    /// The web UI's first-login password while it has not been changed.
    pub ui_initial_password: Option<String>,
}

impl ApiInfo {
    /// The web UI's address.
    pub fn ui_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/ui/", self.addr)
    }
}

/// Starts the management API for `appliance` on `listen` (TLS with the device identity under
/// `<data-dir>/tls` unless `tls` is false, which the manifest only allows on loopback).
pub async fn start(
    appliance: Arc<Appliance>,
    listen: SocketAddr,
    tls: bool,
) -> Result<ApiInfo, RuntimeError> {
    let data_dir = appliance.options().data_dir.clone();
    let new_admin_token = outpost_security::ensure_admin(&data_dir)
        .map_err(|e| RuntimeError::Service(format!("api tokens: {e}")))?;
    if new_admin_token.is_some() {
        tracing::warn!(
            file = %data_dir.join(outpost_security::ADMIN_TOKEN_FILE).display(),
            "created an operator token for the management API on first start"
        );
    }
    let (acceptor, ca_pem, ca_path) = if tls {
        let dir = data_dir.join("tls");
        let manifest = appliance.manifest();
        let certs = certificate_manager(&dir, &manifest)?;
        let client_auth = client_auth(&manifest)?;
        let acceptor = certs
            .tls_acceptor_with(client_auth.as_ref())
            .map_err(|e| RuntimeError::Service(format!("tls: {e}")))?;
        let ca_pem = certs.identity().ca_pem().to_string();
        // Renew the device certificate, and the ACME one when configured, in the background.
        let acme = acme_config(&manifest)
            .transpose()
            .map_err(RuntimeError::Service)?;
        let renewer = certs.spawn_renewer(outpost_security::RenewerConfig {
            acme,
            ..Default::default()
        });
        let mut stop = appliance.shutdown_signal();
        appliance.track(tokio::spawn(async move {
            let _ = stop.changed().await;
            renewer.abort();
        }));
        appliance.set_certificates(certs);
        (
            Some((acceptor, client_auth.map(Arc::new))),
            Some(ca_pem),
            Some(dir.join(outpost_security::CA_FILE)),
        )
    } else {
        if appliance.manifest().host.tls.client_auth.is_some() {
            return Err(RuntimeError::Service(
                "host.tls.client_auth needs the management API on TLS (host.api.tls)".into(),
            ));
        }
        if !listen.ip().is_loopback() {
            return Err(RuntimeError::Service(format!(
                "plain HTTP for the management API is only allowed on loopback, not {listen}"
            )));
        }
        (None, None, None)
    };
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        RuntimeError::Service(format!(
            "cannot listen for the management API on {listen}: {e}"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| RuntimeError::Service(format!("api listener: {e}")))?;
    let (ui, _) = crate::webui::WebUi::new(&data_dir, tls);
    let ui = Arc::new(ui);
    ui.spawn_sampler(&appliance);
    let state = Arc::new(ApiState {
        appliance: appliance.clone(),
        tokens: Tokens {
            path: data_dir.join(TOKENS_FILE),
            loaded: Mutex::new((None, None)),
        },
        ui,
    });
    let task = tokio::spawn(crate::http::accept_until(
        listener,
        appliance.shutdown_signal(),
        "api",
        move |stream, peer| {
            let (state, acceptor) = (state.clone(), acceptor.clone());
            async move {
                match acceptor {
                    Some((acceptor, client_auth)) => match acceptor.accept(stream).await {
                        Ok(tls) => {
                            let certificate =
                                match (&client_auth, tls.get_ref().1.peer_certificates()) {
                                    (Some(auth), Some(chain)) => Some(auth.identify(chain)),
                                    _ => None,
                                };
                            serve_connection(tls, state, peer, certificate.map(Arc::new)).await
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "api tls handshake failed"),
                    },
                    None => serve_connection(stream, state, peer, None).await,
                }
            }
        },
    ));
    appliance.track(task);
    tracing::info!(%addr, tls, "management API listening");
    Ok(ApiInfo {
        addr,
        tls,
        ca_pem,
        ca_path,
        new_admin_token,
        ui_initial_password: outpost_security::UiPassword::initial_password(&data_dir),
    })
}

/// Who a connection's client certificate says the caller is: an identity, or why it is none.
type CertificateCaller = Option<Arc<Result<Identity, String>>>;

async fn serve_connection<S>(
    stream: S,
    state: Arc<ApiState>,
    peer: SocketAddr,
    certificate: CertificateCaller,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    crate::http::serve_http1(stream, peer, move |req| {
        let (state, certificate) = (state.clone(), certificate.clone());
        async move { handle(&state, req, peer, certificate.as_deref()).await }
    })
    .await
}

/// The client-certificate settings of `[host.tls.client_auth]`, with the CA bundle read.
fn client_auth(manifest: &Manifest) -> Result<Option<ClientAuth>, RuntimeError> {
    let Some(settings) = &manifest.host.tls.client_auth else {
        return Ok(None);
    };
    let ca = std::fs::read_to_string(&settings.ca).map_err(|e| {
        RuntimeError::Service(format!(
            "host.tls.client_auth.ca: cannot read {}: {e}",
            settings.ca.display()
        ))
    })?;
    let mut roles = Vec::new();
    for (name, role) in &settings.roles {
        let role: Role = role.parse().map_err(|e| {
            RuntimeError::Service(format!("host.tls.client_auth.roles.{name}: {e}"))
        })?;
        roles.push((name.clone(), role));
    }
    let auth = ClientAuth::new(&ca, roles, settings.required).map_err(|e| {
        RuntimeError::Service(format!(
            "host.tls.client_auth ({}): {e}",
            settings.ca.display()
        ))
    })?;
    tracing::info!(
        ca = %settings.ca.display(),
        required = settings.required,
        mapped = settings.roles.len(),
        "management API asks for client certificates"
    );
    Ok(Some(auth))
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
        format!("{{\"error\":\"cannot encode the response: {e}\"}}").into_bytes()
    });
    respond(status, "application/json", body)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json_response(status, &json!({ "error": message.to_string() }))
}

async fn handle(
    state: &ApiState,
    req: Request<Incoming>,
    peer: SocketAddr,
    certificate: Option<&Result<Identity, String>>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if crate::webui::serves(&path) {
        let verify = |token: &str| state.tokens.verify(token);
        return crate::webui::handle(&state.ui, &state.appliance, &verify, req, peer).await;
    }
    let mut path_known = false;
    let mut found = None;
    for ep in ENDPOINTS {
        if let Some(params) = match_path(ep.path, &path) {
            path_known = true;
            if req.method().as_str() == ep.method {
                found = Some((
                    ep,
                    params.into_iter().map(str::to_string).collect::<Vec<_>>(),
                ));
                break;
            }
        }
    }
    let Some((ep, params)) = found else {
        return if path_known {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {path}", req.method()),
            )
        } else {
            error(StatusCode::NOT_FOUND, format!("no route {path}"))
        };
    };
    let caller = match ep.access {
        None => None,
        Some(access) => {
            let token = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token);
            // A token, when given, must be valid: it is never silently replaced by the
            // connection's certificate.
            const NEED_TOKEN: &str =
                "a valid bearer token is required (Authorization: Bearer <token>)";
            let identity = match (token, certificate) {
                (Some(t), _) => state.tokens.verify(t).ok_or_else(|| NEED_TOKEN.to_string()),
                (None, Some(Ok(identity))) => Ok(identity.clone()),
                (None, Some(Err(reason))) => Err(format!(
                    "{reason}; send a bearer token (Authorization: Bearer <token>)"
                )),
                (None, None) => Err(NEED_TOKEN.to_string()),
            };
            let identity = match identity {
                Ok(identity) => identity,
                Err(reason) => {
                    let mut resp = error(StatusCode::UNAUTHORIZED, reason);
                    resp.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return resp;
                }
            };
            if !identity.role.may(access) {
                tracing::warn!(%peer, caller = %identity.name, role = %identity.role, method = ep.method, %path, "api call refused: role lacks access");
                let what = if identity
                    .name
                    .starts_with(outpost_security::CERT_IDENTITY_PREFIX)
                {
                    "client certificate"
                } else {
                    "token"
                };
                return error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{what} `{}` has role {}, which may not {} {}",
                        identity.name, identity.role, ep.method, ep.path
                    ),
                );
            }
            Some(identity)
        }
    };
    if ep.method != "GET" {
        tracing::info!(%peer, token = caller.as_ref().map(|c| c.name.as_str()), method = ep.method, %path, "api call");
    }
    let app = &state.appliance;
    match ep.handler {
        Handler::Healthz => respond(StatusCode::OK, "text/plain", "ok\n"),
        Handler::Metrics => {
            let snapshot = app.metrics().await;
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::metrics::render(&app.manifest().host.name, &snapshot),
            )
        }
        Handler::OpenApi => json_response(StatusCode::OK, &openapi()),
        Handler::Status => json_response(StatusCode::OK, &crate::diagnostics::status_json(app)),
        Handler::GetManifest => match app.manifest_text() {
            Some(text) => respond(StatusCode::OK, "application/toml", text),
            None => error(
                StatusCode::NOT_FOUND,
                "the host was started without manifest text",
            ),
        },
        Handler::PutManifest => put_manifest(app, req).await,
        Handler::ListPlugins => json_response(StatusCode::OK, &app.status()),
        Handler::GetPlugin => match app.plugin_status(&params[0]) {
            Some(s) => json_response(StatusCode::OK, &s),
            None => error(StatusCode::NOT_FOUND, format!("no plugin `{}`", params[0])),
        },
        Handler::Rollback => {
            let name = &params[0];
            let Some(slot) = app.slot(name) else {
                return error(StatusCode::NOT_FOUND, format!("no running plugin `{name}`"));
            };
            let who =
                caller.map_or_else(|| "operator".into(), |c| format!("operator `{}`", c.name));
            match slot.rollback(&format!("{who} request")) {
                Ok(()) => json_response(StatusCode::OK, &app.plugin_status(name)),
                Err(e) => error(StatusCode::CONFLICT, e),
            }
        }
        Handler::RestartPlugin => {
            let name = &params[0];
            let who =
                caller.map_or_else(|| "operator".into(), |c| format!("operator `{}`", c.name));
            if app.plugin_status(name).is_none() {
                return error(StatusCode::NOT_FOUND, format!("no plugin `{name}`"));
            }
            match app.restart_plugin(name, &who).await {
                Ok(()) => json_response(StatusCode::OK, &app.plugin_status(name)),
                Err(e) => error(StatusCode::CONFLICT, e),
            }
        }
        Handler::Restart => {
            let who =
                caller.map_or_else(|| "operator".into(), |c| format!("operator `{}`", c.name));
            app.request_restart_soon(who);
            json_response(
                StatusCode::ACCEPTED,
                &json!({ "restarting": true, "pid": std::process::id() }),
            )
        }
        Handler::Logs => {
            let level = match query_param(&req, "level") {
                None => None,
                Some(l) => match l.parse::<tracing::Level>() {
                    Ok(l) => Some(l),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("unknown level `{l}`: use error, warn, info, debug or trace"),
                        );
                    }
                },
            };
            let limit = query_param(&req, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(500);
            json_response(
                StatusCode::OK,
                &crate::logs::buffer().query(&crate::logs::LogQuery {
                    level,
                    plugin: query_param(&req, "plugin"),
                    limit,
                }),
            )
        }
        Handler::Diagnostics => match crate::diagnostics::bundle(app, &state.ui.monitor).await {
            Ok(b) => {
                let mut resp = respond(StatusCode::OK, "application/gzip", b.bytes);
                if let Ok(v) =
                    HeaderValue::from_str(&format!("attachment; filename=\"{}\"", b.file_name))
                {
                    resp.headers_mut().insert("content-disposition", v);
                }
                resp
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        Handler::Ingest => ingest(app, &params[0], req).await,
        Handler::Certificates => match app.certificates() {
            Some(c) => json_response(StatusCode::OK, &c.status()),
            None => error(
                StatusCode::NOT_FOUND,
                "the API serves plain HTTP: no certificates",
            ),
        },
        Handler::UploadCertificate => upload_certificate(app, req).await,
        Handler::UseDeviceCertificate => match app.certificates() {
            Some(c) => match c.use_device_certificate() {
                Ok(()) => json_response(StatusCode::OK, &c.served()),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            },
            None => error(
                StatusCode::NOT_FOUND,
                "the API serves plain HTTP: no certificates",
            ),
        },
        Handler::IssueAcme => {
            let (Some(c), Some(acme)) = (app.certificates(), acme_config(&app.manifest())) else {
                return error(StatusCode::NOT_FOUND, "no ACME configured (host.tls.acme)");
            };
            let acme = match acme {
                Ok(a) => a,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
            };
            match c.acme_issue(&acme).await {
                Ok(info) => json_response(StatusCode::OK, &info),
                Err(e) => error(StatusCode::BAD_GATEWAY, e),
            }
        }
        Handler::Shares => json_response(StatusCode::OK, &app.shares()),
        Handler::ShareRefresh => refresh_share(app, &params[0]).await,
        Handler::ShareSync => sync_share(app, &params[0]).await,
        Handler::PutFile => put_file(app, &params[0], &params[1], req).await,
        Handler::GetFile => get_file(app, &params[0], &params[1], &req).await,
        Handler::ListFiles => list_files(app, &params[0], &req),
        Handler::Updates => match app.update_status() {
            Some(u) => json_response(StatusCode::OK, &u),
            None => error(
                StatusCode::NOT_FOUND,
                "no trusted publishers configured (host.updates.publishers)",
            ),
        },
        Handler::Keys => match app.check_keys().await {
            Some(k) => json_response(StatusCode::OK, &k),
            None => error(
                StatusCode::NOT_FOUND,
                "encryption at rest is off (host.encryption)",
            ),
        },
        Handler::RotateKeys => {
            if app.key_status().is_none() {
                return error(
                    StatusCode::NOT_FOUND,
                    "encryption at rest is off (host.encryption)",
                );
            }
            match app.rotate_keys().await {
                Ok(k) => json_response(StatusCode::OK, &k),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
    }
}

/// Largest file accepted through the API in one request.
const MAX_FILE_BYTES: usize = 256 << 20;

fn share_path(share: &str, path: &str) -> Result<outpost_storage::SharePath, Box<Response<Body>>> {
    let decoded = percent_decode_bytes(path);
    outpost_storage::SharePath::from_bytes(&decoded).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("share `{share}`: {e}"),
        ))
    })
}

/// The running share `share`, or a 404 naming it.
fn running_share(
    app: &Arc<Appliance>,
    share: &str,
) -> Result<Arc<crate::shares::RunningShare>, Box<Response<Body>>> {
    app.share(share)
        .ok_or_else(|| Box::new(error(StatusCode::NOT_FOUND, format!("no share `{share}`"))))
}

async fn refresh_share(app: &Arc<Appliance>, share: &str) -> Response<Body> {
    let running = match running_share(app, share) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if running.share().spec().kind == outpost_storage::ShareKind::EdgeLocal {
        return error(
            StatusCode::CONFLICT,
            format!("share `{share}` is edge-local: it has no cloud copy to refresh from"),
        );
    }
    match running.share().refresh().await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn sync_share(app: &Arc<Appliance>, share: &str) -> Response<Body> {
    let running = match running_share(app, share) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match running.share().sync_once().await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn put_file(
    app: &Arc<Appliance>,
    share: &str,
    path: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let running = match running_share(app, share) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let path = match share_path(share, path) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let body = match read_body(req, MAX_FILE_BYTES).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let size = body.len();
    match running.share().write(&path, body).await {
        Ok(()) => json_response(
            StatusCode::CREATED,
            &json!({ "share": share, "path": path.as_str(), "size": size }),
        ),
        Err(
            e @ (outpost_storage::StorageError::QuotaExceeded { .. }
            | outpost_storage::StorageError::QuotaTooSmall { .. }),
        ) => error(StatusCode::INSUFFICIENT_STORAGE, e),
        Err(e) if e.is_refusal() => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `bytes=A-B` (inclusive, as HTTP says) → `A..B+1`.
fn parse_range(header: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = header.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => size,
        b => b.parse::<u64>().ok()?.saturating_add(1).min(size),
    };
    (start < end).then_some(start..end)
}

async fn get_file(
    app: &Arc<Appliance>,
    share: &str,
    path: &str,
    req: &Request<Incoming>,
) -> Response<Body> {
    let running = match running_share(app, share) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let path = match share_path(share, path) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let entry = match running.share().entry(&path) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no file `{}` in share `{share}`", path.as_str()),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|h| parse_range(h, entry.size));
    match range {
        Some(None) => error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("file is {} bytes", entry.size),
        ),
        Some(Some(r)) => match running.share().read_range(&path, r).await {
            Ok(bytes) => respond(
                StatusCode::PARTIAL_CONTENT,
                "application/octet-stream",
                bytes,
            ),
            Err(e) => error(StatusCode::BAD_GATEWAY, e),
        },
        // The whole file streams from disk (recalled first when evicted).
        None => match running.share().open_read(&path).await {
            Ok((file, len)) => {
                let mut resp = Response::new(FileBody { file, left: len }.boxed());
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                resp.headers_mut()
                    .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
                resp
            }
            Err(e) => error(StatusCode::BAD_GATEWAY, e),
        },
    }
}

fn list_files(app: &Arc<Appliance>, share: &str, req: &Request<Incoming>) -> Response<Body> {
    let running = match running_share(app, share) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let prefix = query_param(req, "prefix").unwrap_or_default();
    let entries = match running.share().entries() {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let files: Vec<_> = entries
        .into_iter()
        .filter(|(p, _)| p.starts_with(&prefix))
        .collect();
    if query_param(req, "comp").as_deref() == Some("list") {
        let mut xml =
            String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs>");
        for (p, e) in &files {
            xml.push_str(&format!(
                "<Blob><Name>{}</Name><Properties><Content-Length>{}</Content-Length><AccessTier>{}</AccessTier></Properties></Blob>",
                xml_escape(p),
                e.size,
                if e.state == outpost_storage::FileState::Evicted { "Cool" } else { "Hot" }
            ));
        }
        xml.push_str("</Blobs><NextMarker/></EnumerationResults>");
        return respond(StatusCode::OK, "application/xml", xml);
    }
    let list: Vec<_> = files
        .iter()
        .map(|(p, e)| {
            json!({ "path": p, "size": e.size, "state": format!("{:?}", e.state).to_lowercase(),
                    "pinned": e.pinned, "sha256": e.sha256 })
        })
        .collect();
    json_response(StatusCode::OK, &list)
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn upload_certificate(app: &Arc<Appliance>, req: Request<Incoming>) -> Response<Body> {
    let Some(certs) = app.certificates() else {
        return error(
            StatusCode::NOT_FOUND,
            "the API serves plain HTTP: no certificates",
        );
    };
    let dry_run = query_param(&req, "dry_run").is_some_and(|v| v == "true" || v == "1");
    let password = req
        .headers()
        .get("x-pkcs12-password")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match read_body(req, MAX_CERT_BYTES).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let result = if dry_run {
        certs.validate_upload(&body, password.as_deref())
    } else {
        certs.upload(&body, password.as_deref())
    };
    match result {
        Ok(info) => {
            if !dry_run {
                tracing::info!(subject = %info.subject, not_after = info.not_after, "uploaded certificate now served");
            }
            json_response(StatusCode::OK, &info)
        }
        Err(e) => {
            tracing::warn!(error = %e, "certificate upload refused");
            error(StatusCode::BAD_REQUEST, e)
        }
    }
}

/// The ACME settings of `[host.tls.acme]`, with the directory's roots read.
fn acme_config(manifest: &Manifest) -> Option<Result<outpost_security::AcmeConfig, String>> {
    let a = manifest.host.tls.acme.as_ref()?;
    let mut config = outpost_security::AcmeConfig::new(a.directory.clone());
    config.contact = a.contact.clone();
    config.domains = a.domains.clone();
    config.renew_before = std::time::Duration::from_secs(u64::from(a.renew_before_days) * 86_400);
    if let Some(roots) = &a.roots {
        match std::fs::read_to_string(roots) {
            Ok(pem) => config.directory_roots_pem = Some(pem),
            Err(e) => {
                return Some(Err(format!(
                    "host.tls.acme.roots: cannot read {}: {e}",
                    roots.display()
                )));
            }
        }
    }
    Some(Ok(config))
}

/// The certificate manager for the API's TLS dir, configured by `[host.tls]`.
fn certificate_manager(
    dir: &Path,
    manifest: &Manifest,
) -> Result<outpost_security::CertificateManager, RuntimeError> {
    let tls = &manifest.host.tls;
    let mut config = outpost_security::CertConfig::new(manifest.host.name.clone())
        .with_alert_days(tls.alert_days.iter().copied());
    if !tls.names.is_empty() {
        config = config.with_server_names(tls.names.iter().cloned());
    }
    if let Some(bundle) = &tls.ca_bundle {
        let pem = std::fs::read_to_string(bundle).map_err(|e| {
            RuntimeError::Service(format!(
                "host.tls.ca_bundle: cannot read {}: {e}",
                bundle.display()
            ))
        })?;
        config = config.with_ca_bundle_pem(pem);
    }
    outpost_security::CertificateManager::open(dir, config)
        .map_err(|e| RuntimeError::Service(format!("device identity: {e}")))
}

fn query_param(req: &impl HasUri, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        (k == key).then(|| percent_decode(v))
    })
}

/// Anything with a request URI (a request, or a URI kept after the body was taken).
trait HasUri {
    fn uri(&self) -> &hyper::Uri;
}

impl<B> HasUri for Request<B> {
    fn uri(&self) -> &hyper::Uri {
        Request::uri(self)
    }
}

impl HasUri for hyper::Uri {
    fn uri(&self) -> &hyper::Uri {
        self
    }
}

fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(text)).into_owned()
}

/// Percent-decoding that keeps the bytes (a path that is not UTF-8 is refused later, by name).
pub(crate) fn percent_decode_bytes(text: &str) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

pub(crate) async fn read_body(
    req: Request<Incoming>,
    limit: usize,
) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body refused (limit {limit} bytes): {e}"),
        )),
    }
}

async fn put_manifest(app: &Arc<Appliance>, req: Request<Incoming>) -> Response<Body> {
    let req_query = req.uri().clone();
    let dry_run = query_param(&req, "dry_run").is_some_and(|v| v == "true" || v == "1");
    let base = query_param(&req, "base").map(PathBuf::from);
    let body = match read_body(req, MAX_MANIFEST_BYTES).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the manifest is not UTF-8 text");
    };
    let mut manifest = match Manifest::parse(&text, "manifest") {
        Ok(m) => m,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": e.to_string(), "line": e.line, "column": e.column, "message": e.message }),
            );
        }
    };
    let base = match base {
        Some(b) if b.is_absolute() => b,
        Some(b) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("base `{}` must be an absolute directory", b.display()),
            );
        }
        None => app.manifest().base_dir.clone(),
    };
    manifest.rebase(Path::new(&base));
    let opts = crate::ApplyOptions {
        dry_run,
        now: query_param(&req_query, "now").is_some_and(|v| v == "true" || v == "1"),
        force_rollback: query_param(&req_query, "force_rollback")
            .is_some_and(|v| v == "true" || v == "1"),
    };
    match app.apply_with(manifest, Some(text), opts).await {
        Ok(report) => {
            let succeeded = report.succeeded();
            let mut value = serde_json::to_value(&report).unwrap_or_default();
            value["succeeded"] = json!(succeeded);
            json_response(StatusCode::OK, &value)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn ingest(app: &Arc<Appliance>, topic: &str, req: Request<Incoming>) -> Response<Body> {
    let topic = percent_decode(topic);
    let body = match read_body(req, MAX_BUS_PAYLOAD).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match app.bus().publish(INGEST_SOURCE, &topic, body.to_vec()) {
        Ok(d) => json_response(
            StatusCode::ACCEPTED,
            &json!({ "topic": topic, "delivered": d.delivered, "dropped": d.dropped }),
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// The OpenAPI 3.0 document of [`ENDPOINTS`].
pub fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for ep in ENDPOINTS {
        let params: Vec<_> = ep
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        let mut responses = serde_json::Map::new();
        for (code, why) in ep.responses {
            let mut r = json!({ "description": why });
            if (200..300).contains(code) {
                r["content"] = json!({ ep.produces: { "schema": schema_for(ep.produces) } });
            } else {
                r["content"] = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
            }
            responses.insert(code.to_string(), r);
        }
        let mut op = json!({
            "operationId": operation_id(ep),
            "summary": ep.summary,
            "responses": responses,
        });
        if let Some(access) = ep.access {
            op["responses"]["401"] = json!({ "description": "no valid bearer token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
            op["responses"]["403"] = json!({ "description": "the token's role may not do this", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
            op["security"] = json!([{ "bearer": [] }]);
            op["x-outpost-access"] = json!(format!("{access:?}").to_lowercase());
        } else {
            op["security"] = json!([]);
        }
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        if ep.handler == Handler::PutManifest {
            let extra = json!([
                { "name": "dry_run", "in": "query", "required": false, "schema": { "type": "boolean" } },
                { "name": "base", "in": "query", "required": false, "schema": { "type": "string" } }
            ]);
            op["parameters"] = extra;
        }
        if let Some(ct) = ep.consumes {
            op["requestBody"] = json!({ "required": true, "content": { ct: { "schema": { "type": "string", "format": "binary" } } } });
        }
        let entry = paths
            .entry(ep.path.to_string())
            .or_insert_with(|| json!({}));
        entry[ep.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Outpost management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Manage an Outpost edge appliance: desired-state manifests, plugin status, rollback, ingest and metrics."
        },
        "servers": [{ "url": "https://127.0.0.1:7443" }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "string" } }
                }
            }
        },
        "security": [{ "bearer": [] }]
    })
}

fn schema_for(content_type: &str) -> serde_json::Value {
    if content_type == "application/json" {
        json!({ "type": "object" })
    } else {
        json!({ "type": "string" })
    }
}

fn operation_id(ep: &Endpoint) -> String {
    format!("{:?}", ep.handler)
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { c.to_ascii_lowercase() } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_match_segments_and_ingest_takes_the_rest() {
        assert_eq!(
            match_path("/v1/plugins/{name}", "/v1/plugins/echo"),
            Some(vec!["echo"])
        );
        assert_eq!(match_path("/v1/plugins/{name}", "/v1/plugins/echo/x"), None);
        assert_eq!(match_path("/v1/plugins/{name}", "/v1/plugins/"), None);
        assert_eq!(
            match_path("/v1/plugins/{name}/rollback", "/v1/plugins/echo/rollback"),
            Some(vec!["echo"])
        );
        assert_eq!(
            match_path("/v1/ingest/{topic}", "/v1/ingest/cam/front/in"),
            Some(vec!["cam/front/in"])
        );
        assert_eq!(match_path("/v1/status", "/v1/status"), Some(vec![]));
        assert_eq!(match_path("/v1/status", "/v1/statusx"), None);
    }

    #[test]
    fn percent_escapes_are_decoded_and_broken_ones_kept() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%23"), "#");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn the_openapi_document_lists_every_route_with_its_method() {
        let doc = openapi();
        for ep in ENDPOINTS {
            let op = &doc["paths"][ep.path][ep.method.to_lowercase()];
            assert!(op.is_object(), "{} {} missing", ep.method, ep.path);
            if ep.access.is_some() {
                assert!(op["responses"]["401"].is_object());
            }
        }
    }
}
