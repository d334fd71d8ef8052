//! Operator-supplied server certificates: parsing uploads (PEM or PKCS#12) and validating them
//! before they are served: the chain, the key match, key usage, names and validity period.
//!
//! Every refusal has its own [`CertError`] variant, so the management API can tell an operator
//! exactly what was wrong with an upload.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::SecurityError;
use crate::identity::crypto_provider;

/// Why a certificate upload (or an ACME-issued certificate) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The upload is neither PEM text nor a PKCS#12 (DER) file.
    #[error("the upload is neither PEM nor PKCS#12: {reason}")]
    UnrecognizedFormat {
        /// What the parsers said.
        reason: String,
    },
    /// A PEM section could not be decoded.
    #[error("bad PEM: {0}")]
    BadPem(String),
    /// The PEM private key is encrypted, which is not supported.
    #[error(
        "the PEM private key is encrypted; upload it unencrypted, or upload a password-protected \
         PKCS#12 file instead"
    )]
    EncryptedPemKey,
    /// The upload holds no certificate.
    #[error("the upload holds no certificate")]
    NoCertificate,
    /// The upload holds no private key.
    #[error("the upload holds no private key; include the key of the certificate")]
    NoPrivateKey,
    /// The upload holds more than one private key.
    #[error("the upload holds {0} private keys; include exactly one")]
    SeveralKeys(usize),
    /// The PKCS#12 file is password-protected and no password was given.
    #[error("the PKCS#12 file is password-protected; supply its password")]
    Pkcs12PasswordRequired,
    /// The PKCS#12 password is wrong (its integrity check failed).
    #[error("wrong PKCS#12 password: the file's integrity check failed with the one supplied")]
    Pkcs12WrongPassword,
    /// The PKCS#12 file cannot be read for another reason.
    #[error("unreadable PKCS#12 file: {0}")]
    Pkcs12(String),
    /// A certificate in the upload cannot be parsed.
    #[error("certificate #{index} of the upload cannot be parsed: {reason}")]
    BadCertificate {
        /// Position in the upload, from 1.
        index: usize,
        /// The parser's message.
        reason: String,
    },
    /// The private key cannot be used (unsupported type or malformed).
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    /// The private key does not belong to the (leaf) certificate.
    #[error(
        "wrong key: the private key does not match the certificate for {subject} (their public \
         keys differ)"
    )]
    KeyMismatch {
        /// Subject of the leaf certificate.
        subject: String,
    },
    /// The certificate has expired.
    #[error("the certificate for {subject} expired at {not_after}")]
    Expired {
        /// Subject of the certificate that expired (the leaf or one in its chain).
        subject: String,
        /// Its expiry, RFC 3339.
        not_after: String,
    },
    /// The certificate is not valid yet.
    #[error("the certificate for {subject} is not valid until {not_before}")]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Start of its validity, RFC 3339.
        not_before: String,
    },
    /// The certificate's subject alternative names do not cover the configured host names.
    #[error(
        "wrong host: the certificate's names {sans:?} do not cover {missing:?}, which this host \
         is configured to serve"
    )]
    WrongHost {
        /// The configured names that no SAN covers.
        missing: Vec<String>,
        /// The certificate's DNS and IP subject alternative names.
        sans: Vec<String>,
    },
    /// The certificate's extended key usage does not allow TLS server authentication.
    #[error(
        "wrong usage: the certificate is not for TLS servers (its extended key usage {found} \
         lacks serverAuth)"
    )]
    NoServerAuth {
        /// What the extension holds, or that it is absent.
        found: String,
    },
    /// The certificate's key usage does not allow digital signatures, which TLS needs.
    #[error(
        "wrong usage: the certificate's key usage ({found}) lacks digitalSignature, which TLS \
         handshakes need"
    )]
    NoDigitalSignature {
        /// The key usages the certificate has.
        found: String,
    },
    /// The leaf certificate is a CA certificate.
    #[error("wrong usage: the leaf certificate for {subject} is a CA certificate")]
    LeafIsCa {
        /// Subject of the leaf.
        subject: String,
    },
    /// The chain does not link up: a signature does not verify or an intermediate is missing.
    #[error("broken chain: {reason}")]
    BrokenChain {
        /// Which link is broken.
        reason: String,
    },
    /// The certificate is self-signed, but this host requires CA-issued certificates.
    #[error(
        "the certificate for {subject} is self-signed, but this host requires certificates \
         issued by a CA in its configured CA bundle"
    )]
    SelfSigned {
        /// Subject of the certificate.
        subject: String,
    },
    /// The chain ends at a root that is not in the configured CA bundle.
    #[error("untrusted issuer: the chain ends at {root}, which is not in the configured CA bundle")]
    UntrustedIssuer {
        /// Subject of the last certificate of the chain, or the issuer it names.
        root: String,
    },
    /// The configured CA bundle cannot be used.
    #[error("the configured CA bundle cannot be used: {0}")]
    BadCaBundle(String),
    /// An ACME operation failed.
    #[error("ACME {step}: {reason}")]
    Acme {
        /// What was being done (`account`, `order`, `challenge`, ...).
        step: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// Reading or writing the certificate store (or the ACME account) failed.
    #[error("certificate storage: {0}")]
    Storage(#[from] SecurityError),
}

impl CertError {
    pub(crate) fn acme(step: &'static str, reason: impl std::fmt::Display) -> CertError {
        CertError::Acme {
            step,
            reason: reason.to_string(),
        }
    }
}

/// Where a served certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertSource {
    /// The endpoint certificate signed by the device's own CA.
    Device,
    /// The device CA itself.
    DeviceCa,
    /// Uploaded by an operator.
    Upload,
    /// Issued over ACME.
    Acme,
}

