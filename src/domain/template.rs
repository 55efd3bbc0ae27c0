//! The template language of automation actions: text with `{{ path }}` placeholders, where a path
//! names a value of the event context by dotted keys (`call.from`, `classification.sentiment`,
//! `steps.1.status`; numbers index lists). A missing value renders as nothing; strings render as
//! they are, other values as JSON. `{{{{` writes a literal `{{`.
//!
//! Templates are parsed when an automation is saved, so a typo in a root name or an unclosed
//! placeholder is refused then, not discovered on a call.

use serde_json::Value;

use super::validation::Invalid;

/// The names a path may start with (see `automation::template_context`).
pub const ROOTS: &[&str] =
    &["call", "event", "caller", "agent_name", "duration_secs", "transcript", "summary", "classification", "ticket", "budget", "steps"];

/// Each root with a placeholder that uses it, as the automation form lists them.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("caller", "{{ caller }} — the caller's number"),
    ("agent_name", "{{ agent_name }} — the agent who answered"),
    ("duration_secs", "{{ duration_secs }} — the call's length in seconds"),
    ("summary", "{{ summary }} — the classification's summary, else the agent's"),
    ("transcript", "{{ transcript }} — the conversation, one line per turn"),
    ("classification", "{{ classification.sentiment }} — set after an ai_classify step"),
    ("ticket", "{{ ticket.id }} — the ticket a create_record step made"),
    ("call", "{{ call.ended_reason }} — any field of the call in the event"),
    ("event", "{{ event.event_id }} — the event itself"),
    ("steps", "{{ steps.0.status }} — what an earlier action returned"),
];

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Value(Vec<String>),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `source`; `field` names the input in errors.
    pub fn parse(field: &str, source: &str) -> Result<Self, Invalid> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            text.push_str(&rest[..open]);
            rest = &rest[open + 2..];
            if let Some(after) = rest.strip_prefix("{{") {
                text.push_str("{{");
                rest = after;
                continue;
            }
            let Some(close) = rest.find("}}") else {
                return Err(Invalid::new(field, "has a `{{` without its closing `}}`"));
            };
            let path = rest[..close].trim();
            rest = &rest[close + 2..];
            let keys: Vec<String> = path.split('.').map(str::to_owned).collect();
            if keys.iter().any(|k| k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
                return Err(Invalid::new(field, format!("`{{{{ {path} }}}}` is not a dotted name like `call.from`")));
            }
            if !ROOTS.contains(&keys[0].as_str()) {
                return Err(Invalid::new(field, format!("`{}` is not a template variable; use one of: {}", keys[0], ROOTS.join(", "))));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Value(keys));
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self { pieces })
    }

    /// The text with every placeholder replaced from `context`.
    pub fn render(&self, context: &Value) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value(keys) => match lookup(context, keys) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        out
    }
}

fn lookup<'a>(context: &'a Value, keys: &[String]) -> Option<&'a Value> {
    keys.iter().try_fold(context, |value, key| match value {
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        other => other.get(key),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Fuzz target (`cargo bolero test domain::template::tests::fuzz_any_template` runs it under
    /// libFuzzer; `cargo test` runs a bounded random sample and the kept inputs in `__fuzz__`):
    /// any text parses or is refused with a message, and what parses renders; text without
    /// braces renders as itself.
    #[test]
    fn fuzz_any_template() {
        let context = json!({ "call": { "from": "+14155550100", "turns": [{ "text": "hi" }] }, "agent": { "name": "Ava" } });
        bolero::check!().with_type::<String>().for_each(|source| match Template::parse("body", source) {
            Ok(template) => {
                let rendered = template.render(&context);
                if !source.contains(['{', '}']) {
                    assert_eq!(&rendered, source);
                }
            }
            Err(invalid) => assert!(!invalid.message.is_empty()),
        });
    }

    #[test]
    fn placeholders_render_from_the_context() {
        let context = json!({ "call": { "from": "+14155550123", "duration_ms": 42000, "agent": null }, "steps": [{ "status": 200 }] });
        let t =
            Template::parse("subject", "Call from {{ call.from }} ({{call.duration_ms}} ms) {{ call.agent.name }}|{{ steps.0.status }}")
                .unwrap();
        assert_eq!(t.render(&context), "Call from +14155550123 (42000 ms) |200");
        assert_eq!(Template::parse("s", "literal {{{{ braces").unwrap().render(&context), "literal {{ braces");
    }

    #[test]
    fn mistakes_are_refused_when_saved() {
        assert!(Template::parse("body", "Hi {{ call.from").unwrap_err().message.contains("closing"));
        assert!(Template::parse("body", "{{ caler }}").unwrap_err().message.contains("caler"));
        assert!(Template::parse("body", "{{ call..from }}").is_err());
        assert!(Template::parse("body", "{{ call.from | upper }}").is_err());
    }
}
