//! The `[sdwan]` section: the site's WAN uplinks and their link probes.
//!
//! ```toml
//! [sdwan]
//! reflector = "0.0.0.0:7900"   # answer the remote sites' probes here (optional)
//! probe_interval_ms = 100      # default 100
//! down_after = 3               # consecutive lost probes that take a link down (default 3)
//! up_after = 5                 # consecutive replies that bring it back (default 5)
//!
//! [sdwan.uplinks.fiber]
//! local = "10.90.0.1:0"        # the uplink's own address (port 0: any)
//! remote = "10.90.0.2:7900"    # the remote site's reflector over this uplink
//! rate_mbps = 200              # egress cap of the uplink (optional)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

/// The site's SD-WAN settings (`[sdwan]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdwanSettings {
    /// Where the host answers probes from remote sites; `None` answers none.
    pub reflector: Option<SocketAddr>,
    /// Milliseconds between probes on each uplink.
    pub probe_interval_ms: u64,
    /// Consecutive lost probes that take a link down.
    pub down_after: u32,
    /// Consecutive replies that bring a down link back up.
    pub up_after: u32,
    /// The uplinks by name, sorted; each gets a numeric link id in this order.
    pub uplinks: BTreeMap<String, UplinkSpec>,
    /// An exact host table the host keeps each uplink's quality in (key: uplink name; value:
    /// [`LINK_VALUE_LEN`] bytes, see `outpost_runtime::sdwan`), for an SD-WAN plugin to read.
    pub links_table: Option<String>,
    /// An exact table where the SD-WAN plugin records each class's current link (key: class
    /// name, value: port name); status, metrics and the web UI show it.
    pub choices_table: Option<String>,
}

/// Bytes of a links-table value.
pub const LINK_VALUE_LEN: u32 = 24;

