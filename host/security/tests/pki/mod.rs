//! Test PKI built with rcgen (CAs, intermediates, leaves with chosen flaws), PKCS#12 files made
//! with the `openssl` CLI, TLS clients for handshakes, and a pebble ACME server on loopback.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use outpost_security::rustls::pki_types::pem::PemObject;
use outpost_security::rustls::pki_types::{CertificateDer, ServerName};
use outpost_security::rustls::{ClientConfig, RootCertStore};
use outpost_security::tokio_rustls::TlsConnector;
use outpost_security::tokio_rustls::client::TlsStream;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use time::{Duration as TimeDuration, OffsetDateTime};
use tokio::net::TcpStream;

/// A certificate authority: its certificate (PEM) and what signs with it.
pub struct Ca {
    pub pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Outpost tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - TimeDuration::days(1);
    params.not_after = now + TimeDuration::days(3650);
    params
}

/// A self-signed root CA.
pub fn root_ca(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(cn);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// An intermediate CA signed by `parent`.
pub fn intermediate_ca(parent: &Ca, cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = ca_params(cn);
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &parent.issuer).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// What a leaf certificate looks like; [`Leaf::good`] is a valid TLS server certificate.
#[derive(Clone)]
pub struct Leaf {
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub key_usages: Vec<KeyUsagePurpose>,
}

impl Leaf {
    pub fn good(names: &[&str]) -> Leaf {
        let now = OffsetDateTime::now_utc();
        Leaf {
            names: names.iter().map(|n| n.to_string()).collect(),
            not_before: now - TimeDuration::hours(1),
            not_after: now + TimeDuration::days(90),
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
        }
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(self.names.first().map_or("leaf", String::as_str));
        params.subject_alt_names = self
            .names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().unwrap()),
            })
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = self.eku.clone();
        params.key_usages = self.key_usages.clone();
        params.use_authority_key_identifier_extension = true;
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params
    }

    /// Signed by `ca`: (certificate PEM, key PEM).
    pub fn signed_by(&self, ca: &Ca) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = self.params().signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Self-signed: (certificate PEM, key PEM).
    pub fn self_signed(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = self.params().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// SHA-256 (hex) of the first certificate in `pem`.
pub fn fingerprint(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    hex::encode(Sha256::digest(&der))
}

/// A client config trusting the CA certificates in `ca_pems`.
pub fn client_config(ca_pems: &[&str]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = ClientConfig::builder_with_provider(outpost_security::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects with TLS to `addr` as `name`.
pub async fn connect(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::clone(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

/// SHA-256 (hex) of the leaf certificate the server presented.
pub fn peer_fingerprint(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    hex::encode(Sha256::digest(&certs[0]))
}

/// Runs `openssl` with `args`, failing with a clear message when it is missing.
pub fn openssl(args: &[&str]) {
    let output = match Command::new("openssl").args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("the `openssl` CLI is not installed; install it with `apt-get install openssl`")
        }
        Err(e) => panic!("running openssl: {e}"),
    };
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PKCS#12 file made by `openssl pkcs12 -export` from a leaf, its key and a chain.
pub fn pkcs12(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    chain_pem: &str,
    password: &str,
) -> Vec<u8> {
    let cert = dir.join("p12-cert.pem");
    let key = dir.join("p12-key.pem");
    let chain = dir.join("p12-chain.pem");
    let out = dir.join("bundle.p12");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&chain, chain_pem).unwrap();
    let pass = format!("pass:{password}");
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        cert.to_str().unwrap(),
        "-inkey",
        key.to_str().unwrap(),
        "-certfile",
        chain.to_str().unwrap(),
        "-name",
        "outpost",
        "-passout",
        &pass,
        "-out",
        out.to_str().unwrap(),
    ]);
    std::fs::read(out).unwrap()
}

/// A pebble ACME server on loopback, killed on drop.
pub struct Pebble {
    child: Child,
    _dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory_url: String,
    /// The CA certificate (PEM) that signed pebble's own HTTPS certificate.
    pub https_root_pem: String,
    /// Pebble's management interface (issuing roots and intermediates).
    pub management: SocketAddr,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Finds the `pebble` binary, failing with install instructions when it is missing.
pub fn pebble_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pebble"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "pebble (the ACME test server) is not installed, and the ACME tests need it: \
             install it with `apt-get install pebble` (Debian/Ubuntu package `pebble`), which \
             puts `pebble` on PATH"
        )
    })
}

impl Pebble {
    /// Starts pebble, validating HTTP-01 challenges on `http01_port` of the identifier's
    /// address (the names used resolve to 127.0.0.1).
    pub async fn start(http01_port: u16) -> Pebble {
        let binary = pebble_binary();
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS certificate, from a CA the test trusts explicitly.
        let ca = root_ca("pebble test HTTPS CA");
        let mut https = Leaf::good(&["localhost", "127.0.0.1"]);
        https.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert_pem, key_pem) = https.signed_by(&ca);
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &key_pem).unwrap();
        let listen = free_port();
        let management = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http01_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let child = Command::new(binary)
            .arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting pebble");
        let pebble = Pebble {
            child,
            directory_url: format!("https://localhost:{listen}/dir"),
            https_root_pem: ca.pem.clone(),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            _dir: dir,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], listen));
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                return pebble;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pebble did not start listening on {addr}: {}", pebble.log());
    }

    /// Pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("pebble.log")).unwrap_or_default()
    }
}
