//! Update control through the appliance, against a real OCI registry (Debian's
//! docker-registry on loopback): signed artifacts are verified before they run, code updates
//! wait for the maintenance window, refusals keep the serving version, a crash-looping update
//! rolls back by itself, and every decision is in the audit log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions, ApplyOptions, EngineSettings};
use outpost_update::{RegistryOptions, SignRequest};

#[path = "support/registry.rs"]
mod registry;

use registry::{Registry, release_bytes, start_registry};

struct Lab {
    registry: Registry,
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let registry = start_registry();
        let dir = tempfile::tempdir().unwrap();
        let keys = outpost_update::generate_keypair(&dir.path().join("keys")).unwrap();
        Lab {
            registry,
            dir,
            key: keys.private_key,
        }
    }

    fn options() -> RegistryOptions {
        RegistryOptions {
            insecure_http: true,
            ..RegistryOptions::default()
        }
    }

    /// Pushes a release; signs it as `version` of plugin `svc` unless `sign` is false.
    async fn publish(&self, tag: &str, version: &str, sign: bool) -> String {
        let path = release_bytes(self.dir.path(), tag);
        let repo = format!("{}/acme/svc", self.registry.host);
        let digest =
            outpost_update::push_component(&format!("{repo}:{tag}"), &path, &Self::options())
                .await
                .unwrap();
        let pinned = format!("{repo}@{digest}");
        if sign {
            let expires = time::OffsetDateTime::now_utc() + time::Duration::days(30);
            let request = SignRequest {
                plugin: "svc".into(),
                version: version.into(),
                expires: expires
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            };
            outpost_update::sign_artifact(&pinned, &self.key, &request, &Self::options())
                .await
                .unwrap();
        }
        pinned
    }

    fn manifest(&self, image: &str, config: &str) -> Manifest {
        let text = format!(
            r#"
[host.updates]
insecure_registries = ["{registry}"]
windows = [{{ start = "03:00", stop = "04:00" }}]

[[host.updates.publishers]]
name = "acme"
key = "keys/outpost-signing.pub"
plugins = ["svc"]
repositories = ["{registry}/acme/*"]

[plugins.svc]
kind = "pipeline"
image = "{image}"
config = {{ {config} }}
grants.kv = {{ namespace = "svc", quota_kb = 64 }}
rollback = {{ max_failures = 1, window_ms = 60000 }}
"#,
            registry = self.registry.host
        );
        let path = self.dir.path().join("outpost.toml");
        std::fs::write(&path, text).unwrap();
        Manifest::load(&path).unwrap()
    }
}

async fn answer(app: &Appliance) -> String {
    match app.slot("svc").unwrap().handle("call", b"x").await {
        Ok(out) => String::from_utf8(out.into_iter().next().unwrap().payload).unwrap(),
        Err(e) => format!("error: {e}"),
    }
}

/// Clock offset that makes "now" fall at `minute` after midnight UTC today.
fn offset_to(minute: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    minute * 60 - now % 86_400
}

fn audit(app: &Appliance) -> Vec<serde_json::Value> {
    let path = app.updates().unwrap().audit_path().to_path_buf();
    outpost_update::verify_audit_log(&path).expect("the audit chain verifies");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn decisions(app: &Appliance) -> Vec<(String, String)> {
    audit(app)
        .iter()
        .map(|e| {
            (
                e["decision"].as_str().unwrap_or_default().to_string(),
                e["version"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_updates_wait_for_the_window_refusals_keep_the_old_version_and_a_crash_loop_rolls_back()
 {
    let lab = Lab::new();
    let v1 = lab.publish("r1", "1.0.0", true).await;
    let v2 = lab.publish("r2", "2.0.0", true).await;
    let unsigned = lab.publish("r9", "9.0.0", false).await;
    let crashing = lab.publish("r3", "3.0.0", true).await;

    let mut opts = ApplianceOptions::new(lab.dir.path().join("data"));
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts.engine = EngineSettings {
        instance_slots: 16,
        ..EngineSettings::default()
    };
    // A new plugin starts at once, window or not.
    let app: Arc<Appliance> = Appliance::start(lab.manifest(&v1, "version = \"v1\""), opts)
        .await
        .unwrap();
    let updates = app.updates().unwrap().clone();
    updates.set_clock_offset(offset_to(12 * 60));
    assert!(!updates.window_open());
    assert_eq!(answer(&app).await, "v1:x");

    // Outside the window a verified update waits; the old version keeps serving.
    let report = app
        .apply(lab.manifest(&v2, "version = \"v2\""), None, false)
        .await
        .unwrap();
    assert_eq!(report.plugins[0].action, "deferred", "{report:?}");
    let status = app.plugin_status("svc").unwrap();
    assert_eq!(status.state, "pending-update");
    assert_eq!(
        status.pending_update.unwrap().version.as_deref(),
        Some("2.0.0")
    );
    assert_eq!(answer(&app).await, "v1:x");

    // The window opens: the staged update is applied by the host itself.
    updates.set_clock_offset(offset_to(3 * 60 + 30));
    let deadline = Instant::now() + Duration::from_secs(15);
    while answer(&app).await != "v2:x" {
        assert!(
            Instant::now() < deadline,
            "the window opened but v2 never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.plugin_status("svc").unwrap().pending_update.is_none());

    // Refusals, each with its reason; v2 keeps serving.
    for (image, why) in [(&unsigned, "unsigned"), (&v1, "older")] {
        let report = app
            .apply_with(
                lab.manifest(image, "version = \"vx\""),
                None,
                ApplyOptions {
                    now: true,
                    ..ApplyOptions::default()
                },
            )
            .await
            .unwrap();
        let error = report.plugins[0].error.clone().unwrap_or_default();
        assert!(error.to_lowercase().contains(why), "{why}: {report:?}");
        assert_eq!(answer(&app).await, "v2:x");
    }

    // An update that crash-loops is rolled back by itself.
    let report = app
        .apply_with(
            lab.manifest(&crashing, "version = \"v3\", trap-every = \"1\""),
            None,
            ApplyOptions {
                now: true,
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    for _ in 0..3 {
        answer(&app).await;
    }
    assert_eq!(answer(&app).await, "v2:x");
    assert_eq!(app.plugin_status("svc").unwrap().state, "rolled-back");

    // An explicit, forced rollback to an older signed version is accepted.
    let report = app
        .apply_with(
            lab.manifest(&v1, "version = \"v1\""),
            None,
            ApplyOptions {
                now: true,
                force_rollback: true,
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(answer(&app).await, "v1:x");

    let d = decisions(&app);
    let has = |decision: &str, version: &str| d.iter().any(|(a, b)| a == decision && b == version);
    assert!(has("accepted", "1.0.0") && has("applied", "1.0.0"), "{d:?}");
    assert!(has("accepted", "2.0.0") && has("applied", "2.0.0"), "{d:?}");
    assert!(
        d.iter().filter(|(a, _)| a == "refused").count() >= 2,
        "{d:?}"
    );
    assert!(has("rolled_back", "3.0.0"), "{d:?}");
    app.shutdown().await;
}
