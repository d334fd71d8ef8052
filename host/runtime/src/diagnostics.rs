//! Support bundles: one archive with what a support engineer asks for first. The status, the
//! metrics, the alerts, the machine's usage, the recent log, the versions, and the manifest with
//! every secret replaced by `[redacted]`.
//!
//! Served by `GET /v1/diagnostics`, the web UI's Diagnostics page and `outpost diagnostics`.

use std::sync::Arc;

use serde_json::json;

use crate::appliance::Appliance;
use crate::error::RuntimeError;
use crate::system::SystemMonitor;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// The host status `GET /v1/status` returns.
pub fn status_json(app: &Appliance) -> serde_json::Value {
    json!({
        "host": app.manifest().host.name,
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_secs": app.uptime_secs(),
        "started_at_ms": app.started_at_ms(),
        "http_addr": app.http_addr(),
        "plugins": app.status(),
        "models": app.models(),
        "inference": app.inference_runtime(),
        "encryption": app.key_status(),
        "updates": app.update_status(),
        "shares": app.shares(),
        "sdwan": app.sdwan(),
        "certificates": app.certificates().map(|c| c.status()),
    })
}

/// A finished bundle.
#[derive(Debug)]
pub struct Bundle {
    /// `outpost-diagnostics-<host>-<time>.tar.gz`.
    pub file_name: String,
    /// The gzip-compressed tar archive.
    pub bytes: Vec<u8>,
}

/// The files of a bundle, in archive order.
pub const BUNDLE_FILES: &[&str] = &[
    "status.json",
    "alerts.json",
    "system.json",
    "metrics.txt",
    "logs.jsonl",
    "manifest.toml",
    "versions.json",
];

/// Builds a support bundle of `app` now.
pub async fn bundle(app: &Arc<Appliance>, monitor: &SystemMonitor) -> Result<Bundle, RuntimeError> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let host = app.manifest().host.name.clone();
    let usage = monitor.read(&app.options().data_dir);
    let alerts = crate::system::alerts(app, &usage).await;
    let snapshot = app.metrics().await;
    let metrics = crate::metrics::render(&host, &snapshot);
    let mut logs = String::new();
    for r in crate::logs::buffer().query(&Default::default()) {
        logs.push_str(&serde_json::to_string(&r).unwrap_or_default());
        logs.push('\n');
    }
    let manifest = match app.manifest_text() {
        Some(text) => redact_manifest(&text),
        None => "# the host was started without manifest text\n".to_string(),
    };
    let versions = json!({
        "outpost": env!("CARGO_PKG_VERSION"),
        "inference": app.inference_runtime(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).ok(),
        "os": std::fs::read_to_string("/etc/os-release").ok().and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
        }),
        "arch": std::env::consts::ARCH,
        "created": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("status.json", pretty(&status_json(app))),
        ("alerts.json", pretty(&json!(alerts))),
        ("system.json", pretty(&json!(usage))),
        ("metrics.txt", metrics.into_bytes()),
        ("logs.jsonl", logs.into_bytes()),
        ("manifest.toml", manifest.into_bytes()),
        ("versions.json", pretty(&versions)),
    ];
    let dir = format!("outpost-diagnostics-{host}-{stamp}");
    let bytes = tokio::task::spawn_blocking(move || archive(&dir, &files, now.unix_timestamp()))
        .await
        .map_err(|e| RuntimeError::Service(format!("diagnostics: {e}")))?
        .map_err(|e| RuntimeError::Service(format!("diagnostics: writing the archive: {e}")))?;
    Ok(Bundle {
        file_name: format!("outpost-diagnostics-{host}-{stamp}.tar.gz"),
        bytes,
    })
}

fn archive(dir: &str, files: &[(&str, Vec<u8>)], mtime: i64) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime.max(0) as u64);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{dir}/{name}"), data.as_slice())?;
    }
    tar.into_inner()?.finish()
}

