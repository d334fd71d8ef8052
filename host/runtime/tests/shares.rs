//! A cloud-tiered share in the appliance, with the tiering-default policy plugin deciding and
//! the host applying: files sync to the target, the policy evicts the coldest synced files until
//! its free-space target is met, a pinned file stays, and evicted files read back intact.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions};
use outpost_storage::{FileState, SharePath};

fn content(i: usize) -> Vec<u8> {
    (0..150 * 1024).map(|b| (b * 31 + i * 7) as u8).collect()
}

/// Starts an appliance from manifest `text` written into `dir`, finding plugins next to
/// `artifact`.
async fn start(dir: &Path, text: &str, artifact: &str) -> Arc<Appliance> {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let manifest = Manifest::load(&path).unwrap();
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs
        .push(Path::new(artifact).parent().unwrap().to_path_buf());
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    Appliance::start(manifest, opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_plugin_evicts_the_coldest_synced_files_until_its_free_space_target_is_met() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud).unwrap();
    let text = format!(
        r#"
[plugins.tiering]
kind = "tiering-policy"
component = "tiering_default.wasm"
config = {{ free_space_percent = "50", min_file_size_bytes = "1024" }}

[shares.archive]
path = "archive"
kind = "cloud-tiered"
target = "file://{}"
quota_mb = 1
policy = "tiering"
evaluate_s = 1
"#,
        cloud.display()
    );
    let app = start(dir.path(), &text, outpost_artifacts::TIERING_DEFAULT).await;
    let running = app.share("archive").expect("the share runs");
    let share = running.share().clone();

    // Six files of 150 KiB fill 88% of the 1 MiB quota; the policy wants 50% free.
    for i in 0..6 {
        let p = SharePath::new(&format!("cam/{i}.bin")).unwrap();
        share.write(&p, Bytes::from(content(i))).await.unwrap();
    }
    let pinned = SharePath::new("cam/0.bin").unwrap();
    share.pin(&pinned).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let status = app
            .shares()
            .into_iter()
            .find(|s| s.name == "archive")
            .unwrap();
        let st = status.stats.clone().unwrap();
        if st.bytes_evicted > 0 && st.bytes_local <= 512 * 1024 {
            assert_eq!(status.policy_stats.failures, 0, "{status:?}");
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the policy never met its target: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Only as much as needed: four files (600 KiB) stay at most, at least three.
    assert!(
        stats.files_evicted >= 3 && stats.files_evicted <= 4,
        "{stats:?}"
    );
    let entry = share.entry(&pinned).unwrap().unwrap();
    assert_ne!(entry.state, FileState::Evicted, "a pinned file was evicted");

    // Every file reads back intact, evicted or not (recall is transparent).
    for i in 0..6 {
        let p = SharePath::new(&format!("cam/{i}.bin")).unwrap();
        assert_eq!(
            share.read(&p).await.unwrap().as_ref(),
            &content(i)[..],
            "file {i}"
        );
    }
    // What left the device is sealed under the host's key: no file's bytes in the target.
    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    let mut objects = Vec::new();
    walk(&cloud, &mut objects);
    assert!(!objects.is_empty());
    for i in 0..6 {
        let probe = &content(i)[1000..1064];
        assert!(
            objects.iter().all(|o| !o.windows(64).any(|w| w == probe)),
            "plaintext of file {i} in the cloud target"
        );
    }
    let metrics = outpost_runtime::metrics::render("t", &app.metrics().await);
    assert!(
        metrics
            .contains("outpost_share_policy_actions_total{share=\"archive\",result=\"applied\"}"),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_in_and_out_of_a_share_through_the_api_and_unsafe_and_oversized_paths_are_refused()
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.toml");
    std::fs::write(
        &path,
        "[shares.drop]\npath = \"drop\"\nkind = \"edge-local\"\nquota_mb = 1\n",
    )
    .unwrap();
    let mut opts = ApplianceOptions::new(dir.path().join("data"));
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = Appliance::start(Manifest::load(&path).unwrap(), opts)
        .await
        .unwrap();
    let api = outpost_runtime::api::start(app.clone(), "127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap();
    let client = outpost_security::ApiClient::new(
        &format!("https://{}", api.addr),
        api.new_admin_token.clone(),
        api.ca_pem.clone(),
    )
    .unwrap();
    let body = content(1);
    let resp = client
        .put(
            "/v1/shares/drop/files/line%201/frame.bin",
            body.clone(),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(
        std::fs::read(dir.path().join("drop/line 1/frame.bin")).unwrap(),
        body,
        "the file is a plain file in the share's directory"
    );
    let back = client
        .request(
            http::Method::GET,
            "/v1/shares/drop/files/line%201/frame.bin",
            None,
        )
        .await
        .unwrap();
    assert_eq!((back.status, back.body.to_vec()), (200, body.clone()));
    let list: serde_json::Value = client
        .get_json("/v1/shares/drop/files?prefix=line%201/")
        .await
        .unwrap();
    assert_eq!(list[0]["path"], "line 1/frame.bin");
    assert_eq!(list[0]["size"], body.len());
    let xml = client
        .request(http::Method::GET, "/v1/shares/drop/files?comp=list", None)
        .await
        .unwrap()
        .text();
    assert!(xml.contains("<Name>line 1/frame.bin</Name>"), "{xml}");
    for bad in ["..%2F..%2Fetc%2Fpasswd", "%2Fabsolute", "a%00b", "%FF%FE"] {
        let resp = client
            .put(
                &format!("/v1/shares/drop/files/{bad}"),
                b"x".to_vec(),
                "application/octet-stream",
            )
            .await
            .unwrap();
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }
    // A path of 60,000 bytes (near the longest URI a client can send) is refused as a path,
    // nothing is written and the host keeps serving.
    let long = format!("/v1/shares/drop/files/{}", "a/".repeat(30_000));
    let resp = client
        .put(&long, b"x".to_vec(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.text());
    let names: Vec<_> = std::fs::read_dir(dir.path().join("drop"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names, ["line 1"]);
    let health = client
        .request(http::Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    // A full edge-local share refuses, and keeps what it had.
    let resp = client
        .put(
            "/v1/shares/drop/files/big.bin",
            vec![7; 2 << 20],
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 507, "{}", resp.text());
    assert_eq!(
        std::fs::read(dir.path().join("drop/line 1/frame.bin")).unwrap(),
        body
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_writes_reads_and_lists_the_shares_it_is_granted_and_is_refused_everywhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud).unwrap();
    let text = format!(
        r#"
[plugins.writer]
kind = "pipeline"
component = "share_writer.wasm"
grants.shares = {{ archive = "rw", local = "ro" }}

[plugins.nogrant]
kind = "pipeline"
component = "share_writer.wasm"

[shares.archive]
path = "archive"
kind = "cloud-tiered"
target = "file://{}"
quota_mb = 4

[shares.local]
path = "local"
kind = "edge-local"
quota_mb = 1
"#,
        cloud.display()
    );
    let app = start(dir.path(), &text, outpost_artifacts::SHARE_WRITER).await;

    // Importing `shares` without a grant is refused before the plugin runs.
    let refused = app.plugin_status("nogrant").unwrap();
    assert_eq!(refused.state, "failed");
    let why = refused.last_error.unwrap();
    assert!(
        why.contains("outpost:plugin/shares") && why.contains("grants.shares"),
        "{why}"
    );

    let slot = app.slot("writer").unwrap();
    let call = |topic: &'static str, payload: Vec<u8>| {
        let slot = slot.clone();
        async move {
            slot.handle(topic, &payload)
                .await
                .map(|out| out.into_iter().next().unwrap().payload)
                .map_err(|e| e.to_string())
        }
    };
    let frame: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut request = b"archive\ncam/1/frame.bin\n".to_vec();
    request.extend(&frame);
    assert_eq!(call("write", request).await.unwrap(), b"ok");

    // The file is the share's like any other: journaled, synced, and readable back.
    let running = app.share("archive").unwrap();
    let p = SharePath::new("cam/1/frame.bin").unwrap();
    assert_eq!(running.share().read(&p).await.unwrap(), frame);
    running.share().sync_once().await.unwrap();
    assert_eq!(
        running.share().entry(&p).unwrap().unwrap().state,
        FileState::Synced
    );
    assert_eq!(
        call("read", b"archive\ncam/1/frame.bin".to_vec())
            .await
            .unwrap(),
        frame
    );
    assert_eq!(
        call("list", b"archive\ncam/".to_vec()).await.unwrap(),
        b"cam/1/frame.bin"
    );
    // An evicted file is recalled for the plugin.
    running.share().evict(&p).await.unwrap();
    assert_eq!(
        running.share().entry(&p).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert_eq!(
        call("read", b"archive\ncam/1/frame.bin".to_vec())
            .await
            .unwrap(),
        frame
    );

    // Refusals name what was wrong and write nothing.
    for (topic, payload, want) in [
        (
            "write",
            "local\nx.txt\ndata",
            "denied: plugin `writer` may only read share `local`",
        ),
        (
            "write",
            "other\nx.txt\ndata",
            "denied: plugin `writer` is not granted share `other`",
        ),
        ("write", "archive\n../escape.txt\ndata", "bad-path"),
        ("write", "archive\n/abs.txt\ndata", "bad-path"),
        ("read", "archive\nnone.txt", "not-found"),
    ] {
        let err = call(topic, payload.as_bytes().to_vec()).await.unwrap_err();
        assert!(err.contains(want), "{payload:?}: {err}");
    }
    assert_eq!(call("list", b"local\n".to_vec()).await.unwrap(), b"");
    let names: Vec<String> = running
        .share()
        .entries()
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(names, ["cam/1/frame.bin"]);
    assert!(!dir.path().join("escape.txt").exists());
    app.shutdown().await;
}
