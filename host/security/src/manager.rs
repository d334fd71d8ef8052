//! The certificate manager: which certificate the management API serves, and how it changes.
//!
//! It starts from the device identity (the endpoint certificate signed by the device CA). An
//! operator may upload a CA-issued certificate, or have one issued over ACME; once validated it
//! is stored under `served/` in the TLS directory and served from the next handshake on,
//! through a [`HotResolver`]. A restart serves the latest accepted certificate again.
//!
//! Layout under the TLS directory:
//!
//! ```text
//! served/current             name of the version served (written last, atomically)
//! served/<version>/cert.pem  the chain: leaf first, then intermediates
//! served/<version>/key.pem   its private key (0600)
//! served/<version>/meta.json where it came from
//! acme/account-<hash>.json   ACME account credentials per directory URL (0600)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::Engine;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::acme::{self, AcmeConfig, Http01Challenges};
use crate::certs::{self, CertError, CertInfo, CertSource, Policy, Validated};
use crate::expiry::{CertStatus, ExpiryThresholds};
use crate::identity::{ALPN_HTTP1, crypto_provider};
use crate::resolver::HotResolver;
use crate::{ClientAuth, DeviceIdentity, SecurityError, files};

/// The folder under the TLS directory that holds accepted certificates.
pub const SERVED_DIR: &str = "served";
/// The file in [`SERVED_DIR`] naming the version served.
const CURRENT_FILE: &str = "current";
/// How many stored versions are kept (the served one and the ones before it).
const KEEP_VERSIONS: usize = 3;

/// What the certificate manager checks and serves.
#[derive(Debug, Clone)]
pub struct CertConfig {
    /// The device's host name: it goes into the device endpoint certificate.
    pub host_name: String,
    /// Names (DNS or IP) every accepted certificate must cover; by default the host name.
    pub server_names: Vec<String>,
    /// The operator's CA bundle (PEM). When set, uploads must chain to one of its certificates
    /// and self-signed uploads are refused.
    pub ca_bundle_pem: Option<String>,
    /// Expiry alert thresholds (default 30, 7 and 1 days).
    pub alert_thresholds: ExpiryThresholds,
}

impl CertConfig {
    /// Defaults for a device called `host_name`: uploads must cover `host_name`, no CA bundle.
    pub fn new(host_name: impl Into<String>) -> CertConfig {
        let host_name = host_name.into();
        CertConfig {
            server_names: vec![host_name.clone()],
            host_name,
            ca_bundle_pem: None,
            alert_thresholds: ExpiryThresholds::default(),
        }
    }

    /// Sets the names every accepted certificate must cover.
    pub fn with_server_names<I, S>(mut self, names: I) -> CertConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.server_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Requires CA-issued uploads chaining to a certificate in `pem`.
    pub fn with_ca_bundle_pem(mut self, pem: impl Into<String>) -> CertConfig {
        self.ca_bundle_pem = Some(pem.into());
        self
    }

    /// Sets the expiry alert thresholds, in days before expiry.
    pub fn with_alert_days(mut self, days: impl IntoIterator<Item = u32>) -> CertConfig {
        self.alert_thresholds = ExpiryThresholds::new(days);
        self
    }
}

/// The certificate served now, when it is not the device's own.
struct Active {
    info: CertInfo,
    chain: Vec<CertificateDer<'static>>,
}

struct Inner {
    dir: PathBuf,
    config: CertConfig,
    anchors: Option<Vec<CertificateDer<'static>>>,
    identity: Mutex<Arc<DeviceIdentity>>,
    active: ArcSwapOption<Active>,
    resolver: Arc<HotResolver>,
    challenges: Http01Challenges,
    /// Serialises installs so `served/current` always names the last one.
    install: Mutex<()>,
}

/// Validates, stores, serves and renews the management API's TLS certificate.
///
/// Cheap to clone; clones share state.
#[derive(Clone)]
pub struct CertificateManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CertificateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateManager")
            .field("dir", &self.inner.dir)
            .field("served", &self.inner.resolver.fingerprint_sha256())
            .finish_non_exhaustive()
    }
}

/// What a renewal check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// The served certificate has more time left than the renewal threshold.
    NotDue {
        /// Seconds until it expires.
        seconds_left: i64,
    },
    /// A new certificate was issued and is served now.
    Renewed(CertInfo),
}