/// A summary of an accepted certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Where it came from.
    pub source: CertSource,
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS and IP subject alternative names.
    pub names: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the leaf certificate (DER), lowercase hex.
    pub fingerprint_sha256: String,
    /// Number of certificates served (leaf plus intermediates).
    pub chain_len: usize,
}

/// What the validation checks against.
pub(crate) struct Policy<'a> {
    /// Names every accepted certificate must cover.
    pub names: &'a [String],
    /// Trust anchors; `Some` means a CA-issued chain ending at one of them is required.
    pub anchors: Option<&'a [CertificateDer<'static>]>,
    /// The time to check validity at, seconds since the Unix epoch.
    pub now: i64,
}

/// A certificate chain and key that passed validation.
pub(crate) struct Validated {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub certified: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Certificates and keys found in an upload, before validation.
pub(crate) struct Parsed {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Parses an upload: PEM text (certificates and one private key) or a PKCS#12 file.
pub(crate) fn parse_upload(data: &[u8], password: Option<&str>) -> Result<Parsed, CertError> {
    let looks_pem = data
        .windows(b"-----BEGIN ".len())
        .any(|w| w == b"-----BEGIN ");
    if looks_pem {
        parse_pem(data)
    } else if data.first() == Some(&0x30) {
        parse_pkcs12(data, password)
    } else {
        Err(CertError::UnrecognizedFormat {
            reason: "no PEM header and not a DER structure".into(),
        })
    }
}

fn parse_pem(data: &[u8]) -> Result<Parsed, CertError> {
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(data) {
        let (kind, der) = section.map_err(|e| CertError::BadPem(e.to_string()))?;
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => keys.push(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::RsaPrivateKey => keys.push(PrivateKeyDer::Pkcs1(der.into())),
            SectionKind::EcPrivateKey => keys.push(PrivateKeyDer::Sec1(der.into())),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(data);
    if keys.is_empty() && text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(CertError::EncryptedPemKey);
    }
    finish_parse(certs, keys)
}

fn finish_parse(
    certs: Vec<CertificateDer<'static>>,
    mut keys: Vec<PrivateKeyDer<'static>>,
) -> Result<Parsed, CertError> {
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    match keys.len() {
        0 => Err(CertError::NoPrivateKey),
        1 => Ok(Parsed {
            certs,
            key: keys.remove(0),
        }),
        n => Err(CertError::SeveralKeys(n)),
    }
}

fn parse_pkcs12(data: &[u8], password: Option<&str>) -> Result<Parsed, CertError> {
    use p12_keystore::error::Error as P12Error;
    let archive = match p12_keystore::Pkcs12Archive::from_pkcs12(data, password.unwrap_or("")) {
        Ok(archive) => archive,
        Err(P12Error::MacError(_)) if password.is_none_or(str::is_empty) => {
            return Err(CertError::Pkcs12PasswordRequired);
        }
        Err(P12Error::MacError(_)) => return Err(CertError::Pkcs12WrongPassword),
        Err(P12Error::DerError(e)) => {
            return Err(CertError::UnrecognizedFormat {
                reason: format!("not PKCS#12: {e}"),
            });
        }
        Err(e) => return Err(CertError::Pkcs12(e.to_string())),
    };
    let keys: Vec<PrivateKeyDer<'static>> = archive
        .keys
        .iter()
        .map(|bag| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bag.key.as_der().to_vec())))
        .collect();
    // The bag carrying the key's local key id is the leaf; put it first.
    let key_id = archive
        .keys
        .first()
        .and_then(|k| k.local_key_id.as_ref())
        .map(|id| id.0.clone());
    let mut bags: Vec<_> = archive.certs.iter().collect();
    if let Some(id) = key_id
        && let Some(pos) = bags
            .iter()
            .position(|b| b.local_key_id.as_deref() == Some(id.as_slice()))
    {
        let leaf = bags.remove(pos);
        bags.insert(0, leaf);
    }
    let certs = bags
        .into_iter()
        .map(|b| CertificateDer::from(b.cert.as_der().to_vec()))
        .collect();
    finish_parse(certs, keys)
}

/// Validates `parsed` against `policy`; on success the chain is ordered leaf first, trimmed of
/// certificates that are not part of it (and of a trust anchor it ends at).
pub(crate) fn validate(
    parsed: Parsed,
    policy: &Policy<'_>,
    source: CertSource,
) -> Result<Validated, CertError> {
    let Parsed { certs, key } = parsed;
    let mut decoded = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| CertError::BadCertificate {
                index: i + 1,
                reason: e.to_string(),
            })?;
        decoded.push(cert);
    }

    // The key: it must load, and match the leaf. The leaf is the certificate whose public key
    // matches; by convention that is the first one.
    let provider = crypto_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| CertError::BadKey(e.to_string()))?;
    let leaf_index = match signing_key.public_key() {
        Some(spki) => decoded
            .iter()
            .position(|c| c.public_key().raw == spki.as_ref())
            .ok_or_else(|| CertError::KeyMismatch {
                subject: decoded[0].subject().to_string(),
            })?,
        None => 0,
    };
    let leaf = &decoded[leaf_index];
    let subject = leaf.subject().to_string();

    // Usage.
    if leaf.is_ca() {
        return Err(CertError::LeafIsCa { subject });
    }
    check_usage(leaf)?;

    // Validity period (the leaf first, so its message names the leaf).
    check_time(leaf, policy.now)?;

    // Names.
    let sans = san_strings(leaf);
    let missing: Vec<String> = policy
        .names
        .iter()
        .filter(|name| !covers(leaf, name))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(CertError::WrongHost { missing, sans });
    }

    // Self-signed leaves are refused when CA-issued certificates are required.
    let self_signed = is_self_signed(leaf);
    if self_signed && policy.anchors.is_some() {
        return Err(CertError::SelfSigned { subject });
    }

    // The chain: follow issuers through the upload.
    let mut order = vec![leaf_index];
    let mut ends_at_root = self_signed;
    while !ends_at_root {
        let current = &decoded[*order.last().unwrap_or(&leaf_index)];
        let next = decoded
            .iter()
            .enumerate()
            .find(|(i, c)| !order.contains(i) && c.subject().as_raw() == current.issuer().as_raw());
        let Some((i, issuer)) = next else { break };
        if current.verify_signature(Some(issuer.public_key())).is_err() {
            return Err(CertError::BrokenChain {
                reason: format!(
                    "the signature on {} does not verify with the key of {}, which the upload \
                     gives as its issuer",
                    current.subject(),
                    issuer.subject()
                ),
            });
        }
        check_time(issuer, policy.now)?;
        order.push(i);
        ends_at_root = is_self_signed(issuer);
    }
    let last = &decoded[*order.last().unwrap_or(&leaf_index)];

    if let Some(anchors) = policy.anchors {
        check_anchored(last, ends_at_root, anchors)?;
    }

    // The chain served: leaf and intermediates, without a self-signed root (clients have it)
    // unless the leaf itself is self-signed.
    let mut chain: Vec<CertificateDer<'static>> = order.iter().map(|&i| certs[i].clone()).collect();
    if ends_at_root && chain.len() > 1 {
        chain.pop();
    }

    if let Some(anchors) = policy.anchors {
        webpki_check(&chain, anchors, policy)?;
    }

    let certified = CertifiedKey::new(chain.clone(), signing_key);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(CertError::KeyMismatch { subject });
    }
    let dropped = certs.len() - order.len();
    if dropped > 0 {
        tracing::info!(
            subject,
            dropped,
            "left out certificates that are not part of the leaf's chain"
        );
    }
    let info = cert_info(leaf, &chain, source);
    Ok(Validated {
        chain,
        key,
        certified: Arc::new(certified),
        info,
    })
}

