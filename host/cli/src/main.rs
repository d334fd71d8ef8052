//! `outpost`: run the appliance, run jobs, inspect plugins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use outpost_manifest::{DirGrant, Endpoint, Grants, Limits, MAX_MEMORY_BYTES, Manifest};
use outpost_runtime::{
    Appliance, ApplianceOptions, CompileCache, EngineSettings, HostEngine, JobOptions, JobStdio,
};

/// The demo manifest, for `outpost up` outside a checkout.
const DEMO_MANIFEST: &str = include_str!("../../../examples/appliance.toml");
/// Default deadline for `outpost job run`: effectively none, like `wasmtime run`.
const JOB_DEFAULT_DEADLINE_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "A sandboxed WebAssembly plugin host for edge appliances"
)]
struct Cli {
    /// Log output format (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance from a manifest (the demo manifest when none is given).
    Up(UpArgs),
    /// Show the status of a running appliance.
    Status {
        /// Address of the appliance's HTTP endpoint.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
    /// Run jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Args)]
struct UpArgs {
    /// The deployment manifest (default: examples/appliance.toml, or the built-in demo).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Where the host keeps its state.
    #[arg(long, default_value = "outpost-data")]
    data_dir: PathBuf,
    /// Override the manifest's http_listen address.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Keep kv in memory and compiled code uncached.
    #[arg(long)]
    ephemeral: bool,
}

#[derive(Subcommand)]
enum JobCommand {
    /// Run a wasi:cli/command component or a WASI preview1 module with exactly these grants.
    Run(JobRunArgs),
}

#[derive(Args)]
struct JobRunArgs {
    /// Preopen a directory: HOST::GUEST, read-write, or HOST::GUEST:ro, read-only.
    #[arg(long = "dir", value_name = "HOST::GUEST[:ro]")]
    dirs: Vec<String>,
    /// Set an environment variable for the job.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Allow connecting to IP:PORT (or IP:*).
    #[arg(long = "net", value_name = "IP:PORT")]
    net: Vec<String>,
    /// Allow DNS lookups.
    #[arg(long)]
    allow_lookup: bool,
    /// Wall-clock deadline for the whole run.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Linear-memory ceiling.
    #[arg(long)]
    max_memory_mb: Option<u64>,
    /// The component or module.
    file: PathBuf,
    /// Arguments for the job.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a plugin's world, imports, exports, size and digest.
    Inspect {
        /// The component or module.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("outpost: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outpost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Status { addr } => status(addr),
        Command::Job(JobCommand::Run(args)) => job_run(args).await,
        Command::Plugin(PluginCommand::Inspect { file, json }) => inspect(&file, json),
    }
}

/// Writes the plugins that ship inside the binary into the data directory's artifact store, so
/// manifests can name them (`component = "echo-pipeline.wasm"`).
fn seed_bundled_plugins(data_dir: &Path) -> Result<()> {
    let dir = data_dir.join("plugins");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in outpost_artifacts::BUNDLED {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(*bytes) {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None if Path::new("examples/appliance.toml").is_file() => {
            Manifest::load(Path::new("examples/appliance.toml"))?
        }
        None => {
            let mut m = Manifest::parse(DEMO_MANIFEST, "built-in demo manifest")?;
            m.rebase(&args.data_dir);
            m
        }
    };
    seed_bundled_plugins(&args.data_dir)?;
    let mut opts = ApplianceOptions::new(&args.data_dir);
    opts.http_listen = args.http_listen;
    opts.ephemeral = args.ephemeral;
    let appliance = Appliance::start(manifest, opts).await?;
    print_started(&appliance);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    eprintln!("outpost: stopping");
    appliance.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn print_started(appliance: &Arc<Appliance>) {
    let addr = appliance
        .http_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "outpost {} — host `{}` is up",
        env!("CARGO_PKG_VERSION"),
        appliance.manifest().host.name
    );
    println!("  http:      http://{addr}  (status: /v1/status, ingest: POST /v1/bus/<topic>)");
    for p in appliance.status() {
        let detail = match (p.route.as_deref(), p.subscribe.is_empty()) {
            (Some(route), _) => format!("route http://{addr}{route}"),
            (None, false) => format!("subscribes {}", p.subscribe.join(", ")),
            _ => String::new(),
        };
        let error = p
            .stats
            .last_error
            .as_deref()
            .filter(|_| p.state == "failed")
            .map(|e| format!(" — {e}"))
            .unwrap_or_default();
        println!(
            "  plugin:    {:<12} {:<16} {:<9} {detail}{error}",
            p.name, p.kind, p.state
        );
    }
    if appliance.plugin("echo").is_some() && appliance.plugin("hello").is_some() {
        println!(
            "  try:       curl -X POST http://{addr}/v1/bus/demo/in -d 'hello edge'   (watch the log)"
        );
        println!("             curl http://{addr}/hello");
    }
    println!("  stop with ctrl-c");
}

fn status(addr: SocketAddr) -> Result<ExitCode> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
        .with_context(|| format!("no appliance answering on {addr}"))?;
    write!(stream, "GET /v1/status HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("malformed response from {addr}");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "{addr} answered: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    let plugins: Vec<serde_json::Value> =
        serde_json::from_str(body).context("status is not JSON")?;
    println!(
        "{:<14} {:<17} {:<10} {:>8} {:>7}  last error",
        "PLUGIN", "KIND", "STATE", "CALLS", "ERRORS"
    );
    for p in plugins {
        println!(
            "{:<14} {:<17} {:<10} {:>8} {:>7}  {}",
            p["name"].as_str().unwrap_or_default(),
            p["kind"].as_str().unwrap_or_default(),
            p["state"].as_str().unwrap_or_default(),
            p["stats"]["calls"].as_u64().unwrap_or_default(),
            p["stats"]["errors"].as_u64().unwrap_or_default(),
            p["stats"]["last_error"].as_str().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_dir(spec: &str) -> Result<DirGrant> {
    let Some((host, guest)) = spec.split_once("::") else {
        bail!("--dir {spec}: expected HOST::GUEST or HOST::GUEST:ro");
    };
    let (guest, read_only) = match guest.strip_suffix(":ro") {
        Some(g) => (g, true),
        None => (guest, false),
    };
    if host.is_empty() || guest.is_empty() {
        bail!("--dir {spec}: expected HOST::GUEST or HOST::GUEST:ro");
    }
    Ok(DirGrant {
        host: PathBuf::from(host),
        guest: guest.to_string(),
        read_only,
    })
}

async fn job_run(args: JobRunArgs) -> Result<ExitCode> {
    let mut grants = Grants::default();
    for d in &args.dirs {
        grants.dirs.push(parse_dir(d)?);
    }
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv}: expected K=V");
        };
        grants.env.insert(k.to_string(), v.to_string());
    }
    for n in &args.net {
        grants
            .net
            .connect
            .push(Endpoint::parse(n).map_err(|e| anyhow::anyhow!("--net: {e}"))?);
    }
    grants.net.lookup = args.allow_lookup;
    let limits = Limits {
        memory_bytes: match args.max_memory_mb {
            Some(0) => bail!("--max-memory-mb must be at least 1"),
            Some(mb) if mb << 20 > MAX_MEMORY_BYTES => {
                bail!("--max-memory-mb {mb} exceeds {}", MAX_MEMORY_BYTES >> 20)
            }
            Some(mb) => mb << 20,
            None => MAX_MEMORY_BYTES,
        },
        deadline_ms: match args.deadline_ms {
            Some(0) => bail!("--deadline-ms must be at least 1"),
            Some(ms) => ms.min(JOB_DEFAULT_DEADLINE_MS),
            None => JOB_DEFAULT_DEADLINE_MS,
        },
        ..Limits::default()
    };
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let engine = HostEngine::new(EngineSettings {
        instance_slots: 4,
        ..EngineSettings::default()
    })?;
    let cache = CompileCache::disabled(engine.engine());
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".into());
    let mut argv = vec![name.clone()];
    argv.extend(args.args);
    let outcome = outpost_runtime::run_job(
        &engine,
        &cache,
        &bytes,
        JobOptions {
            name,
            argv,
            grants,
            limits,
            stdio: JobStdio::Inherit,
        },
    )
    .await?;
    if let Some(e) = &outcome.error {
        eprintln!("outpost: error: {e}");
    }
    Ok(ExitCode::from(
        u8::try_from(outcome.exit_code & 0xff).unwrap_or(1),
    ))
}

fn inspect(file: &Path, json: bool) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let engine = HostEngine::new(EngineSettings {
        pooling: false,
        ..EngineSettings::default()
    })?;
    let cache = CompileCache::disabled(engine.engine());
    let inspection = if outpost_runtime::inspect::is_component(&bytes) {
        let (component, _) = cache
            .load_component(engine.engine(), &bytes)
            .with_context(|| file.display().to_string())?;
        outpost_runtime::inspect::inspect_component(engine.engine(), &component, &bytes)
    } else {
        let (module, _) = cache
            .load_module(engine.engine(), &bytes)
            .with_context(|| file.display().to_string())?;
        outpost_runtime::inspect::inspect_module(&module, &bytes)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(ExitCode::SUCCESS);
    }
    let world = inspection
        .world
        .map(|w| w.to_string())
        .unwrap_or_else(|| "none of the Outpost worlds".into());
    println!("file:     {}", file.display());
    println!("artifact: {:?}", inspection.artifact);
    println!("world:    {world}");
    println!("size:     {} bytes", inspection.size);
    println!("digest:   {}", inspection.digest);
    println!("imports:");
    for i in &inspection.imports {
        let need = if inspection.artifact == outpost_runtime::inspect::ArtifactKind::CoreModule {
            "wasi preview1 (jobs only)".to_string()
        } else {
            match outpost_runtime::capability::requirement(
                i,
                inspection
                    .world
                    .unwrap_or(outpost_manifest::PluginKind::Job),
            ) {
                outpost_runtime::capability::Requirement::Ambient => "ambient".to_string(),
                outpost_runtime::capability::Requirement::Grant(_, key) => format!("needs {key}"),
                outpost_runtime::capability::Requirement::Unsupported => {
                    "not provided by this host".to_string()
                }
            }
        };
        println!("  {i:<48} {need}");
    }
    println!("exports:");
    for e in &inspection.exports {
        println!("  {e}");
    }
    Ok(ExitCode::SUCCESS)
}
