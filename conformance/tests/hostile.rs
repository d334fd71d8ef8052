//! Hostile plugins: real components (conformance/plugins/hostile) that try to escape the
//! sandbox or exhaust the host. Each test asserts the exact kind of failure, that a neighbour
//! plugin keeps answering while the attacker's call is in flight, and that the hostile plugin
//! itself serves the next call (every call gets a fresh instance).
//!
//! The tests run on a current-thread runtime: the attacker and the neighbour share one thread, so
//! the neighbour gets an answer out only when the host makes the attacker's call yield.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use outpost_manifest::{
    BusGrant, DirGrant, Endpoint, Grants, KvGrant, Limits, NetGrant, PluginKind, PluginSpec,
    TopicPattern,
};
use outpost_runtime::capability::CapabilityError;
use outpost_runtime::plugin::plugin_linker;
use outpost_runtime::state::PluginContext;
use outpost_runtime::{CallError, CompileCache, EngineSettings, HostEngine, Plugin, RuntimeError};
use outpost_services::{Bus, KvStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Only catches hangs: every wait below ends in milliseconds on an idle machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// The hostile plugin's deadline: long enough for a spinning call to yield a few hundred times,
/// each time a chance for the neighbour (a debug build of the host takes milliseconds per call).
const DEADLINE_MS: u64 = 1500;

struct Sandbox {
    hostile: Arc<Plugin>,
    neighbour: Arc<Plugin>,
    dirs: tempfile::TempDir,
    granted_port: u16,
    /// Where `gated:` attacks wait for the test's go-ahead.
    gate: tokio::net::TcpListener,
    _listener: std::net::TcpListener,
    _engine: Arc<HostEngine>,
}

fn spec(name: &str, component: &str, grants: Grants, limits: Limits) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        kind: PluginKind::Pipeline,
        component: component.into(),
        image: None,
        canary: None,
        version: None,
        config: Default::default(),
        grants,
        limits,
        route: None,
        args: Vec::new(),
        health: None,
        rollback: Default::default(),
        restart: Default::default(),
    }
}

fn hostile_grants(dirs: &Path, port: u16, gate: u16) -> Grants {
    Grants {
        dirs: vec![
            DirGrant {
                host: dirs.join("data"),
                guest: "/data".into(),
                read_only: false,
            },
            DirGrant {
                host: dirs.join("ro"),
                guest: "/ro".into(),
                read_only: true,
            },
        ],
        net: NetGrant {
            connect: vec![
                Endpoint {
                    ip: [127, 0, 0, 1].into(),
                    port: Some(port),
                },
                Endpoint {
                    ip: [127, 0, 0, 1].into(),
                    port: Some(gate),
                },
            ],
            lookup: false,
        },
        env: [
            ("GRANTED".to_string(), "yes".to_string()),
            ("GATE".to_string(), format!("127.0.0.1:{gate}")),
        ]
        .into(),
        bus: BusGrant {
            publish: vec![TopicPattern::parse("allowed/#").unwrap()],
            subscribe: vec![],
        },
        kv: Some(KvGrant {
            namespace: "hostile".into(),
            quota_bytes: 256 << 10,
        }),
        models: Vec::new(),
        nn_load: None,
        nf: Default::default(),
        shares: Default::default(),
    }
}

fn hostile_limits() -> Limits {
    Limits {
        memory_bytes: 32 << 20,
        deadline_ms: DEADLINE_MS,
        table_elements: 1000,
        output_bytes: 1 << 20,
        inference_concurrency: 1,
        ..Limits::default()
    }
}

