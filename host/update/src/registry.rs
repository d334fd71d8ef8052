//! Talking to an OCI registry with `oci-client`: options, references, pushing and verified
//! pulling of manifests and blobs. Nothing the registry sends is trusted: manifests are checked
//! against the requested digest and blobs against their descriptors, here, locally.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Result, UpdateError};

/// Media type of OCI image manifests (used for artifacts and signatures).
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Config media type of a CNCF Wasm OCI artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Layer media type of a CNCF Wasm OCI artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// How to authenticate to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic authentication (also used as the credentials of a token exchange).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// Connection options for a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Credentials.
    pub auth: RegistryAuth,
    /// Use plain HTTP instead of HTTPS. Only for loopback test registries: credentials and
    /// artifacts travel in clear (artifacts stay verified by digest and signature).
    pub insecure_http: bool,
    /// PEM CA certificate(s) to trust *instead of* the system roots for HTTPS.
    pub ca_certificate_pem: Option<Vec<u8>>,
}

/// A configured OCI client.
#[derive(Clone)]
pub(crate) struct RegistryClient {
    client: Client,
    auth: OciAuth,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// A descriptor (config, layer or manifest reference) in an OCI manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub(crate) fn for_blob(media_type: &str, blob: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: sha256_digest(blob),
            size: i64::try_from(blob.len()).unwrap_or(i64::MAX),
            annotations: None,
        }
    }
}

