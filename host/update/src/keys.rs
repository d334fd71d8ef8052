//! ECDSA P-256 keys: generation, PEM encoding and signing/verification with `ring`.
//!
//! Private keys are unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes); public keys are
//! SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, the format of `cosign.pub` and of
//! `openssl pkey -pubout`). Signatures are ASN.1 DER ECDSA over SHA-256, as cosign makes them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};

use crate::error::{Result, UpdateError};

/// File name of the private key written by [`generate_keypair`].
pub const PRIVATE_KEY_FILE: &str = "outpost-signing.key";
/// File name of the public key written by [`generate_keypair`].
pub const PUBLIC_KEY_FILE: &str = "outpost-signing.pub";

/// DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }, followed by the 65-byte
/// point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Where [`generate_keypair`] wrote the two key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairPaths {
    /// The PKCS#8 PEM private key (mode 0600).
    pub private_key: PathBuf,
    /// The SPKI PEM public key (mode 0600), to be put in a trust policy.
    pub public_key: PathBuf,
}

/// Generates an ECDSA P-256 key pair and writes `outpost-signing.key` (PKCS#8 PEM) and
/// `outpost-signing.pub` (SPKI PEM) in `dir`, both with mode 0600. `dir` is created if needed;
/// existing key files are never overwritten.
pub fn generate_keypair(dir: &Path) -> Result<KeyPairPaths> {
    fs::create_dir_all(dir).map_err(|e| UpdateError::io(dir, e))?;
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(|_| {
            UpdateError::BadKey {
                path: dir.to_path_buf(),
                reason: "the system random generator failed".into(),
            }
        })?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| UpdateError::BadKey {
            path: dir.to_path_buf(),
            reason: format!("generated key does not parse: {e}"),
        })?;
    let private_pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
    let public_pem = pem_encode("PUBLIC KEY", &spki_der(pair.public_key().as_ref()));

    let paths = KeyPairPaths {
        private_key: dir.join(PRIVATE_KEY_FILE),
        public_key: dir.join(PUBLIC_KEY_FILE),
    };
    for path in [&paths.private_key, &paths.public_key] {
        if path.exists() {
            return Err(UpdateError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "refusing to overwrite an existing key file",
                ),
            ));
        }
    }
    write_private_file(&paths.private_key, private_pem.as_bytes())?;
    write_private_file(&paths.public_key, public_pem.as_bytes())?;
    tracing::info!(
        private_key = %paths.private_key.display(),
        public_key = %paths.public_key.display(),
        "generated ECDSA P-256 signing key pair"
    );
    Ok(paths)
}

fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| UpdateError::io(path, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| UpdateError::io(path, e))
}

/// An ECDSA P-256 private key used to sign release payloads.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &hex::encode(self.pair.public_key().as_ref()))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads an unencrypted PKCS#8 PEM P-256 private key.
    pub fn from_pem_file(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| UpdateError::io(path, e))?;
        Self::from_pem(&text).map_err(|reason| UpdateError::BadKey {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn from_pem(text: &str) -> std::result::Result<Self, String> {
        let der = pem_decode(text, "PRIVATE KEY").map_err(|e| {
            format!("{e} (an unencrypted PKCS#8 `BEGIN PRIVATE KEY` P-256 key is required; convert with `openssl pkcs8 -topk8 -nocrypt`)")
        })?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
            .map_err(|e| format!("not an ECDSA P-256 PKCS#8 private key: {e}"))?;
        Ok(Self { pair, rng })
    }

    /// Signs `message` (ECDSA P-256, SHA-256) and returns the ASN.1 DER signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.pair
            .sign(&self.rng, message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| UpdateError::InvalidArgument("ECDSA signing failed".into()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            point: self.pair.public_key().as_ref().to_vec(),
        }
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Uncompressed SEC1 point (65 bytes, starting with 0x04).
    point: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(P-256 {})", self.fingerprint())
    }
}

impl PublicKey {
    /// Parses an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) ECDSA P-256 public key.
    pub fn from_pem(text: &str) -> std::result::Result<Self, String> {
        let der = pem_decode(text, "PUBLIC KEY")?;
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .ok_or("not an uncompressed ECDSA P-256 SubjectPublicKeyInfo")?;
        if point.len() != 65 || point[0] != 0x04 {
            return Err("not an uncompressed ECDSA P-256 point".into());
        }
        Ok(Self {
            point: point.to_vec(),
        })
    }

    /// Reads an SPKI PEM public key file.
    pub fn from_pem_file(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| UpdateError::io(path, e))?;
        Self::from_pem(&text).map_err(|reason| UpdateError::BadKey {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The SPKI PEM encoding.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &spki_der(&self.point))
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo, for logs.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(spki_der(&self.point)))
        )
    }

    /// Whether `signature` (ASN.1 DER) is a valid ECDSA P-256/SHA-256 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

fn spki_der(point: &[u8]) -> Vec<u8> {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    der
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str, label: &str) -> std::result::Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no `{begin}` block found"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no `{end}` line found"))?
        + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|e| format!("invalid base64 in PEM: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_what_its_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let paths = generate_keypair(dir.path()).unwrap();
        let key = SigningKey::from_pem_file(&paths.private_key).unwrap();
        let public = PublicKey::from_pem_file(&paths.public_key).unwrap();
        assert_eq!(key.public_key(), public);
        let sig = key.sign(b"payload").unwrap();
        assert!(public.verify(b"payload", &sig));
        assert!(!public.verify(b"other payload", &sig));
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = generate_keypair(dir.path()).unwrap();
        for path in [&paths.private_key, &paths.public_key] {
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        assert!(generate_keypair(dir.path()).is_err());
    }

    #[test]
    fn a_non_p256_public_key_is_rejected() {
        let pem = pem_encode("PUBLIC KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(PublicKey::from_pem(&pem).is_err());
    }
}
