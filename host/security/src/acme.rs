//! ACME (RFC 8555) issuance with HTTP-01 validation, on `instant-acme` with our own small
//! HTTPS client (rustls on ring, trusting the roots the operator names).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

use crate::certs::CertError;
use crate::files;
use crate::identity::crypto_provider;

/// The path prefix HTTP-01 challenges are fetched under.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// How to reach the ACME server and what to ask it for.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The ACME directory URL (`https://...`).
    pub directory_url: String,
    /// Account contact URIs (`mailto:ops@example.com`); may be empty.
    pub contact: Vec<String>,
    /// DNS names to request; empty means the manager's configured server names.
    pub domains: Vec<String>,
    /// CA certificates (PEM) to trust for the ACME server's own HTTPS; `None` means the
    /// system's trust store.
    pub directory_roots_pem: Option<String>,
    /// Renew when the served certificate has less than this left (default 30 days).
    pub renew_before: Duration,
    /// Time limit for one issuance, from account to certificate (default 2 minutes).
    pub timeout: Duration,
}

impl AcmeConfig {
    /// Defaults for the directory at `directory_url`.
    pub fn new(directory_url: impl Into<String>) -> AcmeConfig {
        AcmeConfig {
            directory_url: directory_url.into(),
            contact: Vec::new(),
            domains: Vec::new(),
            directory_roots_pem: None,
            renew_before: Duration::from_secs(30 * 86_400),
            timeout: Duration::from_secs(120),
        }
    }
}

/// Pending HTTP-01 challenge responses (token to key authorization), shared with whatever
/// serves `/.well-known/acme-challenge/` on port 80 (or the port the ACME server checks).
#[derive(Debug, Clone, Default)]
pub struct Http01Challenges {
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl Http01Challenges {
    /// The response body for a request to `path`, when it is a pending challenge.
    pub fn response(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.lock().get(token).cloned()
    }

    /// How many challenges are pending.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Serves the challenges over plain HTTP on `listener` until the task is aborted: `200`
    /// with the key authorization for a pending token, `404` for anything else.
    pub fn serve(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let challenges = self.clone();
        tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an HTTP-01 connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let challenges = challenges.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let answer = challenges.response(req.uri().path());
                        async move { Ok::<_, Infallible>(http01_response(answer)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        })
    }

    fn insert(&self, token: String, key_authorization: String) {
        self.lock().insert(token, key_authorization);
    }

    fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn http01_response(answer: Option<String>) -> Response<Full<Bytes>> {
    let (status, body) = match answer {
        Some(body) => (StatusCode::OK, body),
        None => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Removes the tokens it holds when dropped, however issuance ends.
struct TokenGuard<'a> {
    challenges: &'a Http01Challenges,
    tokens: Vec<String>,
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}

/// Runs one ACME order for `domains`; returns the PEM chain and the new private key.
pub(crate) async fn issue(
    config: &AcmeConfig,
    domains: &[String],
    account_dir: &Path,
    challenges: &Http01Challenges,
) -> Result<(String, PrivateKeyDer<'static>), CertError> {
    match tokio::time::timeout(
        config.timeout,
        issue_inner(config, domains, account_dir, challenges),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(CertError::acme(
            "order",
            format!("no certificate within {:?}", config.timeout),
        )),
    }
}

async fn issue_inner(
    config: &AcmeConfig,
    domains: &[String],
    account_dir: &Path,
    challenges: &Http01Challenges,
) -> Result<(String, PrivateKeyDer<'static>), CertError> {
    if domains.is_empty() {
        return Err(CertError::acme("order", "no domain names to request"));
    }
    let http = AcmeHttp::new(config)?;
    let identifiers: Vec<Identifier> = domains
        .iter()
        .map(|d| match d.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(d.clone()),
        })
        .collect();
    let new_order = NewOrder::new(&identifiers);
    let account = account(config, account_dir, &http, false).await?;
    let mut order = match account.new_order(&new_order).await {
        Ok(order) => order,
        Err(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref()
                == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
        {
            tracing::info!("the ACME server no longer knows the stored account; creating one");
            let account = self::account(config, account_dir, &http, true).await?;
            account
                .new_order(&new_order)
                .await
                .map_err(|e| CertError::acme("order", e))?
        }
        Err(e) => return Err(CertError::acme("order", e)),
    };

    let mut guard = TokenGuard {
        challenges,
        tokens: Vec::new(),
    };
    {
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result.map_err(|e| CertError::acme("authorization", e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(CertError::acme(
                        "authorization",
                        format!("{} is {other:?}", authz.identifier()),
                    ));
                }
            }
            let identifier = authz.identifier().to_string();
            let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
                CertError::acme(
                    "challenge",
                    format!("the ACME server offers no http-01 challenge for {identifier}"),
                )
            })?;
            let token = challenge.token.clone();
            challenges.insert(
                token.clone(),
                challenge.key_authorization().as_str().to_string(),
            );
            guard.tokens.push(token);
            tracing::debug!(identifier, "HTTP-01 challenge ready");
            challenge
                .set_ready()
                .await
                .map_err(|e| CertError::acme("challenge", e))?;
        }
    }

    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(config.timeout);
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(|e| CertError::acme("validation", e))?;
    if status != OrderStatus::Ready {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            for challenge in &authz.challenges {
                if let Some(error) = &challenge.error {
                    reasons.push(format!("{}: {error}", authz.identifier()));
                }
            }
        }
        return Err(CertError::acme(
            "validation",
            format!("the order is {status:?}: {}", reasons.join("; ")),
        ));
    }
    drop(guard);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::acme("key", e))?;
    let mut params =
        CertificateParams::new(domains.to_vec()).map_err(|e| CertError::acme("csr", e))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| CertError::acme("csr", e))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| CertError::acme("finalize", e))?;
    let chain = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| CertError::acme("certificate", e))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((chain, key))
}

