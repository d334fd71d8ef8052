//! Host-owned tables as the runtime uses them: reconciled from specs, shared across threads,
//! surviving plugin swaps and (through a snapshot) host restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use outpost_dataplane::table::{TableKind, TableSet, TableSetError, TableSpec};

fn specs() -> Vec<TableSpec> {
    vec![
        TableSpec {
            max_key_len: 8,
            max_value_len: 32,
            ..TableSpec::new("sessions", TableKind::Exact, 1000)
        },
        TableSpec::new("routes", TableKind::Lpm, 100),
        TableSpec::new("usage", TableKind::Counters, 64),
    ]
}

fn fill(set: &TableSet) {
    let sessions = set.open("sessions").unwrap();
    for teid in 0..500u32 {
        sessions
            .put(&teid.to_be_bytes(), format!("session {teid}").as_bytes())
            .unwrap();
    }
    let routes = set.open("routes").unwrap();
    routes.put(&[0, 0, 0, 0, 0], b"default").unwrap();
    routes.put(&[24, 192, 168, 7, 0], b"lan").unwrap();
    let mut v6 = vec![32, 0x20, 0x01, 0x0d, 0xb8];
    v6.resize(17, 0);
    routes.put(&v6, b"doc").unwrap();
    let usage = set.open("usage").unwrap();
    usage.add(&5u32.to_le_bytes(), 3, 4500).unwrap();
    usage.add(&63u32.to_le_bytes(), 1, 64).unwrap();
}

fn assert_filled(set: &TableSet) {
    let sessions = set.open("sessions").unwrap();
    assert_eq!(sessions.len(), 500);
    assert_eq!(sessions.get(&499u32.to_be_bytes()).unwrap(), b"session 499");
    let routes = set.open("routes").unwrap();
    assert_eq!(routes.get(&[192, 168, 7, 9]).unwrap(), b"lan");
    assert_eq!(routes.get(&[8, 8, 8, 8]).unwrap(), b"default");
    let mut addr = vec![0x20, 0x01, 0x0d, 0xb8];
    addr.resize(16, 0xab);
    assert_eq!(routes.get(&addr).unwrap(), b"doc");
    let usage = set.open("usage").unwrap().as_counters().unwrap().get(5);
    assert_eq!(usage, Some((3, 4500)));
}

#[test]
fn tables_survive_a_host_restart_through_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tables.snap");
    let before = TableSet::new();
    before.reconcile(&specs()).unwrap();
    fill(&before);
    before.snapshot(&path).unwrap();
    assert!(!dir.path().join("tables.snap.tmp").exists());

    // A new process: tables come from the manifest, then contents from the snapshot.
    let after = TableSet::new();
    after.reconcile(&specs()).unwrap();
    let report = after.restore(&path).unwrap();
    assert_eq!(
        report.restored,
        vec![
            ("routes".into(), 3),
            ("sessions".into(), 500),
            ("usage".into(), 2)
        ]
    );
    assert!(report.skipped_tables.is_empty());
    assert_eq!(report.rejected_entries, 0);
    assert_filled(&after);
}

#[test]
fn restore_follows_the_current_manifest_not_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tables.snap");
    let before = TableSet::new();
    before.reconcile(&specs()).unwrap();
    fill(&before);
    before.snapshot(&path).unwrap();

    // The new manifest drops "routes", makes "usage" an exact table, and shrinks "sessions".
    let after = TableSet::new();
    after
        .reconcile(&[
            TableSpec::new("sessions", TableKind::Exact, 100),
            TableSpec::new("usage", TableKind::Exact, 10),
        ])
        .unwrap();
    let report = after.restore(&path).unwrap();
    assert_eq!(report.restored, vec![("sessions".into(), 100)]);
    assert_eq!(report.skipped_tables, ["routes", "usage"]);
    assert_eq!(report.rejected_entries, 400);
    assert!(after.open("routes").is_none());
    assert!(after.open("usage").unwrap().is_empty());
}

#[test]
fn restore_replaces_what_the_table_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tables.snap");
    let set = TableSet::new();
    set.reconcile(&specs()).unwrap();
    fill(&set);
    set.snapshot(&path).unwrap();
    let sessions = set.open("sessions").unwrap();
    sessions.put(b"stale", b"x").unwrap();
    set.restore(&path).unwrap();
    assert_eq!(sessions.get(b"stale"), None);
    assert_filled(&set);
}