fn check_usage(leaf: &X509Certificate<'_>) -> Result<(), CertError> {
    match leaf.extended_key_usage() {
        Ok(Some(eku)) => {
            let eku = eku.value;
            if !eku.server_auth && !eku.any {
                let mut found = Vec::new();
                if eku.client_auth {
                    found.push("clientAuth".to_string());
                }
                if eku.code_signing {
                    found.push("codeSigning".to_string());
                }
                if eku.email_protection {
                    found.push("emailProtection".to_string());
                }
                if eku.time_stamping {
                    found.push("timeStamping".to_string());
                }
                if eku.ocsp_signing {
                    found.push("OCSPSigning".to_string());
                }
                found.extend(eku.other.iter().map(|oid| oid.to_id_string()));
                return Err(CertError::NoServerAuth {
                    found: format!("[{}]", found.join(", ")),
                });
            }
        }
        Ok(None) => {
            return Err(CertError::NoServerAuth {
                found: "is absent, so it".into(),
            });
        }
        Err(e) => {
            return Err(CertError::NoServerAuth {
                found: format!("cannot be parsed ({e}) and"),
            });
        }
    }
    if let Ok(Some(ku)) = leaf.key_usage()
        && !ku.value.digital_signature()
    {
        return Err(CertError::NoDigitalSignature {
            found: ku.value.to_string(),
        });
    }
    Ok(())
}

