//! The entry points: pushing and signing (CLI) and verified fetching (runtime).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_client::Reference;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{AuditLog, AuditRecord, Decision};
use crate::error::{Result, UpdateError};
use crate::keys::SigningKey;
use crate::policy::{Publisher, TrustPolicy};
use crate::registry::{
    Descriptor, ImageManifest, OCI_MANIFEST_MEDIA_TYPE, RegistryClient, RegistryOptions,
    WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, parse_pinned, parse_reference,
    repository_identity,
};
use crate::signature::{
    ReleaseMetadata, SignatureInfo, SimpleSigningPayload, fetch_signatures, push_signature,
    signature_tag, validate_plugin_name,
};
use crate::store::VersionStore;

/// Default largest component accepted (64 MiB).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// File name of the version store inside the state directory.
pub const VERSION_STORE_FILE: &str = "accepted-versions.json";
/// File name of the audit log inside the state directory.
pub const AUDIT_LOG_FILE: &str = "update-audit.jsonl";

const WASM_MAGIC: &[u8] = b"\0asm";

/// Pushes a Wasm component as a CNCF Wasm OCI artifact (config
/// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) to `reference`
/// (`registry/repo[:tag]`; without a tag the manifest is pushed by digest only). Returns the
/// manifest digest (`sha256:…`), which is what must be signed and deployed.
pub async fn push_component(
    reference: &str,
    wasm_path: &Path,
    options: &RegistryOptions,
) -> Result<String> {
    let target = parse_reference(reference)?;
    if target.digest().is_some() {
        return Err(UpdateError::InvalidReference {
            reference: reference.to_owned(),
            reason: "push to a repository or a tag, not a digest".into(),
        });
    }
    let wasm = tokio::fs::read(wasm_path)
        .await
        .map_err(|e| UpdateError::io(wasm_path, e))?;
    if !wasm.starts_with(WASM_MAGIC) {
        return Err(UpdateError::NotAWasmArtifact {
            reference: wasm_path.display().to_string(),
            reason: "file does not start with the WebAssembly magic number".into(),
        });
    }
    let client = RegistryClient::new(options)?;
    let layer = Descriptor::for_blob(WASM_LAYER_MEDIA_TYPE, &wasm);
    // Deterministic config (no timestamps) so the same component always has the same digest.
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer.digest],
    });
    let config = serde_json::to_vec(&config)
        .map_err(|e| UpdateError::InvalidArgument(format!("cannot encode config: {e}")))?;
    client.push_blob(&target, &wasm).await?;
    client.push_blob(&target, &config).await?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
        config: Descriptor::for_blob(WASM_CONFIG_MEDIA_TYPE, &config),
        layers: vec![layer],
        annotations: None,
    };
    let body = serde_json::to_vec(&manifest)
        .map_err(|e| UpdateError::InvalidArgument(format!("cannot encode manifest: {e}")))?;
    let digest = crate::registry::sha256_digest(&body);
    let push_to = if target.tag().is_some() {
        target.clone()
    } else {
        target.clone_with_digest(digest.clone())
    };
    client.push_manifest_raw(&push_to, body).await?;
    tracing::info!(reference = %target.whole(), %digest, bytes = wasm.len(), "pushed Wasm component");
    Ok(digest)
}

/// What to sign: the release metadata bound into the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// Plugin name.
    pub plugin: String,
    /// Semver version.
    pub version: String,
    /// Expiry, RFC 3339 (e.g. `2027-01-31T00:00:00Z`).
    pub expires: String,
}

/// Signs the artifact `reference` (`registry/repo@sha256:…`) with the PKCS#8 PEM P-256 key at
/// `key_path`: builds the cosign simple-signing payload binding repository, manifest digest,
/// plugin, version and expiry, signs it, and pushes the signature manifest at tag
/// `sha256-<hex>.sig` in the same repository (appending to existing signatures).
pub async fn sign_artifact(
    reference: &str,
    key_path: &Path,
    request: &SignRequest,
    options: &RegistryOptions,
) -> Result<SignatureInfo> {
    let (artifact, digest) = parse_pinned(reference)?;
    validate_plugin_name(&request.plugin).map_err(UpdateError::InvalidArgument)?;
    let version: semver::Version = request.version.parse().map_err(|e| {
        UpdateError::InvalidArgument(format!("version `{}` is not semver: {e}", request.version))
    })?;
    let expires = OffsetDateTime::parse(&request.expires, &Rfc3339).map_err(|e| {
        UpdateError::InvalidArgument(format!("expiry `{}` is not RFC 3339: {e}", request.expires))
    })?;
    if expires <= OffsetDateTime::now_utc() {
        tracing::warn!(expires = %request.expires, "signing metadata that has already expired");
    }
    let key = SigningKey::from_pem_file(key_path)?;
    let client = RegistryClient::new(options)?;
    // Sign only what exists and is a Wasm artifact.
    let (manifest, _) = client.pull_manifest_pinned(&artifact, &digest).await?;
    wasm_layer(&artifact, &manifest)?;

    let release = ReleaseMetadata {
        plugin: request.plugin.clone(),
        version,
        expires,
    };
    let payload = SimpleSigningPayload::new(&repository_identity(&artifact), &digest, &release)?;
    let payload = serde_json::to_vec(&payload)
        .map_err(|e| UpdateError::InvalidArgument(format!("cannot encode payload: {e}")))?;
    let signature = key.sign(&payload)?;
    let info = push_signature(&client, &artifact, &digest, &payload, &signature).await?;
    tracing::info!(
        artifact = %reference,
        signature = %info.signature_reference,
        plugin = %request.plugin,
        version = %request.version,
        key = %key.public_key().fingerprint(),
        "signed artifact"
    );
    Ok(info)
}