fn load(
    engine: &HostEngine,
    name: &str,
    component: &str,
    grants: Grants,
    limits: Limits,
    bus: &Bus,
    kv: &KvStore,
) -> Result<Plugin, RuntimeError> {
    let cache = CompileCache::disabled(engine.engine());
    let linker = plugin_linker(engine)?;
    let s = spec(name, component, grants.clone(), limits);
    let ctx = PluginContext::new(
        name,
        PluginKind::Pipeline,
        Default::default(),
        grants.clone(),
        limits,
        Some(bus.clone()),
        grants
            .kv
            .as_ref()
            .map(|g| kv.namespace(&g.namespace, g.quota_bytes)),
    );
    let bytes = std::fs::read(component).unwrap();
    Plugin::load(engine, &cache, &linker, &s, ctx, &bytes)
}

async fn sandbox() -> Sandbox {
    sandbox_with(|_| {}).await
}

/// A sandbox whose hostile plugin gets the standard grants, changed by `adjust`.
async fn sandbox_with(adjust: impl FnOnce(&mut Grants)) -> Sandbox {
    let engine = Arc::new(
        HostEngine::new(EngineSettings {
            instance_slots: 32,
            ..EngineSettings::default()
        })
        .unwrap(),
    );
    let dirs = tempfile::tempdir().unwrap();
    for d in ["data", "ro", "sibling"] {
        std::fs::create_dir(dirs.path().join(d)).unwrap();
    }
    std::fs::write(dirs.path().join("sibling/secret.txt"), "top secret").unwrap();
    std::fs::write(dirs.path().join("ro/readme.txt"), "read me").unwrap();
    std::fs::write(dirs.path().join("data/mine.txt"), "mine").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dirs.path().join("data/passwd-link")).unwrap();
    std::os::unix::fs::symlink(
        "../sibling/secret.txt",
        dirs.path().join("data/secret-link"),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let granted_port = listener.local_addr().unwrap().port();
    let gate = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut grants = hostile_grants(dirs.path(), granted_port, gate.local_addr().unwrap().port());
    adjust(&mut grants);
    let bus = Bus::new(1 << 20);
    let kv = KvStore::in_memory().unwrap();
    let hostile = load(
        &engine,
        "hostile",
        outpost_artifacts::HOSTILE,
        grants,
        hostile_limits(),
        &bus,
        &kv,
    )
    .expect("the hostile plugin loads with full grants");
    let neighbour = load(
        &engine,
        "neighbour",
        outpost_artifacts::ECHO_PIPELINE,
        Grants {
            kv: Some(KvGrant {
                namespace: "neighbour".into(),
                quota_bytes: 1024,
            }),
            ..Grants::default()
        },
        Limits {
            memory_bytes: 16 << 20,
            deadline_ms: 2000,
            ..Limits::default()
        },
        &bus,
        &kv,
    )
    .expect("the neighbour loads");
    Sandbox {
        hostile: Arc::new(hostile),
        neighbour: Arc::new(neighbour),
        dirs,
        granted_port,
        gate,
        _listener: listener,
        _engine: engine,
    }
}

/// The phases of one attack, in order; the neighbour counts its answers per phase.
const STARTING: usize = 0;
/// The attacker's call is in flight, held at the gate.
const PARKED: usize = 1;
/// The attacker passed the gate and is attacking; its call has not returned.
const ATTACKING: usize = 2;
/// The attacker's call returned.
const RETURNED: usize = 3;

/// How many calls the neighbour answered in each phase of an attack.
#[derive(Debug)]
struct Answers([u64; 4]);

async fn patiently<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Runs one attack while the neighbour is called in a loop; returns the attack's result after
/// checking that the neighbour never failed, that it answered while the attacker's call was in
/// flight, and that the hostile plugin recovers.
async fn attack(
    sb: &Sandbox,
    topic: &str,
    payload: &str,
) -> Result<Vec<outpost_runtime::OutMessage>, CallError> {
    attack_counted(sb, topic, payload).await.0
}

