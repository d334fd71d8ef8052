//! SD-WAN as a `network-function` plugin.
//!
//! Ports: one LAN port and one overlay port per WAN uplink (`kind = "overlay"` in the manifest:
//! the host encrypts what this plugin forwards there with WireGuard). Packets from the LAN are
//! classified into application classes, each flow (5-tuple) is pinned to an uplink in the host
//! table `flows`, and moved only when its uplink goes down or breaks the class's SLA; a flow
//! that left its preferred uplink returns after the uplink has been good for `hold_down_ms`.
//! Packets arriving on an uplink go to the LAN port. The host's probes publish each uplink's
//! state, RTT, jitter and loss in the table `links` (read-only here), so this plugin keeps no
//! state of its own: a hot swap keeps every pin.
//!
//! Configuration (`config` in the manifest):
//!
//! | key | meaning | example |
//! | --- | --- | --- |
//! | `lan` | the LAN port's name | `lan` |
//! | `links` | overlay port = uplink name (links-table key), in preference-neutral order | `wan-fiber=fiber,wan-lte=lte` |
//! | `classes` | class names, matched in this order; the last one also takes what no rule matches | `realtime,web,bulk` |
//! | `class.NAME.match` | `;`-separated rules: `dscp=46`, `udp=5004-5010`, `tcp=443`, `proto=17`, `any` | `dscp=46;udp=5004` |
//! | `class.NAME.links` | preferred uplinks (port names), best first | `wan-fiber,wan-lte` |
//! | `class.NAME.max_rtt_ms` / `max_jitter_ms` / `max_loss_pct` | the SLA | `150` / `30` / `2` |
//! | `class.NAME.duplicate` | send each packet over the two best links | `true` |
//! | `hold_down_ms` | how long a recovered link must be good before flows return (default 2000) | `2000` |
//! | `links_table`, `flows_table`, `stats_table`, `choices_table`, `dedup_table` | table names (defaults `sdwan-links`, `sdwan-flows`, `sdwan-stats`, `sdwan-choices`, `sdwan-dedup`; the last only when a class duplicates) | |
//!
//! `stats` (a counter table, at least 512 counters) gets packets and bytes per class and port at
//! index `class × 16 + port`, and flow moves per class at index `256 + class` (classes in
//! `classes` order, at most 16 classes and 16 ports); `choices` (exact) holds each class's link
//! (port name) for its latest flow decision.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use outpost_sdk::network_function::outpost::plugin::packet_types::{BatchResult, Verdict};
use outpost_sdk::network_function::{Guest, Table, nf_io, open_table};
use outpost_sdk::{config, log};

/// Bytes of a flow key: source and destination IPv4, ports, protocol.
const FLOW_KEY_LEN: usize = 13;
/// First counter of the per-class flow moves in the stats table.
const MOVES_BASE: u32 = 256;

