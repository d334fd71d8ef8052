//! A real OCI registry for the tests: Debian's `docker-registry` (CNCF distribution) started on
//! a free loopback port with its storage in a temporary directory, and helpers that talk to it
//! directly with `oci-client` (to plant attacks) or tamper with its storage.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference};
use outpost_update::{
    PublisherSpec, RegistryAuth, RegistryOptions, SignRequest, TrustPolicy, TrustPolicySpec,
    Updater, UpdaterConfig,
};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";

const INSTALL_HINT: &str = "the tests need a real OCI registry: install Debian's `docker-registry` \
     package (`apt-get install -y docker-registry`; it provides /usr/bin/docker-registry)";

/// How the registry is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP, no auth.
    Open,
    /// Plain HTTP, htpasswd basic auth.
    BasicAuth,
    /// HTTPS with a generated CA, htpasswd basic auth.
    TlsBasicAuth,
}

pub struct TestRegistry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub host: String,
    pub mode: Mode,
    pub ca_pem: Option<Vec<u8>>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free loopback port")
}

fn htpasswd_line() -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `htpasswd` ({e}): install it with `apt-get install -y apache2-utils`"
            )
        });
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

impl TestRegistry {
    pub fn start(mode: Mode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: outpost-test-secret\n",
            data.display()
        );
        let mut ca_pem = None;
        if mode == Mode::TlsBasicAuth {
            let (ca, cert, key) = generate_tls();
            std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), key).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            ));
            ca_pem = Some(ca.into_bytes());
        }
        if mode != Mode::Open {
            std::fs::write(dir.path().join("htpasswd"), htpasswd_line()).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: outpost-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `docker-registry` ({e}): {INSTALL_HINT}"));
        let registry = Self {
            child,
            dir,
            host,
            mode,
            ca_pem,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut stream) = TcpStream::connect(&self.host) {
                if self.mode == Mode::TlsBasicAuth {
                    return; // listening means TLS is set up; the HTTPS answer is tested by the tests
                }
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                let mut answer = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut answer).is_ok()
                    && (answer.starts_with("HTTP/1.0 200")
                        || answer.starts_with("HTTP/1.0 401")
                        || answer.starts_with("HTTP/1.1 200")
                        || answer.starts_with("HTTP/1.1 401"))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/ on {}; its log:\n{}",
                self.host,
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            auth: if self.mode == Mode::Open {
                RegistryAuth::Anonymous
            } else {
                RegistryAuth::Basic {
                    username: USER.into(),
                    password: PASSWORD.into(),
                }
            },
            insecure_http: self.mode != Mode::TlsBasicAuth,
            ca_certificate_pem: self.ca_pem.clone(),
        }
    }

    /// `host/repo`.
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }

    /// Path of a blob's content in the registry's filesystem storage.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// A raw `oci-client` talking to this registry, for planting attacks.
    pub fn raw_client(&self) -> (Client, OciAuth) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = ClientConfig {
            protocol: if self.mode == Mode::TlsBasicAuth {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            ..ClientConfig::default()
        };
        if let Some(ca) = &self.ca_pem {
            config.tls_certs_only = vec![Certificate {
                encoding: CertificateEncoding::Pem,
                data: ca.clone(),
            }];
        }
        let auth = if self.mode == Mode::Open {
            OciAuth::Anonymous
        } else {
            OciAuth::Basic(USER.into(), PASSWORD.into())
        };
        (Client::try_from(config).unwrap(), auth)
    }

    pub async fn pull_raw_manifest(&self, reference: &str) -> Vec<u8> {
        let (client, auth) = self.raw_client();
        let r: Reference = reference.parse().unwrap();
        let (body, _) = client
            .pull_manifest_raw(&r, &auth, &[outpost_update::OCI_MANIFEST_MEDIA_TYPE])
            .await
            .unwrap();
        body.to_vec()
    }

    pub async fn pull_raw_blob(&self, reference: &str, digest: &str) -> Vec<u8> {
        let (client, auth) = self.raw_client();
        let r: Reference = reference.parse().unwrap();
        client
            .store_auth_if_needed(r.resolve_registry(), &auth)
            .await;
        let mut out = Vec::new();
        let desc = OciDescriptor {
            digest: digest.to_owned(),
            ..Default::default()
        };
        client.pull_blob(&r, &desc, &mut out).await.unwrap();
        out
    }

    pub async fn push_raw_blob(&self, reference: &str, blob: &[u8]) -> String {
        let (client, auth) = self.raw_client();
        let r: Reference = reference.parse().unwrap();
        client
            .store_auth_if_needed(r.resolve_registry(), &auth)
            .await;
        let digest = outpost_update::sha256_digest(blob);
        client.push_blob(&r, blob.to_vec(), &digest).await.unwrap();
        digest
    }

    /// Pushes raw manifest bytes to `reference` (a tag or digest reference).
    pub async fn push_raw_manifest(&self, reference: &str, body: &[u8]) {
        let (client, auth) = self.raw_client();
        let r: Reference = reference.parse().unwrap();
        client
            .store_auth_if_needed(r.resolve_registry(), &auth)
            .await;
        client
            .push_manifest_raw(
                &r,
                body.to_vec(),
                http::HeaderValue::from_static(outpost_update::OCI_MANIFEST_MEDIA_TYPE),
            )
            .await
            .unwrap();
    }

    /// Copies the manifest at `src` (and all blobs it references) to `dst`.
    pub async fn copy_manifest(&self, src: &str, dst: &str) {
        let body = self.pull_raw_manifest(src).await;
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
        for layer in manifest["layers"].as_array().unwrap() {
            digests.push(layer["digest"].as_str().unwrap().to_owned());
        }
        for digest in digests {
            let blob = self.pull_raw_blob(src, &digest).await;
            self.push_raw_blob(dst, &blob).await;
        }
        self.push_raw_manifest(dst, &body).await;
    }
}

