//! The device's TLS identity: a private CA (10 years) and an endpoint certificate it signs
//! (1 year) for `localhost`, `127.0.0.1`, `::1` and the host name, all ECDSA P-256.
//!
//! Generated on first start into a directory; loaded as-is afterwards, because clients pin the
//! CA. The CA key is kept (`ca-key.pem`, 0600) so the endpoint certificate is re-issued from the
//! same CA when it nears expiry; an operator may move that file offline, which only disables
//! the automatic renewal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;

use crate::SecurityError;
use crate::files;

/// The CA certificate (public; hand it to clients to pin).
pub const CA_FILE: &str = "ca.pem";
/// The CA's private key (0600); only needed to renew the endpoint certificate.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The endpoint certificate followed by the CA certificate.
pub const CERT_FILE: &str = "cert.pem";
/// The endpoint's private key (0600).
pub const KEY_FILE: &str = "key.pem";

/// How long a new endpoint certificate is valid.
const ENDPOINT_VALIDITY: Duration = Duration::days(365);
/// How long a new CA certificate is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// The endpoint certificate is re-issued when it has less than this left.
const RENEW_BEFORE: Duration = Duration::days(30);
/// `not_before` is backdated by this much to tolerate clock skew.
const BACKDATE: Duration = Duration::hours(1);
/// ALPN protocol the management API speaks.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The crypto provider every config here uses: rustls on `ring`.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The device's CA and endpoint certificate with its key.
pub struct DeviceIdentity {
    dir: PathBuf,
    ca_pem: String,
    cert_chain_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    not_after: i64,
    fingerprint: String,
    ca_fingerprint: String,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

struct Paths {
    dir: PathBuf,
    ca: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            ca: dir.join(CA_FILE),
            ca_key: dir.join(CA_KEY_FILE),
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }
}

impl DeviceIdentity {
    /// Loads the identity in `dir`, creating it (directory 0700, keys 0600) if `dir` holds none.
    pub fn load_or_create(dir: &Path, host_name: &str) -> Result<DeviceIdentity, SecurityError> {
        let paths = Paths::new(dir);
        let present = [
            files::exists(&paths.ca)?,
            files::exists(&paths.ca_key)?,
            files::exists(&paths.cert)?,
            files::exists(&paths.key)?,
        ];
        if present.iter().all(|p| !p) {
            generate(&paths, host_name)?;
        } else {
            for path in [&paths.ca, &paths.cert, &paths.key] {
                if !files::exists(path)? {
                    return Err(SecurityError::MissingFile {
                        path: path.clone(),
                        dir: paths.dir.clone(),
                    });
                }
            }
        }
        let identity = load(&paths)?;
        let left = identity.not_after - unix_now();
        if left >= RENEW_BEFORE.whole_seconds() {
            return Ok(identity);
        }
        if !files::exists(&paths.ca_key)? {
            tracing::warn!(
                cert = %paths.cert.display(),
                days_left = left / 86_400,
                "endpoint certificate expires soon and {} is absent, so it cannot be renewed",
                CA_KEY_FILE
            );
            return Ok(identity);
        }
        renew(&paths, host_name)?;
        load(&paths)
    }

    /// The directory the identity lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM: what clients pin.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The endpoint certificate followed by the CA certificate, PEM.
    pub fn cert_chain_pem(&self) -> &str {
        &self.cert_chain_pem
    }

    /// When the endpoint certificate expires, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// SHA-256 of the endpoint certificate (DER), lowercase hex.
    pub fn fingerprint_sha256(&self) -> &str {
        &self.fingerprint
    }

    /// SHA-256 of the CA certificate (DER), lowercase hex.
    pub fn ca_fingerprint_sha256(&self) -> &str {
        &self.ca_fingerprint
    }

