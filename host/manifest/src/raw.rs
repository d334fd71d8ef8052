//! The manifest as written (with source spans), and its validation into [`crate::Manifest`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::{
    BusGrant, DirGrant, Endpoint, Grants, HealthCheck, HostSettings, KvGrant, Limits,
    MAX_DEADLINE_MS, MAX_MEMORY_BYTES, Manifest, ManifestError, NetGrant, PluginKind, PluginSpec,
    RollbackSpec, TopicPattern,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    plugins: BTreeMap<Spanned<String>, RawPlugin>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Option<String>,
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    http_listen: Option<Spanned<String>>,
    #[serde(default)]
    log_topics: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawKind {
    Pipeline,
    TieringPolicy,
    NetworkFunction,
    Job,
    Http,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    kind: Spanned<RawKind>,
    component: Spanned<PathBuf>,
    version: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    limits: RawLimits,
    route: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    health: Option<Spanned<RawHealth>>,
    rollback: Option<Spanned<RawRollback>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    topic: String,
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    max_failures: Option<u32>,
    window_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    #[serde(default)]
    dirs: Vec<Spanned<RawDir>>,
    #[serde(default)]
    net: RawNet,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    bus: RawBus,
    kv: Option<Spanned<RawKv>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    mode: RawMode,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
enum RawMode {
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNet {
    #[serde(default)]
    connect: Vec<Spanned<String>>,
    #[serde(default)]
    lookup: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBus {
    #[serde(default)]
    publish: Vec<Spanned<String>>,
    #[serde(default)]
    subscribe: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKv {
    namespace: Option<String>,
    quota_kb: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<Spanned<u64>>,
    deadline_ms: Option<Spanned<u64>>,
    table_elements: Option<Spanned<u32>>,
    output_mb: Option<Spanned<u64>>,
}

const DEFAULT_KV_QUOTA_KB: u64 = 16 * 1024;
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";

struct Checker<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Checker<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, message: String) -> Result<T, ManifestError> {
        Err(ManifestError::at(
            self.origin,
            self.text,
            Some(span.start),
            message,
        ))
    }
}

pub(crate) fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        ManifestError::at(
            origin,
            text,
            e.span().map(|s| s.start),
            e.message().to_string(),
        )
    })?;
    let c = Checker { origin, text };

    let http_listen = match &raw.host.http_listen {
        Some(s) => s.get_ref().parse().or_else(|_| {
            c.err(
                s.span(),
                format!(
                    "host.http_listen: `{}` is not an `IP:PORT` address",
                    s.get_ref()
                ),
            )
        })?,
        None => DEFAULT_HTTP_LISTEN
            .parse()
            .expect("the default address is valid"),
    };
    let mut log_topics = Vec::new();
    for t in raw.host.log_topics {
        match TopicPattern::parse(t.get_ref()) {
            Ok(p) => log_topics.push(p),
            Err(why) => return c.err(t.span(), format!("host.log_topics: {why}")),
        }
    }
    let host = HostSettings {
        name: raw.host.name.unwrap_or_else(|| "outpost".to_string()),
        plugin_dirs: raw.host.plugin_dirs,
        http_listen,
        log_topics,
    };

    let mut plugins = BTreeMap::new();
    let mut routes: BTreeMap<String, String> = BTreeMap::new();
    for (name, plugin) in raw.plugins {
        let spec = check_plugin(&c, &name, plugin)?;
        if let Some(route) = &spec.route
            && let Some(other) = routes.insert(route.clone(), spec.name.clone())
        {
            return c.err(
                name.span(),
                format!(
                    "plugins.{}.route: `{route}` is already served by `{other}`",
                    spec.name
                ),
            );
        }
        plugins.insert(spec.name.clone(), spec);
    }

    Ok(Manifest {
        host,
        plugins,
        base_dir: PathBuf::from("."),
    })
}