impl CertificateManager {
    /// Opens the TLS directory `tls_dir`: loads (or creates) the device identity and serves the
    /// latest accepted certificate, or the device endpoint certificate when there is none.
    pub fn open(tls_dir: &Path, config: CertConfig) -> Result<CertificateManager, SecurityError> {
        let identity = DeviceIdentity::load_or_create(tls_dir, &config.host_name)?;
        let anchors = match &config.ca_bundle_pem {
            Some(pem) => Some(
                certs::parse_ca_bundle(pem).map_err(|e| SecurityError::TlsConfig(e.to_string()))?,
            ),
            None => None,
        };
        let stored = load_stored(tls_dir);
        let (initial, active) = match stored {
            Some((certified, active)) => {
                tracing::info!(
                    subject = %active.info.subject,
                    source = ?active.info.source,
                    "serving the stored certificate"
                );
                (certified, Some(Arc::new(active)))
            }
            None => (identity.certified_key()?, None),
        };
        Ok(CertificateManager {
            inner: Arc::new(Inner {
                dir: tls_dir.to_path_buf(),
                config,
                anchors,
                identity: Mutex::new(Arc::new(identity)),
                active: ArcSwapOption::new(active),
                resolver: Arc::new(HotResolver::new(initial)),
                challenges: Http01Challenges::default(),
                install: Mutex::new(()),
            }),
        })
    }

    /// The TLS directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The device identity (device CA and endpoint certificate).
    pub fn identity(&self) -> Arc<DeviceIdentity> {
        Arc::clone(&self.identity_lock())
    }

    /// The hot resolver every config from [`CertificateManager::server_config`] uses.
    pub fn resolver(&self) -> Arc<HotResolver> {
        Arc::clone(&self.inner.resolver)
    }