/// One WAN uplink (`[sdwan.uplinks.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkSpec {
    /// Its name.
    pub name: String,
    /// The local address its probes (and overlay) leave from.
    pub local: SocketAddr,
    /// The remote site's reflector reached over this uplink.
    pub remote: SocketAddr,
    /// Egress cap in Mbit/s; `None` is unlimited.
    pub rate_mbps: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSdwan {
    reflector: Option<Spanned<String>>,
    probe_interval_ms: Option<Spanned<u64>>,
    down_after: Option<Spanned<u32>>,
    up_after: Option<Spanned<u32>>,
    links_table: Option<Spanned<String>>,
    choices_table: Option<Spanned<String>>,
    #[serde(default)]
    uplinks: BTreeMap<Spanned<String>, Spanned<RawUplink>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUplink {
    local: Spanned<String>,
    remote: Spanned<String>,
    rate_mbps: Option<Spanned<u32>>,
}

/// A field's problem: where it is and what is wrong.
pub(crate) type FieldError = (std::ops::Range<usize>, String);

fn addr(s: &Spanned<String>, field: &str) -> Result<SocketAddr, FieldError> {
    s.get_ref().parse().map_err(|_| {
        (
            s.span(),
            format!("{field}: `{}` is not an `IP:PORT` address", s.get_ref()),
        )
    })
}

fn ranged<T: Copy + PartialOrd + std::fmt::Display>(
    v: &Option<Spanned<T>>,
    field: &str,
    range: std::ops::RangeInclusive<T>,
    default: T,
) -> Result<T, FieldError> {
    match v {
        None => Ok(default),
        Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err((
            v.span(),
            format!(
                "{field}: {} is outside {}..={}",
                v.get_ref(),
                range.start(),
                range.end()
            ),
        )),
    }
}

pub(crate) fn check_sdwan(
    raw: RawSdwan,
    tables: &BTreeMap<String, crate::TableSpec>,
) -> Result<SdwanSettings, FieldError> {
    let links_table = match &raw.links_table {
        None => None,
        Some(t) => match tables.get(t.get_ref()) {
            Some(spec)
                if spec.kind == crate::TableKind::Exact
                    && spec.max_key >= 32
                    && spec.max_value >= LINK_VALUE_LEN =>
            {
                Some(t.get_ref().clone())
            }
            Some(_) => {
                return Err((
                    t.span(),
                    format!(
                        "sdwan.links_table: `{}` must be an exact table with max_key >= 32 and max_value >= {LINK_VALUE_LEN}",
                        t.get_ref()
                    ),
                ));
            }
            None => {
                return Err((
                    t.span(),
                    format!(
                        "sdwan.links_table: no `[tables.{}]` in this manifest",
                        t.get_ref()
                    ),
                ));
            }
        },
    };
    let reflector = match &raw.reflector {
        Some(r) => Some(addr(r, "sdwan.reflector")?),
        None => None,
    };
    let choices_table = match &raw.choices_table {
        None => None,
        Some(t) => match tables.get(t.get_ref()) {
            Some(spec) if spec.kind == crate::TableKind::Exact => Some(t.get_ref().clone()),
            Some(_) => {
                return Err((
                    t.span(),
                    format!(
                        "sdwan.choices_table: `{}` must be an exact table",
                        t.get_ref()
                    ),
                ));
            }
            None => {
                return Err((
                    t.span(),
                    format!(
                        "sdwan.choices_table: no `[tables.{}]` in this manifest",
                        t.get_ref()
                    ),
                ));
            }
        },
    };
    let probe_interval_ms = ranged(
        &raw.probe_interval_ms,
        "sdwan.probe_interval_ms",
        10..=60_000,
        100,
    )?;
    let down_after = ranged(&raw.down_after, "sdwan.down_after", 1..=100, 3)?;
    let up_after = ranged(&raw.up_after, "sdwan.up_after", 1..=100, 5)?;
    let mut uplinks = BTreeMap::new();
    let mut locals: BTreeMap<SocketAddr, String> = BTreeMap::new();
    for (name, uplink) in raw.uplinks {
        let n = name.get_ref().clone();
        let valid = !n.is_empty()
            && n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err((
                name.span(),
                format!(
                    "sdwan.uplinks.{n}: an uplink name is 1 to 32 lowercase letters, digits or `-`"
                ),
            ));
        }
        let u = uplink.into_inner();
        let local = addr(&u.local, &format!("sdwan.uplinks.{n}.local"))?;
        let remote = addr(&u.remote, &format!("sdwan.uplinks.{n}.remote"))?;
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err((
                u.remote.span(),
                format!("sdwan.uplinks.{n}.remote: `{remote}` needs a real address and port"),
            ));
        }
        if local.port() != 0
            && let Some(other) = locals.insert(local, n.clone())
        {
            return Err((
                u.local.span(),
                format!("sdwan.uplinks.{n}.local: `{local}` is already uplink `{other}`'s"),
            ));
        }
        let rate_mbps = match &u.rate_mbps {
            Some(r) if *r.get_ref() == 0 => {
                return Err((
                    r.span(),
                    format!(
                        "sdwan.uplinks.{n}.rate_mbps: must be at least 1 (leave it out for no cap)"
                    ),
                ));
            }
            Some(r) => Some(*r.get_ref()),
            None => None,
        };
        uplinks.insert(
            n.clone(),
            UplinkSpec {
                name: n,
                local,
                remote,
                rate_mbps,
            },
        );
    }
    if uplinks.len() > 16 {
        return Err((0..0, "sdwan.uplinks: at most 16 uplinks".into()));
    }
    Ok(SdwanSettings {
        reflector,
        probe_interval_ms,
        down_after,
        up_after,
        uplinks,
        links_table,
        choices_table,
    })
}

#[cfg(test)]
mod tests {
    use crate::Manifest;

    #[test]
    fn an_sdwan_section_parses_with_defaults_and_sorted_uplinks() {
        let m = Manifest::parse(
            r#"
[sdwan]
reflector = "127.0.0.1:7900"
[sdwan.uplinks.lte]
local = "127.0.0.1:0"
remote = "127.0.0.1:7901"
[sdwan.uplinks.fiber]
local = "10.90.0.1:0"
remote = "10.90.0.2:7900"
rate_mbps = 200
"#,
            "m.toml",
        )
        .unwrap();
        let s = m.sdwan.unwrap();
        assert_eq!(s.reflector, Some("127.0.0.1:7900".parse().unwrap()));
        assert_eq!((s.probe_interval_ms, s.down_after, s.up_after), (100, 3, 5));
        let names: Vec<&str> = s.uplinks.keys().map(String::as_str).collect();
        assert_eq!(names, ["fiber", "lte"]);
        assert_eq!(s.uplinks["fiber"].rate_mbps, Some(200));
        assert_eq!(s.uplinks["lte"].rate_mbps, None);
    }

