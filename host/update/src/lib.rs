//! Update control for Outpost plugins: signed OCI artifacts, a trust policy, anti-rollback and
//! freshness checks, and a tamper-evident audit log.
//!
//! # Artifacts
//!
//! A plugin is a WebAssembly component distributed as an OCI artifact following the CNCF Wasm
//! OCI conventions: an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`) whose
//! config has media type `application/vnd.wasm.config.v0+json` and whose single layer,
//! `application/wasm`, is the component. [`push_component`] builds and pushes one and returns
//! the manifest digest. Devices only ever pull **by digest** (`registry/repo@sha256:<hex>`):
//! [`Updater::fetch_verified`] hashes the manifest it receives and the layer it downloads and
//! compares them with the requested digest and the layer descriptor itself — the registry is
//! never trusted.
//!
//! # Signatures (cosign-compatible, key-based)
//!
//! A signature is cosign's "simple signing" JSON payload
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry.example.com/acme/filter"},
//!              "image":{"docker-manifest-digest":"sha256:<hex>"},
//!              "type":"cosign container image signature"},
//!  "optional":{"dev.outpost.plugin":"filter",
//!              "dev.outpost.version":"1.4.0",
//!              "dev.outpost.expires":"2027-01-31T00:00:00Z"}}
//! ```
//!
//! signed with ECDSA P-256 over SHA-256 (ASN.1 DER signature). It is stored exactly where and
//! how `cosign sign --key` (cosign 2.x, legacy tag-based layout) stores it: an OCI image manifest
//! at tag `sha256-<hex>.sig` in the artifact's repository, with one layer per signature of media
//! type `application/vnd.dev.cosign.simplesigning.v1+json` whose blob is the payload and whose
//! annotation `dev.cosignproject.cosign/signature` holds the base64 (standard alphabet) DER
//! signature. The `optional` entries carry Outpost's release metadata: plugin name, semver
//! version and RFC 3339 expiry; all three are required.
//!
//! ## How an ISV signs
//!
//! 1. Once: `outpost plugin keygen --dir keys/` ([`generate_keypair`]) writes
//!    `outpost-signing.key` (unencrypted PKCS#8 PEM P-256 private key, mode 0600 — keep it
//!    offline) and `outpost-signing.pub` (SPKI PEM). The operator adds the public key to the
//!    device's trust policy ([`TrustPolicySpec`]) together with the plugin names and
//!    repositories the ISV may sign (exact or glob).
//! 2. Per release: `outpost plugin push registry.example.com/acme/filter:1.4.0 filter.wasm`
//!    ([`push_component`]) prints the manifest digest.
//! 3. `outpost plugin sign registry.example.com/acme/filter@sha256:<hex> --key
//!    keys/outpost-signing.key --plugin filter --version 1.4.0 --expires 2027-01-31T00:00:00Z`
//!    ([`sign_artifact`]) pushes the signature manifest `…/acme/filter:sha256-<hex>.sig`.
//!
//! (`outpost plugin …` is the CLI wrapping these functions.) The same can be done with cosign
//! 2.x, whose legacy tag-based layout this is (not exercised against the cosign binary in our
//! tests, which check the layout and verify signatures with OpenSSL): import the key with
//! `cosign import-key-pair --key outpost-signing.key`, then
//! `cosign sign --key import-cosign.key --tlog-upload=false -a dev.outpost.plugin=filter
//! -a dev.outpost.version=1.4.0 -a dev.outpost.expires=2027-01-31T00:00:00Z
//! registry.example.com/acme/filter@sha256:<hex>`; `cosign verify --key outpost-signing.pub
//! --insecure-ignore-tlog …` reads the same layout. Any key pair
//! works as long as the private key is P-256 and the public key in the policy is its SPKI PEM.
//! Anyone can check a signature with OpenSSL: base64-decode the annotation into `sig.der`, save
//! the layer blob as `payload.json`, and run `openssl dgst -sha256 -verify outpost-signing.pub
//! -signature sig.der payload.json`.
//!
//! # What is refused
//!
//! [`Updater::fetch_verified`] verifies everything *before* returning bytes (so before anything
//! is compiled), in this order, each refusal with its own [`UpdateError`] variant: a manifest not
//! hashing to the requested digest ([`UpdateError::WrongManifestDigest`]); not a Wasm artifact;
//! no signature ([`UpdateError::Unsigned`]); no signature verifying with a trusted key
//! ([`UpdateError::UntrustedKey`]), or undecodable ones ([`UpdateError::MalformedSignature`]);
//! a payload for another digest, repository or plugin ([`UpdateError::MixAndMatch`]); a
//! publisher not allowed for that plugin or repository ([`UpdateError::PublisherNotAllowed`]);
//! expired metadata ([`UpdateError::Expired`]); a version older than the highest one accepted
//! for the plugin ([`UpdateError::OlderVersion`], unless `force_rollback`) or the same version
//! for different content ([`UpdateError::VersionReused`]); a layer not matching its descriptor
//! ([`UpdateError::TamperedLayer`]).
//!
//! The highest accepted version per plugin lives in an atomically replaced JSON file in the
//! state directory; a forced rollback is accepted but never lowers it. Every decision (accepted,
//! refused with its reason, applied, rolled back) is appended — and fsynced — to a JSON-lines
//! audit log chained by SHA-256 ([`verify_audit_log`]).

mod audit;
mod error;
mod keys;
mod policy;
mod registry;
mod signature;
mod store;
mod updater;

pub use audit::{
    AuditEntry, AuditLog, AuditRecord, AuditSummary, Decision, GENESIS_HASH, verify_audit_log,
};
pub use error::{Result, UpdateError};
pub use keys::{
    KeyPairPaths, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, PublicKey, SigningKey, generate_keypair,
};
pub use policy::{Publisher, PublisherSpec, TrustPolicy, TrustPolicySpec, glob_match};
pub use registry::{
    OCI_MANIFEST_MEDIA_TYPE, RegistryAuth, RegistryOptions, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE, sha256_digest,
};
pub use signature::{
    COSIGN_SIGNATURE_TYPE, Critical, Identity, Image, OPTIONAL_EXPIRES, OPTIONAL_PLUGIN,
    OPTIONAL_VERSION, ReleaseMetadata, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
    SignatureInfo, SimpleSigningPayload, signature_tag,
};
pub use store::{AcceptedRelease, VersionStore};
pub use updater::{
    AUDIT_LOG_FILE, DEFAULT_MAX_COMPONENT_BYTES, SignRequest, Updater, UpdaterConfig,
    VERSION_STORE_FILE, VerifiedArtifact, push_component, sign_artifact,
};