fn check_time(cert: &X509Certificate<'_>, now: i64) -> Result<(), CertError> {
    let validity = cert.validity();
    if validity.not_after.timestamp() <= now {
        return Err(CertError::Expired {
            subject: cert.subject().to_string(),
            not_after: rfc3339(validity.not_after.timestamp()),
        });
    }
    if validity.not_before.timestamp() > now {
        return Err(CertError::NotYetValid {
            subject: cert.subject().to_string(),
            not_before: rfc3339(validity.not_before.timestamp()),
        });
    }
    Ok(())
}

fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
}

/// Checks that the last certificate of the chain is an anchor or was issued by one.
fn check_anchored(
    last: &X509Certificate<'_>,
    ends_at_root: bool,
    anchors: &[CertificateDer<'static>],
) -> Result<(), CertError> {
    let mut named_but_bad = None;
    for der in anchors {
        let Ok((_, anchor)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        if ends_at_root {
            if anchor.public_key().raw == last.public_key().raw
                && anchor.subject().as_raw() == last.subject().as_raw()
            {
                return Ok(());
            }
        } else if anchor.subject().as_raw() == last.issuer().as_raw() {
            if last.verify_signature(Some(anchor.public_key())).is_ok() {
                return Ok(());
            }
            named_but_bad = Some(anchor.subject().to_string());
        }
    }
    if let Some(anchor) = named_but_bad {
        return Err(CertError::BrokenChain {
            reason: format!(
                "{} names {anchor} as its issuer, but its signature does not verify with that \
                 CA's key",
                last.subject()
            ),
        });
    }
    if ends_at_root {
        return Err(CertError::UntrustedIssuer {
            root: last.subject().to_string(),
        });
    }
    Err(CertError::BrokenChain {
        reason: format!(
            "{} was issued by {}, which is neither in the upload nor in the configured CA \
             bundle (is an intermediate certificate missing?)",
            last.subject(),
            last.issuer()
        ),
    })
}

/// Cross-checks the chain with webpki (path length, name constraints, algorithm policy).
fn webpki_check(
    chain: &[CertificateDer<'static>],
    anchors: &[CertificateDer<'static>],
    policy: &Policy<'_>,
) -> Result<(), CertError> {
    let mut roots = RootCertStore::empty();
    for anchor in anchors {
        roots
            .add(anchor.clone())
            .map_err(|e| CertError::BadCaBundle(e.to_string()))?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| CertError::BadCaBundle(e.to_string()))?;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(policy.now).unwrap_or(0),
    ));
    for name in policy.names {
        let Ok(server_name) = ServerName::try_from(name.clone()) else {
            continue;
        };
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now)
            .map_err(|e| CertError::BrokenChain {
                reason: format!("verifying the chain for {name}: {e}"),
            })?;
    }
    Ok(())
}

/// Whether `leaf` has a subject alternative name covering `name` (DNS, one-label wildcards, IP).
fn covers(leaf: &X509Certificate<'_>, name: &str) -> bool {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let ip = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|general| match general {
        GeneralName::DNSName(dns) if ip.is_none() => dns_matches(dns, &name),
        GeneralName::IPAddress(bytes) => ip.is_some_and(|ip| ip_bytes(ip) == *bytes),
        _ => false,
    })
}

