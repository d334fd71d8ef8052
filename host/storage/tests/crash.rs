//! Crash safety: the engine runs in a child process (this test binary re-executed with
//! `OUTPOST_STORAGE_CRASH_CHILD` set) that uploads, evicts and recalls; the parent kills it
//! with SIGKILL at random points, changes files between runs, and finally checks that nothing
//! was lost or corrupted, that no completed part was sent again, and that the journal is
//! consistent.
//!
//! The child is the same test re-run with `--exact`: its first act is to see the variable and
//! become the engine, so no separate entry point is listed as a test that passes by doing
//! nothing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Azurite, azure_spec, data, fast_options, local_spec, sha256_hex};
use outpost_storage::{BandwidthSchedule, FileState, Share, SharePath, ShareSpec, Throttle};

/// Kill-and-restart iterations, on a local-directory target and again against Azurite. The
/// issue asks for 50; both tests run all 50 (about 20 s each).
const CRASH_ITERATIONS: usize = 50;
/// Set in a child's environment to the work directory it runs the engine in.
const CHILD_ENV: &str = "OUTPOST_STORAGE_CRASH_CHILD";
/// A child's exit status when it verified every file. Not 0: a test binary that ran no test
/// (a wrong name after `--exact`) exits 0 too.
const CHILD_VERIFIED: i32 = 17;
const LOCAL_TEST: &str =
    "killing_the_engine_at_random_points_loses_nothing_and_resends_no_completed_part";
const AZURITE_TEST: &str =
    "killing_the_engine_uploading_to_azurite_loses_nothing_and_resends_no_completed_part";
const PART_SIZE: u64 = 256 * 1024;

/// The files the parent places in the share directly: (path, seed, length).
fn initial_files() -> Vec<(String, u64, usize)> {
    let mut v = Vec::new();
    for i in 0..4 {
        v.push((
            format!("video/clip{i}.bin"),
            100 + i,
            3 * 1024 * 1024 + 17 * i as usize,
        ));
    }
    for i in 0..6 {
        v.push((format!("logs/{i}.log"), 150 + i, 10_000 * (i as usize + 1)))
    }
    v.push(("empty".into(), 0, 0));
    v
}

/// Files the child writes through the engine when they are missing: (path, seed, length).
fn generated_files() -> Vec<(String, u64, usize)> {
    (0..4)
        .map(|k| (format!("gen/{k}.bin"), 200 + k, 700_000))
        .collect()
}

fn expected_path(work: &Path) -> PathBuf {
    work.join("expected.json")
}

/// The share spec for `work`, whose `azurite-port` file (when present) selects Azurite.
fn spec_for(work: &Path, root: &Path) -> ShareSpec {
    match std::fs::read_to_string(work.join("azurite-port")) {
        Ok(port) => azure_spec("crash", root, port.trim().parse().unwrap(), "crash", "edge"),
        Err(_) => local_spec("crash", root, &work.join("target"), 1 << 30),
    }
}

fn child_share_options() -> outpost_storage::ShareOptions {
    let mut opts = fast_options(PART_SIZE);
    // 50 Mbps: a pass takes about a second, so kills land mid-upload.
    opts.throttle = Some(Arc::new(
        Throttle::new(BandwidthSchedule::fixed(Some(50))).unwrap(),
    ));
    opts
}

async fn child_main(work: PathBuf) {
    let root = work.join("root");
    let share = Share::open(spec_for(&work, &root), child_share_options())
        .await
        .expect("open");
    for (path, seed, len) in generated_files() {
        let sp = SharePath::new(&path).unwrap();
        if share.entry(&sp).unwrap().is_none() {
            share
                .write(&sp, Bytes::from(data(seed, len)))
                .await
                .expect("write");
        }
    }
    loop {
        share.sync_once().await.expect("sync");
        let pending = share
            .entries()
            .unwrap()
            .iter()
            .filter(|(_, e)| matches!(e.state, FileState::Local | FileState::Uploading))
            .count();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(expected_path(&work)).unwrap()).unwrap();
    for (i, path) in expected.keys().enumerate() {
        if i % 2 == 0 {
            share
                .evict(&SharePath::new(path).unwrap())
                .await
                .expect("evict");
        }
    }
    for (path, sha) in &expected {
        let got = share
            .read(&SharePath::new(path).unwrap())
            .await
            .expect("read");
        if sha256_hex(&got) != *sha {
            eprintln!("child: {path} has the wrong content");
            std::process::exit(3);
        }
    }
    std::process::exit(CHILD_VERIFIED);
}

/// In a child spawned by [`spawn_child`], runs the engine and exits the process (it never
/// returns); in the parent, returns at once.
fn become_the_child_when_spawned() {
    if let Some(work) = std::env::var_os(CHILD_ENV) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(child_main(PathBuf::from(work)));
        unreachable!("child_main exits the process");
    }
}

