//! `outpost shares` and `outpost share …`: a running host's shares through its management API,
//! with progress shown for the operations that take long (refresh, sync, large recalls).
//!
//! Progress goes to stderr and only when it is a terminal; results go to stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::remote::{ApiArgs, encode, fail_with, fetch_listing};

/// What `outpost share` does.
#[derive(Subcommand)]
pub enum ShareCommand {
    /// Pull the list of objects added in the cloud since the last refresh; they appear as
    /// evicted files, recalled when read.
    Refresh {
        /// The share.
        share: String,
    },
    /// Scan the share's directory and upload what is due, now.
    Sync {
        /// The share.
        share: String,
    },
    /// Read a file of a share (an evicted file is recalled), with a progress bar.
    Get {
        /// The share.
        share: String,
        /// The file's path in the share.
        path: String,
        /// Where to write it (default: the file's name in the current directory; `-` for stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// `outpost shares`: a table of every share.
pub async fn list(api: &ApiArgs, json: bool) -> Result<ExitCode> {
    let Some(shares) = fetch_listing(api, "/v1/shares", json).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{:<16} {:<13} {:>10} {:>10} {:>10} {:>10} {:>6} {:>12} {:>12}  ERROR",
        "SHARE", "KIND", "LOCAL", "UNSYNCED", "SYNCED", "EVICTED", "QUEUE", "RATE", "LIMIT"
    );
    for share in shares.as_array().into_iter().flatten() {
        let stats = &share["stats"];
        let bytes = |key: &str| stats[key].as_u64().map(size).unwrap_or_else(|| "-".into());
        let limit = match &stats["upload_limit_bytes_per_sec"] {
            serde_json::Value::Null if stats.is_object() => "unlimited".to_string(),
            v => v
                .as_u64()
                .map(|b| format!("{}/s", size(b)))
                .unwrap_or_else(|| "-".into()),
        };
        println!(
            "{:<16} {:<13} {:>10} {:>10} {:>10} {:>10} {:>6} {:>12} {:>12}  {}",
            share["name"].as_str().unwrap_or("?"),
            share["kind"].as_str().unwrap_or("?"),
            bytes("bytes_local"),
            bytes("bytes_unsynced"),
            bytes("bytes_synced"),
            bytes("bytes_evicted"),
            stats["upload_queue_len"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            stats["upload_rate_bytes_per_sec"]
                .as_u64()
                .map(|b| format!("{}/s", size(b)))
                .unwrap_or_else(|| "-".into()),
            limit,
            share["error"].as_str().unwrap_or(""),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpost share …`.
pub async fn run(api: &ApiArgs, command: ShareCommand) -> Result<ExitCode> {
    let client = api.client()?;
    match command {
        ShareCommand::Refresh { share } => {
            let report = post_report(
                &client,
                &share,
                "refresh",
                format!("refreshing {share} from its cloud copy"),
            )
            .await?;
            println!(
                "{share}: refreshed: {} added, {} already known, {} skipped",
                report["added"], report["known"], report["skipped"]
            );
        }
        ShareCommand::Sync { share } => {
            let report = post_report(&client, &share, "sync", format!("syncing {share}")).await?;
            println!(
                "{share}: synced: {} uploaded, {} deferred, {} failed",
                report["uploaded"], report["deferred"], report["failed"]
            );
        }
        ShareCommand::Get {
            share,
            path,
            output,
        } => get(&client, &share, &path, output).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(
    client: &outpost_security::ApiClient,
    share: &str,
    path: &str,
    output: Option<PathBuf>,
) -> Result<()> {
    let url = format!("/v1/shares/{}/files/{}", encode(share), encode(path));
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!("{share}/{path}: waiting for the host (recalling)"));
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut progress = |done: u64, total: Option<u64>| {
        if let (Some(total), None) = (total, bar.length()) {
            bar.set_length(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(format!("{share}/{path}"));
        }
        bar.set_position(done);
    };
    if output.as_deref() == Some(Path::new("-")) {
        let mut stdout = tokio::io::stdout();
        let result = client.download(&url, &mut stdout, &mut progress).await;
        bar.finish_and_clear();
        result?;
        return Ok(());
    }
    let target = match output {
        Some(p) => p,
        None => {
            let name = path.rsplit('/').next().unwrap_or(path);
            if name.is_empty() || name == "." || name == ".." {
                bail!("`{path}` has no file name to save under; give --output FILE");
            }
            PathBuf::from(name)
        }
    };
    // Written next to the target and renamed into place, so a failed read leaves no half file.
    let partial = target.with_extension(match target.extension() {
        Some(ext) => format!("{}.partial", ext.to_string_lossy()),
        None => "partial".into(),
    });
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let result = client.download(&url, &mut file, &mut progress).await;
    bar.finish_and_clear();
    drop(file);
    let bytes = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    std::fs::rename(&partial, &target)
        .with_context(|| format!("moving {} to {}", partial.display(), target.display()))?;
    println!(
        "{share}/{path}: {} written to {}",
        size(bytes),
        target.display()
    );
    Ok(())
}

/// `POST /v1/shares/{share}/{operation}` under a spinner; the JSON report it answers.
async fn post_report(
    client: &outpost_security::ApiClient,
    share: &str,
    operation: &str,
    message: String,
) -> Result<serde_json::Value> {
    let spinner = spinner(message);
    let resp = client
        .clone()
        .with_timeout(Duration::from_secs(3600))
        .request(
            http::Method::POST,
            &format!("/v1/shares/{}/{operation}", encode(share)),
            None,
        )
        .await;
    spinner.finish_and_clear();
    let resp = resp?;
    if !resp.is_success() {
        return Err(fail_with(&resp));
    }
    serde_json::from_slice(&resp.body).context("the report is not JSON")
}

fn spinner(message: String) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// Bytes in binary units, for tables.
fn size(bytes: u64) -> String {
    outpost_runtime::system::human_bytes(bytes)
}
