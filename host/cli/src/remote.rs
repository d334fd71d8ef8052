//! Commands that talk to a running host's management API: `status`, `apply`, `rollback`.
//!
//! Where the API is and how to authenticate come from, in order: flags, environment
//! (`OUTPOST_API`, `OUTPOST_TOKEN`, `OUTPOST_CA`, `OUTPOST_CLIENT_CERT`, `OUTPOST_CLIENT_KEY`),
//! the config file (`OUTPOST_CONFIG`, default `~/.config/outpost/config.toml` with keys `api`,
//! `token`, `token_file`, `ca`, `client_cert`, `client_key`), and finally the host's own data
//! directory (`admin.token`, `tls/ca.pem`), so on the box itself `outpost status` works with no
//! setup. A client certificate (mutual TLS, `[host.tls.client_auth]`) is presented when one is
//! given.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use outpost_security::ApiClient;
use serde::Deserialize;

/// How to reach the API.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Management API base URL [env: OUTPOST_API] (default https://127.0.0.1:7443).
    #[arg(long, global = true)]
    api: Option<String>,
    /// Bearer token [env: OUTPOST_TOKEN].
    #[arg(long, global = true)]
    token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// PEM file of the CA to trust for the API's certificate [env: OUTPOST_CA].
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// PEM file of a client certificate (chain, leaf first) for mutual TLS [env: OUTPOST_CLIENT_CERT].
    #[arg(long, global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key [env: OUTPOST_CLIENT_KEY].
    #[arg(long, global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The host's data directory, for its admin token and CA when nothing else is given.
    #[arg(long = "host-data-dir", global = true, default_value = "outpost-data")]
    host_data_dir: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    api: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

