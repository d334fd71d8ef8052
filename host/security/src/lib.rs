//! Host security services for the management API: the device's TLS identity (a private CA and
//! an endpoint certificate, generated on first start), API tokens stored as SHA-256 hashes with
//! roles, and a small HTTPS client that trusts only the device CA.
//!
//! TLS runs on rustls with the `ring` provider; nothing here pulls in aws-lc.

mod client;
mod error;
mod files;
mod identity;
mod tokens;

pub use client::{ApiClient, ApiResponse};
pub use error::SecurityError;
pub use identity::{
    CA_FILE, CA_KEY_FILE, CERT_FILE, DeviceIdentity, KEY_FILE, client_config, crypto_provider,
};
pub use tokens::{
    ADMIN_TOKEN_FILE, Access, Identity, Role, TOKENS_FILE, TokenInfo, TokenStore, bearer_token,
    ensure_admin,
};

/// The rustls version this crate is built on, so servers build configs with the same types.
pub use rustls;
/// The tokio-rustls version this crate is built on (`TlsAcceptor`, `TlsConnector`).
pub use tokio_rustls;