fn wasm_layer<'m>(artifact: &Reference, manifest: &'m ImageManifest) -> Result<&'m Descriptor> {
    let refuse = |reason: String| UpdateError::NotAWasmArtifact {
        reference: artifact.whole(),
        reason,
    };
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(refuse(format!(
            "config media type is `{}`, expected `{WASM_CONFIG_MEDIA_TYPE}`",
            manifest.config.media_type
        )));
    }
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_LAYER_MEDIA_TYPE => Ok(layer),
        [layer] => Err(refuse(format!(
            "layer media type is `{}`, expected `{WASM_LAYER_MEDIA_TYPE}`",
            layer.media_type
        ))),
        layers => Err(refuse(format!(
            "{} layers, expected exactly one",
            layers.len()
        ))),
    }
}

/// Configuration of an [`Updater`].
#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// Trusted publishers.
    pub policy: TrustPolicy,
    /// Directory for the version store and the audit log (created if missing).
    pub state_dir: PathBuf,
    /// Registry connection.
    pub registry: RegistryOptions,
    /// Connection settings for particular registries (`host:port` as written in references),
    /// instead of `registry`.
    pub per_registry: std::collections::BTreeMap<String, RegistryOptions>,
    /// Largest component accepted.
    pub max_component_bytes: u64,
}

impl UpdaterConfig {
    /// A configuration with the default size limit.
    pub fn new(
        policy: TrustPolicy,
        state_dir: impl Into<PathBuf>,
        registry: RegistryOptions,
    ) -> Self {
        Self {
            policy,
            state_dir: state_dir.into(),
            registry,
            per_registry: Default::default(),
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
        }
    }
}

/// A component that passed every check; safe to compile.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedArtifact {
    /// The component bytes (the `application/wasm` layer).
    pub bytes: Vec<u8>,
    /// The reference it was fetched from.
    pub reference: String,
    /// Manifest digest (`sha256:…`).
    pub digest: String,
    /// Plugin name.
    pub plugin: String,
    /// Signed version.
    pub version: semver::Version,
    /// Name of the publisher whose key verified the signature.
    pub publisher: String,
    /// Signed expiry.
    pub expires: OffsetDateTime,
}

impl std::fmt::Debug for VerifiedArtifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedArtifact")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("reference", &self.reference)
            .field("digest", &self.digest)
            .field("plugin", &self.plugin)
            .field("version", &self.version)
            .field("publisher", &self.publisher)
            .field("expires", &self.expires)
            .finish()
    }
}

/// Verified fetching with anti-rollback state and an audit log.
#[derive(Debug)]
pub struct Updater {
    client: RegistryClient,
    per_registry: std::collections::BTreeMap<String, RegistryClient>,
    policy: TrustPolicy,
    store: Mutex<VersionStore>,
    audit: AuditLog,
    max_component_bytes: u64,
}

/// What became known while verifying, for the audit entry of a refusal.
#[derive(Default)]
struct Known {
    digest: Option<String>,
    version: Option<String>,
    publisher: Option<String>,
}

