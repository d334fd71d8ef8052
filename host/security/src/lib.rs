//! Host security services for the management API: the device's TLS identity (a private CA and
//! an endpoint certificate, generated on first start), API tokens stored as SHA-256 hashes with
//! roles, and a small HTTPS client that trusts only the device CA.
//!
//! [`CertificateManager`] serves the management API's certificate through a hot-swappable
//! resolver: the device's own, an operator-uploaded CA-issued one (PEM or PKCS#12, validated
//! first), or one issued over ACME and renewed automatically; [`CertificateManager::status`]
//! reports expiry for monitoring.
//!
//! [`ClientAuth`] adds mutual TLS: client certificates from an operator's CA, mapped to the
//! same roles as tokens.
//!
//! TLS runs on rustls with the `ring` provider; nothing here pulls in aws-lc.

mod acme;
mod certs;
mod client;
mod client_auth;
mod error;
mod expiry;
mod files;
mod identity;
mod manager;
mod resolver;
mod tokens;
mod ui_password;

pub use acme::{AcmeConfig, HTTP01_PREFIX, Http01Challenges};
pub use certs::{CertError, CertInfo, CertSource};
pub use client::{ApiClient, ApiResponse};
pub use client_auth::{CERT_IDENTITY_PREFIX, ClientAuth, certificate_names};
pub use error::SecurityError;
pub use expiry::{AlertLevel, CertStatus, DEFAULT_ALERT_DAYS, ExpiryThresholds};
pub use identity::{
    CA_FILE, CA_KEY_FILE, CERT_FILE, DeviceIdentity, KEY_FILE, client_config, client_config_with,
    crypto_provider,
};
pub use manager::{CertConfig, CertificateManager, RenewOutcome, RenewerConfig, SERVED_DIR};
pub use resolver::HotResolver;
pub use tokens::{
    ADMIN_TOKEN_FILE, Access, Identity, Role, TOKENS_FILE, TokenInfo, TokenStore, bearer_token,
    ensure_admin,
};

pub use ui_password::{
    MIN_PASSWORD_LEN, PasswordChangeError, PasswordCheck, UI_ADMIN_USER, UI_INITIAL_PASSWORD_FILE,
    UI_PASSWORD_FILE, UiPassword, random_secret,
};

/// The rustls version this crate is built on, so servers build configs with the same types.
pub use rustls;
/// The tokio-rustls version this crate is built on (`TlsAcceptor`, `TlsConnector`).
pub use tokio_rustls;
