//! Jobs run like `wasmtime run`: arguments, environment, preopens, exit status; preview1
//! modules too.

use outpost_manifest::{DirGrant, Grants, Limits};
use outpost_runtime::{
    CallError, CompileCache, EngineSettings, HostEngine, JobOptions, JobStdio, run_job,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    error: Option<CallError>,
}

async fn run(bytes: &[u8], args: &[&str], grants: Grants, limits: Limits) -> Run {
    let engine = HostEngine::new(EngineSettings {
        instance_slots: 4,
        ..EngineSettings::default()
    })
    .unwrap();
    let cache = CompileCache::disabled(engine.engine());
    let (stdout, stderr) = (
        MemoryOutputPipe::new(1 << 20),
        MemoryOutputPipe::new(1 << 20),
    );
    let mut argv = vec!["job".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let outcome = run_job(
        &engine,
        &cache,
        bytes,
        JobOptions {
            name: "job".into(),
            argv,
            grants,
            limits,
            stdio: JobStdio::Capture {
                stdout: stdout.clone(),
                stderr: stderr.clone(),
            },
        },
    )
    .await
    .unwrap();
    Run {
        code: outcome.exit_code,
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
        error: outcome.error,
    }
}

fn hello_job() -> Vec<u8> {
    std::fs::read(outpost_artifacts::HELLO_JOB).unwrap()
}

#[tokio::test]
async fn a_command_component_gets_its_arguments_and_only_granted_env() {
    let r = run(
        &hello_job(),
        &["outpost"],
        Grants::default(),
        Limits::default(),
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello, outpost!\n"));
    let mut grants = Grants::default();
    grants.env.insert("COLOUR".into(), "blue".into());
    let r = run(&hello_job(), &["env"], grants, Limits::default()).await;
    assert_eq!(r.stdout, "COLOUR=blue\n");
}

#[tokio::test]
async fn a_command_component_copies_between_preopens_and_cannot_write_read_only_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "payload").unwrap();
    let out = tempfile::tempdir().unwrap();
    let grants = Grants {
        dirs: vec![
            DirGrant {
                host: dir.path().into(),
                guest: "/in".into(),
                read_only: true,
            },
            DirGrant {
                host: out.path().into(),
                guest: "/out".into(),
                read_only: false,
            },
        ],
        ..Grants::default()
    };
    let r = run(
        &hello_job(),
        &["copy", "/in/in.txt", "/out/copy.txt"],
        grants.clone(),
        Limits::default(),
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "copied 7 bytes\n"));
    assert_eq!(
        std::fs::read_to_string(out.path().join("copy.txt")).unwrap(),
        "payload"
    );
    let r = run(
        &hello_job(),
        &["copy", "/in/in.txt", "/in/again.txt"],
        grants,
        Limits::default(),
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Operation not permitted"), "{}", r.stderr);
    assert!(!dir.path().join("again.txt").exists());
}

#[tokio::test]
async fn a_failing_command_exits_non_zero_with_its_stderr() {
    let r = run(
        &hello_job(),
        &["exit", "3"],
        Grants::default(),
        Limits::default(),
    )
    .await;
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr, "exiting with 3\n");
    assert!(r.error.is_none());
}

/// A WASI preview1 command module: writes a line with fd_write and exits with proc_exit(7).
const P1_MODULE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from preview1\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 20))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 7))))"#;

#[tokio::test]
async fn a_preview1_module_runs_and_its_exit_code_comes_through() {
    let r = run(
        P1_MODULE.as_bytes(),
        &[],
        Grants::default(),
        Limits::default(),
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (7, "hello from preview1\n"));
}

const P1_SPIN: &str = r#"(module (func (export "_start") (loop $l (br $l))))"#;

#[tokio::test]
async fn a_job_that_never_ends_is_stopped_at_its_deadline() {
    let limits = Limits {
        deadline_ms: 200,
        ..Limits::default()
    };
    let r = run(P1_SPIN.as_bytes(), &[], Grants::default(), limits).await;
    assert_eq!(r.code, outpost_runtime::job::TRAP_EXIT_CODE);
    assert!(
        matches!(
            r.error,
            Some(CallError::DeadlineExceeded {
                deadline_ms: 200,
                ..
            })
        ),
        "{:?}",
        r.error
    );
}