/// The stored account for this directory, or a new one (`fresh` forces a new one).
async fn account(
    config: &AcmeConfig,
    account_dir: &Path,
    http: &AcmeHttp,
    fresh: bool,
) -> Result<Account, CertError> {
    let url_hash = hex::encode(Sha256::digest(config.directory_url.as_bytes()));
    let path = account_dir.join(format!("account-{}.json", &url_hash[..16]));
    if !fresh && files::exists(&path)? {
        let text = files::read_text(&path)?;
        match serde_json::from_str::<AccountCredentials>(&text) {
            Ok(credentials) => {
                return Account::builder_with_http(Box::new(http.clone()))
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| CertError::acme("account", e));
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable ACME account; creating a new one");
            }
        }
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory_url.clone(),
            None,
        )
        .await
        .map_err(|e| CertError::acme("account", e))?;
    files::create_private_dir(account_dir)?;
    let json = serde_json::to_vec(&credentials).map_err(|e| CertError::acme("account", e))?;
    files::write_atomic(&path, &json, true)?;
    tracing::info!(id = account.id(), "created an ACME account");
    Ok(account)
}

/// A minimal HTTPS/1.1 client for instant-acme: one connection per request.
#[derive(Clone)]
struct AcmeHttp {
    tls: Arc<ClientConfig>,
}

impl AcmeHttp {
    fn new(config: &AcmeConfig) -> Result<AcmeHttp, CertError> {
        let mut roots = RootCertStore::empty();
        match &config.directory_roots_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert
                        .map_err(|e| CertError::acme("directory roots", format!("bad PEM: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| CertError::acme("directory roots", e))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for error in &native.errors {
                    tracing::warn!(%error, "reading the system trust store");
                }
                roots.add_parsable_certificates(native.certs);
            }
        }
        if roots.is_empty() {
            return Err(CertError::acme(
                "directory roots",
                "no CA certificate to trust for the ACME server",
            ));
        }
        let tls = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CertError::acme("tls", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(AcmeHttp { tls: Arc::new(tls) })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = Arc::clone(&self.tls);
        Box::pin(async move { send(tls, req).await.map_err(instant_acme::Error::Other) })
    }
}

async fn send(
    tls: Arc<ClientConfig>,
    mut req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri}: only https URLs are supported").into());
    }
    let host = uri.host().ok_or_else(|| format!("{uri}: no host"))?;
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::time::timeout(
        Duration::from_secs(30),
        TcpStream::connect((bare_host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("connecting to {host}:{port}: timed out"))?
    .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let server_name = ServerName::try_from(bare_host.clone())
        .map_err(|e| format!("{host} is not a valid server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "ACME connection ended");
        }
    });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let origin_form = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<http::Uri>()?;
    *req.uri_mut() = origin_form;
    req.headers_mut()
        .insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
    let response = sender.send_request(req).await?;
    Ok(BytesResponse::from(response))
}