/// Re-runs `test` (the caller's own name) in a child process that becomes the engine.
fn spawn_child(work: &Path, test: &str, quiet: bool) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, work)
        .stdin(Stdio::null());
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    cmd.spawn().unwrap()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn killing_the_engine_at_random_points_loses_nothing_and_resends_no_completed_part() {
    become_the_child_when_spawned();
    let work = tempfile::tempdir().unwrap();
    crash_test(work.path(), LOCAL_TEST, CRASH_ITERATIONS);
}

#[test]
fn killing_the_engine_uploading_to_azurite_loses_nothing_and_resends_no_completed_part() {
    become_the_child_when_spawned();
    let work = tempfile::tempdir().unwrap();
    let azurite = Azurite::start_in_memory();
    azurite.create_container("crash");
    std::fs::write(work.path().join("azurite-port"), azurite.port.to_string()).unwrap();
    crash_test(work.path(), AZURITE_TEST, CRASH_ITERATIONS);
}

/// `test` is the calling test's name: its children re-run it to become the engine.
fn crash_test(work: &Path, test: &str, iterations: usize) {
    let root = work.join("root");
    let mut expected = BTreeMap::new();
    for (path, seed, len) in initial_files() {
        let content = data(seed, len);
        let local = root.join(&path);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, &content).unwrap();
        expected.insert(path, sha256_hex(&content));
    }
    for (path, seed, len) in generated_files() {
        expected.insert(path, sha256_hex(&data(seed, len)));
    }
    let write_expected = |e: &BTreeMap<String, String>| {
        std::fs::write(expected_path(work), serde_json::to_vec(e).unwrap()).unwrap()
    };
    write_expected(&expected);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let (mut killed, mut finished) = (0, 0);
    for iteration in 0..iterations {
        // Files change while the engine is down (every third run, so other runs resume
        // interrupted uploads instead): re-uploaded on the next start.
        if iteration % 3 == 2 {
            for path in [
                format!("video/clip{}.bin", iteration % 4),
                format!("logs/{}.log", iteration % 6),
            ] {
                let content = data(1000 + iteration as u64, 2 * 1024 * 1024 + iteration);
                std::fs::write(root.join(&path), &content).unwrap();
                expected.insert(path, sha256_hex(&content));
            }
            write_expected(&expected);
        }
        let mut child = spawn_child(work, test, true);
        let delay = Duration::from_millis(20 + rng.next() % 700);
        let start = Instant::now();
        let mut exited = None;
        while start.elapsed() < delay {
            if let Some(status) = child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match exited {
            Some(status) => {
                assert_eq!(
                    status.code(),
                    Some(CHILD_VERIFIED),
                    "iteration {iteration}: child failed with {status} (0: it ran no test; is \
                     `{test}` this test's name?)"
                );
                finished += 1;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
            }
        }
    }
    println!("{iterations} iterations: {killed} killed mid-run, {finished} finished");
    assert!(killed >= iterations / 3, "too few kills landed: {killed}");

    // A final run to completion (it verifies every digest itself).
    let status = spawn_child(work, test, false).wait().unwrap();
    assert_eq!(
        status.code(),
        Some(CHILD_VERIFIED),
        "final child run failed: {status}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let share = Share::open(spec_for(work, &root), fast_options(PART_SIZE))
            .await
            .unwrap();
        assert!(share.uploads_in_progress().unwrap().is_empty());
        let entries: BTreeMap<String, _> = share.entries().unwrap().into_iter().collect();
        assert_eq!(
            entries.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "journal and expected files differ"
        );
        for (path, sha) in &expected {
            let e = &entries[path];
            assert!(
                matches!(e.state, FileState::Synced | FileState::Evicted),
                "{path} is {:?}",
                e.state
            );
            assert_eq!(e.sha256.as_ref(), Some(sha), "{path}: journal digest");
            let local = share.read(&SharePath::new(path).unwrap()).await.unwrap();
            assert_eq!(&sha256_hex(&local), sha, "{path}: local read");
        }
        let log = share.part_log().unwrap();
        let sends = log
            .iter()
            .filter(|e| e.kind == outpost_storage::PartEventKind::Send)
            .count();
        println!("part log: {} events, {sends} part sends", log.len());
        common::assert_no_completed_part_resent(&log);
        // The remote copies, seen from a fresh root through a refresh.
        let verify_root = work.join("verify");
        let fresh = Share::open(spec_for(work, &verify_root), fast_options(PART_SIZE))
            .await
            .unwrap();
        assert_eq!(
            fresh.refresh().await.unwrap().added as usize,
            expected.len()
        );
        for (path, sha) in &expected {
            let remote = fresh.read(&SharePath::new(path).unwrap()).await.unwrap();
            assert_eq!(&sha256_hex(&remote), sha, "{path}: remote copy");
        }
        let leftovers: Vec<_> = std::fs::read_dir(root.join(".outpost/tmp"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    });
}
