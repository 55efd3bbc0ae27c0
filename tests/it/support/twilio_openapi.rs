//! Twilio's published OpenAPI description of its 2010-04-01 API
//! (`shared/specs/twilio_api_v2010.json`) as a request checker: the fake Twilio refuses every
//! request the description does not allow, the way Twilio answers 400 to a malformed one, so a
//! test fails the moment our client sends something real Twilio could refuse. Checked: the
//! operation exists, path parameters, query parameters and form fields are known, required
//! fields are present, and each value has the declared type, enum, pattern, length and format
//! (`uri`, `http-method`).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

static DESCRIPTION: LazyLock<Value> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/specs/twilio_api_v2010.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading Twilio's OpenAPI description at {path}: {e}"));
    serde_json::from_str(&text).expect("Twilio's OpenAPI description is JSON")
});

/// What the description finds wrong with a request; empty when it allows it.
pub fn violations(method: &str, path: &str, query: &[(String, String)], form: &[(String, String)]) -> Vec<String> {
    let Some((template, path_values)) = find_path(path) else {
        return vec![format!("{method} {path}: no such path in the description")];
    };
    let Some(operation) = DESCRIPTION["paths"][template.as_str()].get(method.to_lowercase()) else {
        return vec![format!("{method} {template}: no such operation in the description")];
    };
    let mut problems = Vec::new();
    let parameters: Vec<&Value> = operation["parameters"].as_array().into_iter().flatten().map(resolve).collect();
    for (name, value) in &path_values {
        if let Some(parameter) = parameters.iter().find(|p| p["in"] == "path" && p["name"] == name.as_str()) {
            check(&format!("path parameter {name}"), &parameter["schema"], value, &mut problems);
        }
    }
    for (name, value) in query {
        match parameters.iter().find(|p| p["in"] == "query" && p["name"] == name.as_str()) {
            Some(parameter) => check(&format!("query parameter {name}"), &parameter["schema"], value, &mut problems),
            None => problems.push(format!("query parameter {name} is not in the description")),
        }
    }
    let body = &operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    let body = resolve(body);
    if form.is_empty() && body.is_null() {
        return problems;
    }
    for (name, value) in form {
        match body["properties"].get(name.as_str()) {
            Some(schema) => check(&format!("form field {name}"), schema, value, &mut problems),
            None => problems.push(format!("form field {name} is not in the description")),
        }
    }
    for required in body["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !form.iter().any(|(name, _)| name == required) {
            problems.push(format!("form field {required} is required"));
        }
    }
    problems.into_iter().map(|p| format!("{method} {template}: {p}")).collect()
}

/// The description's path template matching `path`, with the values of its parameters.
fn find_path(path: &str) -> Option<(String, Vec<(String, String)>)> {
    let segments: Vec<&str> = path.split('/').collect();
    DESCRIPTION["paths"].as_object()?.keys().find_map(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            return None;
        }
        let mut values = Vec::new();
        for (part, segment) in parts.iter().zip(&segments) {
            match part.strip_prefix('{').and_then(|p| p.split_once('}')) {
                Some((name, suffix)) => values.push((name.to_owned(), segment.strip_suffix(suffix)?.to_owned())),
                None if part == segment => {}
                None => return None,
            }
        }
        Some((template.clone(), values))
    })
}

fn resolve(schema: &Value) -> &Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
        Some(pointer) => resolve(DESCRIPTION.pointer(&format!("/{pointer}")).unwrap_or(&Value::Null)),
        None => schema,
    }
}

fn check(what: &str, schema: &Value, value: &str, problems: &mut Vec<String>) {
    let schema = resolve(schema);
    let mut fail = |why: String| problems.push(format!("{what} = {value:?}: {why}"));
    match schema["type"].as_str() {
        Some("integer") if value.parse::<i64>().is_err() => fail("not an integer".into()),
        Some("number") if value.parse::<f64>().is_err() => fail("not a number".into()),
        Some("boolean") if !matches!(value, "true" | "false") => fail("not a boolean".into()),
        _ => {}
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.iter().any(|a| a.as_str() == Some(value))
    {
        fail(format!("not one of {allowed:?}"));
    }
    if let Some(pattern) = schema["pattern"].as_str()
        && !Regex::new(pattern).expect("the description's patterns compile").is_match(value)
    {
        fail(format!("does not match {pattern}"));
    }
    let length = value.chars().count() as u64;
    if schema["minLength"].as_u64().is_some_and(|min| length < min) || schema["maxLength"].as_u64().is_some_and(|max| length > max) {
        fail("length out of range".into());
    }
    if schema["format"] == "uri" && url::Url::parse(value).is_err() {
        fail("not a URI".into());
    }
}

#[test]
fn the_checker_knows_good_from_bad() {
    let account = format!("AC{}", "a".repeat(32));
    let number = format!("/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/PN{}.json", "b".repeat(32));
    let field = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    assert_eq!(violations("POST", &number, &[], &field("VoiceUrl", "https://sb.example.com/twilio/voice")), Vec::<String>::new());
    assert_eq!(violations("POST", &number, &[], &field("VoiceUrl", "")).len(), 1, "an empty URI");
    assert!(!violations("POST", &number, &[], &field("VoiceApplicationSid", "")).is_empty(), "an empty application SID");
    assert_eq!(violations("POST", &number, &[], &field("VoiceMethod", "PUT")).len(), 1);
    assert_eq!(violations("POST", &number, &[], &field("Colour", "blue")).len(), 1);
    assert!(!violations("GET", &format!("/2010-04-01/Accounts/{account}/Calls/CA-stale.json"), &[], &[]).is_empty(), "a bad SID");
    assert!(!violations("PATCH", &number, &[], &[]).is_empty());
}
