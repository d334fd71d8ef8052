//! Cosign-compatible key-based signatures ("simple signing" payloads in a `sha256-<hex>.sig`
//! manifest) carrying Outpost's release metadata.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oci_client::Reference;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Result, UpdateError};
use crate::registry::{Descriptor, ImageManifest, OCI_MANIFEST_MEDIA_TYPE, RegistryClient};

/// Media type of the layer holding a simple-signing payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 (standard alphabet) DER ECDSA signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign container image signature.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// `optional` key: the plugin name.
pub const OPTIONAL_PLUGIN: &str = "dev.outpost.plugin";
/// `optional` key: the plugin version (semver).
pub const OPTIONAL_VERSION: &str = "dev.outpost.version";
/// `optional` key: when the release metadata expires (RFC 3339).
pub const OPTIONAL_EXPIRES: &str = "dev.outpost.expires";
/// Config media type of cosign signature manifests.
const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Largest signature payload we read.
const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;
/// Most signature layers we look at.
const MAX_SIGNATURES: usize = 32;

/// The simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigningPayload {
    /// Bindings the verifier must check.
    pub critical: Critical,
    /// Free-form annotations; Outpost's release metadata lives here.
    #[serde(default)]
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// `critical` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    /// The signed repository.
    pub identity: Identity,
    /// The signed manifest.
    pub image: Image,
    /// Always [`COSIGN_SIGNATURE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `registry/repository`.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the signed manifest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// Outpost's release metadata, from the payload's `optional` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseMetadata {
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub version: semver::Version,
    /// Expiry.
    pub expires: OffsetDateTime,
}

impl SimpleSigningPayload {
    /// Builds the payload for `identity` (`registry/repo`) and `digest` with release metadata.
    pub fn new(identity: &str, digest: &str, release: &ReleaseMetadata) -> Result<Self> {
        let expires = release
            .expires
            .format(&Rfc3339)
            .map_err(|e| UpdateError::InvalidArgument(format!("cannot format expiry: {e}")))?;
        let optional = BTreeMap::from([
            (OPTIONAL_PLUGIN.to_owned(), release.plugin.clone().into()),
            (
                OPTIONAL_VERSION.to_owned(),
                release.version.to_string().into(),
            ),
            (OPTIONAL_EXPIRES.to_owned(), expires.into()),
        ]);
        Ok(Self {
            critical: Critical {
                identity: Identity {
                    docker_reference: identity.to_owned(),
                },
                image: Image {
                    docker_manifest_digest: digest.to_owned(),
                },
                kind: COSIGN_SIGNATURE_TYPE.to_owned(),
            },
            optional: Some(optional),
        })
    }

    /// Parses payload bytes (after their signature verified).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let payload: Self = serde_json::from_slice(bytes).map_err(|e| {
            UpdateError::MalformedSignature(format!("payload is not simple-signing JSON: {e}"))
        })?;
        if payload.critical.kind != COSIGN_SIGNATURE_TYPE {
            return Err(UpdateError::MalformedSignature(format!(
                "payload critical.type is `{}`, expected `{COSIGN_SIGNATURE_TYPE}`",
                payload.critical.kind
            )));
        }
        Ok(payload)
    }

    /// Extracts and validates Outpost's release metadata.
    pub fn release(&self) -> Result<ReleaseMetadata> {
        let optional = self.optional.as_ref().ok_or_else(|| {
            UpdateError::MalformedSignature("payload has no `optional` release metadata".into())
        })?;
        let field = |key: &str| -> Result<&str> {
            optional.get(key).and_then(|v| v.as_str()).ok_or_else(|| {
                UpdateError::MalformedSignature(format!(
                    "payload optional.`{key}` is missing or not a string"
                ))
            })
        };
        let plugin = field(OPTIONAL_PLUGIN)?.to_owned();
        validate_plugin_name(&plugin).map_err(UpdateError::MalformedSignature)?;
        let version = field(OPTIONAL_VERSION)?.parse().map_err(|e| {
            UpdateError::MalformedSignature(format!("payload version is not semver: {e}"))
        })?;
        let expires = OffsetDateTime::parse(field(OPTIONAL_EXPIRES)?, &Rfc3339).map_err(|e| {
            UpdateError::MalformedSignature(format!("payload expiry is not RFC 3339: {e}"))
        })?;
        Ok(ReleaseMetadata {
            plugin,
            version,
            expires,
        })
    }
}

pub(crate) fn validate_plugin_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "plugin name `{name}` must be 1-128 characters of [A-Za-z0-9._-]"
        ));
    }
    Ok(())
}

/// The tag cosign stores signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// One signature found in a signature manifest, payload already digest-checked.
#[derive(Debug, Clone)]
pub(crate) struct SignatureCandidate {
    pub payload: Vec<u8>,
    /// DER signature, or why it could not be decoded.
    pub signature: std::result::Result<Vec<u8>, String>,
}

fn signature_reference(artifact: &Reference, digest: &str) -> Reference {
    Reference::with_tag(
        artifact.registry().to_owned(),
        artifact.repository().to_owned(),
        signature_tag(digest),
    )
}

