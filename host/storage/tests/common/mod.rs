//! Helpers shared by the integration tests: data generation, share specs, and a real Azurite
//! started on a free loopback port.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use outpost_storage::{FileState, Share, ShareKind, ShareOptions, SharePath, ShareSpec};
use sha2::{Digest, Sha256};

/// Azurite's published development account.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (public; not a secret).
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Options for fast tests: no settle window, small parts.
pub fn fast_options(part_size: u64) -> ShareOptions {
    ShareOptions {
        part_size,
        multipart_threshold: part_size,
        settle_window: Duration::ZERO,
        scan_interval: Duration::from_millis(100),
        retry: outpost_storage::RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        },
        ..ShareOptions::default()
    }
}

pub fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

pub fn local_spec(name: &str, root: &Path, target_dir: &Path, quota: u64) -> ShareSpec {
    ShareSpec {
        name: name.into(),
        root: root.to_path_buf(),
        kind: ShareKind::CloudTiered,
        target: file_url(target_dir),
        target_options: BTreeMap::new(),
        quota_bytes: quota,
    }
}

pub fn azure_spec(name: &str, root: &Path, port: u16, container: &str, prefix: &str) -> ShareSpec {
    let mut options = BTreeMap::new();
    options.insert("azure_storage_account_name".into(), DEV_ACCOUNT.into());
    options.insert("azure_storage_account_key".into(), DEV_KEY.into());
    options.insert(
        "azure_storage_endpoint".into(),
        format!("http://127.0.0.1:{port}/{DEV_ACCOUNT}"),
    );
    options.insert("azure_allow_http".into(), "true".into());
    ShareSpec {
        name: name.into(),
        root: root.to_path_buf(),
        kind: ShareKind::CloudTiered,
        target: format!("az://{container}/{prefix}"),
        target_options: options,
        quota_bytes: 1 << 40,
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `azurite-blob` launcher: `$AZURITE_BLOB` if set, else what `scripts/azurite.sh`
/// (installing it into target/azurite when missing) prints. Panics with install instructions
/// when neither works: these tests never skip.
pub fn azurite_launcher() -> PathBuf {
    installed_launcher(
        "AZURITE_BLOB",
        "scripts/azurite.sh",
        "Azurite is required for these tests and could not be installed. Install node and npm \
         (`apt-get install -y nodejs npm`), then run `scripts/azurite.sh` (it installs the npm \
         package `azurite` into target/azurite), or point AZURITE_BLOB at an azurite-blob launcher.",
    )
}

/// A service's launcher: the path in `$env` if set, else the last line `script` (which installs
/// the service when missing) prints. Panics with `help` when neither works.
fn installed_launcher(env: &str, script: &str, help: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let script = repo_root().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "{help}");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        Path::new(&path).exists(),
        "{} printed {path:?}, which does not exist; run it by hand",
        script.display()
    );
    PathBuf::from(path)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Azurite blob service; killed on drop.
pub struct Azurite {
    child: Option<Child>,
    pub port: u16,
    pub location: PathBuf,
    _dir: Option<tempfile::TempDir>,
    in_memory: bool,
}

impl Azurite {
    /// Starts Azurite with on-disk persistence in a fresh temporary directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_path_buf();
        let mut a = Azurite {
            child: None,
            port: free_port(),
            location,
            _dir: Some(dir),
            in_memory: false,
        };
        a.launch();
        a
    }

    /// Starts Azurite keeping everything in memory.
    pub fn start_in_memory() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_path_buf();
        let mut a = Azurite {
            child: None,
            port: free_port(),
            location,
            _dir: Some(dir),
            in_memory: true,
        };
        a.launch();
        a
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(azurite_launcher());
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.port.to_string())
            .args(["--silent", "--skipApiVersionCheck"]);
        if self.in_memory {
            // Azurite refuses --location together with --inMemoryPersistence.
            cmd.arg("--inMemoryPersistence");
        } else {
            cmd.arg("--location").arg(&self.location);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start azurite-blob: {e}; run scripts/azurite.sh"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("azurite-blob exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "azurite did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the service gracefully (SIGTERM, so it saves its metadata; SIGKILL after 10 s),
    /// keeping its data directory.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Creates a container with a Shared Key-signed REST call.
    pub fn create_container(&self, container: &str) {
        let date = http_date(SystemTime::now());
        let version = "2021-08-06";
        let resource = format!("/{DEV_ACCOUNT}/{DEV_ACCOUNT}/{container}\nrestype:container");
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(DEV_KEY)
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let request = format!(
            "PUT /{DEV_ACCOUNT}/{container}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             x-ms-date: {date}\r\nx-ms-version: {version}\r\nContent-Length: 0\r\n\
             Authorization: SharedKey {DEV_ACCOUNT}:{sig}\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = s.read_to_string(&mut response);
        let status = response.lines().next().unwrap_or_default().to_owned();
        assert!(
            status.contains(" 201 ") || status.contains(" 409 "),
            "creating container {container} failed: {response}"
        );
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// RFC 1123 date for the x-ms-date header.
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Asserts the part log never shows a part sent again after it was recorded complete.
pub fn assert_no_completed_part_resent(log: &[outpost_storage::PartEvent]) {
    use outpost_storage::PartEventKind;
    let mut done = std::collections::HashSet::new();
    for ev in log {
        let key = (ev.upload_id.clone(), ev.part);
        match ev.kind {
            PartEventKind::Send => assert!(
                !done.contains(&key),
                "part {} of upload {} ({}) was sent again after it completed",
                ev.part,
                ev.upload_id,
                ev.path
            ),
            PartEventKind::Done => {
                done.insert(key);
            }
        }
    }
}

/// A share on S3 at `http://127.0.0.1:{port}` (an S3-compatible server), path-style requests.
pub fn s3_spec(name: &str, root: &Path, port: u16, bucket: &str, prefix: &str) -> ShareSpec {
    let mut options = BTreeMap::new();
    options.insert("aws_endpoint".into(), format!("http://127.0.0.1:{port}"));
    options.insert("aws_allow_http".into(), "true".into());
    options.insert("aws_region".into(), "us-east-1".into());
    options.insert("aws_access_key_id".into(), "outpost-test".into());
    options.insert("aws_secret_access_key".into(), "outpost-test-secret".into());
    options.insert("aws_virtual_hosted_style_request".into(), "false".into());
    ShareSpec {
        name: name.into(),
        root: root.to_path_buf(),
        kind: ShareKind::CloudTiered,
        target: format!("s3://{bucket}/{prefix}"),
        target_options: options,
        quota_bytes: 1 << 40,
    }
}

/// The `moto_server` launcher: `$MOTO_SERVER` if set, else what `scripts/moto.sh` (installing
/// it into target/s3env when missing) prints. Panics with install instructions when neither
/// works: these tests never skip.
pub fn moto_launcher() -> PathBuf {
    installed_launcher(
        "MOTO_SERVER",
        "scripts/moto.sh",
        "moto's S3 server is required for these tests and could not be installed: run \
         `scripts/moto.sh` (python3 with venv and pip), or point MOTO_SERVER at a moto_server.",
    )
}

/// A running S3-compatible server (moto, in memory); killed on drop.
pub struct MotoS3 {
    child: Child,
    pub port: u16,
}

impl MotoS3 {
    /// Starts moto's server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        let mut child = Command::new(moto_launcher())
            .args(["-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server: {e}; run scripts/moto.sh"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("moto_server exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        MotoS3 { child, port }
    }

    /// Creates a bucket (path-style `PUT /bucket`).
    pub fn create_bucket(&self, bucket: &str) {
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = s.read_to_string(&mut response);
        let status = response.lines().next().unwrap_or_default().to_owned();
        assert!(
            status.contains(" 200 "),
            "creating bucket {bucket} failed: {response}"
        );
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sp(s: &str) -> SharePath {
    SharePath::new(s).unwrap()
}

/// The round trip every remote target passes: a small file (single PUT), a large one
/// (multipart, `large_len` bytes in `part_size` parts) and an empty one are uploaded with
/// digests checked; evicted; read by range (staying evicted) and whole (recalled and verified);
/// and a second appliance (`spec` for another root, same remote) sees them after a refresh.
pub async fn round_trip(spec: impl Fn(&Path) -> ShareSpec, part_size: u64, large_len: usize) {
    let root = tempfile::tempdir().unwrap();
    let share = Share::open(spec(root.path()), fast_options(part_size))
        .await
        .unwrap();
    let small = data(1, 300_000);
    let large = data(2, large_len);
    share
        .write(&sp("small.bin"), Bytes::from(small.clone()))
        .await
        .unwrap();
    share
        .write(&sp("clips/large.bin"), Bytes::from(large.clone()))
        .await
        .unwrap();
    share.write(&sp("empty"), Bytes::new()).await.unwrap();

    let report = share.sync_once().await.unwrap();
    assert_eq!(report.uploaded, 3, "{report:?}");
    let stats = share.stats().unwrap();
    assert_eq!(
        stats.parts_sent,
        (large_len as u64).div_ceil(part_size),
        "{large_len} bytes in {part_size}-byte parts"
    );
    assert_eq!(stats.files_synced, 3);
    let e = share.entry(&sp("clips/large.bin")).unwrap().unwrap();
    assert_eq!(e.sha256.as_deref(), Some(sha256_hex(&large).as_str()));
    assert!(share.uploads_in_progress().unwrap().is_empty());

    share.evict(&sp("small.bin")).await.unwrap();
    share.evict(&sp("clips/large.bin")).await.unwrap();
    assert_eq!(
        std::fs::metadata(root.path().join("clips/large.bin"))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        share.stats().unwrap().bytes_evicted,
        (small.len() + large.len()) as u64
    );

    // A range of a large evicted file comes by ranged GET and leaves it evicted.
    let range = large_len / 2..large_len / 2 + 100_000;
    let got = share
        .read_range(&sp("clips/large.bin"), range.start as u64..range.end as u64)
        .await
        .unwrap();
    assert_eq!(&got[..], &large[range]);
    assert_eq!(
        share.entry(&sp("clips/large.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert_eq!(share.stats().unwrap().range_downloads, 1);

    // Whole recalls are verified against the journal's digest.
    assert_eq!(
        sha256_hex(&share.read(&sp("small.bin")).await.unwrap()),
        sha256_hex(&small)
    );
    assert_eq!(
        sha256_hex(&share.read(&sp("clips/large.bin")).await.unwrap()),
        sha256_hex(&large)
    );
    assert_eq!(
        share.entry(&sp("clips/large.bin")).unwrap().unwrap().state,
        FileState::Synced
    );

    // Another appliance (another root) sees the objects after a refresh, as stubs.
    let root2 = tempfile::tempdir().unwrap();
    let other = Share::open(spec(root2.path()), fast_options(part_size))
        .await
        .unwrap();
    let refresh = other.refresh().await.unwrap();
    assert_eq!(refresh.added, 3, "{refresh:?}");
    let stub = other.entry(&sp("small.bin")).unwrap().unwrap();
    assert_eq!(stub.state, FileState::Evicted);
    assert_eq!(
        stub.sha256.as_deref(),
        Some(sha256_hex(&small).as_str()),
        "single-PUT objects carry their digest as metadata"
    );
    assert_eq!(
        std::fs::metadata(root2.path().join("small.bin"))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        sha256_hex(&other.read(&sp("small.bin")).await.unwrap()),
        sha256_hex(&small)
    );
    assert_eq!(
        sha256_hex(&other.read(&sp("clips/large.bin")).await.unwrap()),
        sha256_hex(&large)
    );
    assert_eq!(other.read(&sp("empty")).await.unwrap().len(), 0);
    assert_eq!(
        other.refresh().await.unwrap().added,
        0,
        "nothing new the second time"
    );
}