/// [`attack`], also returning the neighbour's answers per phase.
async fn attack_counted(
    sb: &Sandbox,
    topic: &str,
    payload: &str,
) -> (Result<Vec<outpost_runtime::OutMessage>, CallError>, Answers) {
    let phase = Arc::new(AtomicUsize::new(STARTING));
    let answers: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let (n, phase, answers, stop) = (
            sb.neighbour.clone(),
            phase.clone(),
            answers.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let payload = format!("ping {i}");
                let out = n
                    .handle("n", payload.as_bytes())
                    .await
                    .expect("the neighbour keeps serving");
                assert_eq!(out[0].payload, payload.as_bytes());
                answers[phase.load(Ordering::SeqCst)].fetch_add(1, Ordering::SeqCst);
                i += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    let attacker = {
        let (h, phase) = (sb.hostile.clone(), phase.clone());
        let (topic, payload) = (format!("gated:{topic}"), payload.to_string());
        tokio::spawn(async move {
            let result = h.handle(&topic, payload.as_bytes()).await;
            phase.store(RETURNED, Ordering::SeqCst);
            result
        })
    };
    // The attacker connects from inside its call and cannot go on until it reads our byte.
    let (mut gate, _) = patiently("the attacker at the gate", sb.gate.accept())
        .await
        .expect("the gate accepts");
    phase.store(PARKED, Ordering::SeqCst);
    patiently(
        "the neighbour to answer while the attacker is parked",
        async {
            while answers[PARKED].load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        },
    )
    .await;
    assert!(
        !attacker.is_finished(),
        "the attacker's call is still in flight at the gate"
    );
    gate.write_all(b"g").await.expect("the gate opens");
    let mut passed = [0u8; 1];
    // An attack that fails before it says so (the deadline) leaves nothing to read.
    if patiently("the attacker passing the gate", gate.read(&mut passed))
        .await
        .is_ok_and(|n| n == 1)
    {
        // Unless it already returned (a quick attack), the attack is running now.
        let _ = phase.compare_exchange(PARKED, ATTACKING, Ordering::SeqCst, Ordering::SeqCst);
    }
    let result = patiently("the attack to end", attacker)
        .await
        .expect("the attacker task did not panic");
    stop.store(true, Ordering::SeqCst);
    patiently("the neighbour to stop", neighbour)
        .await
        .expect("the neighbour task did not panic");
    let answers = Answers(std::array::from_fn(|i| answers[i].load(Ordering::SeqCst)));
    let after = sb
        .hostile
        .handle("ok", b"still here")
        .await
        .expect("the hostile plugin serves its next call");
    assert_eq!(after[0].payload, b"still here");
    (result, answers)
}

fn guest_error(result: Result<Vec<outpost_runtime::OutMessage>, CallError>) -> String {
    match result {
        Err(CallError::Guest { message, .. }) => message,
        other => panic!("expected the guest to report an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn reading_etc_passwd_outside_every_preopen_finds_nothing() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "read", "/etc/passwd").await);
    assert!(err.starts_with("NotFound"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn dot_dot_cannot_climb_out_of_a_preopen_into_a_sibling() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "read", "/data/../sibling/secret.txt").await);
    assert!(
        err.starts_with("NotFound") || err.starts_with("PermissionDenied"),
        "{err}"
    );
    let err = guest_error(attack(&sb, "read", "/data/../../../../etc/passwd").await);
    assert!(
        err.starts_with("NotFound") || err.starts_with("PermissionDenied"),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn symlinks_inside_a_preopen_cannot_point_outside_it() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "read", "/data/passwd-link").await);
    assert!(err.starts_with("PermissionDenied"), "{err}");
    let err = guest_error(attack(&sb, "read", "/data/secret-link").await);
    assert!(err.starts_with("PermissionDenied"), "{err}");
    // Control: a plain file in the same preopen is readable.
    let ok = attack(&sb, "read", "/data/mine.txt").await.unwrap();
    assert_eq!(ok[0].payload, b"mine");
}

#[tokio::test(flavor = "current_thread")]
async fn writing_to_a_read_only_preopen_is_denied_and_changes_nothing() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "write", "/ro/readme.txt").await);
    assert!(err.starts_with("PermissionDenied"), "{err}");
    let err = guest_error(attack(&sb, "write", "/ro/new.txt").await);
    assert!(err.starts_with("PermissionDenied"), "{err}");
    assert_eq!(
        std::fs::read_to_string(sb.dirs.path().join("ro/readme.txt")).unwrap(),
        "read me"
    );
    assert!(!sb.dirs.path().join("ro/new.txt").exists());
    // Control: the read-write preopen accepts the same write.
    attack(&sb, "write", "/data/new.txt").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.dirs.path().join("data/new.txt")).unwrap(),
        "pwned"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn connecting_to_an_address_that_was_not_granted_is_denied() {
    let sb = sandbox().await;
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = other.local_addr().unwrap().to_string();
    let err = guest_error(attack(&sb, "connect", &addr).await);
    assert!(err.starts_with("PermissionDenied"), "{err}");
    // Control: the granted address connects.
    let ok = attack(&sb, "connect", &format!("127.0.0.1:{}", sb.granted_port))
        .await
        .unwrap();
    assert_eq!(ok[0].payload, b"connected");
}

