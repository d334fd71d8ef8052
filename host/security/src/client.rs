//! A small client for the management API: one connection per request, HTTP/1.1, TLS pinned to
//! the device CA for `https` URLs, `authorization: Bearer <token>` when it has a token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::SecurityError;
use crate::identity::{client_config, client_config_with};

/// How long a request may take, connection included, unless changed with `with_timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body the client reads.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// How long [`ApiClient::download`] waits for the host to start answering.
pub const DOWNLOAD_ANSWER_TIME: Duration = Duration::from_secs(600);
/// How much of an error response's body goes into a `Status` error.
const ERROR_BODY_CHARS: usize = 512;

/// A response from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response body.
    pub body: Vec<u8>,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
}

impl ApiResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A management API client for one base URL.
#[derive(Clone)]
pub struct ApiClient {
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The pinned CA, kept to rebuild the connector with a client certificate.
    ca_pem: Option<String>,
    scheme: &'static str,
    host: String,
    port: u16,
    authority: HeaderValue,
    base_path: String,
    auth: Option<HeaderValue>,
    timeout: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("base_path", &self.base_path)
            .field("has_token", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `base` (`https://host:port` needs `ca_pem`, the CA to pin; `http://` does not).
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_pem: Option<String>,
    ) -> Result<ApiClient, SecurityError> {
        let bad = |reason: &str| SecurityError::InvalidUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = base
            .trim()
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let (scheme, default_port) = match uri.scheme_str() {
            Some("https") => ("https", 443),
            Some("http") => ("http", 80),
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information is not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a base URL takes no query"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        let authority = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?;
        let base_path = uri.path().trim_end_matches('/').to_string();

        let tls = if scheme == "https" {
            let ca_pem = ca_pem.as_deref().ok_or_else(|| {
                bad("https needs the device CA certificate (ca.pem) to pin; none was given")
            })?;
            let config = client_config(ca_pem)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| bad("the host is neither a DNS name nor an IP address"))?;
            Some((TlsConnector::from(Arc::clone(&config)), name))
        } else {
            None
        };
        let auth = match token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| SecurityError::InvalidTokenValue)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(ApiClient {
            tls,
            ca_pem,
            scheme,
            host,
            port,
            authority,
            base_path,
            auth,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client presenting a client certificate (mutual TLS): `cert_pem` is the chain,
    /// leaf first, `key_pem` its private key. Only for `https` base URLs.
    pub fn with_client_certificate(
        mut self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<ApiClient, SecurityError> {
        let (Some((_, name)), Some(ca_pem)) = (self.tls.take(), self.ca_pem.as_deref()) else {
            return Err(SecurityError::TlsConfig(
                "a client certificate needs an https:// API URL".into(),
            ));
        };
        let config = client_config_with(ca_pem, Some((cert_pem, key_pem)))?;
        self.tls = Some((TlsConnector::from(config), name));
        Ok(self)
    }

    /// The same client with a different time limit per request (connection included).
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    /// Sends one request to `path` (below the base URL) with an optional `(body, content type)`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<ApiResponse, SecurityError> {
        let url = self.url(path);
        let err = |reason: String| SecurityError::Http {
            method: method.to_string(),
            url: url.clone(),
            reason,
        };
        let request = self.build(&method, path, &url, body)?;
        tracing::debug!(%method, %url, "management API request");
        match tokio::time::timeout(self.timeout, self.exchange(request, &method, &url)).await {
            Ok(result) => result,
            Err(_) => Err(err(format!("timed out after {:?}", self.timeout))),
        }
    }

    /// The request for `method path` (`url` is [`ApiClient::url`] of it, for errors) with an
    /// optional `(body, content type)`.
    fn build(
        &self,
        method: &Method,
        path: &str,
        url: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<Request<Full<Bytes>>, SecurityError> {
        let err = |reason: String| SecurityError::Http {
            method: method.to_string(),
            url: url.to_string(),
            reason,
        };
        if !path.starts_with('/') {
            return Err(SecurityError::InvalidUrl {
                url: path.to_string(),
                reason: "the path must start with `/`".into(),
            });
        }
        let target: Uri =
            format!("{}{path}", self.base_path)
                .parse()
                .map_err(|e: http::uri::InvalidUri| SecurityError::InvalidUrl {
                    url: path.to_string(),
                    reason: e.to_string(),
                })?;
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(target)
            .header(HOST, self.authority.clone())
            .header(USER_AGENT, concat!("outpost/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let payload = match body {
            Some((bytes, content_type)) => {
                let content_type = HeaderValue::from_str(content_type)
                    .map_err(|_| err(format!("invalid content type `{content_type}`")))?;
                builder = builder.header(CONTENT_TYPE, content_type);
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(payload))
            .map_err(|e| err(e.to_string()))
    }

    /// `GET path`, expecting a 2xx JSON response.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, SecurityError> {
        let response = self.request(Method::GET, path, None).await?;
        let response = self.success(&Method::GET, path, response)?;
        serde_json::from_slice(&response.body).map_err(|e| SecurityError::BadJson {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    /// `PUT path` with `body` of `content_type`; the response whatever its status.
    pub async fn put(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<ApiResponse, SecurityError> {
        self.request(Method::PUT, path, Some((body, content_type)))
            .await
    }

    /// `POST path` with `body` of `content_type`; the response whatever its status.
    pub async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<ApiResponse, SecurityError> {
        self.request(Method::POST, path, Some((body, content_type)))
            .await
    }

    /// `DELETE path`; the response whatever its status.
    pub async fn delete(&self, path: &str) -> Result<ApiResponse, SecurityError> {
        self.request(Method::DELETE, path, None).await
    }

    /// `response` if its status is 2xx, else a `Status` error naming the request.
    pub fn success(
        &self,
        method: &Method,
        path: &str,
        response: ApiResponse,
    ) -> Result<ApiResponse, SecurityError> {
        if response.is_success() {
            return Ok(response);
        }
        Err(self.status_error(method, path, &response))
    }

    /// The `Status` error for a non-2xx `response` to `method path`, with the start of its body.
    fn status_error(&self, method: &Method, path: &str, response: &ApiResponse) -> SecurityError {
        SecurityError::Status {
            method: method.to_string(),
            url: self.url(path),
            status: response.status,
            body: response.text().chars().take(ERROR_BODY_CHARS).collect(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{}{path}",
            self.scheme,
            self.authority.to_str().unwrap_or("?"),
            self.base_path
        )
    }

    /// `GET path`, streaming a 2xx body into `out` as it arrives, with `progress(received,
    /// total)` after each chunk (`total` from `content-length`). Returns the bytes received.
    /// The host may take long before it answers (a recall from the cloud): the answer may take
    /// up to [`DOWNLOAD_ANSWER_TIME`], then each chunk the client's time limit.
    pub async fn download<W>(
        &self,
        path: &str,
        out: &mut W,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, SecurityError>
    where
        W: AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        let method = Method::GET;
        let url = self.url(path);
        let err = |reason: String| SecurityError::Http {
            method: method.to_string(),
            url: url.clone(),
            reason,
        };
        let request = self.build(&method, path, &url, None)?;
        let response = tokio::time::timeout(
            DOWNLOAD_ANSWER_TIME.max(self.timeout),
            self.open(request, &method, &url),
        )
        .await
        .map_err(|_| err(format!("no answer within {DOWNLOAD_ANSWER_TIME:?}")))??;
        if !response.status().is_success() {
            // Only the start of an error body is kept, so only that much is read.
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), ERROR_BODY_CHARS * 4)
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            let answer = ApiResponse {
                status,
                body,
                content_type: None,
            };
            return Err(self.status_error(&method, path, &answer));
        }
        let total = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = response.into_body();
        let mut received = 0u64;
        progress(0, total);
        loop {
            let frame = tokio::time::timeout(self.timeout, body.frame())
                .await
                .map_err(|_| err(format!("the body stalled for {:?}", self.timeout)))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| err(format!("reading the response: {e}")))?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .await
                    .map_err(|e| err(format!("writing what was received: {e}")))?;
                received += data.len() as u64;
                progress(received, total);
            }
        }
        out.flush()
            .await
            .map_err(|e| err(format!("writing what was received: {e}")))?;
        if let Some(total) = total.filter(|&t| t != received) {
            return Err(err(format!(
                "the body ended after {received} of {total} bytes"
            )));
        }
        Ok(received)
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        method: &Method,
        url: &str,
    ) -> Result<ApiResponse, SecurityError> {
        let response = self.open(request, method, url).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| SecurityError::Http {
                method: method.to_string(),
                url: url.to_string(),
                reason: format!("reading the response: {e}"),
            })?
            .to_bytes()
            .to_vec();
        Ok(ApiResponse {
            status,
            body,
            content_type,
        })
    }

    /// Connects, sends `request` and returns the response with its body still to read.
    async fn open(
        &self,
        request: Request<Full<Bytes>>,
        method: &Method,
        url: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, SecurityError> {
        let addr = format!("{}:{}", self.authority.to_str().unwrap_or("?"), self.port);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| SecurityError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let http_err = |e: hyper::Error| SecurityError::Http {
            method: method.to_string(),
            url: url.to_string(),
            reason: e.to_string(),
        };
        let response = match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| handshake_error(name, e))?;
                send(tls, request).await.map_err(http_err)?
            }
            None => send(tcp, request).await.map_err(http_err)?,
        };
        Ok(response)
    }
}

/// Sends `request` over a fresh HTTP/1.1 connection on `io`.
async fn send<T>(
    io: T,
    request: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "management API connection ended with an error");
        }
    });
    sender.send_request(request).await
}

