//! The object-store side of a cloud-tiered share: URL parsing, object naming, retried calls and
//! resumable multipart uploads.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutOptions, PutPayload, PutResult, RetryConfig,
};

use crate::error::{Result, StorageError};
use crate::path::SharePath;
use crate::spec::RetryPolicy;

/// Object metadata key that carries the content SHA-256 (hex) where the backend keeps metadata.
/// Azure metadata names must be identifiers, hence the underscore.
pub const DIGEST_METADATA_KEY: &str = "outpost_sha256";
/// Directory (under the target) that holds the parts of resumable uploads on `file://` targets.
pub(crate) const STAGING_DIR: &str = ".outpost-parts";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scheme {
    File(PathBuf),
    Azure { container: String },
    S3 { bucket: String },
}

/// Parses a target URL into its scheme and prefix.
pub(crate) fn parse_target(target: &str) -> Result<(Scheme, String)> {
    let bad = |reason: &str| StorageError::InvalidTarget {
        target: target.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(target).map_err(|e| bad(&e.to_string()))?;
    let prefix = url.path().trim_matches('/').to_owned();
    if prefix.split('/').any(|c| c == ".." || c == ".") {
        return Err(bad("the prefix must not contain '.' or '..'"));
    }
    let scheme = match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|()| bad("file:// targets need an absolute local path"))?;
            return Ok((Scheme::File(dir), String::new()));
        }
        "az" | "azure" | "abfs" => Scheme::Azure {
            container: url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("az:// needs a container: az://container/prefix"))?
                .to_owned(),
        },
        "s3" | "s3a" => Scheme::S3 {
            bucket: url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("s3:// needs a bucket: s3://bucket/prefix"))?
                .to_owned(),
        },
        other => return Err(bad(&format!("unsupported scheme {other:?} (file, az, s3)"))),
    };
    Ok((scheme, prefix))
}

pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    /// Native resumable multipart (Azure blocks, S3 multipart); `None` stages parts as objects.
    multipart: Option<Arc<dyn MultipartStore>>,
    prefix: String,
    keeps_metadata: bool,
    retry: RetryPolicy,
    label: String,
}