#[tokio::test(flavor = "current_thread")]
async fn dns_lookups_are_denied_without_the_lookup_grant() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "resolve", "localhost").await);
    assert!(
        err.contains("failed to lookup address information"),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn dns_lookups_resolve_with_the_lookup_grant() {
    // Control for the denial above: the same lookup, granted, goes through the host's resolver
    // (localhost comes from /etc/hosts, no network needed).
    let sb = sandbox_with(|g| g.net.lookup = true).await;
    let ok = attack(&sb, "resolve", "localhost").await.unwrap();
    let addrs = String::from_utf8(ok[0].payload.clone()).unwrap();
    assert!(addrs.contains("127.0.0.1:80"), "{addrs}");
}

#[tokio::test(flavor = "current_thread")]
async fn host_environment_variables_are_invisible_and_granted_ones_visible() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "env", "PATH").await);
    assert!(err.starts_with("NotFound"), "{err}");
    let ok = attack(&sb, "env", "GRANTED").await.unwrap();
    assert_eq!(ok[0].payload, b"yes");
}

#[tokio::test(flavor = "current_thread")]
async fn importing_kv_without_a_kv_grant_is_refused_at_load() {
    let engine = HostEngine::new(EngineSettings {
        instance_slots: 4,
        ..EngineSettings::default()
    })
    .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let mut grants = hostile_grants(dirs.path(), 1, 1);
    grants.dirs.clear();
    grants.kv = None;
    let dummy = tempfile::tempdir().unwrap();
    grants.dirs.push(DirGrant {
        host: dummy.path().into(),
        guest: "/d".into(),
        read_only: true,
    });
    let err = load(
        &engine,
        "hostile",
        outpost_artifacts::HOSTILE,
        grants,
        hostile_limits(),
        &Bus::new(16),
        &KvStore::in_memory().unwrap(),
    )
    .err()
    .expect("refused");
    match err {
        RuntimeError::Capability(CapabilityError::NotGranted {
            interface, hint, ..
        }) => {
            assert_eq!(interface, "outpost:plugin/kv@0.1.0");
            assert_eq!(hint, "grants.kv");
        }
        other => panic!("expected NotGranted, got {other}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn importing_sockets_without_a_net_grant_is_refused_at_load() {
    let engine = HostEngine::new(EngineSettings {
        instance_slots: 4,
        ..EngineSettings::default()
    })
    .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    std::fs::create_dir(dirs.path().join("data")).unwrap();
    std::fs::create_dir(dirs.path().join("ro")).unwrap();
    let mut grants = hostile_grants(dirs.path(), 1, 1);
    grants.net = NetGrant::default();
    let err = load(
        &engine,
        "hostile",
        outpost_artifacts::HOSTILE,
        grants,
        hostile_limits(),
        &Bus::new(16),
        &KvStore::in_memory().unwrap(),
    )
    .err()
    .expect("refused");
    let text = err.to_string();
    match err {
        RuntimeError::Capability(CapabilityError::NotGranted {
            interface, hint, ..
        }) => {
            assert!(interface.starts_with("wasi:sockets/"), "{interface}");
            assert_eq!(hint, "grants.net");
            assert!(text.contains("not granted network access"), "{text}");
        }
        other => panic!("expected NotGranted, got {other}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn allocating_past_the_memory_ceiling_traps_with_a_memory_limit_error() {
    let sb = sandbox().await;
    match attack(&sb, "alloc", "64").await {
        Err(CallError::MemoryLimitExceeded {
            limit, requested, ..
        }) => {
            assert_eq!(limit, 32 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected MemoryLimitExceeded, got {other:?}"),
    }
    // Control: an allocation within the ceiling succeeds.
    assert_eq!(
        attack(&sb, "alloc", "8").await.unwrap()[0].payload,
        (8usize << 20).to_string().as_bytes()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_infinite_loop_is_interrupted_at_its_deadline_and_its_neighbour_answers_meanwhile() {
    let sb = sandbox().await;
    let started = std::time::Instant::now();
    let (result, answers) = attack_counted(&sb, "spin", "").await;
    match result {
        Err(CallError::DeadlineExceeded { deadline_ms, .. }) => {
            assert_eq!(deadline_ms, DEADLINE_MS)
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    // A lower bound only (a busy machine makes it longer, never shorter): not cut short.
    assert!(started.elapsed() >= Duration::from_millis(DEADLINE_MS));
    // One thread for both: the neighbour answered between the attacker passing the gate and its
    // call returning only because the spinning guest yields at every epoch tick.
    assert!(
        answers.0[ATTACKING] > 0,
        "the neighbour was starved while the guest spun: {answers:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unbounded_recursion_is_a_stack_overflow() {
    let sb = sandbox().await;
    match attack(&sb, "recurse", "").await {
        Err(CallError::StackOverflow { plugin }) => assert_eq!(plugin, "hostile"),
        other => panic!("expected StackOverflow, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn growing_the_handle_table_without_bound_hits_the_handle_limit() {
    let sb = sandbox().await;
    match attack(&sb, "handles", "100000").await {
        Err(CallError::HandleLimitExceeded { limit, .. }) => assert_eq!(limit, 1000),
        other => panic!("expected HandleLimitExceeded, got {other:?}"),
    }
    // Control: a handful of handles is fine.
    attack(&sb, "handles", "10").await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_gigantic_output_is_refused_by_the_output_limit() {
    let sb = sandbox().await;
    match attack(&sb, "huge-output", "4").await {
        Err(CallError::OutputTooLarge { size, limit, .. }) => {
            assert_eq!(limit, 1 << 20);
            assert!(size > limit);
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn too_many_output_messages_are_refused() {
    let sb = sandbox().await;
    match attack(&sb, "many-messages", "20000").await {
        Err(CallError::Refused { message, .. }) => {
            assert!(message.contains("20000 messages"), "{message}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn publishing_outside_the_publish_grant_is_refused() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "publish", "secret/topic").await);
    assert_eq!(err, "BusError::NotGranted(\"secret/topic\")");
    attack(&sb, "publish", "allowed/x").await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn filling_kv_stops_at_the_quota() {
    let sb = sandbox().await;
    let err = guest_error(attack(&sb, "kv-fill", "").await);
    assert!(
        err.starts_with(&format!("KvError::QuotaExceeded({})", 256 << 10)),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_plugin_is_a_trap_and_its_next_call_works() {
    let sb = sandbox().await;
    match attack(&sb, "panic", "").await {
        Err(CallError::Trap { message, .. }) => {
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("expected Trap, got {other:?}"),
    }
}
