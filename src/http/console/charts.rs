//! Charts as inline SVG, drawn on the server: no chart server, no script, readable by screen
//! readers (each chart has a title and every bar its value as text).

use std::fmt::Write;

/// Width and height of the drawing area, in SVG units (the chart scales to its container).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LABEL_SPACE: f64 = 28.0;

/// Escapes text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Vertical bars, one per `(label, value)`, with the value above each bar; `unit` follows
/// values ("s", "%" or "").
pub fn columns(title: &str, points: &[(String, f64)], unit: &str) -> String {
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {}" role="img" aria-labelledby="chart-{id}"><title id="chart-{id}">{}</title>"#,
        HEIGHT + LABEL_SPACE,
        escape(title),
        id = slug(title),
    );
    let max = points.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let slot = WIDTH / points.len().max(1) as f64;
    let every = (points.len() / 12).max(1);
    for (i, (label, value)) in points.iter().enumerate() {
        let height = if max > 0.0 { value / max * (HEIGHT - 20.0) } else { 0.0 };
        let x = i as f64 * slot + slot * 0.15;
        let _ = write!(
            svg,
            r#"<g><rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{height:.1}" rx="2"><title>{}: {}{unit}</title></rect>"#,
            HEIGHT - height,
            slot * 0.7,
            escape(label),
            number(*value),
        );
        if *value > 0.0 && points.len() <= 31 {
            let _ =
                write!(svg, r#"<text x="{:.1}" y="{:.1}" class="value">{}</text>"#, x + slot * 0.35, HEIGHT - height - 4.0, number(*value));
        }
        if i % every == 0 {
            let _ =
                write!(svg, r#"<text x="{:.1}" y="{:.1}" class="label">{}</text>"#, x + slot * 0.35, HEIGHT + 18.0, escape(short(label)));
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars for a breakdown (sentiment, ended reasons), largest first.
pub fn breakdown(title: &str, parts: &[(String, f64)]) -> String {
    let mut parts = parts.to_vec();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let row = 26.0;
    let height = row * parts.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="chart-{id}"><title id="chart-{id}">{}</title>"#,
        escape(title),
        id = slug(title),
    );
    let max = parts.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let bar_space = WIDTH - 220.0;
    for (i, (label, value)) in parts.iter().enumerate() {
        let y = i as f64 * row;
        let width = if max > 0.0 { value / max * bar_space } else { 0.0 };
        let _ = write!(
            svg,
            r#"<g><text x="0" y="{:.1}" class="label-left">{}</text><rect x="170" y="{:.1}" width="{width:.1}" height="{:.1}" rx="2"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" class="value-left">{}</text></g>"#,
            y + row * 0.65,
            escape(label),
            y + 4.0,
            row - 8.0,
            escape(label),
            number(*value),
            176.0 + width,
            y + row * 0.65,
            number(*value),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Whole numbers without decimals, others with one.
fn number(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

/// `2026-11-29` reads as `11-29` under a bar.
fn short(label: &str) -> &str {
    label.get(5..).filter(|_| label.len() == 10).unwrap_or(label)
}

fn slug(title: &str) -> String {
    title.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f64]) -> Vec<(String, f64)> {
        values.iter().enumerate().map(|(i, v)| (format!("2026-11-{:02}", i + 1), *v)).collect()
    }

    #[test]
    fn columns_scale_to_the_largest_value() {
        let svg = columns("Calls per day", &points(&[2.0, 4.0, 0.0]), "");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"<title id="chart-calls-per-day">Calls per day</title>"#));
        assert!(svg.contains(r#"height="200.0""#), "the largest bar fills the height: {svg}");
        assert!(svg.contains(r#"height="100.0""#), "half the value, half the height: {svg}");
        assert!(svg.contains(r#"height="0.0""#));
        assert!(svg.contains("<title>2026-11-02: 4</title>") && svg.contains(">11-02</text>"));
        assert_eq!(svg.matches("<rect").count(), 3);
    }

    #[test]
    fn empty_data_draws_an_empty_chart() {
        let svg = columns("Nothing", &[], "");
        assert_eq!(svg.matches("<rect").count(), 0);
        assert!(svg.ends_with("</svg>"));
        assert!(breakdown("Nothing", &[]).ends_with("</svg>"));
    }

    #[test]
    fn breakdowns_sort_and_escape() {
        let svg = breakdown("Ended <reasons>", &[("a&b".into(), 1.0), ("caller_hangup".into(), 3.0)]);
        assert!(svg.contains("Ended &lt;reasons&gt;") && svg.contains("a&amp;b") && !svg.contains("a&b<"));
        assert!(svg.find("caller_hangup").unwrap() < svg.find("a&amp;b").unwrap(), "largest first");
    }
}