/// `text` (a TOML manifest) with every secret value replaced by [`REDACTED`]: values under keys
/// that name a password, secret, token, PIN, credential or private key, and passwords or
/// signatures inside URLs. Comments are dropped. Text that is not TOML is withheld whole.
pub fn redact_manifest(text: &str) -> String {
    match text.parse::<toml::Table>() {
        Ok(mut table) => {
            redact_table(&mut table);
            format!(
                "# secrets are replaced by \"{REDACTED}\"; comments are dropped\n{}",
                toml::to_string_pretty(&table).unwrap_or_default()
            )
        }
        Err(e) => format!(
            "# the manifest text is not valid TOML ({}); withheld so no secret leaks\n",
            e.message()
        ),
    }
}

fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        if is_secret_key(key) && !matches!(value, toml::Value::Table(_)) {
            *value = toml::Value::String(REDACTED.into());
        } else {
            redact_value(value);
        }
    }
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(a) => a.iter_mut().for_each(redact_value),
        toml::Value::String(s) => {
            if let Some(clean) = redact_url(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// Whether a key names a secret: one of its words is a secret word, unless it names a file, a
/// path or a public key.
fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    let Some(last) = words.last() else {
        return false;
    };
    if matches!(*last, "file" | "path" | "dir" | "id" | "name") || words.contains(&"public") {
        return false;
    }
    words.iter().any(|w| {
        matches!(
            *w,
            "password"
                | "passwd"
                | "passphrase"
                | "secret"
                | "token"
                | "pin"
                | "credential"
                | "credentials"
                | "apikey"
                | "sas"
                | "sig"
                | "private"
        )
    }) || (*last == "key" && words.len() > 1)
        || lower == "key"
        || lower.contains("connection_string")
        || lower.contains("connectionstring")
}

/// A URL with a password in it or a signed query, cleaned; `None` when there is nothing to hide.
fn redact_url(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let mut out = rest.to_string();
    let mut changed = false;
    let authority_end = out.find('/').unwrap_or(out.len());
    if let Some(at) = out[..authority_end].rfind('@') {
        let userinfo = &out[..at];
        if let Some((user, _password)) = userinfo.split_once(':') {
            out = format!("{user}:{REDACTED}{}", &out[at..]);
            changed = true;
        }
    }
    if let Some(q) = out.find('?') {
        let lower = out[q..].to_ascii_lowercase();
        if [
            "sig=",
            "signature=",
            "token=",
            "password=",
            "secret=",
            "key=",
        ]
        .iter()
        .any(|k| lower.contains(k))
        {
            out = format!("{}?{REDACTED}", &out[..q]);
            changed = true;
        }
    }
    changed.then(|| format!("{scheme}://{out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_keys_and_urls_are_redacted_and_everything_else_kept() {
        let text = r#"
# comment with hunter2
[host]
name = "store-7"

[host.registry]
password = "hunter2"
password_file = "/etc/outpost/registry.pass"
public_key = "keys/pub.pem"

[sinks.cloud]
url = "mqtt://edge:s3cr3t@broker.example:1883/x"
sas = "sv=2024&sig=abc"

[shares.archive]
target = "az://container?sig=SIGNATURE&se=2027"

[plugins.echo]
config = { api-key = "k-123", output-topic = "demo/out", pin = "1234" }
"#;
        let out = redact_manifest(text);
        for secret in ["hunter2", "s3cr3t", "sig=abc", "SIGNATURE", "k-123", "1234"] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        for kept in [
            "store-7",
            "/etc/outpost/registry.pass",
            "keys/pub.pem",
            "demo/out",
            "mqtt://edge:[redacted]@broker.example:1883/x",
            "az://container?[redacted]",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        assert!(out.contains("password = \"[redacted]\""), "{out}");
    }

    #[test]
    fn text_that_is_not_toml_is_withheld_whole() {
        let out = redact_manifest("password = \"hunter2\nbroken");
        assert!(
            !out.contains("hunter2") && out.contains("withheld"),
            "{out}"
        );
    }
}