    /// A rustls server config (ring, TLS 1.3 and 1.2, ALPN `http/1.1`) that serves whatever
    /// certificate is current at each handshake.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, SecurityError> {
        self.server_config_with(None)
    }

    /// [`CertificateManager::server_config`] that also asks for client certificates and
    /// verifies them against `client_auth` (mutual TLS); `None` asks for none.
    pub fn server_config_with(
        &self,
        client_auth: Option<&ClientAuth>,
    ) -> Result<Arc<ServerConfig>, SecurityError> {
        let builder = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::TlsConfig(e.to_string()))?;
        let builder = match client_auth {
            Some(auth) => builder.with_client_cert_verifier(auth.verifier()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.resolver());
        config.session_storage = self.inner.resolver.session_storage();
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }

    /// A tokio-rustls acceptor over [`CertificateManager::server_config`].
    pub fn tls_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, SecurityError> {
        Ok(tokio_rustls::TlsAcceptor::from(self.server_config()?))
    }

    /// A tokio-rustls acceptor over [`CertificateManager::server_config_with`].
    pub fn tls_acceptor_with(
        &self,
        client_auth: Option<&ClientAuth>,
    ) -> Result<tokio_rustls::TlsAcceptor, SecurityError> {
        Ok(tokio_rustls::TlsAcceptor::from(
            self.server_config_with(client_auth)?,
        ))
    }

    /// The certificate served now: the accepted one, or the device endpoint certificate.
    pub fn served(&self) -> CertInfo {
        if let Some(active) = self.inner.active.load_full() {
            return active.info.clone();
        }
        let identity = self.identity();
        device_info(&identity)
    }

    /// Checks an upload (PEM, or PKCS#12 with `password`) without accepting it.
    pub fn validate_upload(
        &self,
        data: &[u8],
        password: Option<&str>,
    ) -> Result<CertInfo, CertError> {
        let parsed = certs::parse_upload(data, password)?;
        Ok(certs::validate(parsed, &self.upload_policy(), CertSource::Upload)?.info)
    }

    /// Validates an upload (PEM with certificates and one key, or PKCS#12 with `password`),
    /// stores it and serves it from the next handshake on.
    pub fn upload(&self, data: &[u8], password: Option<&str>) -> Result<CertInfo, CertError> {
        let parsed = certs::parse_upload(data, password)?;
        let validated = certs::validate(parsed, &self.upload_policy(), CertSource::Upload)
            .inspect_err(|e| tracing::warn!(error = %e, "refused a certificate upload"))?;
        self.install(validated)
    }

    /// Goes back to serving the device endpoint certificate (stored certificates are kept).
    pub fn use_device_certificate(&self) -> Result<(), CertError> {
        let _guard = self.install_lock();
        let current = self.inner.dir.join(SERVED_DIR).join(CURRENT_FILE);
        match std::fs::remove_file(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SecurityError::io(&current, e).into()),
        }
        let certified = self.identity().certified_key()?;
        self.inner.active.store(None);
        self.inner.resolver.rotate(certified);
        Ok(())
    }

    /// Expiry status of every certificate that is or may be served: the accepted certificate
    /// and its intermediates, the device endpoint certificate and the device CA.
    pub fn status(&self) -> Vec<CertStatus> {
        self.status_at(unix_now())
    }

    /// [`CertificateManager::status`] as of `now` (seconds since the Unix epoch).
    pub fn status_at(&self, now: i64) -> Vec<CertStatus> {
        let thresholds = &self.inner.config.alert_thresholds;
        let mut out = Vec::new();
        let active = self.inner.active.load_full();
        if let Some(active) = &active {
            for (i, der) in active.chain.iter().enumerate() {
                let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
                    continue;
                };
                out.push(CertStatus::new(
                    if i == 0 { "served" } else { "intermediate" },
                    active.info.source,
                    true,
                    cert.subject().to_string(),
                    certs::san_strings(&cert),
                    hex::encode(Sha256::digest(der)),
                    cert.validity().not_after.timestamp(),
                    now,
                    thresholds,
                ));
            }
        }
        let identity = self.identity();
        let device_active = active.is_none();
        let roles = [
            ("endpoint", CertSource::Device),
            ("device-ca", CertSource::DeviceCa),
        ];
        let ca = CertificateDer::from_pem_slice(identity.ca_pem().as_bytes()).ok();
        let ders = [identity.chain().first().cloned(), ca];
        for ((role, source), der) in roles.into_iter().zip(ders) {
            let Some(der) = der else { continue };
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
                continue;
            };
            out.push(CertStatus::new(
                role,
                source,
                device_active,
                cert.subject().to_string(),
                certs::san_strings(&cert),
                hex::encode(Sha256::digest(&der)),
                cert.validity().not_after.timestamp(),
                now,
                thresholds,
            ));
        }
        out
    }

    /// The pending HTTP-01 challenge responses; serve them with
    /// [`Http01Challenges::serve`] or answer [`Http01Challenges::response`] from a server.
    pub fn http01_challenges(&self) -> Http01Challenges {
        self.inner.challenges.clone()
    }

    /// Has a certificate issued over ACME (HTTP-01), validates, stores and serves it.
    pub async fn acme_issue(&self, acme: &AcmeConfig) -> Result<CertInfo, CertError> {
        let domains = if acme.domains.is_empty() {
            self.inner.config.server_names.clone()
        } else {
            acme.domains.clone()
        };
        let account_dir = self.inner.dir.join("acme");
        let (chain_pem, key_der) =
            acme::issue(acme, &domains, &account_dir, &self.inner.challenges).await?;
        let parsed = certs::Parsed {
            certs: CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CertError::acme("certificate", format!("bad PEM chain: {e}")))?,
            key: key_der,
        };
        // The ACME CA is trusted by choice of directory; everything else is checked as usual.
        let policy = Policy {
            names: &domains,
            anchors: None,
            now: unix_now(),
        };
        let validated = certs::validate(parsed, &policy, CertSource::Acme)?;
        let info = self.install(validated)?;
        tracing::info!(subject = %info.subject, not_after = info.not_after, "ACME certificate issued");
        Ok(info)
    }

    /// Renews over ACME when the served certificate is inside `acme.renew_before` of expiry (or
    /// when only the device's own certificate is served), and rotates to the new one.
    pub async fn renew_if_due(&self, acme: &AcmeConfig) -> Result<RenewOutcome, CertError> {
        let now = unix_now();
        if let Some(active) = self.inner.active.load_full() {
            let seconds_left = active.info.not_after - now;
            let threshold = i64::try_from(acme.renew_before.as_secs()).unwrap_or(i64::MAX);
            if seconds_left > threshold {
                return Ok(RenewOutcome::NotDue { seconds_left });
            }
            tracing::info!(
                subject = %active.info.subject,
                seconds_left,
                "the served certificate is inside its renewal threshold; renewing over ACME"
            );
        }
        self.acme_issue(acme).await.map(RenewOutcome::Renewed)
    }

    /// Re-reads the device identity (renewing the endpoint certificate when it nears expiry)
    /// and serves the renewed one when no accepted certificate is in use. Returns whether the
    /// endpoint certificate changed.
    pub fn refresh_device_identity(&self) -> Result<bool, SecurityError> {
        let _guard = self.install_lock();
        let fresh = DeviceIdentity::load_or_create(&self.inner.dir, &self.inner.config.host_name)?;
        let mut identity = self
            .inner
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if fresh.fingerprint_sha256() == identity.fingerprint_sha256() {
            return Ok(false);
        }
        let certified = fresh.certified_key()?;
        *identity = Arc::new(fresh);
        if self.inner.active.load().is_none() {
            self.inner.resolver.rotate(certified);
        }
        Ok(true)
    }

    /// Spawns a task that checks every `config.check_interval`: it refreshes the device
    /// identity and, with ACME configured, renews the served certificate when due
    /// ([`CertificateManager::renew_if_due`]), retrying after `config.retry_interval` on errors.
    pub fn spawn_renewer(&self, config: RenewerConfig) -> tokio::task::JoinHandle<()> {
        let manager = self.clone();
        tokio::spawn(async move {
            loop {
                let mut wait = config.check_interval;
                if let Err(e) = manager.refresh_device_identity() {
                    tracing::warn!(error = %e, "checking the device endpoint certificate failed");
                }
                if let Some(acme) = &config.acme {
                    match manager.renew_if_due(acme).await {
                        Ok(RenewOutcome::NotDue { seconds_left }) => {
                            tracing::debug!(seconds_left, "certificate renewal not due");
                        }
                        Ok(RenewOutcome::Renewed(info)) => {
                            tracing::info!(
                                subject = %info.subject,
                                not_after = info.not_after,
                                "renewed the served certificate"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "certificate renewal failed; will retry");
                            wait = config.retry_interval.min(config.check_interval);
                        }
                    }
                }
                tokio::time::sleep(wait).await;
            }
        })
    }

    fn upload_policy(&self) -> Policy<'_> {
        Policy {
            names: &self.inner.config.server_names,
            anchors: self.inner.anchors.as_deref(),
            now: unix_now(),
        }
    }

    fn identity_lock(&self) -> std::sync::MutexGuard<'_, Arc<DeviceIdentity>> {
        self.inner
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn install_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.install.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `validated` and serves it.
    fn install(&self, validated: Validated) -> Result<CertInfo, CertError> {
        let _guard = self.install_lock();
        let version = store(&self.inner.dir, &validated)?;
        let Validated {
            chain,
            certified,
            info,
            ..
        } = validated;
        self.inner.active.store(Some(Arc::new(Active {
            info: info.clone(),
            chain,
        })));
        self.inner.resolver.rotate(certified);
        tracing::info!(
            version,
            subject = %info.subject,
            source = ?info.source,
            fingerprint = %info.fingerprint_sha256,
            "accepted a new TLS certificate"
        );
        Ok(info)
    }
}