    /// A rustls server config (ring provider, TLS 1.3 and 1.2, ALPN `http/1.1`).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, SecurityError> {
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::TlsConfig(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| {
                SecurityError::TlsConfig(format!("certificate in {}: {e}", self.dir.display()))
            })?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }

    /// The endpoint certificate chain and its key, ready for a certificate resolver.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, SecurityError> {
        CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &crypto_provider())
            .map(Arc::new)
            .map_err(|e| {
                SecurityError::TlsConfig(format!("certificate in {}: {e}", self.dir.display()))
            })
    }

    /// The endpoint certificate followed by the CA certificate, DER.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A tokio-rustls acceptor over [`DeviceIdentity::server_config`].
    pub fn tls_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, SecurityError> {
        Ok(tokio_rustls::TlsAcceptor::from(self.server_config()?))
    }
}

/// A rustls client config that trusts only the CA certificate(s) in `ca_pem` (pinning).
pub fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, SecurityError> {
    client_config_with(ca_pem, None)
}

/// [`client_config`] that presents a client certificate (`cert_pem`: the chain, leaf first;
/// `key_pem`: its private key) to servers that ask for one (mutual TLS).
pub fn client_config_with(
    ca_pem: &str,
    client_cert: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, SecurityError> {
    let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::TlsConfig(format!("pinned CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(SecurityError::TlsConfig(
            "pinned CA PEM holds no certificate".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| SecurityError::TlsConfig(format!("pinned CA certificate: {e}")))?;
    }
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::TlsConfig(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => config.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SecurityError::TlsConfig(format!("client certificate PEM: {e}")))?;
            if chain.is_empty() {
                return Err(SecurityError::TlsConfig(
                    "client certificate PEM holds no certificate".into(),
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| SecurityError::TlsConfig(format!("client key PEM: {e}")))?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| SecurityError::TlsConfig(format!("client certificate: {e}")))?
        }
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

fn generate(paths: &Paths, host_name: &str) -> Result<(), SecurityError> {
    files::create_private_dir(&paths.dir)?;
    let now = OffsetDateTime::now_utc();

    let ca_key = new_key("CA key")?;
    let mut ca_params = CertificateParams::default();
    // A random tag keeps the names of different devices' CAs apart, so a client that trusts
    // several never mistakes one for another (and a wrong CA reads as "unknown issuer").
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| SecurityError::Random(e.to_string()))?;
    ca_params.distinguished_name = name(&format!(
        "Outpost device CA {} {}",
        short_label(host_name),
        hex::encode(tag)
    ));
    // Path length 0: the CA signs end-entity certificates only.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - BACKDATE;
    ca_params.not_after = now + CA_VALIDITY;
    ca_params.serial_number = Some(random_serial()?);
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| generate_err("CA certificate", e))?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = new_key("endpoint key")?;
    let cert = endpoint_params(host_name, now, now + CA_VALIDITY)?
        .signed_by(&key, &issuer)
        .map_err(|e| generate_err("endpoint certificate", e))?;

    let ca_pem = ca_cert.pem();
    files::write_atomic(&paths.ca_key, ca_key_pem.as_bytes(), true)?;
    files::write_atomic(&paths.ca, ca_pem.as_bytes(), false)?;
    files::write_atomic(
        &paths.cert,
        format!("{}{ca_pem}", cert.pem()).as_bytes(),
        false,
    )?;
    files::write_atomic(&paths.key, key.serialize_pem().as_bytes(), true)?;
    tracing::info!(dir = %paths.dir.display(), host_name, "created the device TLS identity");
    Ok(())
}

fn renew(paths: &Paths, host_name: &str) -> Result<(), SecurityError> {
    let ca_pem = files::read_text(&paths.ca)?;
    let ca_der = single_cert(&paths.ca, &ca_pem)?;
    let ca_not_after = parse_x509(&paths.ca, &ca_der)?
        .validity()
        .not_after
        .to_datetime();
    let ca_key = KeyPair::from_pem(&files::read_text(&paths.ca_key)?)
        .map_err(|e| SecurityError::corrupt(&paths.ca_key, format!("not a usable key: {e}")))?;
    let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key)
        .map_err(|e| SecurityError::corrupt(&paths.ca, format!("unusable CA: {e}")))?;
    let key = KeyPair::from_pem(&files::read_text(&paths.key)?)
        .map_err(|e| SecurityError::corrupt(&paths.key, format!("not a usable key: {e}")))?;
    let cert = endpoint_params(host_name, OffsetDateTime::now_utc(), ca_not_after)?
        .signed_by(&key, &issuer)
        .map_err(|e| generate_err("endpoint certificate", e))?;
    files::write_atomic(
        &paths.cert,
        format!("{}{ca_pem}", cert.pem()).as_bytes(),
        false,
    )?;
    tracing::info!(cert = %paths.cert.display(), "renewed the endpoint certificate");
    Ok(())
}

