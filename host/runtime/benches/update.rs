//! Time from a signed artifact in the registry to the new version verified and serving, vs the
//! same update from a local file (no pull, no verification), measured in the same run.
//!
//! Each round publishes a new release (unique bytes, signed) to a local docker-registry, then
//! applies a manifest naming it (`image = …@sha256:…`, `now = true`) and polls until a call
//! answers from the new version. The baseline round applies a new release as a local
//! `component` file. Both include compiling the new component, the health check and the swap.
//!
//! Run: `cargo bench -p outpost-runtime --bench update [-- --quick]`.

#[path = "../tests/support/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions, ApplyOptions};
use outpost_update::{RegistryOptions, SignRequest};

fn options() -> RegistryOptions {
    RegistryOptions {
        insecure_http: true,
        ..RegistryOptions::default()
    }
}

fn manifest(dir: &Path, registry: &str, source: &str, version: &str) -> Manifest {
    let text = format!(
        r#"
[host.updates]
insecure_registries = ["{registry}"]

[[host.updates.publishers]]
name = "acme"
key = "keys/outpost-signing.pub"
plugins = ["svc"]
repositories = ["{registry}/acme/*"]

[plugins.svc]
kind = "pipeline"
{source}
config = {{ version = "{version}" }}
grants.kv = {{ namespace = "svc", quota_kb = 64 }}
health = {{ topic = "health" }}
"#
    );
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    Manifest::load(&path).unwrap()
}

async fn serving(app: &Appliance, version: &str) -> bool {
    match app.slot("svc").unwrap().handle("call", b"x").await {
        Ok(out) => out
            .first()
            .is_some_and(|m| m.payload == format!("{version}:x").as_bytes()),
        Err(_) => false,
    }
}

async fn until_serving(app: &Arc<Appliance>, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !serving(app, version).await {
        assert!(Instant::now() < deadline, "{version} never served");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 10 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let registry = registry::start_registry();
        let dir = tempfile::tempdir().unwrap();
        let keys = outpost_update::generate_keypair(&dir.path().join("keys")).unwrap();
        let repo = format!("{}/acme/svc", registry.host);
        let publish = |n: usize| {
            let (dir, key, repo) = (dir.path().to_path_buf(), keys.private_key.clone(), repo.clone());
            async move {
                let file: PathBuf = registry::release_bytes(&dir, &format!("r{n}"));
                let digest =
                    outpost_update::push_component(&format!("{repo}:r{n}"), &file, &options())
                        .await
                        .unwrap();
                let pinned = format!("{repo}@{digest}");
                let expires = time::OffsetDateTime::now_utc() + time::Duration::days(1);
                let request = SignRequest {
                    plugin: "svc".into(),
                    version: format!("{n}.0.0"),
                    expires: expires
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap(),
                };
                outpost_update::sign_artifact(&pinned, &key, &request, &options())
                    .await
                    .unwrap();
                (pinned, file)
            }
        };
        let (first, _) = publish(1).await;
        let mut opts = ApplianceOptions::new(dir.path().join("data"));
        opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
        let app = Appliance::start(
            manifest(dir.path(), &registry.host, &format!("image = \"{first}\""), "v1"),
            opts,
        )
        .await
        .unwrap();
        let now = ApplyOptions {
            now: true,
            ..ApplyOptions::default()
        };
        let (mut signed, mut local) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Signed artifact in the registry → verified and serving.
            let n = 2 + 2 * round;
            let (image, _) = publish(n).await;
            let version = format!("v{n}");
            let m = manifest(dir.path(), &registry.host, &format!("image = \"{image}\""), &version);
            let t = Instant::now();
            let report = app.apply_with(m, None, now).await.unwrap();
            assert!(report.succeeded(), "{report:?}");
            until_serving(&app, &version).await;
            signed.push(t.elapsed());

            // The same kind of update from a local file.
            let n = n + 1;
            let file = registry::release_bytes(dir.path(), &format!("local{n}"));
            let version = format!("v{n}");
            let m = manifest(
                dir.path(),
                &registry.host,
                &format!("component = {:?}", file.display().to_string()),
                &version,
            );
            let t = Instant::now();
            let report = app.apply_with(m, None, now).await.unwrap();
            assert!(report.succeeded(), "{report:?}");
            until_serving(&app, &version).await;
            local.push(t.elapsed());
        }
        app.shutdown().await;
        let (s, l) = (median(signed), median(local));
        println!("update/signed-registry-to-serving: median {:.1} ms over {rounds} rounds", s.as_secs_f64() * 1e3);
        println!("update/local-file-to-serving:      median {:.1} ms over {rounds} rounds", l.as_secs_f64() * 1e3);
        println!("ratios");
        println!(
            "  signed registry update / local file update: {:.2} (pull + signature + policy + audit cost: {:.1} ms)",
            s.as_secs_f64() / l.as_secs_f64(),
            (s.as_secs_f64() - l.as_secs_f64()) * 1e3
        );
    });
}
