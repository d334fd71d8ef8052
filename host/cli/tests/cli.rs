//! The `outpost` binary as a newcomer uses it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

fn outpost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outpost"));
    c.env("RUST_LOG", "warn");
    c
}

/// A running `outpost up`. Its stdout is read on a thread so that every wait for a line has a
/// deadline (a hung host fails the test with what it printed instead of blocking CI), and it is
/// killed when dropped, also when an assertion fails first.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything printed so far, for failure messages.
    printed: String,
}

impl Up {
    fn spawn(mut command: Command) -> Up {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Up {
            child,
            lines,
            printed: String::new(),
        }
    }

    /// Reads lines until one satisfies `done` and returns it; panics naming `what` when `limit`
    /// passes first or the process ends.
    fn line_where(&mut self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.printed.push_str(&line);
                    self.printed.push('\n');
                    if done(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`outpost up` printed no {what} within {limit:?}; it printed:\n{}",
                    self.printed
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "`outpost up` ended ({:?}) before printing {what}; it printed:\n{}",
                    self.child.wait().ok(),
                    self.printed
                ),
            }
        }
    }

    /// What `outpost up` prints until it says how to stop it (at most a minute).
    fn banner(&mut self) -> String {
        self.line_where("banner", Duration::from_secs(60), |l| {
            l.contains("stop with ctrl-c")
        });
        self.printed.clone()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The management API's URL from `outpost up`'s banner.
fn api_url(banner: &str) -> String {
    banner
        .split("api:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no api: in {banner}"))
        .to_string()
}

#[test]
fn version_prints_the_package_version() {
    let out = outpost().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("outpost {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn plugin_inspect_names_the_world_imports_and_digest() {
    let out = outpost()
        .args(["plugin", "inspect", outpost_artifacts::ECHO_PIPELINE])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("world:    pipeline"), "{text}");
    assert!(text.contains("outpost:plugin/kv@0.1.0"), "{text}");
    assert!(text.contains("needs grants.kv"), "{text}");
    assert!(text.contains("digest:   sha256:"), "{text}");
}