impl Remote {
    pub(crate) fn open(
        target: &str,
        options: &BTreeMap<String, String>,
        retry: &RetryPolicy,
    ) -> Result<Self> {
        let (scheme, prefix) = parse_target(target)?;
        let bad = |reason: String| StorageError::InvalidTarget {
            target: target.to_owned(),
            reason,
        };
        // object_store's own retries stay short; the engine's backoff sits on top.
        let inner_retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(30),
        };
        let (store, multipart, keeps_metadata): (
            Arc<dyn ObjectStore>,
            Option<Arc<dyn MultipartStore>>,
            bool,
        ) = match scheme {
            Scheme::File(dir) => {
                if !options.is_empty() {
                    return Err(bad("file:// targets take no options".into()));
                }
                std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?
                    .with_automatic_cleanup(true);
                (Arc::new(fs), None, false)
            }
            Scheme::Azure { container } => {
                let mut b = MicrosoftAzureBuilder::new()
                    .with_container_name(container)
                    .with_retry(inner_retry);
                for (k, v) in options {
                    let key = AzureConfigKey::from_str(k)
                        .map_err(|_| bad(format!("unknown Azure option {k:?}")))?;
                    b = b.with_config(key, v);
                }
                let az = Arc::new(b.build().map_err(|e| bad(e.to_string()))?);
                (az.clone(), Some(az), true)
            }
            Scheme::S3 { bucket } => {
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_retry(inner_retry);
                for (k, v) in options {
                    let key = AmazonS3ConfigKey::from_str(k)
                        .map_err(|_| bad(format!("unknown S3 option {k:?}")))?;
                    b = b.with_config(key, v);
                }
                let s3 = Arc::new(b.build().map_err(|e| bad(e.to_string()))?);
                (s3.clone(), Some(s3), true)
            }
        };
        Ok(Self {
            store,
            multipart,
            prefix,
            keeps_metadata,
            retry: retry.clone(),
            label: target.to_owned(),
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn object_path(&self, path: &SharePath) -> Result<ObjectPath> {
        let full = if self.prefix.is_empty() {
            path.as_str().to_owned()
        } else {
            format!("{}/{}", self.prefix, path.as_str())
        };
        ObjectPath::parse(&full).map_err(|e| StorageError::InvalidPath {
            path: path.as_str().to_owned(),
            reason: if e.to_string().is_empty() {
                "not a valid object name"
            } else {
                "not a valid object name for the target"
            },
        })
    }

    /// The share path of a listed object, or `None` for objects outside the share's namespace
    /// (staging parts, names that are not safe share paths).
    pub(crate) fn share_path(&self, location: &ObjectPath) -> Option<SharePath> {
        let s = location.as_ref();
        let rel = if self.prefix.is_empty() {
            s
        } else {
            s.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        if rel.starts_with(STAGING_DIR) {
            return None;
        }
        SharePath::new(rel).ok()
    }

    fn staged_part(&self, upload_id: &str, idx: u32) -> Result<ObjectPath> {
        ObjectPath::parse(format!("{STAGING_DIR}/{upload_id}/{idx:08}"))
            .map_err(|e| StorageError::Journal(e.to_string()))
    }

    /// Runs `op` with the share's retry policy. Errors that cannot heal (not found, bad
    /// request shape, permissions) are returned at once.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    attempt += 1;
                    let permanent = matches!(
                        e,
                        object_store::Error::NotFound { .. }
                            | object_store::Error::NotSupported { .. }
                            | object_store::Error::NotImplemented { .. }
                            | object_store::Error::InvalidPath { .. }
                            | object_store::Error::PermissionDenied { .. }
                            | object_store::Error::Unauthenticated { .. }
                            | object_store::Error::Precondition { .. }
                    );
                    if permanent || attempt >= self.retry.max_attempts {
                        return Err(e.into());
                    }
                    let delay = self.retry.delay(attempt - 1);
                    tracing::warn!(target = %self.label, %what, attempt, ?delay, error = %e, "remote call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    pub(crate) async fn put(
        &self,
        path: &SharePath,
        data: Bytes,
        sha256: &str,
        encrypted: bool,
    ) -> Result<PutResult> {
        let location = self.object_path(path)?;
        let mut attributes = Attributes::new();
        if self.keeps_metadata {
            // An encrypted object is marked as such and does not carry the plaintext digest
            // (it would confirm guesses of the content); the journal keeps the digest.
            let (key, value) = if encrypted {
                (crate::crypt::ENCRYPTED_METADATA_KEY, "1".to_owned())
            } else {
                (DIGEST_METADATA_KEY, sha256.to_owned())
            };
            attributes.insert(Attribute::Metadata(key.into()), value.into());
        }
        self.retry("put", || {
            let opts = PutOptions {
                attributes: attributes.clone(),
                ..PutOptions::default()
            };
            self.store
                .put_opts(&location, PutPayload::from_bytes(data.clone()), opts)
        })
        .await
    }

    /// Size, etag, version and (where kept) the digest metadata of an object.
    pub(crate) async fn head(&self, path: &SharePath) -> Result<(ObjectMeta, Option<String>)> {
        let (meta, digest, _) = self.head_path(path).await?;
        Ok((meta, digest))
    }

    /// [`Remote::head`] plus whether the metadata marks the object encrypted.
    pub(crate) async fn head_path(
        &self,
        path: &SharePath,
    ) -> Result<(ObjectMeta, Option<String>, bool)> {
        let location = self.object_path(path)?;
        self.head_location(&location).await
    }

    pub(crate) async fn head_location(
        &self,
        location: &ObjectPath,
    ) -> Result<(ObjectMeta, Option<String>, bool)> {
        if !self.keeps_metadata {
            let meta = self.retry("head", || self.store.head(location)).await?;
            return Ok((meta, None, false));
        }
        let r = self
            .retry("head", || {
                self.store.get_opts(
                    location,
                    GetOptions {
                        head: true,
                        ..GetOptions::default()
                    },
                )
            })
            .await?;
        let digest = digest_attribute(&r.attributes);
        let encrypted = encrypted_attribute(&r.attributes);
        Ok((r.meta, digest, encrypted))
    }

    pub(crate) async fn get(&self, path: &SharePath) -> Result<object_store::GetResult> {
        let location = self.object_path(path)?;
        self.retry("get", || self.store.get(&location)).await
    }

    /// Up to the first `len` bytes of an object (fewer when it is shorter).
    pub(crate) async fn get_prefix(&self, location: &ObjectPath, len: u64) -> Result<Bytes> {
        self.retry("get_prefix", || {
            self.store.get_opts(
                location,
                GetOptions {
                    range: Some(object_store::GetRange::Bounded(0..len)),
                    ..GetOptions::default()
                },
            )
        })
        .await?
        .bytes()
        .await
        .map_err(Into::into)
    }

    pub(crate) async fn get_range(
        &self,
        path: &SharePath,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes> {
        let location = self.object_path(path)?;
        self.retry("get_range", || {
            self.store.get_range(&location, range.clone())
        })
        .await
    }

    pub(crate) async fn delete(&self, path: &SharePath) -> Result<()> {
        let location = self.object_path(path)?;
        match self.retry("delete", || self.store.delete(&location)).await {
            Err(StorageError::Remote(object_store::Error::NotFound { .. })) => Ok(()),
            other => other,
        }
    }

    pub(crate) fn list(
        &self,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        self.store.list(prefix.as_ref())
    }

    /// Starts a multipart upload and returns the backend's id.
    pub(crate) async fn create_multipart(&self, path: &SharePath) -> Result<String> {
        let location = self.object_path(path)?;
        match &self.multipart {
            Some(m) => {
                self.retry("create_multipart", || m.create_multipart(&location))
                    .await
            }
            None => Ok(String::new()),
        }
    }

    /// Uploads part `idx` (0-based) and returns its etag / content id.
    pub(crate) async fn put_part(
        &self,
        path: &SharePath,
        backend_id: &str,
        upload_id: &str,
        idx: u32,
        data: Bytes,
    ) -> Result<String> {
        match &self.multipart {
            Some(m) => {
                let location = self.object_path(path)?;
                let backend_id = backend_id.to_owned();
                let part = self
                    .retry("put_part", || {
                        m.put_part(
                            &location,
                            &backend_id,
                            idx as usize,
                            PutPayload::from_bytes(data.clone()),
                        )
                    })
                    .await?;
                Ok(part.content_id)
            }
            None => {
                let location = self.staged_part(upload_id, idx)?;
                let r = self
                    .retry("put_part", || {
                        self.store
                            .put(&location, PutPayload::from_bytes(data.clone()))
                    })
                    .await?;
                Ok(r.e_tag.unwrap_or_default())
            }
        }
    }

    /// Completes a multipart upload from its parts in order.
    pub(crate) async fn complete_multipart(
        &self,
        path: &SharePath,
        backend_id: &str,
        upload_id: &str,
        parts: &[String],
    ) -> Result<PutResult> {
        let location = self.object_path(path)?;
        match &self.multipart {
            Some(m) => {
                let ids: Vec<PartId> = parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.clone(),
                    })
                    .collect();
                let backend_id = backend_id.to_owned();
                self.retry("complete_multipart", || {
                    m.complete_multipart(&location, &backend_id, ids.clone())
                })
                .await
            }
            None => {
                // Local staging: concatenate the parts through the store's atomic multipart
                // writer (temp file + rename), then drop the parts.
                let mut upload = self.store.put_multipart(&location).await?;
                for idx in 0..parts.len() as u32 {
                    let part = self.staged_part(upload_id, idx)?;
                    let bytes = self.store.get(&part).await?.bytes().await?;
                    upload.put_part(PutPayload::from_bytes(bytes)).await?;
                }
                let result = upload.complete().await?;
                self.abort_multipart(path, backend_id, upload_id, parts.len() as u32)
                    .await;
                Ok(result)
            }
        }
    }

    /// Best-effort cleanup of an abandoned upload.
    pub(crate) async fn abort_multipart(
        &self,
        path: &SharePath,
        backend_id: &str,
        upload_id: &str,
        parts: u32,
    ) {
        match &self.multipart {
            Some(m) => {
                if let Ok(location) = self.object_path(path)
                    && let Err(e) = m.abort_multipart(&location, &backend_id.to_owned()).await
                {
                    tracing::debug!(%path, error = %e, "abort of an abandoned upload failed");
                }
            }
            None => {
                for idx in 0..parts {
                    if let Ok(part) = self.staged_part(upload_id, idx) {
                        let _ = self.store.delete(&part).await;
                    }
                }
            }
        }
    }
}

pub(crate) fn encrypted_attribute(attributes: &Attributes) -> bool {
    attributes
        .get(&Attribute::Metadata(
            crate::crypt::ENCRYPTED_METADATA_KEY.into(),
        ))
        .is_some_and(|v| v.as_ref() == "1")
}

pub(crate) fn digest_attribute(attributes: &Attributes) -> Option<String> {
    attributes
        .get(&Attribute::Metadata(DIGEST_METADATA_KEY.into()))
        .map(|v| v.as_ref().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_into_scheme_and_prefix() {
        assert_eq!(
            parse_target("az://box/edge/site-1").unwrap(),
            (
                Scheme::Azure {
                    container: "box".into()
                },
                "edge/site-1".into()
            )
        );
        assert_eq!(
            parse_target("s3://bucket").unwrap(),
            (
                Scheme::S3 {
                    bucket: "bucket".into()
                },
                String::new()
            )
        );
        assert!(matches!(
            parse_target("file:///var/outpost/cloud").unwrap().0,
            Scheme::File(_)
        ));
        assert!(parse_target("ftp://x/y").is_err());
        assert!(parse_target("az:///nocontainer").is_err());
        assert!(parse_target("not a url").is_err());
    }
}
