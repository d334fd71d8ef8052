//! Hot swap and rollback of a plugin slot, with real components.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_manifest::{Grants, KvGrant, Limits, PluginKind, PluginSpec};
use outpost_runtime::plugin::plugin_linker;
use outpost_runtime::state::PluginContext;
use outpost_runtime::{
    CompileCache, EngineSettings, HealthProbe, HostEngine, Plugin, PluginSlot, RollbackPolicy,
    SlotError, SlotEvent,
};
use outpost_services::KvStore;

struct Fixture {
    engine: HostEngine,
    kv: KvStore,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            engine: HostEngine::new(EngineSettings {
                instance_slots: 64,
                ..EngineSettings::default()
            })
            .unwrap(),
            kv: KvStore::in_memory().unwrap(),
        }
    }

    /// A "version" of the versioned plugin: same component, behaviour from config.
    fn version(&self, config: &[(&str, &str)]) -> Arc<Plugin> {
        let config: BTreeMap<String, String> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let grants = Grants {
            kv: Some(KvGrant {
                namespace: "versioned".into(),
                quota_bytes: 1 << 20,
            }),
            ..Grants::default()
        };
        let spec = PluginSpec {
            name: "versioned".into(),
            kind: PluginKind::Pipeline,
            component: outpost_artifacts::VERSIONED.into(),
            image: None,
            canary: None,
            version: config.get("version").cloned(),
            config: config.clone(),
            grants: grants.clone(),
            limits: Limits::default(),
            route: None,
            args: Vec::new(),
            health: None,
            rollback: Default::default(),
            restart: Default::default(),
        };
        let ctx = PluginContext::new(
            "versioned",
            PluginKind::Pipeline,
            config,
            grants,
            Limits::default(),
            None,
            Some(self.kv.namespace("versioned", 1 << 20)),
        );
        let bytes = std::fs::read(outpost_artifacts::VERSIONED).unwrap();
        let cache = CompileCache::disabled(self.engine.engine());
        Arc::new(
            Plugin::load(
                &self.engine,
                &cache,
                &plugin_linker(&self.engine).unwrap(),
                &spec,
                ctx,
                &bytes,
            )
            .unwrap(),
        )
    }
}