fn check_plugin(
    c: &Checker<'_>,
    name: &Spanned<String>,
    raw: RawPlugin,
) -> Result<PluginSpec, ManifestError> {
    let n = name.get_ref();
    let valid_name = !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-');
    if !valid_name {
        return c.err(
            name.span(),
            format!("plugins.{n}: a plugin name is 1-63 lowercase letters, digits and `-`"),
        );
    }
    let kind = match raw.kind.get_ref() {
        RawKind::Pipeline => PluginKind::Pipeline,
        RawKind::TieringPolicy => PluginKind::TieringPolicy,
        RawKind::NetworkFunction => PluginKind::NetworkFunction,
        RawKind::Job => PluginKind::Job,
        RawKind::Http => PluginKind::Http,
    };
    if raw.component.get_ref().as_os_str().is_empty() {
        return c.err(
            raw.component.span(),
            format!("plugins.{n}.component: empty path"),
        );
    }

    let route = match (kind, raw.route) {
        (PluginKind::Http, Some(route)) => {
            let r = route.get_ref();
            if !r.starts_with('/') || r.contains("..") || r.contains(char::is_whitespace) {
                return c.err(
                    route.span(),
                    format!(
                        "plugins.{n}.route: `{r}` must start with `/` and hold no `..` or spaces"
                    ),
                );
            }
            Some(r.trim_end_matches('/').to_string())
                .map(|r| if r.is_empty() { "/".into() } else { r })
        }
        (PluginKind::Http, None) => {
            return c.err(
                name.span(),
                format!("plugins.{n}: an http plugin needs a `route`"),
            );
        }
        (_, Some(route)) => {
            return c.err(
                route.span(),
                format!("plugins.{n}.route: only http plugins have a route, this one is {kind}"),
            );
        }
        (_, None) => None,
    };
    if !raw.args.is_empty() && kind != PluginKind::Job {
        return c.err(
            name.span(),
            format!("plugins.{n}.args: only jobs take arguments"),
        );
    }

    let grants = check_grants(c, n, kind, raw.grants)?;
    let limits = check_limits(c, n, raw.limits)?;
    let health = match raw.health {
        Some(h) if kind != PluginKind::Pipeline => {
            return c.err(
                h.span(),
                format!(
                    "plugins.{n}.health: only pipelines have a health probe, this one is {kind}"
                ),
            );
        }
        Some(h) => {
            let span = h.span();
            let h = h.into_inner();
            if TopicPattern::parse(&h.topic).is_err() {
                return c.err(
                    span,
                    format!(
                        "plugins.{n}.health.topic: `{}` is not a valid topic",
                        h.topic
                    ),
                );
            }
            Some(HealthCheck {
                topic: h.topic,
                payload: h.payload.into_bytes(),
            })
        }
        None => None,
    };
    let mut rollback = RollbackSpec::default();
    if let Some(r) = raw.rollback {
        let span = r.span();
        let r = r.into_inner();
        if let Some(max) = r.max_failures {
            rollback.max_failures = max;
        }
        if let Some(ms) = r.window_ms {
            if ms == 0 || ms > 24 * 60 * 60 * 1000 {
                return c.err(
                    span,
                    format!("plugins.{n}.rollback.window_ms: {ms} is outside 1..=86400000"),
                );
            }
            rollback.window_ms = ms;
        }
    }

    Ok(PluginSpec {
        name: n.clone(),
        kind,
        component: raw.component.into_inner(),
        version: raw.version,
        config: raw.config,
        grants,
        limits,
        route,
        args: raw.args,
        health,
        rollback,
    })
}