/// A certificate rejection or other TLS failure, from what tokio-rustls returned.
fn handshake_error(name: &ServerName<'_>, e: std::io::Error) -> SecurityError {
    let server = name.to_str().into_owned();
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls @ rustls::Error::InvalidCertificate(_)) => SecurityError::Certificate {
            server,
            reason: tls.to_string(),
        },
        Some(tls) => SecurityError::Handshake {
            server,
            reason: tls.to_string(),
        },
        None => SecurityError::Handshake {
            server,
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_parsed_with_default_ports_and_prefixes() {
        let c = ApiClient::new("http://127.0.0.1", None, None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 80));
        let c = ApiClient::new("http://[::1]:7443/api/", None, None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 7443));
        assert_eq!(c.url("/v1/status"), "http://[::1]:7443/api/v1/status");
    }

    #[test]
    fn unusable_base_urls_are_refused_by_name() {
        for bad in [
            "ftp://x",
            "127.0.0.1:7443",
            "http://u@h",
            "http://h/?q",
            "https://h",
        ] {
            match ApiClient::new(bad, None, None) {
                Err(SecurityError::InvalidUrl { url, .. }) => assert_eq!(url, bad),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_token_with_a_newline_is_refused() {
        assert!(matches!(
            ApiClient::new("http://h", Some("a\nb".into()), None),
            Err(SecurityError::InvalidTokenValue)
        ));
    }
}