fn dns_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    if let Some(suffix) = pattern.strip_prefix("*.") {
        match name.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix,
            None => false,
        }
    } else {
        pattern == name
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The DNS and IP subject alternative names of `cert`, as text.
pub(crate) fn san_strings(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|general| match general {
            GeneralName::DNSName(dns) => Some((*dns).to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

pub(crate) fn cert_info(
    leaf: &X509Certificate<'_>,
    chain: &[CertificateDer<'static>],
    source: CertSource,
) -> CertInfo {
    CertInfo {
        source,
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        names: san_strings(leaf),
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
        serial: leaf.raw_serial_as_string().replace(':', ""),
        fingerprint_sha256: hex::encode(Sha256::digest(&chain[0])),
        chain_len: chain.len(),
    }
}

/// `secs` since the Unix epoch as RFC 3339 (UTC), or the number if out of range.
pub(crate) fn rfc3339(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
            let (hh, mm, ss) = (t.hour(), t.minute(), t.second());
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        }
        Err(_) => secs.to_string(),
    }
}

/// Parses a PEM CA bundle into trust anchors.
pub(crate) fn parse_ca_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadCaBundle(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::BadCaBundle("it holds no certificate".into()));
    }
    for (i, der) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            CertError::BadCaBundle(format!("certificate #{} cannot be parsed: {e}", i + 1))
        })?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(dns_matches("Edge.Example.com.", "edge.example.com"));
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn garbage_is_neither_pem_nor_pkcs12() {
        assert!(matches!(
            parse_upload(b"hello", None),
            Err(CertError::UnrecognizedFormat { .. })
        ));
    }
}