/// Fetches every simple-signing signature stored for `digest` in the repository of `artifact`.
/// `Ok(None)` when there is no signature manifest or it holds no simple-signing layer.
pub(crate) async fn fetch_signatures(
    client: &RegistryClient,
    artifact: &Reference,
    digest: &str,
) -> Result<Option<Vec<SignatureCandidate>>> {
    let sig_ref = signature_reference(artifact, digest);
    let Some((body, _)) = client.pull_manifest_by_tag(&sig_ref).await? else {
        return Ok(None);
    };
    let manifest = crate::registry::parse_manifest(&body).map_err(|reason| {
        UpdateError::MalformedSignature(format!(
            "signature manifest `{}`: {reason}",
            sig_ref.whole()
        ))
    })?;
    let layers: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .take(MAX_SIGNATURES)
        .collect();
    if layers.is_empty() {
        return Ok(None);
    }
    let mut candidates = Vec::with_capacity(layers.len());
    for layer in layers {
        let payload = client
            .pull_blob_verified(&sig_ref, layer, MAX_PAYLOAD_BYTES)
            .await?;
        let signature = match layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        {
            None => Err(format!(
                "layer {} has no `{SIGNATURE_ANNOTATION}` annotation",
                layer.digest
            )),
            Some(b64) => STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("layer {} signature is not base64: {e}", layer.digest)),
        };
        candidates.push(SignatureCandidate { payload, signature });
    }
    Ok(Some(candidates))
}

/// What [`crate::sign_artifact`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The signature manifest's reference (`registry/repo:sha256-<hex>.sig`).
    pub signature_reference: String,
    /// Digest of the signature manifest.
    pub signature_manifest_digest: String,
    /// The exact payload bytes that were signed.
    pub payload: Vec<u8>,
    /// The DER ECDSA signature.
    pub signature: Vec<u8>,
}

/// Appends a signed payload as a layer of the `sha256-<hex>.sig` manifest (creating it if
/// needed), as `cosign sign` does.
pub(crate) async fn push_signature(
    client: &RegistryClient,
    artifact: &Reference,
    digest: &str,
    payload: &[u8],
    signature: &[u8],
) -> Result<SignatureInfo> {
    let sig_ref = signature_reference(artifact, digest);
    let mut layers = match client.pull_manifest_by_tag(&sig_ref).await? {
        Some((body, _)) => crate::registry::parse_manifest(&body)
            .map(|m| m.layers)
            .unwrap_or_else(|reason| {
                tracing::warn!(%reason, "replacing an unreadable signature manifest");
                Vec::new()
            }),
        None => Vec::new(),
    };
    let b64 = STANDARD.encode(signature);
    let mut layer = Descriptor::for_blob(SIMPLE_SIGNING_MEDIA_TYPE, payload);
    layer.annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        b64.clone(),
    )]));
    client.push_blob(&sig_ref, payload).await?;
    layers.retain(|l| l != &layer);
    layers.push(layer);

    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    });
    let config = serde_json::to_vec(&config)
        .map_err(|e| UpdateError::InvalidArgument(format!("cannot encode config: {e}")))?;
    client.push_blob(&sig_ref, &config).await?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_owned()),
        config: Descriptor::for_blob(OCI_CONFIG_MEDIA_TYPE, &config),
        layers,
        annotations: None,
    };
    let (manifest_digest, _) = client.push_manifest(&sig_ref, &manifest).await?;
    Ok(SignatureInfo {
        signature_reference: sig_ref.whole(),
        signature_manifest_digest: manifest_digest,
        payload: payload.to_vec(),
        signature: signature.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_uses_cosign_field_names_and_carries_release_metadata() {
        let release = ReleaseMetadata {
            plugin: "acme-filter".into(),
            version: "1.2.3-rc.1".parse().unwrap(),
            expires: OffsetDateTime::parse("2030-01-01T00:00:00Z", &Rfc3339).unwrap(),
        };
        let payload =
            SimpleSigningPayload::new("reg.example/acme/filter", "sha256:ab", &release).unwrap();
        let json = serde_json::to_string(&payload).unwrap();
        assert_eq!(
            json,
            r#"{"critical":{"identity":{"docker-reference":"reg.example/acme/filter"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":{"dev.outpost.expires":"2030-01-01T00:00:00Z","dev.outpost.plugin":"acme-filter","dev.outpost.version":"1.2.3-rc.1"}}"#
        );
        let parsed = SimpleSigningPayload::parse(json.as_bytes()).unwrap();
        assert_eq!(parsed.release().unwrap(), release);
    }

    #[test]
    fn a_payload_of_another_type_or_with_a_bad_version_is_malformed() {
        let other = br#"{"critical":{"identity":{"docker-reference":"r/x"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"atomic container signature"},"optional":null}"#;
        assert!(matches!(
            SimpleSigningPayload::parse(other),
            Err(UpdateError::MalformedSignature(_))
        ));
        let bad_version = br#"{"critical":{"identity":{"docker-reference":"r/x"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":{"dev.outpost.plugin":"p","dev.outpost.version":"one","dev.outpost.expires":"2030-01-01T00:00:00Z"}}"#;
        let parsed = SimpleSigningPayload::parse(bad_version).unwrap();
        assert!(matches!(
            parsed.release(),
            Err(UpdateError::MalformedSignature(_))
        ));
    }

    #[test]
    fn signatures_live_at_the_cosign_tag_of_the_digest() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}