fn config_file() -> Result<ConfigFile> {
    let path = match std::env::var_os("OUTPOST_CONFIG") {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".config/outpost/config.toml"),
            None => return Ok(ConfigFile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

impl ApiArgs {
    /// A client for the API these arguments point at.
    pub fn client(&self) -> Result<ApiClient> {
        let file = config_file()?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let api = self
            .api
            .clone()
            .or_else(|| env("OUTPOST_API"))
            .or(file.api)
            .unwrap_or_else(|| "https://127.0.0.1:7443".into());
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(read_trimmed(f)?),
            (None, None) => match env("OUTPOST_TOKEN").or(file.token) {
                Some(t) => Some(t),
                None => {
                    let fallback = self.host_data_dir.join(outpost_security::ADMIN_TOKEN_FILE);
                    match file.token_file {
                        Some(f) => Some(read_trimmed(&f)?),
                        None if fallback.is_file() => Some(read_trimmed(&fallback)?),
                        None => None,
                    }
                }
            },
        };
        let ca_path = self
            .ca
            .clone()
            .or_else(|| env("OUTPOST_CA").map(PathBuf::from))
            .or(file.ca)
            .or_else(|| {
                let p = self
                    .host_data_dir
                    .join("tls")
                    .join(outpost_security::CA_FILE);
                p.is_file().then_some(p)
            });
        let ca = match (&ca_path, api.starts_with("https://")) {
            (Some(p), true) => Some(
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            ),
            (None, true) => bail!(
                "{api} is HTTPS but no CA to trust was given: use --ca FILE, OUTPOST_CA, or --host-data-dir DIR of the host"
            ),
            _ => None,
        };
        let client = ApiClient::new(&api, token, ca)?;
        let cert = self
            .client_cert
            .clone()
            .or_else(|| env("OUTPOST_CLIENT_CERT").map(PathBuf::from))
            .or(file.client_cert);
        let key = self
            .client_key
            .clone()
            .or_else(|| env("OUTPOST_CLIENT_KEY").map(PathBuf::from))
            .or(file.client_key);
        match (cert, key) {
            (None, None) => Ok(client),
            (Some(cert), Some(key)) => {
                let read = |p: &Path| {
                    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
                };
                Ok(client.with_client_certificate(&read(&cert)?, &read(&key)?)?)
            }
            _ => bail!(
                "a client certificate needs both its certificate and its key (--client-cert and --client-key)"
            ),
        }
    }
}

pub(crate) fn fail_with(resp: &outpost_security::ApiResponse) -> anyhow::Error {
    let text = String::from_utf8_lossy(&resp.body);
    let message = serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    anyhow::anyhow!("the host answered {}: {message}", resp.status)
}

/// `GET path` of the API for a listing command: with `json` the answer is printed as it came
/// and `None` returned; otherwise the parsed answer, for the command's table.
pub(crate) async fn fetch_listing(
    api: &ApiArgs,
    path: &str,
    json: bool,
) -> Result<Option<serde_json::Value>> {
    let resp = api.client()?.request(http::Method::GET, path, None).await?;
    if !resp.is_success() {
        return Err(fail_with(&resp));
    }
    if json {
        println!("{}", String::from_utf8_lossy(&resp.body));
        return Ok(None);
    }
    let value =
        serde_json::from_slice(&resp.body).with_context(|| format!("{path} is not JSON"))?;
    Ok(Some(value))
}

/// `outpost status`: a table of every plugin.
pub async fn status(api: &ApiArgs, json: bool) -> Result<ExitCode> {
    let Some(status) = fetch_listing(api, "/v1/status", json).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "host {} (outpost {}), up {}s",
        status["host"].as_str().unwrap_or("?"),
        status["version"].as_str().unwrap_or("?"),
        status["uptime_secs"].as_u64().unwrap_or(0)
    );
    println!(
        "{:<14} {:<16} {:<12} {:<10} {:<14} {:>8} {:>6} {:>5} {:>4}  LAST ERROR",
        "PLUGIN", "KIND", "STATE", "VERSION", "DIGEST", "CALLS", "ERRORS", "SWAPS", "RB"
    );
    for p in status["plugins"].as_array().into_iter().flatten() {
        let digest = p["actual"]["digest"]
            .as_str()
            .map(|d| {
                d.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>()
            })
            .unwrap_or_else(|| "-".into());
        let mut version = p["actual"]["version"].as_str().unwrap_or("-").to_string();
        if p["desired"]["version"] != p["actual"]["version"] {
            version = format!(
                "{version}→{}",
                p["desired"]["version"].as_str().unwrap_or("-")
            );
        }
        let err = p["last_error"].as_str().unwrap_or("-");
        let err: String = err.chars().take(80).collect();
        println!(
            "{:<14} {:<16} {:<12} {:<10} {:<14} {:>8} {:>6} {:>5} {:>4}  {err}",
            p["name"].as_str().unwrap_or_default(),
            p["kind"].as_str().unwrap_or_default(),
            p["state"].as_str().unwrap_or_default(),
            version,
            digest,
            p["stats"]["calls"].as_u64().unwrap_or_default(),
            p["stats"]["errors"].as_u64().unwrap_or_default(),
            p["swaps"].as_u64().unwrap_or_default(),
            p["rollbacks"].as_u64().unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpost apply FILE`: hands a manifest to the running host and prints what changed.
pub async fn apply(api: &ApiArgs, file: &Path, dry_run: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    // Check locally first, so a typo is reported against the file the operator edits.
    outpost_manifest::Manifest::parse(&text, &file.display().to_string())?;
    let base = std::path::absolute(file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/"));
    let base = base.to_string_lossy();
    let mut query = format!("/v1/manifest?base={}", encode(&base));
    if dry_run {
        query.push_str("&dry_run=true");
    }
    let client = api.client()?;
    let resp = client
        .request(
            http::Method::PUT,
            &query,
            Some((text.into_bytes(), "application/toml")),
        )
        .await?;
    if !resp.is_success() {
        return Err(fail_with(&resp));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&resp.body).context("report is not JSON")?;
    let verb = if dry_run { "would" } else { "did" };
    if report["changed"] == false {
        println!("no changes: the host already runs this manifest");
        return Ok(ExitCode::SUCCESS);
    }
    for c in report["plugins"].as_array().into_iter().flatten() {
        let fields: Vec<&str> = c["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .collect();
        let outcome = match (c["ok"].as_bool(), c["error"].as_str()) {
            (Some(false), Some(e)) => format!("FAILED: {e}"),
            (Some(true), _) => "ok".into(),
            _ => String::new(),
        };
        println!(
            "{verb} {:<8} {:<14} {:<30} {outcome}",
            c["action"].as_str().unwrap_or_default(),
            c["plugin"].as_str().unwrap_or_default(),
            fields.join(",")
        );
    }
    for r in report["routing"].as_array().into_iter().flatten() {
        println!("routing: {}", r.as_str().unwrap_or_default());
    }
    for w in report["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", w.as_str().unwrap_or_default());
    }
    Ok(if report["succeeded"] == false {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `outpost rollback PLUGIN`.
pub async fn rollback(api: &ApiArgs, plugin: &str) -> Result<ExitCode> {
    let client = api.client()?;
    let resp = client
        .request(
            http::Method::POST,
            &format!("/v1/plugins/{}/rollback", encode(plugin)),
            None,
        )
        .await?;
    if !resp.is_success() {
        return Err(fail_with(&resp));
    }
    let status: serde_json::Value = serde_json::from_slice(&resp.body).context("not JSON")?;
    println!(
        "{plugin} rolled back: now serving version {} ({})",
        status["actual"]["version"].as_str().unwrap_or("-"),
        status["actual"]["digest"].as_str().unwrap_or("-")
    );
    Ok(ExitCode::SUCCESS)
}

/// `outpost diagnostics`: downloads a support bundle.
pub async fn diagnostics(api: &ApiArgs, output: Option<&Path>) -> Result<ExitCode> {
    let client = api.client()?;
    let resp = client
        .request(http::Method::GET, "/v1/diagnostics", None)
        .await?;
    if !resp.is_success() {
        return Err(fail_with(&resp));
    }
    let default_name = format!(
        "outpost-diagnostics-{}.tar.gz",
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    let path = output.map_or_else(|| PathBuf::from(default_name), Path::to_path_buf);
    std::fs::write(&path, &resp.body).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "support bundle written to {} ({} bytes)",
        path.display(),
        resp.body.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `outpost restart`: restarts the host, or one plugin.
pub async fn restart(api: &ApiArgs, plugin: Option<&str>, yes: bool) -> Result<ExitCode> {
    let client = api.client()?;
    let path = match plugin {
        Some(p) => format!("/v1/plugins/{}/restart", encode(p)),
        None if !yes => {
            anyhow::bail!(
                "restarting the host stops every plugin for a few seconds; run again with --yes"
            )
        }
        None => "/v1/restart".to_string(),
    };
    let resp = client.request(http::Method::POST, &path, None).await?;
    if !resp.is_success() {
        return Err(fail_with(&resp));
    }
    match plugin {
        Some(p) => println!("{p} restarted"),
        None => println!("host restarting"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