/// How often the renewer checks, and with what.
#[derive(Debug, Clone)]
pub struct RenewerConfig {
    /// ACME settings; without them only the device endpoint certificate is renewed.
    pub acme: Option<AcmeConfig>,
    /// Time between checks (default 1 hour).
    pub check_interval: Duration,
    /// Time before retrying a failed renewal (default 5 minutes).
    pub retry_interval: Duration,
}

impl Default for RenewerConfig {
    fn default() -> Self {
        RenewerConfig {
            acme: None,
            check_interval: Duration::from_secs(3600),
            retry_interval: Duration::from_secs(300),
        }
    }
}

fn device_info(identity: &DeviceIdentity) -> CertInfo {
    let chain = identity.chain();
    match chain
        .first()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
    {
        Some((_, leaf)) => certs::cert_info(&leaf, chain, CertSource::Device),
        None => CertInfo {
            source: CertSource::Device,
            subject: String::new(),
            issuer: String::new(),
            names: Vec::new(),
            not_before: 0,
            not_after: identity.not_after(),
            serial: String::new(),
            fingerprint_sha256: identity.fingerprint_sha256().to_string(),
            chain_len: chain.len(),
        },
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    source: CertSource,
    accepted_at: i64,
}

/// Writes `validated` as a new version and points `served/current` at it; returns the version.
fn store(dir: &Path, validated: &Validated) -> Result<String, SecurityError> {
    let served = dir.join(SERVED_DIR);
    files::create_private_dir(&served)?;
    let now = unix_now();
    let version = format!(
        "{now:012}-{}",
        &validated.info.fingerprint_sha256[..16.min(validated.info.fingerprint_sha256.len())]
    );
    let version_dir = served.join(&version);
    files::create_private_dir(&version_dir)?;
    let chain_pem: String = validated
        .chain
        .iter()
        .map(|der| pem_encode("CERTIFICATE", der))
        .collect();
    let (label, key_der): (&str, &[u8]) = match &validated.key {
        PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der()),
        _ => {
            return Err(SecurityError::TlsConfig(
                "unsupported private key encoding".into(),
            ));
        }
    };
    files::write_atomic(
        &version_dir.join("key.pem"),
        pem_encode(label, key_der).as_bytes(),
        true,
    )?;
    files::write_atomic(&version_dir.join("cert.pem"), chain_pem.as_bytes(), false)?;
    let meta = serde_json::to_vec_pretty(&Meta {
        source: validated.info.source,
        accepted_at: now,
    })
    .map_err(|e| SecurityError::TlsConfig(e.to_string()))?;
    files::write_atomic(&version_dir.join("meta.json"), &meta, false)?;
    files::write_atomic(
        &served.join(CURRENT_FILE),
        format!("{version}\n").as_bytes(),
        false,
    )?;
    prune(&served, &version);
    Ok(version)
}

