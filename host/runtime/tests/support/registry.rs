//! A real OCI registry for tests and benchmarks: Debian's docker-registry on a free loopback
//! port, and releases of the versioned test plugin with unique bytes.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HINT: &str = "install Debian's docker-registry package: apt-get install -y docker-registry";

pub struct Registry {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("docker-registry: {e}; {HINT}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(&host) {
            let _ = s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes());
            let mut answer = String::new();
            if s.read_to_string(&mut answer).is_ok() && answer.contains(" 200 ") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        host,
        _dir: dir,
    }
}

/// The versioned test plugin with a custom section that makes each release's bytes unique.
pub fn release_bytes(dir: &Path, tag: &str) -> PathBuf {
    let mut wasm = std::fs::read(outpost_artifacts::VERSIONED).unwrap();
    let name = b"outpost-release";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    wasm.push(0);
    wasm.push(payload.len() as u8);
    wasm.extend_from_slice(&payload);
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}