/// One match rule of a class.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Any,
    Dscp(u8),
    Proto(u8),
    Port {
        proto: u8,
        lo: u16,
        hi: u16,
    },
    /// TLS server name (from a ClientHello); `*.example.com` matches its subdomains.
    Sni(String),
    /// HTTP/1 `Host` header, matched the same way.
    Host(String),
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        if text == "any" {
            return Ok(Rule::Any);
        }
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
        let num = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{s}` is not a number"))
        };
        match k.trim() {
            "dscp" => {
                let d = num(v)?;
                u8::try_from(d)
                    .ok()
                    .filter(|d| *d < 64)
                    .map(Rule::Dscp)
                    .ok_or_else(|| format!("dscp {d} is outside 0..=63"))
            }
            "proto" => u8::try_from(num(v)?)
                .map(Rule::Proto)
                .map_err(|_| format!("`{v}` is not a protocol number")),
            "udp" | "tcp" => {
                let proto = if k.trim() == "udp" { 17 } else { 6 };
                let (lo, hi) = match v.split_once('-') {
                    Some((a, b)) => (num(a)?, num(b)?),
                    None => (num(v)?, num(v)?),
                };
                if lo > hi {
                    return Err(format!("port range `{v}` is empty"));
                }
                Ok(Rule::Port { proto, lo, hi })
            }
            "sni" | "host" => {
                let name = v.trim().to_ascii_lowercase();
                let bare = name.strip_prefix("*.").unwrap_or(&name);
                if bare.is_empty() || bare.contains('*') || bare.contains(char::is_whitespace) {
                    return Err(format!("`{v}` is not a host name or `*.domain`"));
                }
                Ok(if k.trim() == "sni" {
                    Rule::Sni(name)
                } else {
                    Rule::Host(name)
                })
            }
            other => Err(format!("unknown rule `{other}`")),
        }
    }

    fn matches(&self, p: &Parsed) -> bool {
        match self {
            Rule::Any => true,
            Rule::Dscp(d) => p.dscp == *d,
            Rule::Proto(x) => p.proto == *x,
            Rule::Port { proto, lo, hi } => p.proto == *proto && (*lo..=*hi).contains(&p.dport),
            Rule::Sni(pattern) => p.sni.as_deref().is_some_and(|n| name_matches(pattern, n)),
            Rule::Host(pattern) => p.host.as_deref().is_some_and(|n| name_matches(pattern, n)),
        }
    }

    fn by_name(&self) -> bool {
        matches!(self, Rule::Sni(_) | Rule::Host(_))
    }
}

/// `pattern` is `name` or `*.domain` (any subdomain of `domain`); `name` is lowercase.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => name
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.') && head.len() > 1),
        None => pattern == name,
    }
}

/// A class: its rules, preferred links (port indices), SLA and duplication.
#[derive(Debug, Clone)]
struct Class {
    name: String,
    rules: Vec<Rule>,
    links: Vec<u16>,
    max_rtt_us: u32,
    max_jitter_us: u32,
    max_loss_permille: u16,
    duplicate: bool,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
struct Config {
    lan: u16,
    /// Uplink port index → its name in the links table.
    uplinks: BTreeMap<u16, String>,
    port_names: Vec<String>,
    classes: Vec<Class>,
    hold_down_ms: u64,
    /// TCP SYNs crossing the plugin have their MSS lowered to this (the overlay's inner MTU
    /// minus 40: 1400 for a 1500-byte outer MTU over IPv4).
    max_mss: u16,
    tables: [String; 4],
    /// Where copies of duplicated packets are recognized (only used when a class duplicates).
    dedup_table: String,
}

fn parse_config(port_names: &[String]) -> Result<Config, String> {
    let port = |name: &str| -> Result<u16, String> {
        port_names
            .iter()
            .position(|p| p == name.trim())
            .and_then(|i| u16::try_from(i).ok())
            .ok_or_else(|| format!("no port `{}` among {port_names:?}", name.trim()))
    };
    let lan = port(&config::get_or("lan", "lan"))?;
    let mut uplinks = BTreeMap::new();
    for pair in config::get("links").unwrap_or_default().split(',') {
        if pair.trim().is_empty() {
            continue;
        }
        let (p, uplink) = pair
            .split_once('=')
            .ok_or_else(|| format!("links: `{pair}` is not PORT=UPLINK"))?;
        uplinks.insert(port(p)?, uplink.trim().to_string());
    }
    if uplinks.is_empty() {
        return Err("links: no uplink ports configured".into());
    }
    let mut classes = Vec::new();
    for name in config::get_or("classes", "default").split(',') {
        let name = name.trim().to_string();
        let key = |k: &str| format!("class.{name}.{k}");
        let rules = config::get_or(&key("match"), "any")
            .split(';')
            .filter(|r| !r.trim().is_empty())
            .map(Rule::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", key("match")))?;
        let links = match config::get(&key("links")) {
            Some(l) => l.split(',').map(port).collect::<Result<Vec<_>, _>>()?,
            None => uplinks.keys().copied().collect(),
        };
        if let Some(bad) = links.iter().find(|l| !uplinks.contains_key(l)) {
            return Err(format!("{}: port {bad} is not an uplink", key("links")));
        }
        let num = |k: &str, default: f64| -> Result<f64, String> {
            match config::get(&key(k)) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| *x >= 0.0)
                    .ok_or_else(|| format!("{}: `{v}` is not a number", key(k))),
            }
        };
        classes.push(Class {
            rules,
            links,
            max_rtt_us: (num("max_rtt_ms", 1.0e6)? * 1000.0).min(f64::from(u32::MAX)) as u32,
            max_jitter_us: (num("max_jitter_ms", 1.0e6)? * 1000.0).min(f64::from(u32::MAX)) as u32,
            max_loss_permille: (num("max_loss_pct", 100.0)? * 10.0).min(1000.0) as u16,
            duplicate: config::get_or(&key("duplicate"), "false") == "true",
            name,
        });
    }
    if classes.len() > 16 || port_names.len() > 16 {
        return Err("at most 16 classes and 16 ports".into());
    }
    let hold_down_ms = config::get_or("hold_down_ms", "2000")
        .trim()
        .parse()
        .map_err(|_| "hold_down_ms: not a number".to_string())?;
    Ok(Config {
        lan,
        uplinks,
        port_names: port_names.to_vec(),
        classes,
        hold_down_ms,
        max_mss: config::get_or("max_mss", "1400")
            .trim()
            .parse()
            .ok()
            .filter(|m| (536..=9000).contains(m))
            .ok_or_else(|| "max_mss: not a number in 536..=9000".to_string())?,
        tables: [
            config::get_or("links_table", "sdwan-links"),
            config::get_or("flows_table", "sdwan-flows"),
            config::get_or("stats_table", "sdwan-stats"),
            config::get_or("choices_table", "sdwan-choices"),
        ],
        dedup_table: config::get_or("dedup_table", "sdwan-dedup"),
    })
}

/// What the classifier needs of a packet.
#[derive(Debug, Default)]
struct Parsed {
    key: [u8; FLOW_KEY_LEN],
    proto: u8,
    dscp: u8,
    /// The TLS server name of a ClientHello in this packet.
    sni: Option<String>,
    /// The `Host` of an HTTP/1 request in this packet.
    host: Option<String>,
    dport: u16,
}

/// Parses an IPv4 packet's 5-tuple and DSCP; `None` for anything else or a malformed header.
fn parse_ipv4(p: &[u8]) -> Option<Parsed> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let proto = p[9];
    let first_fragment = u16::from_be_bytes([p[6], p[7]]) & 0x1fff == 0;
    let (sport, dport) = match proto {
        6 | 17 if first_fragment && p.len() >= ihl + 4 => (
            u16::from_be_bytes([p[ihl], p[ihl + 1]]),
            u16::from_be_bytes([p[ihl + 2], p[ihl + 3]]),
        ),
        _ => (0, 0),
    };
    let (mut sni, mut host) = (None, None);
    if proto == 6 && first_fragment && p.len() >= ihl + 20 {
        let data_off = usize::from(p[ihl + 12] >> 4) * 4;
        let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
        if data_off >= 20 && ihl + data_off < total {
            let payload = &p[ihl + data_off..total];
            sni = tls_sni(payload);
            if sni.is_none() {
                host = http_host(payload);
            }
        }
    }
    let mut key = [0u8; FLOW_KEY_LEN];
    key[0..4].copy_from_slice(&p[12..16]);
    key[4..8].copy_from_slice(&p[16..20]);
    key[8..10].copy_from_slice(&sport.to_be_bytes());
    key[10..12].copy_from_slice(&dport.to_be_bytes());
    key[12] = proto;
    Some(Parsed {
        key,
        proto,
        dscp: p[1] >> 2,
        dport,
        sni,
        host,
    })
}

/// A bounds-checked reader over untrusted bytes.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|s| usize::from(s[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
    }
}

/// The server name of a TLS ClientHello at the start of `payload` (first record only).
fn tls_sni(payload: &[u8]) -> Option<String> {
    let mut r = Reader { b: payload, at: 0 };
    if r.u8()? != 0x16 {
        return None;
    }
    r.take(2)?; // record version
    let record_len = r.u16()?;
    let record = r.take(record_len.min(payload.len().saturating_sub(5)))?;
    let mut r = Reader { b: record, at: 0 };
    if r.u8()? != 0x01 {
        return None;
    }
    r.take(3)?; // handshake length
    r.take(2 + 32)?; // client version, random
    let sid = r.u8()?;
    r.take(sid)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let comp = r.u8()?;
    r.take(comp)?;
    let ext_len = r.u16()?;
    let mut ext = Reader {
        b: r.take(ext_len.min(record.len().saturating_sub(r.at)))?,
        at: 0,
    };
    while let (Some(kind), Some(len)) = (ext.u16(), ext.u16()) {
        let body = ext.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader { b: body, at: 0 };
        let list_len = list.u16()?;
        let mut names = Reader {
            b: list.take(list_len)?,
            at: 0,
        };
        while let Some(name_type) = names.u8() {
            let n = names.u16()?;
            let name = names.take(n)?;
            if name_type == 0 {
                return std::str::from_utf8(name)
                    .ok()
                    .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

/// The `Host` of an HTTP/1 request at the start of `payload` (port and case dropped).
fn http_host(payload: &[u8]) -> Option<String> {
    const METHODS: [&[u8]; 7] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
    ];
    if !METHODS.iter().any(|m| payload.starts_with(m)) {
        return None;
    }
    let head = &payload[..payload.len().min(4096)];
    let text = std::str::from_utf8(head).ok().or_else(|| {
        // Cut at the last complete UTF-8 character.
        let valid = match std::str::from_utf8(head) {
            Ok(_) => head.len(),
            Err(e) => e.valid_up_to(),
        };
        std::str::from_utf8(&head[..valid]).ok()
    })?;
    for line in text.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("host") {
            let v = value.trim();
            let v = match v.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => v,
            };
            return (!v.is_empty()).then(|| v.trim_end_matches('.').to_ascii_lowercase());
        }
    }
    None
}

/// Lowers the MSS option of a TCP SYN in IPv4 packet `p` to `max`, fixing the TCP checksum
/// incrementally (RFC 1624); whether it changed the packet.
fn clamp_mss(p: &mut [u8], max: u16) -> bool {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 6 {
        return false;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if u16::from_be_bytes([p[6], p[7]]) & 0x1fff != 0 || p.len() < ihl + 20 {
        return false;
    }
    let tcp = ihl;
    if p[tcp + 13] & 0x02 == 0 {
        return false; // not a SYN
    }
    let data_off = usize::from(p[tcp + 12] >> 4) * 4;
    if data_off < 20 || p.len() < tcp + data_off {
        return false;
    }
    let mut at = tcp + 20;
    let end = tcp + data_off;
    while at < end {
        match p[at] {
            0 => return false,
            1 => at += 1,
            kind => {
                let Some(&len) = p.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > end {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([p[at + 2], p[at + 3]]);
                    if old <= max {
                        return false;
                    }
                    p[at + 2..at + 4].copy_from_slice(&max.to_be_bytes());
                    let sum = u16::from_be_bytes([p[tcp + 16], p[tcp + 17]]);
                    // HC' = ~(~HC + ~m + m')
                    let mut acc = u32::from(!sum) + u32::from(!old) + u32::from(max);
                    while acc > 0xffff {
                        acc = (acc & 0xffff) + (acc >> 16);
                    }
                    p[tcp + 16..tcp + 18].copy_from_slice(&(!(acc as u16)).to_be_bytes());
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

/// An uplink's quality as the host publishes it.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    up: bool,
    rtt_us: u32,
    jitter_us: u32,
    loss_permille: u16,
    changed_ms: u64,
}

fn decode_link(v: &[u8]) -> Option<Link> {
    if v.len() < 24 {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    let mut changed = [0u8; 8];
    changed.copy_from_slice(&v[16..24]);
    Some(Link {
        up: v[0] == 1,
        rtt_us: u32_at(4),
        jitter_us: u32_at(8),
        loss_permille: u16::from_be_bytes([v[12], v[13]]),
        changed_ms: u64::from_be_bytes(changed),
    })
}

impl Class {
    fn meets_sla(&self, l: &Link) -> bool {
        l.up && l.rtt_us <= self.max_rtt_us
            && l.jitter_us <= self.max_jitter_us
            && l.loss_permille <= self.max_loss_permille
    }
}

/// Picks the link for a flow of `class` now pinned to `pinned` (if any).
fn choose(
    class: &Class,
    links: &BTreeMap<u16, Link>,
    pinned: Option<u16>,
    now_ms: u64,
    hold_down_ms: u64,
) -> Option<u16> {
    let good = |port: u16| links.get(&port).is_some_and(|l| class.meets_sla(l));
    // Settled: good and up for the hold-down (a link that just came back is not trusted yet).
    let settled = |port: u16| {
        good(port)
            && links
                .get(&port)
                .is_some_and(|l| now_ms.saturating_sub(l.changed_ms) >= hold_down_ms)
    };
    if let Some(p) = pinned
        && good(p)
    {
        // Stay, unless a more preferred link has been good for the hold-down.
        let rank = class
            .links
            .iter()
            .position(|l| *l == p)
            .unwrap_or(usize::MAX);
        return Some(
            class.links[..rank.min(class.links.len())]
                .iter()
                .copied()
                .find(|l| settled(*l))
                .unwrap_or(p),
        );
    }
    // Not pinned, or its link broke: the best good link, settled first.
    if let Some(l) = class.links.iter().copied().find(|l| settled(*l)) {
        return Some(l);
    }
    if let Some(l) = class.links.iter().copied().find(|l| good(*l)) {
        return Some(l);
    }
    // Nothing meets the SLA: the up link with the lowest RTT, preferred or not.
    links
        .iter()
        .filter(|(_, l)| l.up)
        .min_by_key(|(_, l)| l.rtt_us)
        .map(|(p, _)| *p)
        .or(pinned)
        .or_else(|| class.links.first().copied())
}

struct Instance {
    config: Result<Config, String>,
    tables: Option<[Table; 4]>,
    /// The de-duplication table, opened when a class duplicates.
    dedup: Option<Table>,
}

impl Instance {
    fn new() -> Self {
        let config = parse_config(&nf_io::ports());
        if let Err(e) = &config {
            log::error(&format!(
                "sdwan: configuration refused, every packet is dropped: {e}"
            ));
        }
        Instance {
            config,
            tables: None,
            dedup: None,
        }
    }
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn open_tables(names: &[String; 4]) -> Result<[Table; 4], String> {
    let open = |n: &String| open_table(n).map_err(|e| format!("table `{n}`: {e}"));
    Ok([
        open(&names[0])?,
        open(&names[1])?,
        open(&names[2])?,
        open(&names[3])?,
    ])
}

fn process(i: &mut Instance, ingress: &[u16], lengths: &[u32], data: &[u8]) -> BatchResult {
    let n = ingress.len();
    let mut out = BatchResult {
        verdicts: Vec::with_capacity(n),
        lengths: Vec::with_capacity(n),
        data: Vec::with_capacity(data.len()),
    };
    let drop_all = |out: &mut BatchResult| {
        out.verdicts = vec![Verdict::Drop; n];
        out.lengths = vec![0; n];
        out.data.clear();
    };
    let Ok(cfg) = &i.config else {
        drop_all(&mut out);
        return out;
    };
    if i.tables.is_none() {
        match open_tables(&cfg.tables) {
            Ok(t) => i.tables = Some(t),
            Err(e) => {
                log::error(&format!("sdwan: {e}"));
                drop_all(&mut out);
                return out;
            }
        }
    }
    if i.dedup.is_none() && cfg.classes.iter().any(|c| c.duplicate) {
        match open_table(&cfg.dedup_table) {
            Ok(t) => i.dedup = Some(t),
            Err(e) => {
                log::error(&format!("sdwan: table `{}`: {e}", cfg.dedup_table));
                drop_all(&mut out);
                return out;
            }
        }
    }
    let Some([links_t, flows_t, stats_t, choices_t]) = &i.tables else {
        drop_all(&mut out);
        return out;
    };

    // Split the batch into packets; parse the LAN ones.
    let mut packets = Vec::with_capacity(n);
    let mut at = 0usize;
    for len in lengths {
        let end = (at + *len as usize).min(data.len());
        packets.push(&data[at..end]);
        at = end;
    }
    let parsed: Vec<Option<Parsed>> = packets
        .iter()
        .zip(ingress)
        .map(|(p, port)| (*port == cfg.lan).then(|| parse_ipv4(p)).flatten())
        .collect();
    let duplicates = match &i.dedup {
        Some(t) => find_duplicates(cfg, t, &packets, ingress),
        None => vec![false; n],
    };

    // One crossing each for the links and the batch's pins.
    let uplink_keys: Vec<Vec<u8>> = cfg
        .uplinks
        .values()
        .map(|u| u.as_bytes().to_vec())
        .collect();
    let found = links_t.get_many(&uplink_keys);
    let mut links = BTreeMap::new();
    let mut off = 0usize;
    for (port, len) in cfg.uplinks.keys().zip(found.lengths) {
        if let Some(len) = len {
            let end = off + len as usize;
            if let Some(l) = found.data.get(off..end).and_then(decode_link) {
                links.insert(*port, l);
            }
            off = end;
        }
    }
    let flow_keys: Vec<Vec<u8>> = parsed.iter().flatten().map(|p| p.key.to_vec()).collect();
    let pins = flows_t.get_many(&flow_keys);
    let mut pin_values = Vec::with_capacity(flow_keys.len());
    let mut off = 0usize;
    for len in pins.lengths {
        pin_values.push(len.and_then(|len| {
            let end = off + len as usize;
            let v = pins.data.get(off..end).map(<[u8]>::to_vec);
            off = end;
            v
        }));
    }

    let now = now_ms();
    let mut pin_at = 0usize;
    let mut new_pins: BTreeMap<[u8; FLOW_KEY_LEN], (u16, u8)> = BTreeMap::new();
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut choices: BTreeMap<String, u16> = BTreeMap::new();
    for (((packet, port), parsed), duplicate) in
        packets.iter().zip(ingress).zip(&parsed).zip(&duplicates)
    {
        let verdict = if *port != cfg.lan {
            // From the remote site over an uplink: to the LAN, once.
            if cfg.uplinks.contains_key(port) && !duplicate {
                Verdict::Forward(cfg.lan)
            } else {
                Verdict::Drop
            }
        } else if let Some(p) = parsed {
            let stored = pin_values.get(pin_at).cloned().flatten();
            pin_at += 1;
            // A pin decided earlier in this batch wins over the table's: (link, class).
            let pin = new_pins.get(&p.key).copied().or_else(|| {
                stored
                    .as_deref()
                    .filter(|v| v.len() >= 11)
                    .map(|v| (u16::from_be_bytes([v[0], v[1]]), v[10]))
            });
            // A name (TLS SNI, HTTP Host) seen in this packet reclassifies its flow; otherwise
            // the flow keeps the class it was pinned with.
            let by_name = cfg
                .classes
                .iter()
                .position(|c| c.rules.iter().any(|r| r.by_name() && r.matches(p)));
            let class_idx = by_name
                .or_else(|| {
                    pin.map(|(_, c)| usize::from(c))
                        .filter(|c| *c < cfg.classes.len())
                })
                .or_else(|| {
                    cfg.classes
                        .iter()
                        .position(|c| c.rules.iter().any(|r| !r.by_name() && r.matches(p)))
                })
                .unwrap_or(cfg.classes.len() - 1);
            let class = &cfg.classes[class_idx];
            let pinned = pin.map(|(link, _)| link);
            let reclassified = pin.is_some_and(|(_, c)| usize::from(c) != class_idx);
            match choose(class, &links, pinned, now, cfg.hold_down_ms) {
                Some(link) => {
                    if pinned != Some(link) || reclassified {
                        new_pins.insert(p.key, (link, class_idx as u8));
                        choices.insert(class.name.clone(), link);
                        if pinned.is_some_and(|p| p != link) {
                            let c = counts.entry(MOVES_BASE + class_idx as u32).or_default();
                            c.0 += 1;
                        }
                    }
                    let c = counts
                        .entry(class_idx as u32 * 16 + u32::from(link))
                        .or_default();
                    c.0 += 1;
                    c.1 += packet.len() as u64;
                    if class.duplicate
                        && let Some(second) = class
                            .links
                            .iter()
                            .copied()
                            .find(|l| *l != link && links.get(l).is_some_and(|q| q.up))
                    {
                        let _ = nf_io::transmit(second, packet);
                    }
                    Verdict::Forward(link)
                }
                None => Verdict::Drop,
            }
        } else if packet.first().is_some_and(|b| b >> 4 == 6) {
            // IPv6: not classified or pinned yet; the default class's best link carries it.
            let class = &cfg.classes[cfg.classes.len() - 1];
            choose(class, &links, None, now, cfg.hold_down_ms)
                .map_or(Verdict::Drop, Verdict::Forward)
        } else {
            // Neither IPv4 nor IPv6 (or a malformed header): nothing to route it by.
            Verdict::Drop
        };
        match verdict {
            Verdict::Forward(_) => {
                out.lengths.push(packet.len() as u32);
                let start = out.data.len();
                out.data.extend_from_slice(packet);
                clamp_mss(&mut out.data[start..], cfg.max_mss);
            }
            Verdict::Drop => out.lengths.push(0),
        }
        out.verdicts.push(verdict);
    }

    if !new_pins.is_empty() {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = new_pins
            .iter()
            .map(|(k, (link, class))| {
                // Flow pin: link (u16), when pinned (u64 ms), class index (u8).
                let mut v = link.to_be_bytes().to_vec();
                v.extend_from_slice(&now.to_be_bytes());
                v.push(*class);
                (k.to_vec(), v)
            })
            .collect();
        for r in flows_t.put_many(&entries) {
            if let Err(e) = r {
                log::warn(&format!("sdwan: a flow pin was not stored: {e}"));
            }
        }
    }
    if !counts.is_empty() {
        let entries: Vec<(Vec<u8>, u64, u64)> = counts
            .into_iter()
            .map(|(k, (p, b))| (k.to_le_bytes().to_vec(), p, b))
            .collect();
        let _ = stats_t.count_many(&entries);
    }
    for (class, link) in choices {
        let _ = choices_t.put(
            class.as_bytes(),
            cfg.port_names[usize::from(link)].as_bytes(),
        );
    }
    out
}

/// Slots of the de-duplication table (a direct-mapped cache of packet hashes).
const DEDUP_SLOTS: u64 = 4096;

/// FNV-1a, 64 bits: the two copies of a duplicated packet are byte for byte the same.
fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Which packets from the uplinks are second copies of a duplicated class's packets: each
/// such packet's hash is remembered in the table slot `hash % 4096`; a packet whose hash is
/// already there (or earlier in this batch) is a copy. A slot overwritten by another packet
/// can only let a copy through, never drop an original.
fn find_duplicates(cfg: &Config, table: &Table, packets: &[&[u8]], ingress: &[u16]) -> Vec<bool> {
    let mut out = vec![false; packets.len()];
    let mut candidates = Vec::new();
    for (i, (p, port)) in packets.iter().zip(ingress).enumerate() {
        if *port == cfg.lan || !cfg.uplinks.contains_key(port) {
            continue;
        }
        let Some(parsed) = parse_ipv4(p) else {
            continue;
        };
        let duplicated = cfg
            .classes
            .iter()
            .find(|c| c.rules.iter().any(|r| !r.by_name() && r.matches(&parsed)))
            .is_some_and(|c| c.duplicate);
        if duplicated {
            let h = fnv64(p);
            candidates.push((i, h, ((h % DEDUP_SLOTS) as u32).to_le_bytes().to_vec()));
        }
    }
    if candidates.is_empty() {
        return out;
    }
    let keys: Vec<Vec<u8>> = candidates.iter().map(|c| c.2.clone()).collect();
    let found = table.get_many(&keys);
    let mut off = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    let mut puts = Vec::new();
    for ((i, h, key), len) in candidates.into_iter().zip(found.lengths) {
        let stored = len.and_then(|len| {
            let end = off + len as usize;
            let v = found.data.get(off..end)?;
            off = end;
            Some(u64::from_le_bytes(v.try_into().ok()?))
        });
        if stored == Some(h) || !seen.insert(h) {
            out[i] = true;
        } else {
            puts.push((key, h.to_le_bytes().to_vec()));
        }
    }
    let _ = table.put_many(&puts);
    out
}

struct SdwanPlugin;

impl Guest for SdwanPlugin {
    fn process(ingress: Vec<u16>, lengths: Vec<u32>, data: Vec<u8>) -> BatchResult {
        INSTANCE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let i = slot.get_or_insert_with(Instance::new);
            process(i, &ingress, &lengths, &data)
        })
    }

    fn control(_peer: String, _datagram: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }

    fn tick(_now_ms: u64) {}
}

outpost_sdk::export_network_function!(SdwanPlugin);
