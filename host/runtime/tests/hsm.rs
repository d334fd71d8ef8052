//! Encryption at rest with a customer-managed key in an HSM (SoftHSM2 over PKCS#11), through
//! the appliance: the KEK is created in the token on first start, plugin state is sealed under
//! it, rotation happens in the token, and a key removed from the token makes the state
//! unreadable with an error that names it.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module loads, so the test re-runs itself as a child
//! process with that variable naming a fresh token directory.

use std::path::Path;
use std::process::Command;

use outpost_keys::pkcs11::locate_module;
use outpost_keys::{Pkcs11Config, Pkcs11Provider};
use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions};

const CHILD_ENV: &str = "OUTPOST_HSM_TEST_CHILD";
const TOKEN: &str = "outpost-appliance";
const PIN: &str = "4321";
const MARKER: &[u8] = b"MARKER-95b2-state-under-the-hsm-key";
const HINT: &str = "SoftHSM2 is needed: apt-get install softhsm2";

fn manifest(dir: &Path) -> Manifest {
    let text = format!(
        "[host.encryption]\nprovider = \"pkcs11\"\nmodule = \"{}\"\ntoken = \"{TOKEN}\"\npin_file = \"pin\"\nkey = \"site-kek\"\n",
        locate_module().unwrap().display()
    );
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    Manifest::load(&path).unwrap()
}

async fn start(dir: &Path) -> Result<std::sync::Arc<Appliance>, String> {
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    Appliance::start(manifest(dir), opts)
        .await
        .map_err(|e| e.to_string())
}

async fn child(dir: &Path) {
    let app = start(dir).await.unwrap();
    let status = app.key_status().unwrap();
    assert_eq!(
        (status.provider.as_str(), status.version),
        ("pkcs11", Some(1))
    );
    let ns = app.kv().namespace("svc", 1 << 20);
    ns.set("secret", MARKER).unwrap();
    let rotated = app.rotate_keys().await.unwrap();
    assert_eq!(rotated.version, Some(2));
    app.shutdown().await;
    drop((app, ns));

    let app = start(dir).await.unwrap();
    assert_eq!(
        app.kv()
            .namespace("svc", 1 << 20)
            .get("secret")
            .unwrap()
            .as_deref(),
        Some(MARKER)
    );
    app.shutdown().await;
    drop(app);
    for entry in walk(&dir.join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext in {}",
            entry.display()
        );
    }

    // The customer removes the key version in use from the HSM.
    let config = Pkcs11Config::new(locate_module().unwrap(), TOKEN, PIN, "site-kek");
    Pkcs11Provider::open(&config)
        .unwrap()
        .destroy_version(2)
        .unwrap();
    let err = start(dir).await.err().unwrap();
    assert!(err.contains("site-kek") && err.contains("missing"), "{err}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn plugin_state_is_sealed_under_a_kek_that_lives_in_the_hsm_and_a_removed_key_is_named() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(child(Path::new(&dir)));
        return;
    }
    locate_module().unwrap_or_else(|e| panic!("{e}\n{HINT}"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", TOKEN])
        .args(["--so-pin", "87654321", "--pin", PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| panic!("softhsm2-util: {e}\n{HINT}"));
    assert!(init.status.success(), "{init:?}");
    let pin = dir.path().join("pin");
    std::fs::write(&pin, PIN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "plugin_state_is_sealed_under_a_kek_that_lives_in_the_hsm_and_a_removed_key_is_named",
            "--exact",
            "--nocapture",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
