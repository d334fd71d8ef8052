//! Client certificates for the management API (mutual TLS), mapped to roles.
//!
//! An operator names the CAs that issue client certificates and maps certificate names to
//! roles. rustls verifies the chain, validity and the `clientAuth` usage during the handshake;
//! [`ClientAuth::identify`] then maps the verified leaf to a role by its subject common name or
//! one of its subject alternative names (DNS, e-mail, URI). A certificate that verifies but
//! maps to no role authenticates nobody: the caller still needs a token.
//!
//! With `required`, a handshake without a certificate fails, so a stolen bearer token alone is
//! not enough to reach the API.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use x509_parser::extensions::GeneralName;

use crate::identity::crypto_provider;
use crate::{Identity, Role, SecurityError, certs};

/// Prefix of the identity name a client certificate authenticates as (`cert:<name>`).
pub const CERT_IDENTITY_PREFIX: &str = "cert:";

/// Which client certificates the management API accepts, and the role each one gets.
#[derive(Clone)]
pub struct ClientAuth {
    verifier: Arc<dyn ClientCertVerifier>,
    roles: BTreeMap<String, Role>,
    required: bool,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("roles", &self.roles)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Client certificates chaining to a CA in `ca_pem` (a PEM bundle) are accepted; `roles`
    /// maps a certificate name (subject CN, DNS / e-mail / URI SAN) to a role. With `required`,
    /// a client that presents no certificate fails the handshake.
    pub fn new(
        ca_pem: &str,
        roles: impl IntoIterator<Item = (String, Role)>,
        required: bool,
    ) -> Result<ClientAuth, SecurityError> {
        let cas = certs::parse_ca_bundle(ca_pem)
            .map_err(|e| SecurityError::TlsConfig(format!("client CA bundle: {e}")))?;
        let mut store = RootCertStore::empty();
        for (i, ca) in cas.into_iter().enumerate() {
            store.add(ca).map_err(|e| {
                SecurityError::TlsConfig(format!(
                    "client CA bundle: certificate #{} is not a usable trust anchor: {e}",
                    i + 1
                ))
            })?;
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(store), crypto_provider());
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let verifier = builder
            .build()
            .map_err(|e| SecurityError::TlsConfig(format!("client certificate verifier: {e}")))?;
        Ok(ClientAuth {
            verifier,
            roles: roles.into_iter().collect(),
            required,
        })
    }

    /// Whether every connection must present a client certificate.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The verifier a server config uses.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.verifier)
    }

    /// The role mapping (certificate name → role).
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// Maps a chain that rustls already verified to an identity. The error says which names the
    /// certificate carries when none of them has a role.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Result<Identity, String> {
        let leaf = chain
            .first()
            .ok_or_else(|| "the client presented an empty certificate chain".to_string())?;
        let names = certificate_names(leaf)?;
        for name in &names {
            if let Some(role) = self.roles.get(name) {
                return Ok(Identity {
                    name: format!("{CERT_IDENTITY_PREFIX}{name}"),
                    role: *role,
                });
            }
        }
        Err(format!(
            "the client certificate's names {names:?} map to no role (host.tls.client_auth.roles)"
        ))
    }
}

/// The names a client certificate can be known by: the subject's common names, then its DNS,
/// e-mail and URI subject alternative names.
pub fn certificate_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the client certificate cannot be parsed: {e}"))?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    names.push((*s).to_string())
                }
                _ => {}
            }
        }
    }
    names.dedup();
    Ok(names)
}