/// A self-signed CA and a server certificate for 127.0.0.1 signed by it (PEM).
fn generate_tls() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "outpost test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&server_key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), server_key.serialize_pem())
}

/// A small valid WebAssembly module whose custom section makes it unique.
pub fn wasm_component(tag: &str, padding: usize) -> Vec<u8> {
    let mut payload = Vec::new();
    let name = b"outpost-test";
    payload.push(name.len() as u8);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    payload.extend(std::iter::repeat_n(0xA5u8, padding));
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.push(0); // custom section
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            wasm.push(byte);
            break;
        }
        wasm.push(byte | 0x80);
    }
    wasm.extend_from_slice(&payload);
    wasm
}

pub fn write_component(dir: &Path, tag: &str) -> (PathBuf, Vec<u8>) {
    let bytes = wasm_component(tag, 1024);
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// A publisher key pair in a temp dir plus the public key PEM.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub public_pem: String,
}

pub fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let paths = outpost_update::generate_keypair(dir.path()).unwrap();
    let public_pem = std::fs::read_to_string(&paths.public_key).unwrap();
    Keys {
        private_key: paths.private_key,
        public_key: paths.public_key,
        public_pem,
        dir,
    }
}

pub fn publisher(
    name: &str,
    keys: &Keys,
    plugins: &[&str],
    repositories: &[String],
) -> PublisherSpec {
    PublisherSpec {
        name: name.to_owned(),
        public_key: keys.public_pem.clone(),
        plugins: plugins.iter().map(|s| s.to_string()).collect(),
        repositories: repositories.to_vec(),
    }
}

pub fn updater(registry: &TestRegistry, state: &Path, publishers: Vec<PublisherSpec>) -> Updater {
    let policy = TrustPolicy::new(TrustPolicySpec { publishers }).unwrap();
    Updater::new(UpdaterConfig::new(policy, state, registry.options())).unwrap()
}

pub fn release(plugin: &str, version: &str) -> SignRequest {
    SignRequest {
        plugin: plugin.to_owned(),
        version: version.to_owned(),
        expires: "2099-01-01T00:00:00Z".to_owned(),
    }
}

pub fn expired_release(plugin: &str, version: &str) -> SignRequest {
    SignRequest {
        plugin: plugin.to_owned(),
        version: version.to_owned(),
        expires: "2001-01-01T00:00:00Z".to_owned(),
    }
}