fn text(out: Vec<outpost_runtime::OutMessage>) -> String {
    String::from_utf8(out.into_iter().next().unwrap().payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_load_fail_no_call_and_keep_the_state() {
    let f = Fixture::new();
    let v1 = f.version(&[("version", "v1")]);
    let v2 = f.version(&[("version", "v2")]);
    let slot = Arc::new(PluginSlot::new(
        v1.clone(),
        RollbackPolicy::default(),
        HealthProbe::None,
    ));
    assert_eq!(text(slot.handle("remember", b"42").await.unwrap()), "v1");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, v1_answers, v2_answers) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut drivers = Vec::new();
    for d in 0..4 {
        let (slot, stop, ok, a1, a2) = (
            slot.clone(),
            stop.clone(),
            ok.clone(),
            v1_answers.clone(),
            v2_answers.clone(),
        );
        drivers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("{d}-{i}");
                let reply = text(
                    slot.handle("call", payload.as_bytes())
                        .await
                        .expect("no call fails during swaps"),
                );
                match reply.split_once(':') {
                    Some(("v1", p)) if p == payload => a1.fetch_add(1, Ordering::Relaxed),
                    Some(("v2", p)) if p == payload => a2.fetch_add(1, Ordering::Relaxed),
                    _ => panic!("reply {reply:?} is not from exactly one version for {payload}"),
                };
                ok.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let started = Instant::now();
    for n in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = if n % 2 == 0 { v2.clone() } else { v1.clone() };
        slot.swap(next).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        d.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = ok.load(Ordering::Relaxed);
    println!(
        "{calls} calls in {elapsed:.2} s ({:.0}/s) across 20 swaps, 0 failed",
        calls as f64 / elapsed
    );
    assert!(v1_answers.load(Ordering::Relaxed) > 0 && v2_answers.load(Ordering::Relaxed) > 0);
    assert_eq!(slot.counters().swaps, 20);
    // 20 swaps starting from v1 end on v1; the state written before the swaps is still there.
    assert_eq!(text(slot.handle("recall", b"").await.unwrap()), "v1:42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_its_health_check_never_serves() {
    let f = Fixture::new();
    let v1 = f.version(&[("version", "v1")]);
    let probe = HealthProbe::Call {
        topic: "health".into(),
        payload: Vec::new(),
    };
    let slot = PluginSlot::new(v1, RollbackPolicy::default(), probe);
    let sick = f.version(&[("version", "v2"), ("healthy", "false")]);
    match slot.swap(sick).await {
        Err(SlotError::Unhealthy { reason, .. }) => {
            assert!(reason.contains("v2 is unhealthy"), "{reason}")
        }
        other => panic!("expected Unhealthy, got {other:?}"),
    }
    assert_eq!(text(slot.handle("call", b"x").await.unwrap()), "v1:x");
    assert!(matches!(
        slot.events().as_slice(),
        [SlotEvent::Rejected { .. }]
    ));
    assert_eq!(slot.counters().swaps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_keeps_trapping_is_rolled_back_automatically() {
    let f = Fixture::new();
    let v1 = f.version(&[("version", "v1")]);
    let policy = RollbackPolicy {
        max_failures: 2,
        window: Duration::from_secs(60),
    };
    let slot = PluginSlot::new(v1, policy, HealthProbe::None);
    slot.swap(f.version(&[("version", "v2"), ("trap-every", "10")]))
        .await
        .unwrap();
    let mut traps = 0;
    let mut first_v1_after = None;
    for i in 1..=40u32 {
        match slot.handle("call", b"x").await {
            Ok(out) => {
                if text(out) == "v1:x" && first_v1_after.is_none() {
                    first_v1_after = Some(i);
                }
            }
            Err(e) => {
                assert!(e.is_trap(), "{e}");
                traps += 1;
            }
        }
    }
    // Calls 10, 20 and 30 trap; the third failure is more than 2, so call 31 is on v1 again.
    assert_eq!(traps, 3);
    assert_eq!(first_v1_after, Some(31));
    assert_eq!(slot.counters().rollbacks, 1);
    match slot.events().last() {
        Some(SlotEvent::RolledBack {
            automatic: true,
            reason,
            ..
        }) => assert!(reason.contains("3 failures"), "{reason}"),
        other => panic!("expected an automatic rollback event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rollback_restores_the_previous_version() {
    let f = Fixture::new();
    let slot = PluginSlot::new(
        f.version(&[("version", "v1")]),
        RollbackPolicy::default(),
        HealthProbe::None,
    );
    assert_eq!(
        slot.rollback("operator").unwrap_err(),
        SlotError::NoPrevious("versioned".into())
    );
    slot.swap(f.version(&[("version", "v2")])).await.unwrap();
    assert_eq!(text(slot.handle("call", b"x").await.unwrap()), "v2:x");
    slot.rollback("operator").unwrap();
    assert_eq!(text(slot.handle("call", b"x").await.unwrap()), "v1:x");
    assert!(matches!(
        slot.events().last(),
        Some(SlotEvent::RolledBack {
            automatic: false,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_gets_its_share_of_calls_then_takes_over() {
    let f = Fixture::new();
    let slot = PluginSlot::new(
        f.version(&[("version", "v1")]),
        RollbackPolicy::default(),
        HealthProbe::None,
    );
    slot.start_canary(f.version(&[("version", "v2")]), 25, 10)
        .await
        .unwrap();
    let status = slot.canary().unwrap();
    assert_eq!((status.percent, status.calls, status.served), (25, 10, 0));
    let mut answers = Vec::new();
    for _ in 0..60 {
        answers.push(text(slot.handle("call", b"x").await.unwrap()));
    }
    // Every fourth call goes to v2 until it has served ten; from then on v2 serves all.
    let v2_first_40 = answers[..40].iter().filter(|a| *a == "v2:x").count();
    assert_eq!(v2_first_40, 10, "{answers:?}");
    assert_eq!(answers[3], "v2:x");
    assert_eq!(answers[2], "v1:x");
    assert!(answers[40..].iter().all(|a| a == "v2:x"), "{answers:?}");
    assert!(slot.canary().is_none());
    let events = slot.events();
    assert!(matches!(
        events[0],
        SlotEvent::CanaryStarted {
            percent: 25,
            calls: 10,
            ..
        }
    ));
    assert!(matches!(events[1], SlotEvent::Swapped { .. }), "{events:?}");
    assert_eq!(slot.counters().swaps, 1);
    // The replaced version is kept for a rollback, as after a direct swap.
    slot.rollback("operator").unwrap();
    assert_eq!(text(slot.handle("call", b"y").await.unwrap()), "v1:y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_stopped_and_the_active_version_never_stops_serving() {
    let f = Fixture::new();
    let policy = RollbackPolicy {
        max_failures: 2,
        window: Duration::from_secs(60),
    };
    let slot = PluginSlot::new(f.version(&[("version", "v1")]), policy, HealthProbe::None);
    slot.start_canary(
        f.version(&[("version", "v2"), ("trap-every", "2")]),
        50,
        100,
    )
    .await
    .unwrap();
    let (mut traps, mut v1) = (0, 0);
    for _ in 0..40 {
        match slot.handle("call", b"x").await {
            Ok(out) if text(out.clone()) == "v1:x" => v1 += 1,
            Ok(_) => {}
            Err(e) => {
                assert!(e.is_trap(), "{e}");
                traps += 1;
            }
        }
    }
    // Only canary calls can fail, and the third failure (more than 2) ends the canary.
    assert_eq!(traps, 3);
    assert_eq!(v1, 40 - 6, "half the calls went to v2 until it was stopped");
    assert!(slot.canary().is_none());
    assert_eq!(slot.counters().swaps, 0);
    match slot.events().last() {
        Some(SlotEvent::CanaryAborted { reason, .. }) => {
            assert!(reason.contains("3 failed calls"), "{reason}")
        }
        other => panic!("expected the canary to be aborted, got {other:?}"),
    }
}
