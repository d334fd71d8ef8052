//! The inference pipeline as an operator wires it: camera frames posted to the management API's
//! ingest endpoint are routed to the OCR pipeline (on tract, the embedded engine), and what it
//! reads is routed to a real MQTT broker (mosquitto) through the sink's spool.

#[path = "../../host/services/tests/support/mqtt.rs"]
mod mqtt;
#[path = "support/models.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use mqtt::{Mosquitto, PATIENCE, Subscriber};
use support::{ocr_manifest, python, repo, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs `body` to the API over plain HTTP (loopback) and returns the status code.
async fn post(api: SocketAddr, path: &str, token: &str, body: &[u8]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: appliance\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"))
}

fn read_text(payload: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
    json["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_posted_to_ingest_are_read_by_the_ocr_pipeline_and_the_text_reaches_mqtt() {
    let broker = Mosquitto::start();
    let mut sub = Subscriber::connect(broker.port, "site-7/#", None).await;
    let dir = tempfile::tempdir().unwrap();

    let generated = dir.path().join("pallet.png");
    let status = Command::new(python())
        .arg(repo().join("conformance/reference/make_text_image.py"))
        .args(["PALLET 42 DOCK B", generated.to_str().unwrap()])
        .args(["--size", "48", "--margin", "48"])
        .status()
        .expect("the reference python runs");
    assert!(status.success());

    let manifest = format!(
        r#"{ocr}
[sinks.cloud]
kind = "mqtt"
url = "mqtt://127.0.0.1:{port}"
topic_prefix = "site-7/"

[[routes]]
from = "ingest/cameras/#"
to = "plugins/ocr"

[[routes]]
from = "plugins/ocr/ocr/#"
to = "sinks/cloud"
"#,
        ocr = ocr_manifest("tract", 1, 2),
        port = broker.port
    );
    let app = start(dir.path(), &manifest).await;
    let api = outpost_runtime::api::start(app.clone(), "127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let token = api
        .new_admin_token
        .clone()
        .expect("a first start creates a token");

    let sample = std::fs::read(repo().join("examples/ocr/sample.png")).unwrap();
    let pallet = std::fs::read(&generated).unwrap();
    for (camera, frame) in [("dock-1", &sample), ("dock-2", &pallet)] {
        let path = format!("/v1/ingest/cameras/{camera}");
        assert_eq!(post(api.addr, &path, &token, frame).await, 202);
    }
    // A frame that is not an image fails in the pipeline; nothing reaches the broker for it and
    // the next frame still goes through.
    assert_eq!(
        post(
            api.addr,
            "/v1/ingest/cameras/dock-1",
            &token,
            b"not a frame"
        )
        .await,
        202
    );
    assert_eq!(
        post(api.addr, "/v1/ingest/cameras/dock-3", &token, &sample).await,
        202
    );

    sub.wait_until("three readings", |got| got.len() >= 3).await;
    let mut texts: Vec<String> = sub.got.iter().map(|(_, p)| read_text(p)).collect();
    texts.sort();
    assert_eq!(
        texts,
        ["OUTPOST EDGE 2026", "OUTPOST EDGE 2026", "PALLET 42 DOCK B"]
    );
    assert!(
        sub.got.iter().all(|(t, _)| t == "site-7/ocr/results"),
        "{:?}",
        sub.got.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );

    let until = Instant::now() + PATIENCE;
    loop {
        let m = app.metrics().await;
        let to_ocr = m.routes.iter().find(|r| r.to == "plugins/ocr").unwrap();
        let ocr = app.plugin_status("ocr").unwrap();
        if ocr.stats.errors >= 1 && m.sinks[0].spool.depth == 0 {
            // Four frames reached the pipeline: three were read, and the one it refused counts
            // as failed on the route (not forwarded) and produced nothing to send.
            assert_eq!((to_ocr.forwarded, to_ocr.failed), (3, 1), "{to_ocr:?}");
            assert_eq!(m.sinks[0].delivered, 3, "{:?}", m.sinks[0]);
            assert!(
                ocr.last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("expected a PNG, a JPEG"),
                "{:?}",
                ocr.last_error
            );
            break;
        }
        assert!(
            Instant::now() < until,
            "{:?} {:?} {:?}",
            m.routes,
            m.sinks,
            ocr.stats
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ocr = app.plugin_status("ocr").unwrap();
    assert_eq!(ocr.state, "running");
    assert!(
        ocr.inference.unwrap().computes >= 6,
        "det and rec ran per frame"
    );
    app.shutdown().await;
}