impl Updater {
    /// Opens the state directory (version store, audit log — whose chain is verified) and
    /// configures the registry client.
    pub fn new(config: UpdaterConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| UpdateError::io(&config.state_dir, e))?;
        Ok(Self {
            client: RegistryClient::new(&config.registry)?,
            per_registry: config
                .per_registry
                .iter()
                .map(|(r, o)| Ok((r.clone(), RegistryClient::new(o)?)))
                .collect::<Result<_>>()?,
            policy: config.policy,
            store: Mutex::new(VersionStore::open(
                &config.state_dir.join(VERSION_STORE_FILE),
            )?),
            audit: AuditLog::open(&config.state_dir.join(AUDIT_LOG_FILE))?,
            max_component_bytes: config.max_component_bytes,
        })
    }

    /// The audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The highest version accepted so far for `plugin`.
    pub fn accepted_version(&self, plugin: &str) -> Option<semver::Version> {
        self.lock_store().get(plugin).map(|r| r.version.clone())
    }

    fn lock_store(&self) -> std::sync::MutexGuard<'_, VersionStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pulls `reference` (`registry/repo@sha256:…`) and returns its bytes only if: the manifest
    /// hashes to the requested digest; it is a Wasm artifact; a signature verifies with a trusted
    /// publisher key; the signed payload binds this digest, this repository and `plugin_name`;
    /// the publisher may sign that plugin and repository; the metadata has not expired; the
    /// version is not older than the highest accepted one (unless `force_rollback`); and the
    /// layer matches its descriptor. Every outcome is appended to the audit log.
    pub async fn fetch_verified(
        &self,
        reference: &str,
        plugin_name: &str,
        force_rollback: bool,
    ) -> Result<VerifiedArtifact> {
        let mut known = Known::default();
        let outcome = self
            .verify(reference, plugin_name, force_rollback, &mut known)
            .await;
        match &outcome {
            Ok(artifact) => {
                self.audit.append(
                    Decision::Accepted,
                    AuditRecord {
                        plugin: plugin_name.to_owned(),
                        reference: reference.to_owned(),
                        digest: Some(artifact.digest.clone()),
                        version: Some(artifact.version.to_string()),
                        publisher: Some(artifact.publisher.clone()),
                        reason_code: force_rollback.then(|| "force_rollback".to_owned()),
                        reason: None,
                    },
                )?;
            }
            Err(err) => {
                tracing::warn!(%reference, plugin = %plugin_name, error = %err, "refused update");
                // A refusal stays a refusal even if it cannot be audited: report the refusal.
                if let Err(audit_err) = self.audit.append(
                    Decision::Refused,
                    AuditRecord {
                        plugin: plugin_name.to_owned(),
                        reference: reference.to_owned(),
                        digest: known.digest,
                        version: known.version,
                        publisher: known.publisher,
                        reason_code: Some(err.code().to_owned()),
                        reason: Some(err.to_string()),
                    },
                ) {
                    tracing::error!(error = %audit_err, "cannot audit a refused update");
                }
            }
        }
        outcome
    }

    async fn verify(
        &self,
        reference: &str,
        plugin_name: &str,
        force_rollback: bool,
        known: &mut Known,
    ) -> Result<VerifiedArtifact> {
        let (artifact, digest) = parse_pinned(reference)?;
        known.digest = Some(digest.clone());
        let client = self
            .per_registry
            .get(artifact.registry())
            .unwrap_or(&self.client);
        let (manifest, _) = client.pull_manifest_pinned(&artifact, &digest).await?;
        let layer = wasm_layer(&artifact, &manifest)?.clone();

        let candidates = fetch_signatures(client, &artifact, &digest)
            .await?
            .ok_or_else(|| UpdateError::Unsigned {
                reference: reference.to_owned(),
                signature_tag: signature_tag(&digest),
            })?;

        // Cryptographic check first: which signatures verify with which trusted key.
        let mut verified: Vec<(&Publisher, &[u8])> = Vec::new();
        let mut malformed = None;
        for candidate in &candidates {
            match &candidate.signature {
                Err(reason) => malformed = Some(reason.clone()),
                Ok(sig) => {
                    for publisher in self.policy.publishers() {
                        if publisher.key().verify(&candidate.payload, sig) {
                            verified.push((publisher, &candidate.payload));
                        }
                    }
                }
            }
        }
        if verified.is_empty() {
            return Err(match malformed {
                Some(reason) => UpdateError::MalformedSignature(reason),
                None => UpdateError::UntrustedKey {
                    reference: reference.to_owned(),
                    signatures: candidates.len(),
                },
            });
        }

        // Then the bindings and the policy, for each verified signature; the first that passes
        // wins, otherwise the first refusal is reported.
        let identity = repository_identity(&artifact);
        let mut first_error = None;
        let mut chosen = None;
        for (publisher, payload) in verified {
            known.publisher = Some(publisher.name().to_owned());
            match check_payload(payload, publisher, &digest, &identity, plugin_name) {
                Ok(release) => {
                    known.version = Some(release.version.to_string());
                    chosen = Some((publisher, release));
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let Some((publisher, release)) = chosen else {
            return Err(first_error.unwrap_or(UpdateError::UntrustedKey {
                reference: reference.to_owned(),
                signatures: candidates.len(),
            }));
        };

        self.check_rollback(plugin_name, &release.version, &digest, force_rollback)?;

        let bytes = client
            .pull_blob_verified(&artifact, &layer, self.max_component_bytes)
            .await?;
        if !bytes.starts_with(WASM_MAGIC) {
            return Err(UpdateError::NotAWasmArtifact {
                reference: reference.to_owned(),
                reason: "layer is not a WebAssembly binary".into(),
            });
        }
        self.lock_store()
            .record(plugin_name, &release.version, &digest)?;
        Ok(VerifiedArtifact {
            bytes,
            reference: reference.to_owned(),
            digest,
            plugin: release.plugin,
            version: release.version,
            publisher: publisher.name().to_owned(),
            expires: release.expires,
        })
    }

    fn check_rollback(
        &self,
        plugin: &str,
        version: &semver::Version,
        digest: &str,
        force_rollback: bool,
    ) -> Result<()> {
        let store = self.lock_store();
        let Some(current) = store.get(plugin) else {
            return Ok(());
        };
        if *version < current.version {
            if force_rollback {
                tracing::warn!(%plugin, offered = %version, current = %current.version, "forced rollback");
                return Ok(());
            }
            return Err(UpdateError::OlderVersion {
                plugin: plugin.to_owned(),
                offered: version.clone(),
                current: current.version.clone(),
            });
        }
        if *version == current.version && digest != current.digest && !force_rollback {
            return Err(UpdateError::VersionReused {
                plugin: plugin.to_owned(),
                version: version.clone(),
                accepted_digest: current.digest.clone(),
                offered_digest: digest.to_owned(),
            });
        }
        Ok(())
    }

    /// Records that `artifact` is now installed and running.
    pub fn record_applied(&self, artifact: &VerifiedArtifact) -> Result<()> {
        self.record(Decision::Applied, artifact, None)
    }

    /// Records that `artifact` was taken out again, and why (failed canary, operator, …). The
    /// anti-rollback high-water mark is not lowered.
    pub fn record_rolled_back(&self, artifact: &VerifiedArtifact, reason: &str) -> Result<()> {
        self.record(Decision::RolledBack, artifact, Some(reason))
    }

    fn record(&self, decision: Decision, a: &VerifiedArtifact, reason: Option<&str>) -> Result<()> {
        self.audit
            .append(
                decision,
                AuditRecord {
                    plugin: a.plugin.clone(),
                    reference: a.reference.clone(),
                    digest: Some(a.digest.clone()),
                    version: Some(a.version.to_string()),
                    publisher: Some(a.publisher.clone()),
                    reason_code: None,
                    reason: reason.map(str::to_owned),
                },
            )
            .map(drop)
    }
}

fn check_payload(
    payload: &[u8],
    publisher: &Publisher,
    digest: &str,
    identity: &str,
    plugin_name: &str,
) -> Result<ReleaseMetadata> {
    let payload = SimpleSigningPayload::parse(payload)?;
    if payload.critical.image.docker_manifest_digest != digest {
        return Err(UpdateError::MixAndMatch {
            field: "manifest digest",
            signed: payload.critical.image.docker_manifest_digest,
            expected: digest.to_owned(),
        });
    }
    if payload.critical.identity.docker_reference != identity {
        return Err(UpdateError::MixAndMatch {
            field: "repository identity",
            signed: payload.critical.identity.docker_reference,
            expected: identity.to_owned(),
        });
    }
    let release = payload.release()?;
    if release.plugin != plugin_name {
        return Err(UpdateError::MixAndMatch {
            field: "plugin name",
            signed: release.plugin,
            expected: plugin_name.to_owned(),
        });
    }
    if !publisher.may_sign(&release.plugin, identity) {
        return Err(UpdateError::PublisherNotAllowed {
            publisher: publisher.name().to_owned(),
            plugin: release.plugin,
            repository: identity.to_owned(),
        });
    }
    if release.expires <= OffsetDateTime::now_utc() {
        return Err(UpdateError::Expired {
            plugin: release.plugin,
            version: release.version,
            expired_at: release
                .expires
                .format(&Rfc3339)
                .unwrap_or_else(|_| release.expires.to_string()),
        });
    }
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn an_updater_can_be_shared_across_tasks_and_its_fetch_future_is_send() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Updater>();
        shareable::<VerifiedArtifact>();
        fn check(updater: &Updater) {
            assert_send(&updater.fetch_verified("r@sha256:00", "p", false));
        }
        let _ = check;
    }
}
