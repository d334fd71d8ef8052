//! The one error type of this crate.
//!
//! Every reason an artifact can be refused has its own variant so that the runtime, the CLI and
//! the audit log can tell them apart without parsing messages.

use std::path::PathBuf;

/// Everything that can go wrong while pushing, signing, pulling or verifying an artifact.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The reference could not be parsed, or it is not pinned by a `sha256:` digest where one is
    /// required.
    #[error("invalid artifact reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The registry could not be reached or answered with an error.
    #[error("registry error while trying to {operation} `{reference}`: {message}")]
    Registry {
        /// What was being done (for example "pull manifest").
        operation: &'static str,
        /// The reference involved.
        reference: String,
        /// The error reported by the OCI client.
        message: String,
    },

    /// A local file could not be read or written.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A key file could not be parsed or is not an ECDSA P-256 key.
    #[error("bad key in {}: {reason}", path.display())]
    BadKey {
        /// The key file, or `<policy>` for a key embedded in the trust policy.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// The trust policy is invalid (a bad pattern, a duplicate publisher, no publishers, …).
    #[error("invalid trust policy: {0}")]
    InvalidPolicy(String),

    /// The artifact is not a CNCF Wasm OCI artifact (wrong config or layer media types, not a
    /// single layer, not a WebAssembly binary, or larger than allowed).
    #[error("`{reference}` is not an Outpost Wasm artifact: {reason}")]
    NotAWasmArtifact {
        /// The reference involved.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },

    /// No signature exists for the artifact (no `sha256-<hex>.sig` manifest, or one without any
    /// simple-signing layer).
    #[error(
        "artifact `{reference}` is unsigned: no cosign signature found at tag `{signature_tag}`"
    )]
    Unsigned {
        /// The artifact reference.
        reference: String,
        /// The tag where the signature was looked for.
        signature_tag: String,
    },

    /// Signatures exist but none verifies with a key of the trust policy.
    #[error(
        "artifact `{reference}` is not signed by a trusted key: none of its {signatures} signature(s) verifies with a publisher key of the trust policy"
    )]
    UntrustedKey {
        /// The artifact reference.
        reference: String,
        /// How many signatures were checked.
        signatures: usize,
    },

    /// A blob's content does not match its descriptor (digest or size): the registry or the
    /// storage behind it served something other than what the manifest describes.
    #[error("tampered layer: descriptor says {expected}, content is {actual}")]
    TamperedLayer {
        /// What the descriptor promised (digest, or size in bytes).
        expected: String,
        /// What was actually received.
        actual: String,
    },

    /// The manifest served for a digest does not hash to that digest.
    #[error(
        "wrong manifest digest: requested {expected}, registry served content hashing to {actual}"
    )]
    WrongManifestDigest {
        /// The digest that was requested.
        expected: String,
        /// The digest of what was served.
        actual: String,
    },

    /// The signed version is lower than the highest version already accepted for this plugin.
    #[error(
        "refusing rollback of plugin `{plugin}`: signed version {offered} is older than the accepted version {current} (pass force_rollback to override)"
    )]
    OlderVersion {
        /// The plugin name.
        plugin: String,
        /// The version being offered.
        offered: semver::Version,
        /// The highest version accepted so far.
        current: semver::Version,
    },

    /// The signed version equals the accepted one but names a different artifact.
    #[error(
        "plugin `{plugin}` version {version} was already accepted as {accepted_digest}; a different artifact {offered_digest} claims the same version"
    )]
    VersionReused {
        /// The plugin name.
        plugin: String,
        /// The version claimed twice.
        version: semver::Version,
        /// The digest accepted earlier for that version.
        accepted_digest: String,
        /// The digest now offered.
        offered_digest: String,
    },

    /// The signed release metadata has expired.
    #[error("signed metadata for plugin `{plugin}` version {version} expired at {expired_at}")]
    Expired {
        /// The plugin name.
        plugin: String,
        /// The signed version.
        version: semver::Version,
        /// The signed expiry (RFC 3339).
        expired_at: String,
    },

    /// A valid signature was made for something else: another artifact digest, another
    /// repository, or another plugin.
    #[error(
        "mix-and-match refused: the signature's {field} is `{signed}` but `{expected}` was requested"
    )]
    MixAndMatch {
        /// Which binding differs: "manifest digest", "repository identity" or "plugin name".
        field: &'static str,
        /// What the signed payload says.
        signed: String,
        /// What was requested.
        expected: String,
    },

    /// The signing publisher is trusted but not for this plugin or repository.
    #[error(
        "publisher `{publisher}` is not allowed to sign plugin `{plugin}` from repository `{repository}`"
    )]
    PublisherNotAllowed {
        /// The publisher whose key verified the signature.
        publisher: String,
        /// The plugin name.
        plugin: String,
        /// The repository (`registry/repo`).
        repository: String,
    },

    /// A signature or its payload is malformed (bad base64, not DER, not the simple-signing
    /// JSON, missing or invalid Outpost release metadata).
    #[error("malformed signature: {0}")]
    MalformedSignature(String),

    /// The persistent version store is corrupt.
    #[error("version store {} is corrupt: {reason}", path.display())]
    CorruptStore {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The audit log's hash chain does not verify.
    #[error("audit log {} is broken at line {line}: {reason}", path.display())]
    AuditChainBroken {
        /// The log file.
        path: PathBuf,
        /// The 1-based line where the chain breaks.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// Invalid input to a signing or pushing function (bad version, bad expiry, bad plugin name).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl UpdateError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A short, stable name of the variant, used as the refusal reason code in the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidReference { .. } => "invalid_reference",
            Self::Registry { .. } => "registry",
            Self::Io { .. } => "io",
            Self::BadKey { .. } => "bad_key",
            Self::InvalidPolicy(_) => "invalid_policy",
            Self::NotAWasmArtifact { .. } => "not_a_wasm_artifact",
            Self::Unsigned { .. } => "unsigned",
            Self::UntrustedKey { .. } => "untrusted_key",
            Self::TamperedLayer { .. } => "tampered_layer",
            Self::WrongManifestDigest { .. } => "wrong_manifest_digest",
            Self::OlderVersion { .. } => "older_version",
            Self::VersionReused { .. } => "version_reused",
            Self::Expired { .. } => "expired",
            Self::MixAndMatch { .. } => "mix_and_match",
            Self::PublisherNotAllowed { .. } => "publisher_not_allowed",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::CorruptStore { .. } => "corrupt_store",
            Self::AuditChainBroken { .. } => "audit_chain_broken",
            Self::InvalidArgument(_) => "invalid_argument",
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = UpdateError> = std::result::Result<T, E>;