/// Parameters of an endpoint certificate valid from `now` for a year, but not past `cap`.
fn endpoint_params(
    host_name: &str,
    now: OffsetDateTime,
    cap: OffsetDateTime,
) -> Result<CertificateParams, SecurityError> {
    let mut sans = vec![
        dns_san("localhost")?,
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let host = host_name.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !ip.is_loopback() {
            sans.push(SanType::IpAddress(ip));
        }
    } else if host != "localhost" && !host.contains('*') && DnsName::try_from(host.as_str()).is_ok()
    {
        sans.push(dns_san(&host)?);
    } else if !host.is_empty() && host != "localhost" {
        tracing::warn!(
            host_name,
            "host name is not a valid DNS name; leaving it out of the certificate"
        );
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("Outpost {}", short_label(host_name)));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = (now + ENDPOINT_VALIDITY).min(cap);
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn dns_san(name: &str) -> Result<SanType, SecurityError> {
    let ia5 = name
        .to_string()
        .try_into()
        .map_err(|e| generate_err("endpoint certificate", e))?;
    Ok(SanType::DnsName(ia5))
}

/// The host name as it may appear in a common name (printable, at most 48 characters).
fn short_label(host_name: &str) -> String {
    let label: String = host_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(48)
        .collect();
    if label.is_empty() {
        "device".into()
    } else {
        label
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Outpost");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn new_key(what: &'static str) -> Result<KeyPair, SecurityError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| generate_err(what, e))
}

/// 16 random bytes, positive and without a leading zero byte.
fn random_serial() -> Result<SerialNumber, SecurityError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SecurityError::Random(e.to_string()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn generate_err(what: &'static str, e: impl std::fmt::Display) -> SecurityError {
    SecurityError::Generate {
        what,
        reason: e.to_string(),
    }
}

fn load(paths: &Paths) -> Result<DeviceIdentity, SecurityError> {
    let ca_pem = files::read_text(&paths.ca)?;
    let ca_der = single_cert(&paths.ca, &ca_pem)?;
    let ca = parse_x509(&paths.ca, &ca_der)?;
    if !ca.is_ca() {
        return Err(SecurityError::corrupt(&paths.ca, "not a CA certificate"));
    }

    let cert_chain_pem = files::read_text(&paths.cert)?;
    let mut chain = certs(&paths.cert, &cert_chain_pem)?;
    let Some(end_entity) = chain.first().cloned() else {
        return Err(SecurityError::corrupt(&paths.cert, "holds no certificate"));
    };
    let leaf = parse_x509(&paths.cert, &end_entity)?;
    leaf.verify_signature(Some(ca.public_key())).map_err(|_| {
        SecurityError::corrupt(
            &paths.cert,
            format!("the certificate was not issued by the CA in {CA_FILE}"),
        )
    })?;
    if chain.len() == 1 {
        chain.push(ca_der.clone());
    }

    let key = PrivateKeyDer::from_pem_slice(files::read_text(&paths.key)?.as_bytes())
        .map_err(|e| SecurityError::corrupt(&paths.key, format!("no usable private key: {e}")))?;
    files::warn_if_readable_by_others(&paths.key);
    CertifiedKey::from_der(chain.clone(), key.clone_key(), &crypto_provider()).map_err(|e| {
        SecurityError::corrupt(
            &paths.key,
            format!("does not match the certificate in {CERT_FILE}: {e}"),
        )
    })?;

    let not_after = leaf.validity().not_after.timestamp();
    if not_after <= unix_now() {
        tracing::warn!(cert = %paths.cert.display(), "the endpoint certificate has expired");
    }
    Ok(DeviceIdentity {
        dir: paths.dir.clone(),
        fingerprint: hex::encode(Sha256::digest(&end_entity)),
        ca_fingerprint: hex::encode(Sha256::digest(&ca_der)),
        ca_pem,
        cert_chain_pem,
        chain,
        key,
        not_after,
    })
}

fn certs(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::corrupt(path, format!("bad PEM: {e}")))
}

fn single_cert(path: &Path, pem: &str) -> Result<CertificateDer<'static>, SecurityError> {
    let mut all = certs(path, pem)?;
    if all.len() != 1 {
        return Err(SecurityError::corrupt(
            path,
            format!("expected exactly one certificate, found {}", all.len()),
        ));
    }
    Ok(all.remove(0))
}

fn parse_x509<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, SecurityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SecurityError::corrupt(path, format!("bad certificate: {e}")))?;
    Ok(cert)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(params: &CertificateParams) -> Vec<String> {
        params
            .subject_alt_names
            .iter()
            .map(|s| match s {
                SanType::DnsName(n) => n.as_str().to_string(),
                SanType::IpAddress(ip) => ip.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn endpoint_names_include_loopback_and_a_valid_host_name() {
        let now = OffsetDateTime::now_utc();
        let p = endpoint_params("Edge-01.Lan", now, now + CA_VALIDITY).unwrap();
        assert_eq!(sans(&p), ["localhost", "127.0.0.1", "::1", "edge-01.lan"]);
        let p = endpoint_params("10.0.0.7", now, now + CA_VALIDITY).unwrap();
        assert_eq!(sans(&p), ["localhost", "127.0.0.1", "::1", "10.0.0.7"]);
    }

    #[test]
    fn invalid_host_names_are_left_out() {
        let now = OffsetDateTime::now_utc();
        for bad in ["", "localhost", "bad name", "*.wild", "under_score!"] {
            let p = endpoint_params(bad, now, now + CA_VALIDITY).unwrap();
            assert_eq!(sans(&p), ["localhost", "127.0.0.1", "::1"], "{bad:?}");
        }
    }

    #[test]
    fn endpoint_validity_never_outlasts_the_ca() {
        let now = OffsetDateTime::now_utc();
        let cap = now + Duration::days(10);
        let p = endpoint_params("h", now, cap).unwrap();
        assert_eq!(p.not_after, cap);
        let p = endpoint_params("h", now, now + CA_VALIDITY).unwrap();
        assert_eq!(p.not_after, now + ENDPOINT_VALIDITY);
    }

    #[test]
    fn serials_are_positive_and_distinct() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_ne!(a, b);
        assert_eq!(a[0] & 0xc0, 0x40);
    }

    #[test]
    fn an_endpoint_certificate_near_expiry_is_renewed_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let first = DeviceIdentity::load_or_create(dir.path(), "box").unwrap();

        // Re-issue the endpoint certificate so that it expires in 5 days.
        let ca_pem = files::read_text(&paths.ca).unwrap();
        let ca_der = single_cert(&paths.ca, &ca_pem).unwrap();
        let ca_key = KeyPair::from_pem(&files::read_text(&paths.ca_key).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).unwrap();
        let key = KeyPair::from_pem(&files::read_text(&paths.key).unwrap()).unwrap();
        let now = OffsetDateTime::now_utc();
        let short = endpoint_params("box", now, now + Duration::days(5))
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        files::write_atomic(
            &paths.cert,
            format!("{}{ca_pem}", short.pem()).as_bytes(),
            false,
        )
        .unwrap();

        let renewed = DeviceIdentity::load_or_create(dir.path(), "box").unwrap();
        assert_eq!(renewed.ca_pem(), first.ca_pem());
        assert_ne!(renewed.fingerprint_sha256(), first.fingerprint_sha256());
        assert!(renewed.not_after() - unix_now() > 300 * 86_400);
    }
}