#[test]
fn a_corrupt_or_missing_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tables.snap");
    let set = TableSet::new();
    set.reconcile(&specs()).unwrap();
    fill(&set);
    set.snapshot(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    set.open("sessions").unwrap().put(b"live", b"kept").unwrap();
    let err = set.restore(&path).unwrap_err();
    assert!(matches!(err, TableSetError::CorruptSnapshot { .. }));
    assert!(err.to_string().contains("tables.snap"), "{err}");
    assert_eq!(set.open("sessions").unwrap().get(b"live").unwrap(), b"kept");

    let missing = set.restore(&dir.path().join("none.snap")).unwrap_err();
    assert!(matches!(missing, TableSetError::SnapshotIo { .. }));
}

#[test]
fn a_plugin_swap_with_a_grown_spec_keeps_entries_while_readers_run() {
    let set = Arc::new(TableSet::new());
    set.reconcile(&specs()).unwrap();
    fill(&set);
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (set, stop, passes) = (set.clone(), stop.clone(), passes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // A worker re-opens the table after each swap, as a new plugin instance does.
                    let sessions = set.open("sessions").expect("the table never disappears");
                    for teid in 0..500u32 {
                        assert!(sessions.get(&teid.to_be_bytes()).is_some(), "lost {teid}");
                    }
                    passes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Keep reconciling (each time with more room) until the readers have overlapped many swaps.
    let mut round = 0;
    while round < 50 || passes.load(Ordering::Relaxed) < 40 {
        let mut grown = specs();
        grown[0].max_entries = 1001 + round;
        let report = set.reconcile(&grown).unwrap();
        assert_eq!(report.grown, ["sessions"]);
        assert!(report.recreated.is_empty());
        round += 1;
        assert!(round < 1_000_000, "readers made no progress");
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(
        set.open("sessions").unwrap().spec().max_entries,
        1000 + round
    );
    let stats = set.open("sessions").unwrap().stats();
    assert_eq!(stats.misses, 0);
    assert!(stats.hits >= passes.load(Ordering::Relaxed) * 500);
}

#[test]
fn errors_are_strings_a_plugin_can_show() {
    let set = TableSet::new();
    set.reconcile(&specs()).unwrap();
    let sessions = set.open("sessions").unwrap();
    let err = sessions.put(b"123456789", b"v").unwrap_err();
    assert_eq!(
        err.to_string(),
        "table \"sessions\": key of 9 bytes exceeds max-key-len 8"
    );
    let err = set
        .open("routes")
        .unwrap()
        .put(&[1, 2, 3], b"")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("prefix length then 4 (IPv4) or 16 (IPv6)"),
        "{err}"
    );
    let err = sessions.add(b"k", 1, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "table \"sessions\" is an exact table, not a counters table"
    );
}

#[test]
fn count_adds_and_returns_totals_on_counter_and_exact_tables_and_refuses_lpm() {
    let set = TableSet::new();
    set.reconcile(&specs()).unwrap();
    let usage = set.open("usage").unwrap();
    assert_eq!(usage.count(&3u32.to_le_bytes(), 2, 200).unwrap(), (2, 200));
    assert_eq!(usage.count(&3u32.to_le_bytes(), 1, 50).unwrap(), (3, 250));
    let sessions = set.open("sessions").unwrap();
    assert_eq!(sessions.count(b"u/1", 1, 64).unwrap(), (1, 64));
    assert_eq!(sessions.count(b"u/1", 4, 36).unwrap(), (5, 100));
    assert_eq!(sessions.get(b"u/1").unwrap().len(), 16);
    let routes = set.open("routes").unwrap();
    let err = routes.count(&[24, 10, 0, 0, 0], 1, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "table `routes` is an lpm table: it cannot count"
    );
}

#[test]
fn keys_page_through_a_table_in_order() {
    let set = TableSet::new();
    set.reconcile(&specs()).unwrap();
    let sessions = set.open("sessions").unwrap();
    for k in [b"c", b"a", b"d", b"b"] {
        sessions.put(k, b"v").unwrap();
    }
    assert_eq!(sessions.keys(None, 2), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(
        sessions.keys(Some(b"b"), 10),
        vec![b"c".to_vec(), b"d".to_vec()]
    );
}