/// An OCI image manifest (the subset we produce and read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Parses a reference such as `registry.example.com:5000/acme/filter:1.0`.
pub(crate) fn parse_reference(reference: &str) -> Result<Reference> {
    reference
        .parse::<Reference>()
        .map_err(|e| UpdateError::InvalidReference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// Parses a reference that must be pinned by a `sha256:` digest; returns it with the digest.
pub(crate) fn parse_pinned(reference: &str) -> Result<(Reference, String)> {
    let parsed = parse_reference(reference)?;
    let digest = parsed
        .digest()
        .ok_or_else(|| UpdateError::InvalidReference {
            reference: reference.to_owned(),
            reason: "artifacts are pulled by digest only: use `registry/repo@sha256:<64 hex>`"
                .into(),
        })?
        .to_owned();
    if !is_sha256_digest(&digest) {
        return Err(UpdateError::InvalidReference {
            reference: reference.to_owned(),
            reason: format!("`{digest}` is not a sha256 digest (`sha256:` and 64 lower-case hex)"),
        });
    }
    Ok((parsed, digest))
}

pub(crate) fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `registry/repository`, the identity cosign signs.
pub(crate) fn repository_identity(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

fn registry_error(
    operation: &'static str,
    reference: &Reference,
    err: OciDistributionError,
) -> UpdateError {
    UpdateError::Registry {
        operation,
        reference: reference.whole(),
        message: err.to_string(),
    }
}

fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

/// Installs ring as the process-wide rustls provider unless one is already installed (this
/// crate never pulls in aws-lc).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race against another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl RegistryClient {
    pub(crate) fn new(options: &RegistryOptions) -> Result<Self> {
        ensure_crypto_provider();
        let mut config = ClientConfig {
            protocol: if options.insecure_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            platform_resolver: None,
            ..ClientConfig::default()
        };
        if let Some(pem) = &options.ca_certificate_pem {
            config.tls_certs_only = vec![Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            }];
        }
        let client = Client::try_from(config).map_err(|e| UpdateError::Registry {
            operation: "configure client for",
            reference: "<any>".into(),
            message: e.to_string(),
        })?;
        let auth = match &options.auth {
            RegistryAuth::Anonymous => OciAuth::Anonymous,
            RegistryAuth::Basic { username, password } => {
                OciAuth::Basic(username.clone(), password.clone())
            }
        };
        Ok(Self { client, auth })
    }

    async fn store_auth(&self, reference: &Reference) {
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
    }

    /// Uploads `blob` to the repository of `reference` unless it is already there; returns its
    /// digest.
    pub(crate) async fn push_blob(&self, reference: &Reference, blob: &[u8]) -> Result<String> {
        self.store_auth(reference).await;
        let digest = sha256_digest(blob);
        let exists = self
            .client
            .blob_exists(reference, &digest)
            .await
            .map_err(|e| registry_error("check blob in", reference, e))?;
        if !exists {
            self.client
                .push_blob(reference, blob.to_vec(), &digest)
                .await
                .map_err(|e| registry_error("push blob to", reference, e))?;
        }
        Ok(digest)
    }

    /// Pushes a manifest under the tag (or digest) of `target`; returns the manifest digest.
    pub(crate) async fn push_manifest(
        &self,
        target: &Reference,
        manifest: &ImageManifest,
    ) -> Result<(String, Vec<u8>)> {
        let body = serde_json::to_vec(manifest)
            .map_err(|e| UpdateError::InvalidArgument(format!("cannot encode manifest: {e}")))?;
        self.push_manifest_raw(target, body.clone()).await?;
        Ok((sha256_digest(&body), body))
    }

    /// Pushes raw manifest bytes (OCI image manifest media type) under `target`.
    pub(crate) async fn push_manifest_raw(&self, target: &Reference, body: Vec<u8>) -> Result<()> {
        self.store_auth(target).await;
        self.client
            .push_manifest_raw(
                target,
                body,
                http::HeaderValue::from_static(OCI_MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(|e| registry_error("push manifest to", target, e))?;
        Ok(())
    }

    /// Pulls the manifest `reference` is pinned to and checks, locally, that its bytes hash to
    /// `digest`.
    pub(crate) async fn pull_manifest_pinned(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<(ImageManifest, Vec<u8>)> {
        self.store_auth(reference).await;
        let pinned = reference.clone_with_digest(digest.to_owned());
        let body = match self
            .client
            .pull_manifest_raw(&pinned, &self.auth, &[OCI_MANIFEST_MEDIA_TYPE])
            .await
        {
            Ok((body, _)) => body.to_vec(),
            Err(OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { actual, .. },
            )) => {
                return Err(UpdateError::WrongManifestDigest {
                    expected: digest.to_owned(),
                    actual,
                });
            }
            Err(e) => return Err(registry_error("pull manifest of", &pinned, e)),
        };
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(UpdateError::WrongManifestDigest {
                expected: digest.to_owned(),
                actual,
            });
        }
        let manifest = parse_manifest(&body).map_err(|reason| UpdateError::NotAWasmArtifact {
            reference: pinned.whole(),
            reason,
        })?;
        Ok((manifest, body))
    }

    /// Pulls a manifest by tag; `None` if the tag does not exist. The content is not pinned: the
    /// caller must verify it some other way (signatures are).
    pub(crate) async fn pull_manifest_by_tag(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Vec<u8>, String)>> {
        self.store_auth(reference).await;
        match self
            .client
            .pull_manifest_raw(reference, &self.auth, &[OCI_MANIFEST_MEDIA_TYPE])
            .await
        {
            Ok((body, _)) => {
                let digest = sha256_digest(&body);
                Ok(Some((body.to_vec(), digest)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(registry_error("pull manifest of", reference, e)),
        }
    }

    /// Pulls the blob a descriptor names and checks size and sha256 digest locally. Refuses
    /// descriptors larger than `max_bytes` and stops reading as soon as the registry sends more
    /// than the descriptor's size.
    pub(crate) async fn pull_blob_verified(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        max_bytes: u64,
    ) -> Result<Vec<u8>> {
        let size = u64::try_from(descriptor.size).map_err(|_| UpdateError::TamperedLayer {
            expected: format!("a non-negative size, got {}", descriptor.size),
            actual: "nothing pulled".into(),
        })?;
        if size > max_bytes {
            return Err(UpdateError::NotAWasmArtifact {
                reference: reference.whole(),
                reason: format!("blob of {size} bytes exceeds the {max_bytes}-byte limit"),
            });
        }
        if !is_sha256_digest(&descriptor.digest) {
            return Err(UpdateError::TamperedLayer {
                expected: format!("a sha256 digest, got `{}`", descriptor.digest),
                actual: "nothing pulled".into(),
            });
        }
        self.store_auth(reference).await;
        // Only digest, size and media type: never follow `urls` a manifest may list.
        let oci_descriptor = OciDescriptor {
            media_type: descriptor.media_type.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            urls: None,
            annotations: None,
            artifact_type: None,
        };
        let mut sink = LimitedSink {
            buf: Vec::with_capacity(usize::try_from(size).unwrap_or(0)),
            limit: size,
        };
        match self
            .client
            .pull_blob(reference, &oci_descriptor, &mut sink)
            .await
        {
            Ok(()) => {}
            Err(OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            )) => return Err(UpdateError::TamperedLayer { expected, actual }),
            Err(OciDistributionError::IoError(e))
                if e.kind() == std::io::ErrorKind::FileTooLarge =>
            {
                return Err(UpdateError::TamperedLayer {
                    expected: format!("{size} bytes"),
                    actual: "more bytes than the descriptor's size".into(),
                });
            }
            Err(e) => return Err(registry_error("pull blob of", reference, e)),
        }
        let blob = sink.buf;
        if blob.len() as u64 != size {
            return Err(UpdateError::TamperedLayer {
                expected: format!("{size} bytes"),
                actual: format!("{} bytes", blob.len()),
            });
        }
        let actual = sha256_digest(&blob);
        if actual != descriptor.digest {
            return Err(UpdateError::TamperedLayer {
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(blob)
    }
}

/// Parses an OCI image manifest.
pub(crate) fn parse_manifest(body: &[u8]) -> std::result::Result<ImageManifest, String> {
    let manifest: ImageManifest =
        serde_json::from_slice(body).map_err(|e| format!("not an OCI image manifest: {e}"))?;
    if manifest.schema_version != 2 {
        return Err(format!(
            "unsupported schemaVersion {}",
            manifest.schema_version
        ));
    }
    if let Some(mt) = &manifest.media_type
        && mt != OCI_MANIFEST_MEDIA_TYPE
    {
        return Err(format!("unsupported manifest media type `{mt}`"));
    }
    Ok(manifest)
}

/// An `AsyncWrite` into memory that fails once more than `limit` bytes arrive.
struct LimitedSink {
    buf: Vec<u8>,
    limit: u64,
}

impl tokio::io::AsyncWrite for LimitedSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if (self.buf.len() + data.len()) as u64 > self.limit {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "registry sent more bytes than the descriptor's size",
            )));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