#[test]
fn job_run_passes_args_streams_output_and_returns_the_exit_status() {
    let out = outpost()
        .args(["job", "run", outpost_artifacts::HELLO_JOB, "--", "cli"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "hello, cli!\n");
    let out = outpost()
        .args([
            "job",
            "run",
            outpost_artifacts::HELLO_JOB,
            "--",
            "exit",
            "4",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "exiting with 4\n");
}

#[test]
fn job_run_with_a_bad_flag_fails_with_one_clear_line() {
    let out = outpost()
        .args([
            "job",
            "run",
            "--dir",
            "nonsense",
            outpost_artifacts::HELLO_JOB,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "outpost: error: --dir nonsense: expected HOST::GUEST or HOST::GUEST:ro\n"
    );
    let out = outpost()
        .args(["job", "run", "/no/such/file.wasm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("outpost: error: reading /no/such/file.wasm:") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn up_with_a_malformed_manifest_names_the_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nbogus = 1\n",
    )
    .unwrap();
    let out = outpost()
        .args(["up", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml:4:1: unknown field `bogus`"), "{err}");
}

#[test]
fn up_with_no_flags_runs_the_demo_reads_the_sample_image_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    // The OCR models come from their wheel; scripts/test.sh has cached it already, so the fetch
    // only unpacks (without the cache, `up` downloads it).
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/model-cache");
    let mut up = outpost();
    up.env("OUTPOST_MODEL_CACHE", &cache)
        .args([
            "up",
            "--http-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .current_dir(dir.path()) // no examples/ here: the built-in demo manifest is used
        .stderr(Stdio::null());
    let mut up = Up::spawn(up);
    let banner = up.banner();
    assert!(banner.contains("host `outpost-demo` is up"), "{banner}");
    assert!(
        banner.contains("echo") && banner.contains("pipeline") && banner.contains("running"),
        "{banner}"
    );
    // The OCR pipeline reads the sample image on the embedded engine (tract), fetched models and
    // all, and `up` prints what it read. Generous: the deadline only turns a hang into a
    // failure that shows what was printed.
    let ocr = up.line_where("`ocr:` line", Duration::from_secs(300), |l| {
        l.contains("ocr:")
    });
    assert!(
        ocr.contains("reads \"OUTPOST EDGE 2026\"") && ocr.contains("on tract"),
        "{ocr}"
    );
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.contains("hello from outpost: GET /hello\n"), "{resp}");
    // On the box, the CLI finds the admin token and the device CA in the data directory.
    let api = api_url(&banner);
    assert!(api.starts_with("https://127.0.0.1:"), "{banner}");
    // A newcomer is told where the web UI is and how to log in the first time.
    assert!(
        banner.contains(&format!("web ui:    {api}/ui/"))
            && banner.contains("user admin, first-login password "),
        "{banner}"
    );
    let password = std::fs::read_to_string(dir.path().join("data/ui-initial-password")).unwrap();
    assert!(banner.contains(password.trim()), "{banner}");
    let status = outpost()
        .args(["status", "--api", &api, "--host-data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let table = String::from_utf8(status.stdout).unwrap();
    assert!(
        status.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        table.contains("echo") && table.contains("hello") && table.contains("greeter"),
        "{table}"
    );
    assert!(table.contains("running"), "{table}");

    // apply: the same manifest changes nothing; a new version of echo is swapped in.
    // Written into the data directory, its relative paths (plugins, models) resolve as the
    // running demo's do.
    let manifest = dir.path().join("data").join("next.toml");
    let demo = include_str!("../../../examples/appliance.toml");
    std::fs::write(&manifest, demo).unwrap();
    let run = |args: &[&str]| {
        let out = outpost()
            .args(args)
            .args(["--api", &api, "--host-data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(&["apply", manifest.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no changes"), "{out}");
    let next = demo.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1);
    std::fs::write(&manifest, &next).unwrap();
    let (code, out) = run(&["apply", manifest.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("update") && out.contains("echo") && out.contains("ok"),
        "{out}"
    );
    let (code, out) = run(&["rollback", "echo"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("now serving version 0.1.0"), "{out}");
    let (code, out) = run(&["apply", "/no/such.toml"]);
    assert_eq!(code, Some(1), "{out}");
    drop(up);
}

#[test]
fn plugin_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = outpost()
        .args(["plugin", "keygen", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = dir.path().join("outpost-signing.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(dir.path().join("outpost-signing.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let before = std::fs::read(&key).unwrap();
    let again = outpost()
        .args(["plugin", "keygen", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "a second keygen must not replace the key"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn wipe_destroys_the_keys_and_the_data_and_refuses_without_confirmation_or_while_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A device key and an encrypted store, as a host leaves them.
    let keys = std::sync::Arc::new(
        outpost_keys::DeviceKeyStore::open(data.join("keys"), "outpost-kek").unwrap(),
    );
    let provider: outpost_services::SharedProvider = keys.clone();
    let kv = outpost_services::KvStore::open_encrypted(&data.join("kv.redb"), provider).unwrap();
    kv.namespace("n", 1024).set("k", b"state").unwrap();
    std::fs::create_dir_all(data.join("spool")).unwrap();
    std::fs::write(data.join("spool/mqtt.redb"), b"queued").unwrap();

    // In use: refused, nothing touched.
    let out = outpost()
        .args(["wipe", "--yes", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );
    assert!(data.join("kv.redb").exists());
    drop(kv);

    let out = outpost()
        .args(["wipe", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "no wipe without --yes");
    assert!(data.join("keys").read_dir().unwrap().count() > 0);

    let out = outpost()
        .args(["wipe", "--yes", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("wipe: done"), "{text}");
    assert!(
        text.contains("outpost-kek"),
        "the destroyed key files are listed: {text}"
    );
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "data left behind"
    );
}

#[test]
fn shares_lists_refresh_pulls_cloud_objects_and_get_recalls_a_file_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(cloud.join("incoming")).unwrap();
    // An object another site uploaded: the share has never seen it.
    let content: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(cloud.join("incoming/frames.bin"), &content).unwrap();
    let manifest = dir.path().join("outpost.toml");
    std::fs::write(
        &manifest,
        format!(
            "[host]\nname = \"store-42\"\n\n[host.encryption]\nprovider = \"none\"\n\n\
             [shares.archive]\npath = \"archive\"\nkind = \"cloud-tiered\"\ntarget = \"file://{}\"\nquota_mb = 64\n\n\
             [shares.local]\npath = \"local\"\nkind = \"edge-local\"\nquota_mb = 1\n",
            cloud.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut up = outpost();
    up.args(["up", "--no-fetch", "--http-listen", "127.0.0.1:0"])
        // Named relatively, as a person at a shell does: the share's directory still resolves
        // to an absolute path next to the manifest.
        .args(["--api-listen", "127.0.0.1:0", "--manifest", "outpost.toml"])
        .arg("--data-dir")
        .arg(&data)
        .current_dir(dir.path())
        .stderr(Stdio::null());
    let mut up = Up::spawn(up);
    let banner = up.banner();
    let api = api_url(&banner);
    let run = |args: &[&str]| {
        let out = outpost()
            .args(args)
            .args(["--api", &api, "--host-data-dir"])
            .arg(&data)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&["share", "refresh", "archive"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("archive: refreshed: 1 added"), "{out}");
    let (code, out, err) = run(&["shares"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("archive"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("cloud-tiered") && row.contains("3.0 MiB"),
        "{row}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("local") && l.contains("edge-local")),
        "{out}"
    );

    // The evicted file is recalled and written where asked, whole.
    let (code, out, err) = run(&[
        "share",
        "get",
        "archive",
        "incoming/frames.bin",
        "-o",
        "copy.bin",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3.0 MiB written to copy.bin"), "{out}");
    assert!(std::fs::read(dir.path().join("copy.bin")).unwrap() == content);

    // Errors name what was wrong and leave no file behind.
    let (code, out, err) = run(&["share", "get", "archive", "incoming/none.bin"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("404") && err.contains("none.bin"), "{err}");
    assert!(!dir.path().join("none.bin").exists() && !dir.path().join("none.bin.partial").exists());
    let (code, _, err) = run(&["share", "refresh", "local"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("409") && err.contains("edge-local"), "{err}");
    let (code, _, err) = run(&["share", "sync", "nosuch"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no share `nosuch`"), "{err}");
    let (code, out, err) = run(&["share", "sync", "archive"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("archive: synced: 0 uploaded"), "{out}");
    drop(up);
}
