//! The compile cache: hits are served from disk, and an entry that was tampered with, truncated,
//! or signed by another host is rejected and recompiled, never executed.

use outpost_runtime::{CacheOutcome, CompileCache, EngineSettings, HostEngine};

fn engine() -> HostEngine {
    HostEngine::new(EngineSettings {
        pooling: false,
        ..EngineSettings::default()
    })
    .unwrap()
}

fn echo() -> Vec<u8> {
    std::fs::read(outpost_artifacts::ECHO_PIPELINE).unwrap()
}

#[test]
fn the_second_load_is_a_hit() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), e.engine()).unwrap();
    assert_eq!(
        cache.load_component(e.engine(), &echo()).unwrap().1,
        CacheOutcome::Miss
    );
    assert_eq!(
        cache.load_component(e.engine(), &echo()).unwrap().1,
        CacheOutcome::Hit
    );
    let reopened = CompileCache::open(dir.path(), e.engine()).unwrap();
    assert_eq!(
        reopened.load_component(e.engine(), &echo()).unwrap().1,
        CacheOutcome::Hit
    );
}

#[test]
fn a_flipped_byte_in_a_cached_artifact_is_rejected_and_recompiled() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), e.engine()).unwrap();
    cache.load_component(e.engine(), &echo()).unwrap();
    let entry = cache.entry_path(&echo()).unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&entry, &bytes).unwrap();
    match cache.load_component(e.engine(), &echo()).unwrap().1 {
        CacheOutcome::Rejected(why) => assert!(why.contains("integrity check failed"), "{why}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The entry was rewritten and is trusted again.
    assert_eq!(
        cache.load_component(e.engine(), &echo()).unwrap().1,
        CacheOutcome::Hit
    );
}

#[test]
fn a_truncated_entry_is_rejected() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), e.engine()).unwrap();
    cache.load_component(e.engine(), &echo()).unwrap();
    let entry = cache.entry_path(&echo()).unwrap();
    std::fs::write(&entry, b"OUTPOST").unwrap();
    assert!(matches!(
        cache.load_component(e.engine(), &echo()).unwrap().1,
        CacheOutcome::Rejected(_)
    ));
}

#[test]
fn an_entry_signed_with_another_hosts_key_is_rejected() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), e.engine()).unwrap();
    cache.load_component(e.engine(), &echo()).unwrap();
    // Another host (another key) wrote this cache directory's entry: simulate by rotating our key.
    std::fs::remove_file(dir.path().join("cache.key")).unwrap();
    let rotated = CompileCache::open(dir.path(), e.engine()).unwrap();
    assert!(matches!(
        rotated.load_component(e.engine(), &echo()).unwrap().1,
        CacheOutcome::Rejected(_)
    ));
}

#[test]
fn garbage_is_a_compile_error_not_a_panic() {
    let e = engine();
    let cache = CompileCache::disabled(e.engine());
    let err = cache
        .load_component(e.engine(), b"\0asm\x0d\0\x01\0garbage")
        .err()
        .unwrap();
    assert!(err.to_string().starts_with("compile:"), "{err}");
}