fn check_grants(
    c: &Checker<'_>,
    n: &str,
    kind: PluginKind,
    raw: RawGrants,
) -> Result<Grants, ManifestError> {
    let mut dirs = Vec::new();
    for dir in raw.dirs {
        let span = dir.span();
        let d = dir.into_inner();
        if !d.guest.starts_with('/') || d.guest.split('/').any(|seg| seg == "..") {
            return c.err(
                span,
                format!(
                    "plugins.{n}.grants.dirs: guest path `{}` must be absolute, without `..`",
                    d.guest
                ),
            );
        }
        if d.host.as_os_str().is_empty() {
            return c.err(span, format!("plugins.{n}.grants.dirs: empty host path"));
        }
        dirs.push(DirGrant {
            host: d.host,
            guest: d.guest,
            read_only: matches!(d.mode, RawMode::ReadOnly),
        });
    }

    let mut connect = Vec::new();
    for entry in raw.net.connect {
        match Endpoint::parse(entry.get_ref()) {
            Ok(e) => connect.push(e),
            Err(why) => {
                return c.err(
                    entry.span(),
                    format!("plugins.{n}.grants.net.connect: {why}"),
                );
            }
        }
    }

    let mut env = BTreeMap::new();
    for (key, value) in raw.env {
        let k = key.get_ref();
        if k.is_empty() || k.contains('=') || k.contains('\0') || value.contains('\0') {
            return c.err(
                key.span(),
                format!("plugins.{n}.grants.env: `{k}` is not a valid variable"),
            );
        }
        env.insert(key.into_inner(), value);
    }

    let topics =
        |list: Vec<Spanned<String>>, field: &str| -> Result<Vec<TopicPattern>, ManifestError> {
            list.into_iter()
                .map(|t| {
                    TopicPattern::parse(t.get_ref()).or_else(|why| {
                        c.err(t.span(), format!("plugins.{n}.grants.bus.{field}: {why}"))
                    })
                })
                .collect()
        };
    let subscribe_spans: Vec<_> = raw.bus.subscribe.iter().map(|s| s.span()).collect();
    let bus = BusGrant {
        publish: topics(raw.bus.publish, "publish")?,
        subscribe: topics(raw.bus.subscribe, "subscribe")?,
    };
    if !bus.subscribe.is_empty() && kind != PluginKind::Pipeline {
        return c.err(
            subscribe_spans[0].clone(),
            format!("plugins.{n}.grants.bus.subscribe: only pipelines receive bus messages, this plugin is {kind}"),
        );
    }

    let kv = match raw.kv {
        Some(kv) => {
            let span = kv.span();
            let kv = kv.into_inner();
            let namespace = kv.namespace.unwrap_or_else(|| n.to_string());
            if namespace.is_empty()
                || !namespace
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return c.err(span, format!("plugins.{n}.grants.kv.namespace: `{namespace}` must be letters, digits, `-` or `_`"));
            }
            let quota_kb = kv.quota_kb.unwrap_or(DEFAULT_KV_QUOTA_KB);
            if quota_kb == 0 || quota_kb > (1 << 30) {
                return c.err(
                    span,
                    format!("plugins.{n}.grants.kv.quota_kb: {quota_kb} is outside 1..=1073741824"),
                );
            }
            Some(KvGrant {
                namespace,
                quota_bytes: quota_kb * 1024,
            })
        }
        None => None,
    };

    Ok(Grants {
        dirs,
        net: NetGrant {
            connect,
            lookup: raw.net.lookup,
        },
        env,
        bus,
        kv,
    })
}

