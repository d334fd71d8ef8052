//! The pages. Each takes the request's context and returns a whole HTML document; the `*_live`
//! functions return the part of a page its script refreshes.

use std::fmt::Write as _;
use std::sync::Arc;

use super::history::{self, cpu_series, plugin_series, share_series};
use super::render::{bytes, card, chart, duration, esc, state, table, url_encode};
use super::{Session, WebUi, lock};
use crate::appliance::Appliance;
use crate::logs::LogQuery;

/// What every page needs.
pub(crate) struct Ctx<'a> {
    pub app: &'a Arc<Appliance>,
    pub ui: &'a Arc<WebUi>,
    pub session: &'a Session,
    pub query: &'a str,
}

impl Ctx<'_> {
    fn param(&self, key: &str) -> Option<String> {
        super::parse_form(self.query.as_bytes())
            .remove(key)
            .filter(|v| !v.is_empty())
    }

    fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            esc(&self.session.csrf)
        )
    }
}

const NAV: &[(&str, &str)] = &[
    ("/ui/", "Overview"),
    ("/ui/plugins", "Plugins"),
    ("/ui/network", "Network functions"),
    ("/ui/shares", "Shares"),
    ("/ui/security", "Security"),
    ("/ui/logs", "Logs"),
    ("/ui/diagnostics", "Diagnostics"),
    ("/ui/power", "Power"),
];

fn head(app: &Appliance, title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · {}</title><link rel=\"stylesheet\" href=\"/ui/static/style.css\">\
         <script src=\"/ui/static/app.js\" defer></script></head>",
        esc(title),
        esc(&app.manifest().host.name)
    )
}

fn layout(ctx: &Ctx<'_>, active: &str, title: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in NAV {
        let class = if *href == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{label}</a>");
    }
    let flash = match &ctx.session.flash {
        Some((true, m)) => format!("<div class=\"notice\" id=\"flash\">{}</div>", esc(m)),
        Some((false, m)) => format!("<div class=\"error\" id=\"flash\">{}</div>", esc(m)),
        None => String::new(),
    };
    format!(
        "{}<body><header><span class=\"brand\">Outpost</span><span>{}</span>\
         <span class=\"who\" id=\"who\">{} ({})</span>\
         <form method=\"post\" action=\"/ui/logout\" id=\"logout\">{}<button>Log out</button></form></header>\
         <div class=\"frame\"><nav>{nav}</nav><main><h1>{}</h1>{flash}{body}</main></div></body></html>",
        head(ctx.app, title),
        esc(&ctx.app.manifest().host.name),
        esc(&ctx.session.identity.name),
        ctx.session.identity.role,
        ctx.csrf_field(),
        esc(title),
    )
}

/// A page with one message (errors, refusals) for any visitor.
pub(crate) fn message(app: &Appliance, title: &str, text: &str) -> String {
    format!(
        "{}<body><div class=\"login\"><h1>{}</h1><p id=\"message\">{}</p><p><a href=\"/ui/\">Back</a></p></div></body></html>",
        head(app, title),
        esc(title),
        esc(text)
    )
}

/// The login page.
pub(crate) fn login(app: &Appliance, password_off: Option<&String>, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<div class=\"error\" id=\"login-error\">{}</div>", esc(e)))
        .unwrap_or_default();
    let password = match password_off {
        Some(why) => format!("<p class=\"muted\">Password login is off: {}</p>", esc(why)),
        None => "<form method=\"post\" id=\"password-login\">\
                 <label for=\"user\">User</label><input type=\"text\" id=\"user\" name=\"user\" value=\"admin\" autocomplete=\"username\">\
                 <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" autofocus>\
                 <button class=\"primary\" id=\"login-password\">Log in</button></form>"
            .to_string(),
    };
    format!(
        "{}<body><div class=\"login\"><h1>Outpost · {}</h1>{error}{password}\
         <p class=\"muted spaced\">or with an API token (<code>outpost token add</code>):</p>\
         <form method=\"post\" id=\"token-login\"><label for=\"token\">API token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\">\
         <button id=\"login-token\">Log in with token</button></form></div></body></html>",
        head(app, "Log in"),
        esc(&app.manifest().host.name)
    )
}