    #[test]
    fn bad_sdwan_settings_are_refused_with_the_field_named() {
        for (body, needle) in [
            (
                "[sdwan]\nreflector = \"nowhere\"",
                "sdwan.reflector: `nowhere`",
            ),
            (
                "[sdwan]\nprobe_interval_ms = 1",
                "sdwan.probe_interval_ms: 1 is outside",
            ),
            (
                "[sdwan.uplinks.a]\nlocal = \"127.0.0.1:0\"\nremote = \"0.0.0.0:0\"",
                "sdwan.uplinks.a.remote",
            ),
            (
                "[sdwan.uplinks.A]\nlocal = \"127.0.0.1:0\"\nremote = \"127.0.0.1:1\"",
                "an uplink name is",
            ),
            (
                "[sdwan.uplinks.a]\nlocal = \"127.0.0.1:5\"\nremote = \"127.0.0.1:1\"\n[sdwan.uplinks.b]\nlocal = \"127.0.0.1:5\"\nremote = \"127.0.0.1:1\"",
                "already uplink `a`'s",
            ),
            (
                "[sdwan.uplinks.a]\nlocal = \"127.0.0.1:0\"\nremote = \"127.0.0.1:1\"\nrate_mbps = 0",
                "rate_mbps: must be at least 1",
            ),
            (
                "[sdwan.uplinks.a]\nlocal = \"127.0.0.1:0\"\nremote = \"127.0.0.1:1\"\nmtu = 9000",
                "unknown field `mtu`",
            ),
        ] {
            let err = Manifest::parse(body, "m.toml").unwrap_err().to_string();
            assert!(err.contains(needle), "{body:?}: {err}");
        }
    }

    const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

    #[test]
    fn an_overlay_port_parses_and_names_its_uplink() {
        let m = Manifest::parse(
            &format!(
                "[sdwan.uplinks.fiber]\nlocal = \"127.0.0.1:0\"\nremote = \"127.0.0.1:7900\"\nrate_mbps = 50\n\
                 [ports.wan]\nkind = \"overlay\"\nlocal = \"10.90.0.1:51820\"\npeer = \"10.90.0.2:51820\"\n\
                 peer_public_key = \"{KEY}\"\nprivate_key_file = \"keys/a.key\"\nuplink = \"fiber\"\n"
            ),
            "m.toml",
        )
        .unwrap();
        let o = m.ports["wan"].overlay.clone().unwrap();
        assert_eq!(o.peer, "10.90.0.2:51820".parse().unwrap());
        assert_eq!(o.peer_public_key, KEY);
        assert_eq!(o.uplink.as_deref(), Some("fiber"));
        // The uplink's cap is the port's.
        assert_eq!(o.rate_mbps, Some(50));
    }

    #[test]
    fn bad_overlay_ports_are_refused_with_the_field_named() {
        let ok_key = format!("peer_public_key = \"{KEY}\"\n");
        for (body, needle) in [
            (
                format!("[ports.wan]\nkind = \"overlay\"\npeer = \"10.0.0.2:1\"\n{ok_key}"),
                "an overlay port needs `local`".to_string(),
            ),
            (
                "[ports.wan]\nkind = \"overlay\"\nlocal = \"10.0.0.1:0\"\npeer = \"10.0.0.2:1\"\npeer_public_key = \"short\"\n".to_string(),
                "ports.wan.peer_public_key: not a WireGuard public key".to_string(),
            ),
            (
                format!("[ports.wan]\nkind = \"overlay\"\nlocal = \"10.0.0.1:0\"\npeer = \"10.0.0.2:1\"\n{ok_key}uplink = \"lte\"\n"),
                "ports.wan.uplink: no `[sdwan.uplinks.lte]`".to_string(),
            ),
            (
                "[ports.lan]\nkind = \"memory\"\npeer = \"10.0.0.2:1\"\n".to_string(),
                "are for overlay ports, this is memory".to_string(),
            ),
            (
                format!("[ports.wan]\nkind = \"overlay\"\nlocal = \"10.0.0.1:0\"\npeer = \"10.0.0.2:1\"\n{ok_key}address = \"10.0.0.1/24\"\n"),
                "carries IP packets already".to_string(),
            ),
            (
                "[sdwan]\nlinks_table = \"nope\"\n".to_string(),
                "sdwan.links_table: no `[tables.nope]`".to_string(),
            ),
            (
                "[tables.small]\nkind = \"exact\"\nmax_value = 8\n[sdwan]\nlinks_table = \"small\"\n"
                    .to_string(),
                "must be an exact table".to_string(),
            ),
        ] {
            let err = Manifest::parse(&body, "m.toml").unwrap_err().to_string();
            assert!(err.contains(&needle), "{body:?}: {err}");
        }
    }
}