fn check_limits(c: &Checker<'_>, n: &str, raw: RawLimits) -> Result<Limits, ManifestError> {
    let mut limits = Limits::default();
    if let Some(mb) = raw.memory_mb {
        let bytes = mb.get_ref().saturating_mul(1 << 20);
        if *mb.get_ref() == 0 || bytes > MAX_MEMORY_BYTES {
            return c.err(
                mb.span(),
                format!(
                    "plugins.{n}.limits.memory_mb: {} is outside 1..={}",
                    mb.get_ref(),
                    MAX_MEMORY_BYTES >> 20
                ),
            );
        }
        limits.memory_bytes = bytes;
    }
    if let Some(ms) = raw.deadline_ms {
        if *ms.get_ref() == 0 || *ms.get_ref() > MAX_DEADLINE_MS {
            return c.err(
                ms.span(),
                format!(
                    "plugins.{n}.limits.deadline_ms: {} is outside 1..={MAX_DEADLINE_MS}",
                    ms.get_ref()
                ),
            );
        }
        limits.deadline_ms = *ms.get_ref();
    }
    if let Some(t) = raw.table_elements {
        if *t.get_ref() < 16 || *t.get_ref() > 1_000_000 {
            return c.err(
                t.span(),
                format!(
                    "plugins.{n}.limits.table_elements: {} is outside 16..=1000000",
                    t.get_ref()
                ),
            );
        }
        limits.table_elements = *t.get_ref();
    }
    if let Some(mb) = raw.output_mb {
        if *mb.get_ref() == 0 || *mb.get_ref() > 1024 {
            return c.err(
                mb.span(),
                format!(
                    "plugins.{n}.limits.output_mb: {} is outside 1..=1024",
                    mb.get_ref()
                ),
            );
        }
        limits.output_bytes = mb.get_ref() << 20;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        crate::Manifest::parse(text, "test.toml")
    }

    #[test]
    fn a_minimal_plugin_gets_no_grants_and_default_limits() {
        let m = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\n").unwrap();
        let a = &m.plugins["a"];
        assert_eq!(a.grants, Grants::default());
        assert_eq!(a.limits, Limits::default());
        assert_eq!(m.host.http_listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_keys_are_errors_with_line_numbers() {
        let err =
            parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\ncolour = \"red\"\n")
                .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("colour"), "{err}");
        assert!(err.to_string().starts_with("test.toml:4:"), "{err}");
    }

    #[test]
    fn wrong_types_are_errors_with_line_numbers() {
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\n\n[plugins.a.limits]\nmemory_mb = \"lots\"\n")
            .unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.message.contains("\"lots\""), "{err}");
    }

    #[test]
    fn an_unknown_kind_names_the_valid_ones() {
        let err = parse("[plugins.a]\nkind = \"daemon\"\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("pipeline"), "{err}");
    }

    #[test]
    fn bad_grants_name_the_field_and_line() {
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\ngrants.net.connect = [\"127.0.0.1:80\", \"example:80\"]\n")
            .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("grants.net.connect"), "{err}");
        assert!(err.message.contains("example:80"), "{err}");

        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\n[[plugins.a.grants.dirs]]\nhost = \"/tmp\"\nguest = \"data\"\n")
            .unwrap_err();
        assert!(err.message.contains("must be absolute"), "{err}");
        assert_eq!(err.line, Some(4), "{err}");
    }

    #[test]
    fn limits_outside_their_range_are_refused() {
        let err = parse(
            "[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nlimits.memory_mb = 0\n",
        )
        .unwrap_err();
        assert!(err.message.contains("limits.memory_mb"), "{err}");
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nlimits.deadline_ms = 99999999\n")
            .unwrap_err();
        assert!(err.message.contains("limits.deadline_ms"), "{err}");
    }

    #[test]
    fn http_plugins_need_a_unique_route_and_others_cannot_have_one() {
        let err = parse("[plugins.a]\nkind = \"http\"\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert!(err.message.contains("needs a `route`"), "{err}");
        let err = parse("[plugins.a]\nkind = \"job\"\ncomponent = \"a.wasm\"\nroute = \"/a\"\n")
            .unwrap_err();
        assert!(err.message.contains("only http plugins"), "{err}");
        let err = parse("[plugins.a]\nkind = \"http\"\ncomponent = \"a.wasm\"\nroute = \"/x\"\n[plugins.b]\nkind = \"http\"\ncomponent = \"b.wasm\"\nroute = \"/x/\"\n")
            .unwrap_err();
        assert!(err.message.contains("already served by `a`"), "{err}");
    }

    #[test]
    fn only_pipelines_subscribe() {
        let err = parse(
            "[plugins.a]\nkind = \"job\"\ncomponent = \"a.wasm\"\ngrants.bus.subscribe = [\"x\"]\n",
        )
        .unwrap_err();
        assert!(err.message.contains("only pipelines"), "{err}");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn health_probes_and_rollback_policies_are_parsed_and_checked() {
        let m = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nhealth = { topic = \"health\", payload = \"ping\" }\nrollback = { max_failures = 5, window_ms = 1000 }\n").unwrap();
        let a = &m.plugins["a"];
        assert_eq!(
            a.health,
            Some(HealthCheck {
                topic: "health".into(),
                payload: b"ping".to_vec()
            })
        );
        assert_eq!(
            a.rollback,
            RollbackSpec {
                max_failures: 5,
                window_ms: 1000
            }
        );
        let err = parse(
            "[plugins.a]\nkind = \"job\"\ncomponent = \"a.wasm\"\nhealth = { topic = \"h\" }\n",
        )
        .unwrap_err();
        assert!(
            err.message.contains("only pipelines have a health probe"),
            "{err}"
        );
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nrollback = { window_ms = 0 }\n").unwrap_err();
        assert!(err.message.contains("rollback.window_ms"), "{err}");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn plugin_names_are_checked() {
        let err =
            parse("[plugins.\"Bad Name\"]\nkind = \"job\"\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert!(err.message.contains("plugin name"), "{err}");
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn a_full_manifest_round_trips_every_grant() {
        let m = parse(
            r#"
[host]
name = "store-42"
plugin_dirs = ["plugins"]
http_listen = "0.0.0.0:9000"

[plugins.cam]
kind = "pipeline"
component = "cam.wasm"
version = "1.2.0"
config = { threshold = "0.5" }
grants.env = { MODE = "fast" }
grants.bus = { publish = ["cam/out"], subscribe = ["cam/+/in"] }
grants.kv = { quota_kb = 64 }
grants.net = { connect = ["10.0.0.1:1883", "[::1]:*"], lookup = true }
limits = { memory_mb = 32, deadline_ms = 250, table_elements = 1000, output_mb = 2 }

[[plugins.cam.grants.dirs]]
host = "data"
guest = "/data"
mode = "rw"
"#,
        )
        .unwrap();
        let cam = &m.plugins["cam"];
        assert_eq!(m.host.name, "store-42");
        assert_eq!(m.host.http_listen.port(), 9000);
        assert_eq!(cam.version.as_deref(), Some("1.2.0"));
        assert_eq!(cam.config["threshold"], "0.5");
        assert_eq!(cam.grants.env["MODE"], "fast");
        assert!(cam.grants.bus.may_publish("cam/out"));
        assert!(!cam.grants.bus.may_publish("cam/other"));
        assert!(cam.grants.bus.subscribe[0].matches("cam/front/in"));
        assert_eq!(cam.grants.kv.as_ref().unwrap().namespace, "cam");
        assert_eq!(cam.grants.kv.as_ref().unwrap().quota_bytes, 64 * 1024);
        assert!(cam.grants.net.allows(&"10.0.0.1:1883".parse().unwrap()));
        assert!(!cam.grants.net.allows(&"10.0.0.1:1884".parse().unwrap()));
        assert!(cam.grants.net.allows(&"[::1]:4242".parse().unwrap()));
        assert!(cam.grants.net.lookup);
        assert_eq!(cam.grants.dirs[0].guest, "/data");
        assert!(!cam.grants.dirs[0].read_only);
        assert_eq!(cam.limits.memory_bytes, 32 << 20);
        assert_eq!(cam.limits.deadline_ms, 250);
        assert_eq!(cam.limits.output_bytes, 2 << 20);
    }
}
