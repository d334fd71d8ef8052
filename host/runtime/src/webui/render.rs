//! HTML building blocks: escaping, the page frame, tables, sizes, and SVG line charts drawn on
//! the server (no script, no third-party code).

use std::fmt::Write as _;

/// `text` safe inside HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` for a URL query value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub use crate::system::human_bytes as bytes;

/// A time given in milliseconds since the Unix epoch, as RFC 3339 (UTC, milliseconds kept).
pub fn time_of(unix_ms: i128) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(unix_ms * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Seconds as `3d 4h`, `2h 5m`, `4m 10s` or `12s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// A state badge.
pub fn state(s: &str) -> String {
    let class: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("<span class=\"state {class}\">{}</span>", esc(s))
}

/// A table; cells are HTML already.
pub fn table(headers: &[&str], rows: &[Vec<String>], id: &str) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A card with a label, a value and an optional fill bar (0..=1).
pub fn card(label: &str, value: &str, fill: Option<f64>) -> String {
    let bar = fill
        .map(|f| {
            format!(
                "<meter min=\"0\" max=\"1\" low=\"0.75\" high=\"0.9\" optimum=\"0\" value=\"{:.3}\"></meter>",
                f.clamp(0.0, 1.0)
            )
        })
        .unwrap_or_default();
    format!(
        "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div>{bar}</div>",
        esc(label),
        esc(value)
    )
}

const COLORS: [&str; 6] = [
    "#1f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4",
];

/// A line chart of `series` (name, points of (unix seconds, value)) over the last hour, with
/// the largest value on the axis. Series with fewer than two points are listed as "collecting".
pub fn chart(title: &str, unit: &str, series: &[(String, Vec<(f64, f64)>)], id: &str) -> String {
    const W: f64 = 600.0;
    const H: f64 = 140.0;
    const PAD: f64 = 4.0;
    let points: Vec<&(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter()).collect();
    let mut out = format!(
        "<div class=\"chart\" id=\"{}\"><div><strong>{}</strong> <span class=\"muted\">({}, last hour)</span></div>",
        esc(id),
        esc(title),
        esc(unit)
    );
    if points.len() < 2 {
        out.push_str("<p class=\"none\">collecting samples…</p></div>");
        return out;
    }
    let t_max = points.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    let t_min = (t_max - 3600.0).max(points.iter().map(|p| p.0).fold(f64::MAX, f64::min));
    let span = (t_max - t_min).max(1.0);
    let v_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">\
         <line x1=\"0\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" stroke=\"#dde1e8\"/>",
        esc(title),
        y = H - PAD
    );
    let mut legend = String::new();
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> = pts
            .iter()
            .filter(|p| p.0 >= t_min)
            .map(|(t, v)| {
                let x = (t - t_min) / span * W;
                let y = H - PAD - v / v_max * (H - 2.0 * PAD);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        if coords.len() >= 2 {
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" vector-effect=\"non-scaling-stroke\" data-series=\"{}\" points=\"{}\"/>",
                esc(name),
                coords.join(" ")
            );
        }
        let last = pts.last().map_or(0.0, |p| p.1);
        let _ = write!(
            legend,
            "<svg class=\"swatch\" viewBox=\"0 0 10 10\"><rect width=\"10\" height=\"10\" fill=\"{color}\"/></svg> {} {} &nbsp; ",
            esc(name),
            esc(&format!("{last:.2}"))
        );
    }
    let _ = write!(
        out,
        "</svg><div class=\"legend\">{legend} <span class=\"muted\">max {}</span></div></div>",
        esc(&format!("{v_max:.2} {unit}"))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html_and_sizes_read_like_a_person_writes_them() {
        assert_eq!(
            esc("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(duration(3725), "1h 2m");
        assert_eq!(url_encode("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn a_chart_draws_one_line_per_series_with_two_points_and_waits_for_more_otherwise() {
        let empty = chart("calls", "1/s", &[("echo".into(), vec![(1.0, 2.0)])], "c");
        assert!(empty.contains("collecting") && !empty.contains("<polyline"));
        let drawn = chart(
            "calls",
            "1/s",
            &[
                ("echo".into(), vec![(0.0, 1.0), (10.0, 3.0)]),
                ("<b>".into(), vec![(0.0, 0.0), (10.0, 1.0)]),
            ],
            "c",
        );
        assert_eq!(drawn.matches("<polyline").count(), 2);
        assert!(drawn.contains("&lt;b&gt;") && !drawn.contains("<b>"));
    }
}