/// Removes all but the newest [`KEEP_VERSIONS`] versions (never `keep`).
fn prune(served: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(served) else {
        return;
    };
    let mut versions: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    versions.sort();
    let excess = versions.len().saturating_sub(KEEP_VERSIONS);
    for old in versions.into_iter().take(excess) {
        if old != keep
            && let Err(e) = std::fs::remove_dir_all(served.join(&old))
        {
            tracing::warn!(version = old, error = %e, "could not remove an old certificate");
        }
    }
}

/// Loads the version `served/current` names, if any and usable.
fn load_stored(dir: &Path) -> Option<(Arc<CertifiedKey>, Active)> {
    let served = dir.join(SERVED_DIR);
    let current = served.join(CURRENT_FILE);
    let version = match files::read_text(&current) {
        Ok(text) => text.trim().to_string(),
        Err(SecurityError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stored certificate; serving the device's");
            return None;
        }
    };
    let version_dir = served.join(&version);
    match load_version(&version_dir) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            tracing::warn!(
                version,
                error = %e,
                "the stored certificate is unusable; serving the device's own"
            );
            None
        }
    }
}

fn load_version(version_dir: &Path) -> Result<(Arc<CertifiedKey>, Active), SecurityError> {
    let cert_path = version_dir.join("cert.pem");
    let key_path = version_dir.join("key.pem");
    let chain = CertificateDer::pem_slice_iter(files::read_text(&cert_path)?.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::corrupt(&cert_path, format!("bad PEM: {e}")))?;
    let Some(leaf_der) = chain.first() else {
        return Err(SecurityError::corrupt(&cert_path, "holds no certificate"));
    };
    let key = PrivateKeyDer::from_pem_slice(files::read_text(&key_path)?.as_bytes())
        .map_err(|e| SecurityError::corrupt(&key_path, format!("no usable private key: {e}")))?;
    files::warn_if_readable_by_others(&key_path);
    let certified = CertifiedKey::from_der(chain.clone(), key, &crypto_provider())
        .map_err(|e| SecurityError::corrupt(&key_path, format!("does not match cert.pem: {e}")))?;
    let source = files::read_text(&version_dir.join("meta.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Meta>(&text).ok())
        .map_or(CertSource::Upload, |m| m.source);
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| SecurityError::corrupt(&cert_path, format!("bad certificate: {e}")))?;
    let info = certs::cert_info(&leaf, &chain, source);
    if info.not_after <= unix_now() {
        tracing::warn!(
            cert = %cert_path.display(),
            "the stored certificate has expired; upload or issue a new one"
        );
    }
    Ok((Arc::new(certified), Active { info, chain }))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