/// Changing the administrator password (forced after the first login).
pub(crate) fn password(ctx: &Ctx<'_>, error: Option<&str>) -> String {
    let intro = if ctx.session.must_change {
        "<div class=\"notice\" id=\"must-change\">This is the first-login password. Choose your own before going on.</div>"
    } else {
        ""
    };
    let error = error
        .map(|e| {
            format!(
                "<div class=\"error\" id=\"password-error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{intro}{error}<form method=\"post\" action=\"/ui/password\" class=\"login flush\" id=\"password-form\">{}\
         <label for=\"current\">Current password</label><input type=\"password\" id=\"current\" name=\"current\" autocomplete=\"current-password\">\
         <label for=\"new\">New password (at least {} characters)</label><input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\">\
         <label for=\"repeat\">New password again</label><input type=\"password\" id=\"repeat\" name=\"repeat\" autocomplete=\"new-password\">\
         <button class=\"primary\" id=\"change-password\">Change password</button></form>",
        ctx.csrf_field(),
        outpost_security::MIN_PASSWORD_LEN
    );
    layout(ctx, "", "Change password", &body)
}

/// Overview: identity, uptime, machine use, alerts.
pub(crate) async fn overview(ctx: &Ctx<'_>) -> String {
    let live = overview_live(ctx).await;
    let samples = lock(&ctx.ui.history).with(history::sample(ctx.app));
    let cpu = chart(
        "CPU use",
        "%",
        &[("cpu".into(), cpu_series(&samples))],
        "chart-cpu",
    );
    let body = format!(
        "<div data-live=\"/ui/live/overview\" data-every=\"2000\" id=\"live\">{live}</div>{cpu}"
    );
    layout(ctx, "/ui/", "Overview", &body)
}

/// The refreshing part of the overview.
pub(crate) async fn overview_live(ctx: &Ctx<'_>) -> String {
    let app = ctx.app;
    let usage = ctx.ui.monitor.read(&app.options().data_dir);
    let alerts = crate::system::alerts(app, &usage).await;
    let mut cards = String::new();
    cards.push_str(&card("Device", &app.manifest().host.name, None));
    cards.push_str(&card("Uptime", &duration(app.uptime_secs()), None));
    cards.push_str(&card("Host version", env!("CARGO_PKG_VERSION"), None));
    cards.push_str(&card(
        "CPU",
        &usage.cpu_percent.map_or("measuring…".into(), |c| {
            format!("{c:.0} % of {}", usage.cpus)
        }),
        usage.cpu_percent.map(|c| c / 100.0),
    ));
    let used = usage
        .memory_total_bytes
        .saturating_sub(usage.memory_available_bytes);
    cards.push_str(&card(
        "Memory",
        &format!("{} of {}", bytes(used), bytes(usage.memory_total_bytes)),
        (usage.memory_total_bytes > 0).then(|| used as f64 / usage.memory_total_bytes as f64),
    ));
    let disk_used = usage.disk_total_bytes.saturating_sub(usage.disk_free_bytes);
    cards.push_str(&card(
        "Disk",
        &format!("{} of {}", bytes(disk_used), bytes(usage.disk_total_bytes)),
        (usage.disk_total_bytes > 0).then(|| disk_used as f64 / usage.disk_total_bytes as f64),
    ));
    match usage.gpus.first() {
        Some(g) => cards.push_str(&card(
            "GPU",
            &format!("{} · {:.0} %", g.name, g.utilization_percent),
            Some(g.utilization_percent / 100.0),
        )),
        None => cards.push_str(&card("GPU", "none", None)),
    }
    let plugins = app.status();
    let running = plugins
        .iter()
        .filter(|p| p.state == "running" || p.state == "completed")
        .count();
    cards.push_str(&card(
        "Plugins",
        &format!("{running} of {} healthy", plugins.len()),
        None,
    ));
    let runtime = app.inference_runtime();
    let engines = match (&runtime.onnxruntime, runtime.cuda) {
        (Some(_), true) => "ONNX Runtime (CUDA) + tract",
        (Some(_), false) => "ONNX Runtime (CPU) + tract",
        (None, _) => "tract (pure Rust)",
    };
    cards.push_str(&card("Inference", engines, None));
    let alerts_html = if alerts.is_empty() {
        "<p class=\"none\" id=\"no-alerts\">No alerts.</p>".to_string()
    } else {
        let mut out = String::from("<ul class=\"alerts\" id=\"alerts\">");
        for a in &alerts {
            let _ = write!(
                out,
                "<li class=\"{}\"><strong>{}</strong> · {}</li>",
                esc(a.level),
                esc(a.source),
                esc(&a.message)
            );
        }
        out.push_str("</ul>");
        out
    };
    let gpu_note = usage
        .gpu_note
        .map(|n| format!("<p class=\"muted\">GPU: {}</p>", esc(&n)))
        .unwrap_or_default();
    format!(
        "<div class=\"cards\" id=\"cards\">{cards}</div>{gpu_note}<h2>Alerts</h2>{alerts_html}\
         <p class=\"muted\">Load {} · pid {}</p>",
        usage.load1.map_or("?".into(), |l| format!("{l:.2}")),
        std::process::id()
    )
}

fn grants_summary(app: &Appliance, name: &str) -> String {
    let manifest = app.manifest();
    let Some(spec) = manifest.plugins.get(name) else {
        return String::new();
    };
    let g = &spec.grants;
    let mut parts = Vec::new();
    if !g.bus.subscribe.is_empty() {
        parts.push(format!(
            "subscribe {}",
            g.bus
                .subscribe
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !g.bus.publish.is_empty() {
        parts.push(format!(
            "publish {}",
            g.bus
                .publish
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(kv) = &g.kv {
        parts.push(format!("kv {} ({})", kv.namespace, bytes(kv.quota_bytes)));
    }
    for d in &g.dirs {
        parts.push(format!("dir {} → {}", d.host.display(), d.guest));
    }
    if !g.models.is_empty() {
        parts.push(format!("models {}", g.models.join(", ")));
    }
    if !g.net.connect.is_empty() {
        parts.push(format!(
            "net {}",
            g.net
                .connect
                .iter()
                .map(|e| match e.port {
                    Some(port) => std::net::SocketAddr::new(e.ip, port).to_string(),
                    None => format!("{}:*", e.ip),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if g.nn_load.is_some() {
        parts.push("nn load".into());
    }
    for (share, access) in &g.shares {
        let mode = match access {
            outpost_manifest::ShareAccess::ReadOnly => "ro",
            outpost_manifest::ShareAccess::ReadWrite => "rw",
        };
        parts.push(format!("share {share} ({mode})"));
    }
    if parts.is_empty() {
        "<span class=\"none\">none</span>".into()
    } else {
        esc(&parts.join("; "))
    }
}

/// Plugins: state, versions, grants, counters, actions, swap history, charts.
pub(crate) fn plugins(ctx: &Ctx<'_>) -> String {
    let app = ctx.app;
    let statuses = app.status();
    let mut rows = Vec::new();
    for p in &statuses {
        let version = match (&p.actual.version, &p.desired.version) {
            (a, d) if a == d => a.clone().unwrap_or_else(|| "—".into()),
            (a, d) => format!(
                "{} (desired {})",
                a.as_deref().unwrap_or("—"),
                d.as_deref().unwrap_or("—")
            ),
        };
        let digest: String = p.actual.digest.as_deref().map_or("—".into(), |d| {
            d.trim_start_matches("sha256:").chars().take(12).collect()
        });
        let mean_ms = if p.stats.calls > 0 {
            format!(
                "{:.2} ms",
                p.stats.busy_ns as f64 / p.stats.calls as f64 / 1e6
            )
        } else {
            "—".into()
        };
        let mut actions = String::new();
        if ctx.session.may_write() {
            let slot = app.slot(&p.name);
            if slot.as_ref().is_some_and(|s| s.previous().is_some()) {
                let _ = write!(
                    actions,
                    "<form method=\"post\" class=\"inline\" action=\"/ui/plugins/{0}/rollback\" data-confirm=\"Roll {1} back to its previous version?\">{2}<button class=\"danger\" name=\"rollback\" id=\"rollback-{1}\">Roll back</button></form> ",
                    url_encode(&p.name),
                    esc(&p.name),
                    ctx.csrf_field()
                );
            }
            if slot.is_some() {
                let _ = write!(
                    actions,
                    "<form method=\"post\" class=\"inline\" action=\"/ui/plugins/{0}/restart\" data-confirm=\"Restart {1}?\">{2}<button id=\"restart-{1}\">Restart</button></form>",
                    url_encode(&p.name),
                    esc(&p.name),
                    ctx.csrf_field()
                );
            }
        }
        rows.push(vec![
            format!("<strong>{}</strong>", esc(&p.name)),
            esc(&p.kind),
            format!("<span class=\"version\">{}</span>", esc(&version)),
            format!("<code>{}</code>", esc(&digest)),
            format!("<span class=\"plugin-state\">{}</span>", state(&p.state)),
            grants_summary(app, &p.name),
            format!("{}", p.stats.calls),
            format!("{}", p.stats.errors),
            mean_ms,
            p.last_error.as_deref().map(esc).unwrap_or_default(),
            actions,
        ]);
    }
    let table_html = if rows.is_empty() {
        "<p class=\"none\">No plugins in the manifest.</p>".to_string()
    } else {
        let mut t = table(
            &[
                "Plugin",
                "Kind",
                "Version",
                "Digest",
                "State",
                "Grants",
                "Calls",
                "Errors",
                "Mean latency",
                "Last error",
                "",
            ],
            &rows,
            "plugins",
        );
        // Let the browser tests and scripts find a plugin's row by name.
        for p in &statuses {
            t = t.replacen(
                &format!("<tr><td><strong>{}</strong>", esc(&p.name)),
                &format!(
                    "<tr data-plugin=\"{}\"><td><strong>{}</strong>",
                    esc(&p.name),
                    esc(&p.name)
                ),
                1,
            );
        }
        t
    };
    let mut events = Vec::new();
    for p in &statuses {
        for e in p.events.iter().rev().take(20) {
            let body = serde_json::to_value(e).unwrap_or_default();
            let kind = body
                .get("event")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string();
            let at = body.get("at").and_then(|a| a.as_u64()).unwrap_or(0);
            let short = |k: &str| {
                body.get(k)
                    .and_then(|d| d.as_str())
                    .map(|d| {
                        d.trim_start_matches("sha256:")
                            .chars()
                            .take(12)
                            .collect::<String>()
                    })
                    .unwrap_or_default()
            };
            let reason = body.get("reason").and_then(|r| r.as_str()).unwrap_or("");
            let detail = match kind.as_str() {
                "swapped" => format!("{} → {}", short("from"), short("to")),
                "rolled-back" => format!("{} → {} ({reason})", short("from"), short("to")),
                "canary-started" => format!(
                    "{} gets {}% of calls",
                    short("candidate"),
                    body.get("percent").and_then(|p| p.as_u64()).unwrap_or(0)
                ),
                _ => format!("{} {reason}", short("candidate")),
            };
            events.push((at, p.name.clone(), kind, detail));
        }
    }
    events.sort_by_key(|e| std::cmp::Reverse(e.0));
    let history_html = if events.is_empty() {
        "<p class=\"none\">No swaps or rollbacks since start.</p>".into()
    } else {
        table(
            &["When", "Plugin", "Event", "Detail"],
            &events
                .iter()
                .map(|(at, name, kind, detail)| {
                    vec![
                        esc(&super::render::time_of(*at as i128 * 1000)),
                        esc(name),
                        esc(kind),
                        format!("<code>{}</code>", esc(detail)),
                    ]
                })
                .collect::<Vec<_>>(),
            "swap-history",
        )
    };
    let samples = lock(&ctx.ui.history).with(history::sample(app));
    let mut rate = Vec::new();
    let mut latency = Vec::new();
    for p in &statuses {
        let (r, l) = plugin_series(&samples, &p.name);
        rate.push((p.name.clone(), r));
        latency.push((p.name.clone(), l));
    }
    let charts = format!(
        "<div class=\"charts\">{}{}</div>",
        chart("Throughput", "calls/s", &rate, "chart-throughput"),
        chart("Mean latency", "ms", &latency, "chart-latency")
    );
    let body = format!("{table_html}<h2>Last hour</h2>{charts}<h2>Swap history</h2>{history_html}");
    layout(ctx, "/ui/plugins", "Plugins", &body)
}

/// Network functions: ports, counters, PFCP associations and sessions.
pub(crate) fn network(ctx: &Ctx<'_>) -> String {
    let body = format!(
        "<div data-live=\"/ui/live/network\" data-every=\"2000\" id=\"live\">{}</div>",
        network_live(ctx)
    );
    layout(ctx, "/ui/network", "Network functions", &body)
}

/// The refreshing part of the network page.
pub(crate) fn network_live(ctx: &Ctx<'_>) -> String {
    let app = ctx.app;
    let nfs = app.network_functions();
    let mut out = String::new();
    if nfs.is_empty() {
        out.push_str("<p class=\"none\" id=\"no-nf\">No network functions run on this host.</p>");
    }
    for nf in &nfs {
        let s = &nf.stats;
        let _ = write!(
            out,
            "<h2>{}</h2><p class=\"muted\">control socket {}</p><div class=\"cards\">{}{}{}{}{}</div>",
            esc(&nf.plugin),
            esc(nf.control.as_deref().unwrap_or("none")),
            card("Packets in", &s.packets_in.to_string(), None),
            card("Forwarded", &s.forwarded.to_string(), None),
            card("Dropped", &s.dropped.to_string(), None),
            card(
                "Control in / out",
                &format!("{} / {}", s.control_in, s.control_out),
                None
            ),
            card("Rejected batches", &s.rejected_batches.to_string(), None),
        );
        let rows: Vec<Vec<String>> = nf
            .ports
            .iter()
            .map(|p| {
                vec![
                    esc(&p.name),
                    esc(&p.kind),
                    esc(p.address.as_deref().unwrap_or("")),
                    p.stats.rx_packets.to_string(),
                    bytes(p.stats.rx_bytes),
                    p.stats.rx_drops.to_string(),
                    p.stats.tx_packets.to_string(),
                    bytes(p.stats.tx_bytes),
                    p.stats.tx_drops.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "Port",
                "Kind",
                "Address",
                "RX packets",
                "RX bytes",
                "RX drops",
                "TX packets",
                "TX bytes",
                "TX drops",
            ],
            &rows,
            &format!("ports-{}", nf.plugin),
        ));
    }
    // A UPF keeps its N4 state in host tables; the host reads its associations and sessions.
    for nf in &nfs {
        let Some(pfcp) = &nf.pfcp else { continue };
        let _ = write!(
            out,
            "<h2>{} · PFCP</h2><div class=\"cards\" id=\"pfcp-{}\">{}{}</div>",
            esc(&nf.plugin),
            esc(&nf.plugin),
            card(
                "PFCP associations",
                &pfcp.associations.len().to_string(),
                None
            ),
            card("PFCP sessions", &pfcp.sessions.to_string(), None)
        );
        let rows: Vec<Vec<String>> = pfcp
            .associations
            .iter()
            .map(|a| {
                vec![
                    esc(&a.peer),
                    format!("<code>{}</code>", esc(&a.node_id)),
                    if a.heartbeat_misses == 0 {
                        state("up")
                    } else {
                        state(&format!("{} heartbeats missed", a.heartbeat_misses))
                    },
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(
                &["SMF peer", "Node ID", "Heartbeat"],
                &rows,
                &format!("pfcp-associations-{}", nf.plugin),
            ));
        }
    }
    let table_rows: Vec<Vec<String>> = app
        .table_stats()
        .into_iter()
        .map(|(name, t)| {
            vec![
                esc(&name),
                t.entries.to_string(),
                t.lookups.to_string(),
                t.hits.to_string(),
                t.misses.to_string(),
                t.insert_failures.to_string(),
            ]
        })
        .collect();
    if !table_rows.is_empty() {
        out.push_str("<h2>Host tables</h2>");
        out.push_str(&table(
            &[
                "Table",
                "Entries",
                "Lookups",
                "Hits",
                "Misses",
                "Insert failures",
            ],
            &table_rows,
            "tables",
        ));
    }
    out.push_str(&sdwan_section(app.sdwan()));
    out
}

/// The uplinks' quality and recent up/down changes.
fn sdwan_section(status: Option<crate::sdwan::SdwanStatus>) -> String {
    let mut out = String::from("<h2>SD-WAN uplinks</h2>");
    let Some(s) = status else {
        out.push_str("<p class=\"none\" id=\"no-sdwan\">No <code>[sdwan]</code> uplinks are configured on this host.</p>");
        return out;
    };
    let rows: Vec<Vec<String>> = s
        .uplinks
        .iter()
        .map(|u| {
            let q = &u.quality;
            vec![
                esc(&u.name),
                if q.state == outpost_sdwan::LinkState::Up {
                    "up".into()
                } else {
                    "down".into()
                },
                esc(&u.local.to_string()),
                esc(&u.remote.to_string()),
                format!("{:.2}", q.rtt_ms),
                format!("{:.2}", q.jitter_ms),
                format!("{:.1}", q.loss_pct),
                u.rate_mbps
                    .map_or_else(|| "none".into(), |r| format!("{r} Mbit/s")),
                u.changes.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "Uplink",
            "State",
            "Local",
            "Remote",
            "RTT ms",
            "Jitter ms",
            "Loss %",
            "Cap",
            "Changes",
        ],
        &rows,
        "sdwan-uplinks",
    ));
    if !s.classes.is_empty() {
        let rows: Vec<Vec<String>> = s
            .classes
            .iter()
            .map(|c| vec![esc(&c.class), esc(&c.link)])
            .collect();
        out.push_str("<h3>Application classes</h3>");
        out.push_str(&table(&["Class", "Link now"], &rows, "sdwan-classes"));
    }
    if let Some(r) = &s.reflector {
        let _ = write!(
            out,
            "<p class=\"muted\">Answering remote sites' probes on {} ({} answered, {} refused).</p>",
            esc(&r.addr.to_string()),
            r.reflected,
            r.rejected
        );
    }
    if !s.events.is_empty() {
        let rows: Vec<Vec<String>> = s
            .events
            .iter()
            .rev()
            .take(20)
            .map(|e| {
                vec![
                    esc(&super::render::time_of(i128::from(e.unix_ms))),
                    esc(&e.uplink),
                    e.state.to_string(),
                    format!("{:.2}", e.rtt_ms),
                    format!("{:.1}", e.loss_pct),
                ]
            })
            .collect();
        out.push_str("<h3>Failover events</h3>");
        out.push_str(&table(
            &["Time", "Uplink", "Now", "RTT ms", "Loss %"],
            &rows,
            "sdwan-events",
        ));
    }
    out
}

/// Shares: bytes per state, queue, rate against the schedule.
pub(crate) fn shares(ctx: &Ctx<'_>) -> String {
    let samples = lock(&ctx.ui.history).with(history::sample(ctx.app));
    let series: Vec<(String, Vec<(f64, f64)>)> = ctx
        .app
        .shares()
        .iter()
        .map(|s| (s.name.clone(), share_series(&samples, &s.name)))
        .collect();
    let body = format!(
        "<div data-live=\"/ui/live/shares\" data-every=\"3000\" id=\"live\">{}</div>{}",
        shares_live(ctx),
        chart("Upload rate", "MiB/s", &series, "chart-upload")
    );
    layout(ctx, "/ui/shares", "Shares", &body)
}

/// The refreshing part of the shares page.
pub(crate) fn shares_live(ctx: &Ctx<'_>) -> String {
    let shares = ctx.app.shares();
    if shares.is_empty() {
        return "<p class=\"none\" id=\"no-shares\">No shares in the manifest.</p>".into();
    }
    let rows: Vec<Vec<String>> = shares
        .iter()
        .map(|s| {
            let st = s.stats.as_ref();
            let rate = st.map_or("—".into(), |st| {
                format!(
                    "{}/s of {}",
                    bytes(st.upload_rate_bytes_per_sec),
                    st.upload_limit_bytes_per_sec
                        .map_or("unlimited".into(), |l| format!("{}/s", bytes(l)))
                )
            });
            vec![
                format!("<strong>{}</strong>", esc(&s.name)),
                esc(&serde_json::to_value(s.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()),
                esc(s.target.as_deref().unwrap_or("—")),
                st.map_or("—".into(), |st| bytes(st.bytes_local)),
                st.map_or("—".into(), |st| bytes(st.bytes_synced)),
                st.map_or("—".into(), |st| bytes(st.bytes_evicted)),
                st.map_or("—".into(), |st| st.upload_queue_len.to_string()),
                esc(&rate),
                st.filter(|st| st.write_throttle_alert)
                    .map_or(String::new(), |_| state("throttled")),
                s.error.as_deref().map(esc).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "Share",
            "Kind",
            "Target",
            "Local",
            "Synced",
            "Evicted",
            "Upload queue",
            "Rate / schedule",
            "",
            "Last error",
        ],
        &rows,
        "shares",
    )
}

/// Security: certificates, keys, publishers, updates.
pub(crate) fn security(ctx: &Ctx<'_>) -> String {
    let app = ctx.app;
    let mut body = String::from("<h2>Certificates</h2>");
    match app.certificates() {
        Some(c) => {
            let rows: Vec<Vec<String>> = c
                .status()
                .iter()
                .map(|s| {
                    let days = s.seconds_left / 86_400;
                    let alert = serde_json::to_value(s.alert)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    vec![
                        esc(s.role),
                        esc(&s.subject),
                        esc(&s.names.join(", ")),
                        esc(&s.not_after_rfc3339),
                        format!("{} {}", days, state(&alert)),
                        if s.active { "yes".into() } else { "no".into() },
                        format!(
                            "<code>{}</code>",
                            esc(&s.fingerprint_sha256.chars().take(16).collect::<String>())
                        ),
                    ]
                })
                .collect();
            body.push_str(&table(
                &[
                    "Role",
                    "Subject",
                    "Names",
                    "Expires",
                    "Days left",
                    "Served",
                    "SHA-256",
                ],
                &rows,
                "certificates",
            ));
        }
        None => body.push_str(
            "<p class=\"none\">The API serves plain HTTP on loopback: no certificates.</p>",
        ),
    }
    body.push_str("<h2>Encryption keys</h2>");
    match app.key_status() {
        Some(k) => body.push_str(&table(
            &[
                "Provider",
                "Key",
                "Version",
                "Available",
                "Rotations",
                "Error",
            ],
            &[vec![
                esc(&k.provider),
                esc(&k.key_id),
                k.version.map_or("—".into(), |v| v.to_string()),
                state(if k.available { "ok" } else { "failed" }),
                k.rotations.to_string(),
                k.error.as_deref().map(esc).unwrap_or_default(),
            ]],
            "keys",
        )),
        None => body.push_str(
            "<p class=\"none\" id=\"no-keys\">Encryption at rest is off (host.encryption).</p>",
        ),
    }
    body.push_str("<h2>Update control</h2>");
    match app.update_status() {
        Some(u) => {
            let windows = serde_json::to_value(&u.windows)
                .map(|v| v.to_string())
                .unwrap_or_default();
            let _ = write!(
                body,
                "<p>Trusted publishers: <strong id=\"publishers\">{}</strong></p>\
                 <p>Maintenance windows (UTC): <code>{}</code> · {}</p>",
                esc(&u.publishers.join(", ")),
                esc(&windows),
                if u.window_open {
                    state("open")
                } else {
                    format!(
                        "closed, opens in {}",
                        u.window_opens_in_secs.map_or("—".into(), duration)
                    )
                }
            );
            let rows: Vec<Vec<String>> = u
                .pending
                .iter()
                .map(|p| {
                    let v = serde_json::to_value(p).unwrap_or_default();
                    vec![format!("<code>{}</code>", esc(&v.to_string()))]
                })
                .collect();
            if rows.is_empty() {
                body.push_str("<p class=\"none\">No update waits for the window.</p>");
            } else {
                body.push_str(&table(&["Queued update"], &rows, "update-queue"));
            }
            let _ = write!(
                body,
                "<p class=\"muted\">{} entries in the audit log.</p>",
                u.audit_entries
            );
        }
        None => body.push_str(
            "<p class=\"none\">No trusted publishers configured (host.updates.publishers).</p>",
        ),
    }
    layout(ctx, "/ui/security", "Security", &body)
}

/// The host's recent log, filtered by level and plugin.
pub(crate) fn logs(ctx: &Ctx<'_>) -> String {
    let level_name = ctx.param("level").unwrap_or_else(|| "info".into());
    let level = level_name.parse::<tracing::Level>().ok();
    let plugin = ctx.param("plugin");
    let records = crate::logs::buffer().query(&LogQuery {
        level,
        plugin: plugin.clone(),
        limit: 500,
    });
    let mut levels = String::new();
    for l in ["error", "warn", "info", "debug", "trace"] {
        let sel = if l.eq_ignore_ascii_case(&level_name) {
            " selected"
        } else {
            ""
        };
        let _ = write!(levels, "<option value=\"{l}\"{sel}>{l}</option>");
    }
    let mut plugins = String::from("<option value=\"\">all</option>");
    let mut names: Vec<String> = ctx.app.status().into_iter().map(|p| p.name).collect();
    names.extend(crate::logs::buffer().plugins());
    names.sort();
    names.dedup();
    for n in names {
        let sel = if plugin.as_deref() == Some(n.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(plugins, "<option value=\"{0}\"{sel}>{0}</option>", esc(&n));
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .rev()
        .map(|r| {
            vec![
                format!("<span class=\"mono\">{}</span>", esc(&r.time)),
                format!("<span class=\"level-{0}\">{0}</span>", esc(&r.level)),
                esc(r.plugin.as_deref().unwrap_or("")),
                esc(&r.message),
                format!("<span class=\"mono muted\">{}</span>", esc(&r.fields)),
            ]
        })
        .collect();
    let list = if rows.is_empty() {
        "<p class=\"none\" id=\"no-logs\">No records match.</p>".to_string()
    } else {
        table(
            &["Time (UTC)", "Level", "Plugin", "Message", "Fields"],
            &rows,
            "log",
        )
    };
    let body = format!(
        "<form method=\"get\" class=\"filters\" id=\"log-filters\"><label>Level at least <select name=\"level\" id=\"level\">{levels}</select></label>\
         <label>Plugin <select name=\"plugin\" id=\"plugin\">{plugins}</select></label><button>Filter</button></form>\
         <p class=\"muted\">{} records shown, newest first (the host keeps the last {}).</p>{list}",
        records.len(),
        crate::logs::CAPACITY
    );
    layout(ctx, "/ui/logs", "Logs", &body)
}

/// Diagnostics: the support bundle.
pub(crate) fn diagnostics(ctx: &Ctx<'_>) -> String {
    let files = crate::diagnostics::BUNDLE_FILES.join(", ");
    let body = format!(
        "<p>A support bundle holds what support asks for first: {}. Secrets in the manifest are replaced by \
         <code>{}</code>.</p><p><a href=\"/ui/diagnostics/bundle\" id=\"bundle\" download><button class=\"primary\">Download support bundle</button></a></p>\
         <p class=\"muted\">Also from a shell: <code>outpost diagnostics</code>.</p>",
        esc(&files),
        crate::diagnostics::REDACTED
    );
    layout(ctx, "/ui/diagnostics", "Diagnostics", &body)
}

/// Power: restart the host.
pub(crate) fn power(ctx: &Ctx<'_>) -> String {
    let body = if ctx.session.may_write() {
        format!(
            "<p>Restarting drains the plugins (calls in flight finish, queued messages are delivered or kept in their spools), \
             flushes the journals and starts the host again with the same manifest. The page comes back when it is up.</p>\
             <form method=\"post\" action=\"/ui/power/restart\" id=\"restart-form\" data-confirm=\"Restart the host now? Plugins stop for a few seconds.\">{}\
             <label><input type=\"checkbox\" name=\"confirm\" value=\"restart\" id=\"confirm\"> I want to restart the host</label> \
             <button class=\"danger\" id=\"restart-host\">Restart host</button></form>",
            ctx.csrf_field()
        )
    } else {
        "<p class=\"none\" id=\"viewer-power\">Your role may look but not restart the host.</p>"
            .into()
    };
    layout(ctx, "/ui/power", "Power", &body)
}

/// What a browser sees while the host restarts.
pub(crate) fn restarting(app: &Appliance) -> String {
    format!(
        "{}<body><div class=\"login\"><h1 id=\"restarting\">Restarting…</h1>\
         <p>The host is draining its plugins and will start again. <a href=\"/ui/\">Reload</a> in a few seconds and log in again.</p></div></body></html>",
        head(app, "Restarting")
    )
}
