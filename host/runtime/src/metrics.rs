//! Prometheus text exposition (format 0.0.4) of a [`MetricsSnapshot`].

use std::fmt::Write;

use crate::appliance::MetricsSnapshot;
use crate::plugin::LATENCY_BUCKETS;

/// A counter family read off each plugin: name, help, getter.
type PluginCounter = (&'static str, &'static str, fn(&crate::PluginStatus) -> u64);
/// A family read off each sink: name, type, help, getter.
type SinkMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&outpost_services::SinkStats) -> u64,
);

/// A family read off each plugin's inference counters: name, type, help, getter.
type InferenceMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&outpost_inference::StatsSnapshot) -> f64,
);

/// Escapes a label value: backslash, double quote and newline.
fn esc(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", esc(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Renders every metric of `m` for host `host`.
pub fn render(host: &str, m: &MetricsSnapshot) -> String {
    let mut out = String::with_capacity(4096);
    let mut f = Family { out: &mut out };

    f.head("outpost_host_info", "gauge", "Host name and version.");
    f.sample(
        "outpost_host_info",
        &[("host", host), ("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    f.head(
        "outpost_uptime_seconds",
        "gauge",
        "Seconds since the host started.",
    );
    f.sample("outpost_uptime_seconds", &[], m.uptime_secs);
    f.head(
        "outpost_manifest_applies_total",
        "counter",
        "Manifests applied since start.",
    );
    f.sample("outpost_manifest_applies_total", &[], m.applies);

    f.head(
        "outpost_plugin_info",
        "gauge",
        "The version serving now and the state of each plugin (value 1).",
    );
    for p in &m.plugins {
        f.sample(
            "outpost_plugin_info",
            &[
                ("plugin", &p.name),
                ("kind", &p.kind),
                ("version", p.actual.version.as_deref().unwrap_or("")),
                ("digest", p.actual.digest.as_deref().unwrap_or("")),
                ("state", &p.state),
            ],
            1,
        );
    }
    let counters: [PluginCounter; 6] = [
        (
            "outpost_plugin_calls_total",
            "Calls made to the plugin.",
            |p| p.stats.calls,
        ),
        (
            "outpost_plugin_errors_total",
            "Calls that failed, traps included.",
            |p| p.stats.errors,
        ),
        (
            "outpost_plugin_traps_total",
            "Calls that trapped or broke a limit.",
            |p| p.stats.traps,
        ),
        (
            "outpost_plugin_swaps_total",
            "Hot swaps to a new version.",
            |p| p.swaps,
        ),
        (
            "outpost_plugin_rollbacks_total",
            "Rollbacks, manual and automatic.",
            |p| p.rollbacks,
        ),
        (
            "outpost_plugin_restarts_total",
            "Job restarts under the restart policy.",
            |p| p.restarts,
        ),
    ];
    for (name, help, get) in counters {
        f.head(name, "counter", help);
        for p in &m.plugins {
            f.sample(name, &[("plugin", &p.name)], get(p));
        }
    }
    f.head(
        "outpost_plugin_memory_peak_bytes",
        "gauge",
        "The most linear memory one instance of the serving version used.",
    );
    for p in &m.plugins {
        f.sample(
            "outpost_plugin_memory_peak_bytes",
            &[("plugin", &p.name)],
            p.stats.peak_memory_bytes,
        );
    }
    f.head(
        "outpost_plugin_call_duration_seconds",
        "histogram",
        "Call latency of the serving version.",
    );
    for p in &m.plugins {
        let cumulative = &p.stats.latency_cumulative;
        if cumulative.len() != LATENCY_BUCKETS.len() + 1 {
            continue;
        }
        for (le, count) in LATENCY_BUCKETS.iter().zip(cumulative) {
            f.sample(
                "outpost_plugin_call_duration_seconds_bucket",
                &[("plugin", &p.name), ("le", &le.to_string())],
                count,
            );
        }
        f.sample(
            "outpost_plugin_call_duration_seconds_bucket",
            &[("plugin", &p.name), ("le", "+Inf")],
            p.stats.calls,
        );
        f.sample(
            "outpost_plugin_call_duration_seconds_sum",
            &[("plugin", &p.name)],
            p.stats.busy_ns as f64 / 1e9,
        );
        f.sample(
            "outpost_plugin_call_duration_seconds_count",
            &[("plugin", &p.name)],
            p.stats.calls,
        );
    }

    f.head(
        "outpost_bus_published_total",
        "counter",
        "Messages published on the bus.",
    );
    f.sample("outpost_bus_published_total", &[], m.bus_published);
    f.head(
        "outpost_bus_queue_depth",
        "gauge",
        "Messages waiting in a bus subscriber's queue.",
    );
    for s in &m.subscribers {
        f.sample(
            "outpost_bus_queue_depth",
            &[("subscriber", &s.name)],
            s.depth,
        );
    }
    f.head(
        "outpost_bus_dropped_total",
        "counter",
        "Messages a subscriber lost to a full queue.",
    );
    for s in &m.subscribers {
        f.sample(
            "outpost_bus_dropped_total",
            &[("subscriber", &s.name)],
            s.dropped,
        );
    }

    f.head(
        "outpost_route_forwarded_total",
        "counter",
        "Messages a route handed to its target.",
    );
    for r in &m.routes {
        f.sample(
            "outpost_route_forwarded_total",
            &[("from", &r.from), ("to", &r.to)],
            r.forwarded,
        );
    }
    f.head(
        "outpost_route_failed_total",
        "counter",
        "Messages a route's target refused or failed to handle.",
    );
    for r in &m.routes {
        f.sample(
            "outpost_route_failed_total",
            &[("from", &r.from), ("to", &r.to)],
            r.failed,
        );
    }

    let sink_metrics: [SinkMetric; 7] = [
        (
            "outpost_sink_queue_depth",
            "gauge",
            "Messages waiting in the sink's store-and-forward spool.",
            |s| s.spool.depth,
        ),
        (
            "outpost_sink_queue_bytes",
            "gauge",
            "Bytes waiting in the spool.",
            |s| s.spool.bytes,
        ),
        (
            "outpost_sink_delivered_total",
            "counter",
            "Messages the peer acknowledged.",
            |s| s.delivered,
        ),
        (
            "outpost_sink_rejected_total",
            "counter",
            "Messages the peer refused for good.",
            |s| s.rejected,
        ),
        (
            "outpost_sink_expired_total",
            "counter",
            "Messages that outlived the spool TTL.",
            |s| s.spool.expired,
        ),
        (
            "outpost_sink_overflow_total",
            "counter",
            "Messages refused because the spool was full.",
            |s| s.spool.overflowed,
        ),
        (
            "outpost_sink_connected",
            "gauge",
            "1 while the sink's peer is reachable.",
            |s| u64::from(s.connected),
        ),
    ];
    for (name, kind, help, get) in sink_metrics {
        f.head(name, kind, help);
        for s in &m.sinks {
            f.sample(name, &[("sink", &s.name)], get(s));
        }
    }
    render_inference(&mut f, m);
    out
}

/// `wasi:nn` metrics: per plugin (computes, errors, latency histogram, accelerator time, time
/// waiting for its concurrency limit) and per model (computes, where it runs).
fn render_inference(f: &mut Family<'_>, m: &MetricsSnapshot) {
    use outpost_inference::LATENCY_BUCKETS_MS;
    let per_plugin: Vec<(&str, &outpost_inference::StatsSnapshot)> = m
        .plugins
        .iter()
        .filter_map(|p| p.inference.as_ref().map(|s| (p.name.as_str(), s)))
        .collect();
    let families: [InferenceMetric; 5] = [
        (
            "outpost_inference_total",
            "counter",
            "wasi:nn computes that returned outputs.",
            |s| s.computes as f64,
        ),
        (
            "outpost_inference_errors_total",
            "counter",
            "wasi:nn computes that failed.",
            |s| s.errors as f64,
        ),
        (
            "outpost_inference_compute_seconds_total",
            "counter",
            "Time in wasi:nn compute.",
            |s| s.compute_seconds,
        ),
        (
            "outpost_inference_accelerator_seconds_total",
            "counter",
            "Time in wasi:nn compute on a GPU.",
            |s| s.accelerator_seconds,
        ),
        (
            "outpost_inference_wait_seconds_total",
            "counter",
            "Time computes waited for the plugin's inference_concurrency limit.",
            |s| s.wait_seconds,
        ),
    ];
    for (name, kind, help, get) in families {
        f.head(name, kind, help);
        for (plugin, s) in &per_plugin {
            f.sample(name, &[("plugin", plugin)], get(s));
        }
    }
    f.head(
        "outpost_inference_duration_seconds",
        "histogram",
        "wasi:nn compute latency per plugin.",
    );
    for (plugin, s) in &per_plugin {
        for (le, count) in LATENCY_BUCKETS_MS.iter().zip(&s.buckets) {
            f.sample(
                "outpost_inference_duration_seconds_bucket",
                &[("plugin", plugin), ("le", &(le / 1000.0).to_string())],
                count,
            );
        }
        let total = s.computes + s.errors;
        f.sample(
            "outpost_inference_duration_seconds_bucket",
            &[("plugin", plugin), ("le", "+Inf")],
            total,
        );
        f.sample(
            "outpost_inference_duration_seconds_sum",
            &[("plugin", plugin)],
            s.compute_seconds,
        );
        f.sample(
            "outpost_inference_duration_seconds_count",
            &[("plugin", plugin)],
            total,
        );
    }
    f.head(
        "outpost_model_info",
        "gauge",
        "Each declared model: engine, requested and actual target, state (value 1).",
    );
    for model in &m.models {
        let engine = model
            .engine
            .map_or_else(|| "none".to_string(), |e| e.to_string());
        let target = model.placement.as_ref().map_or("none", |p| p.target);
        let state = match model.state {
            outpost_inference::ModelState::Ready => "ready",
            outpost_inference::ModelState::Failed => "failed",
        };
        f.sample(
            "outpost_model_info",
            &[
                ("model", &model.name),
                ("engine", &engine),
                ("target_requested", &model.target_requested),
                ("target", target),
                ("state", state),
                (
                    "fallback",
                    if model
                        .placement
                        .as_ref()
                        .is_some_and(|p| p.fallback.is_some())
                    {
                        "true"
                    } else {
                        "false"
                    },
                ),
            ],
            1,
        );
    }
    f.head(
        "outpost_model_inference_total",
        "counter",
        "wasi:nn computes per model, all plugins together.",
    );
    for (name, s) in &m.model_stats {
        f.sample(
            "outpost_model_inference_total",
            &[("model", name)],
            s.computes,
        );
    }
    f.head(
        "outpost_model_running",
        "gauge",
        "Computes running inside the engine on a model now.",
    );
    for o in &m.model_overlap {
        f.sample("outpost_model_running", &[("model", &o.model)], o.running);
    }
    f.head(
        "outpost_model_running_peak",
        "gauge",
        "The most computes that ran inside the engine on a model at once since it loaded.",
    );
    for o in &m.model_overlap {
        f.sample("outpost_model_running_peak", &[("model", &o.model)], o.peak);
    }
    network_functions(f, m);
    sdwan(f, m);
}

fn sdwan(f: &mut Family<'_>, m: &MetricsSnapshot) {
    let Some(s) = &m.sdwan else { return };
    type Value = fn(&crate::sdwan::UplinkStatus) -> f64;
    let series: [(&str, &str, &str, Value); 8] = [
        (
            "outpost_sdwan_uplink_up",
            "gauge",
            "1 when the uplink's probes say it is up.",
            |u| f64::from(u8::from(u.quality.state == outpost_sdwan::LinkState::Up)),
        ),
        (
            "outpost_sdwan_uplink_rtt_ms",
            "gauge",
            "Mean probe round-trip time over the window, ms.",
            |u| u.quality.rtt_ms,
        ),
        (
            "outpost_sdwan_uplink_jitter_ms",
            "gauge",
            "Smoothed RTT variation (RFC 3550 style), ms.",
            |u| u.quality.jitter_ms,
        ),
        (
            "outpost_sdwan_uplink_loss_percent",
            "gauge",
            "Probes lost over the window, percent.",
            |u| u.quality.loss_pct,
        ),
        (
            "outpost_sdwan_probes_sent_total",
            "counter",
            "Probes sent on the uplink.",
            |u| u.quality.probes_sent as f64,
        ),
        (
            "outpost_sdwan_probe_replies_total",
            "counter",
            "Probe replies received in time.",
            |u| u.quality.replies as f64,
        ),
        (
            "outpost_sdwan_probes_lost_total",
            "counter",
            "Probes with no reply before their timeout.",
            |u| u.quality.lost as f64,
        ),
        (
            "outpost_sdwan_uplink_changes_total",
            "counter",
            "Times the uplink went down or came back up.",
            |u| u.changes as f64,
        ),
    ];
    for (name, kind, help, get) in series {
        f.head(name, kind, help);
        for u in &s.uplinks {
            f.sample(name, &[("uplink", &u.name)], get(u));
        }
    }
    f.head(
        "outpost_sdwan_class_link",
        "gauge",
        "1 for the link (overlay port) each application class uses now.",
    );
    for c in &s.classes {
        f.sample(
            "outpost_sdwan_class_link",
            &[("class", &c.class), ("link", &c.link)],
            1,
        );
    }
}

fn network_functions(f: &mut Family<'_>, m: &MetricsSnapshot) {
    type Counter = fn(&crate::nf::NfStatsSnapshot) -> u64;
    let counters: [(&str, &str, Counter); 10] = [
        (
            "outpost_nf_batches_total",
            "Batches handed to a network function.",
            |s| s.batches,
        ),
        (
            "outpost_nf_packets_total",
            "Packets handed to a network function.",
            |s| s.packets_in,
        ),
        (
            "outpost_nf_forwarded_total",
            "Packets a network function forwarded.",
            |s| s.forwarded,
        ),
        (
            "outpost_nf_dropped_total",
            "Packets a network function dropped (verdict or rejected batch).",
            |s| s.dropped,
        ),
        (
            "outpost_nf_rejected_batches_total",
            "Batches dropped whole: trap, limit or malformed result.",
            |s| s.rejected_batches,
        ),
        (
            "outpost_nf_injected_total",
            "Packets sent with nf-io transmit.",
            |s| s.injected,
        ),
        (
            "outpost_nf_control_in_total",
            "Control datagrams received.",
            |s| s.control_in,
        ),
        (
            "outpost_nf_control_out_total",
            "Control datagrams sent.",
            |s| s.control_out,
        ),
        (
            "outpost_nf_control_errors_total",
            "Control calls or sends that failed.",
            |s| s.control_errors,
        ),
        (
            "outpost_nf_unresolved_drops_total",
            "Packets dropped for want of a next hop's MAC.",
            |s| s.unresolved_drops,
        ),
    ];
    for (name, help, get) in counters {
        f.head(name, "counter", help);
        for nf in &m.network_functions {
            f.sample(name, &[("plugin", &nf.plugin)], get(&nf.stats));
        }
    }
    type PortCounter = fn(&outpost_dataplane::PortStats) -> u64;
    let ports: [(&str, &str, PortCounter); 6] = [
        (
            "outpost_port_rx_packets_total",
            "Frames a port received.",
            |s| s.rx_packets,
        ),
        (
            "outpost_port_rx_bytes_total",
            "Bytes a port received.",
            |s| s.rx_bytes,
        ),
        (
            "outpost_port_rx_drops_total",
            "Frames a port lost on receive.",
            |s| s.rx_drops,
        ),
        (
            "outpost_port_tx_packets_total",
            "Frames a port sent.",
            |s| s.tx_packets,
        ),
        ("outpost_port_tx_bytes_total", "Bytes a port sent.", |s| {
            s.tx_bytes
        }),
        (
            "outpost_port_tx_drops_total",
            "Frames a port could not send.",
            |s| s.tx_drops,
        ),
    ];
    for (name, help, get) in ports {
        f.head(name, "counter", help);
        for nf in &m.network_functions {
            for p in &nf.ports {
                f.sample(
                    name,
                    &[("plugin", &nf.plugin), ("port", &p.name)],
                    get(&p.stats),
                );
            }
        }
    }
    f.head("outpost_table_entries", "gauge", "Entries in a host table.");
    for (name, t) in &m.tables {
        f.sample("outpost_table_entries", &[("table", name)], t.entries);
    }
    f.head(
        "outpost_table_lookups_total",
        "counter",
        "Lookups in a host table.",
    );
    for (name, t) in &m.tables {
        f.sample("outpost_table_lookups_total", &[("table", name)], t.lookups);
    }
    f.head(
        "outpost_table_insert_failures_total",
        "counter",
        "Puts a host table refused (full, too large).",
    );
    for (name, t) in &m.tables {
        f.sample(
            "outpost_table_insert_failures_total",
            &[("table", name)],
            t.insert_failures,
        );
    }
    if !m.shares.is_empty() {
        f.head(
            "outpost_share_bytes",
            "gauge",
            "Bytes of a share by state: local (on the device), unsynced (not yet in the cloud), synced, evicted (only in the cloud).",
        );
        for sh in &m.shares {
            if let Some(st) = &sh.stats {
                for (state, v) in [
                    ("local", st.bytes_local),
                    ("unsynced", st.bytes_unsynced),
                    ("synced", st.bytes_synced),
                    ("evicted", st.bytes_evicted),
                ] {
                    f.sample(
                        "outpost_share_bytes",
                        &[("share", &sh.name), ("state", state)],
                        v,
                    );
                }
            }
        }
        f.head(
            "outpost_share_upload_queue",
            "gauge",
            "Files waiting to be uploaded.",
        );
        for sh in &m.shares {
            if let Some(st) = &sh.stats {
                f.sample(
                    "outpost_share_upload_queue",
                    &[("share", &sh.name)],
                    st.upload_queue_len,
                );
            }
        }
        f.head(
            "outpost_share_upload_rate_bytes",
            "gauge",
            "Measured upload rate, bytes per second.",
        );
        for sh in &m.shares {
            if let Some(st) = &sh.stats {
                f.sample(
                    "outpost_share_upload_rate_bytes",
                    &[("share", &sh.name)],
                    st.upload_rate_bytes_per_sec,
                );
            }
        }
        f.head(
            "outpost_share_write_throttled",
            "gauge",
            "1 while writers are slowed because the share's quota is full of unsynced data.",
        );
        for sh in &m.shares {
            if let Some(st) = &sh.stats {
                f.sample(
                    "outpost_share_write_throttled",
                    &[("share", &sh.name)],
                    u8::from(st.write_throttle_alert),
                );
            }
        }
        f.head(
            "outpost_share_policy_actions_total",
            "counter",
            "Tiering policy actions the host applied, or refused under its safety rules.",
        );
        for sh in &m.shares {
            let p = &sh.policy_stats;
            f.sample(
                "outpost_share_policy_actions_total",
                &[("share", &sh.name), ("result", "applied")],
                p.actions_applied,
            );
            f.sample(
                "outpost_share_policy_actions_total",
                &[("share", &sh.name), ("result", "refused")],
                p.actions_refused,
            );
        }
        f.head(
            "outpost_share_policy_failures_total",
            "counter",
            "Tiering policy evaluations that failed (trap, deadline, nonsense output, policy missing).",
        );
        for sh in &m.shares {
            f.sample(
                "outpost_share_policy_failures_total",
                &[("share", &sh.name)],
                sh.policy_stats.failures,
            );
        }
    }
    if let Some(k) = &m.keys {
        f.head(
            "outpost_encryption_key_available",
            "gauge",
            "1 while every store's data key unwraps under the key-encryption key, 0 when the key is disabled, missing or unreachable (stored data unreadable).",
        );
        let labels = [
            ("provider", k.provider.as_str()),
            ("key", k.key_id.as_str()),
        ];
        f.sample(
            "outpost_encryption_key_available",
            &labels,
            u8::from(k.available),
        );
        f.head(
            "outpost_encryption_key_version",
            "gauge",
            "The KEK version new data keys are wrapped under.",
        );
        f.sample(
            "outpost_encryption_key_version",
            &labels,
            k.version.unwrap_or(0),
        );
    }
    if !m.certificates.is_empty() {
        f.head(
            "outpost_certificate_expiry_seconds",
            "gauge",
            "Seconds until a TLS certificate expires (negative: expired).",
        );
        for c in &m.certificates {
            f.sample(
                "outpost_certificate_expiry_seconds",
                &[("role", c.role), ("subject", c.subject.as_str())],
                c.seconds_left,
            );
        }
        f.head(
            "outpost_certificate_alert",
            "gauge",
            "Expiry alert level of a TLS certificate: 0 ok, 1 warning, 2 critical, 3 expired.",
        );
        for c in &m.certificates {
            f.sample(
                "outpost_certificate_alert",
                &[("role", c.role), ("subject", c.subject.as_str())],
                c.alert.as_gauge(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
