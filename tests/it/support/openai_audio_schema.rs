//! OpenAI's published request schemas for its audio endpoints (`openai-audio-requests.json`, an
//! excerpt of github.com/openai/openai-openapi with references inlined) as a request checker:
//! the fake OpenAI speech server refuses, with a 400 as OpenAI would, every synthesis body and
//! every transcription form the schemas do not allow. Checked: unknown fields (both schemas
//! forbid extra properties), required fields, types, enums, lengths and ranges, `anyOf`.

use std::sync::LazyLock;

use serde_json::Value;

static SCHEMAS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("openai-audio-requests.json")).expect("the schema excerpt is JSON"));

/// What is wrong with a `POST /audio/speech` body; empty when the schema allows it.
pub fn speech_violations(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check("body", &SCHEMAS["speech"], body, &mut problems);
    problems
}

/// What is wrong with a `POST /audio/transcriptions` form (field names and their text; the
/// file's content is not text); empty when the schema allows it.
pub fn transcription_violations(fields: &[(String, Option<String>)]) -> Vec<String> {
    let schema = &SCHEMAS["transcriptions"];
    let mut problems = Vec::new();
    for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !fields.iter().any(|(name, _)| name == required) {
            problems.push(format!("{required} is required"));
        }
    }
    for (name, text) in fields {
        let Some(property) = schema["properties"].get(name) else {
            problems.push(format!("{name} is not a field of the request"));
            continue;
        };
        // A form carries text: a number or boolean field is its text parsed.
        if let Some(text) = text {
            let value =
                serde_json::from_str::<Value>(text).ok().filter(|v| v.is_number() || v.is_boolean()).unwrap_or(Value::String(text.clone()));
            check(name, property, &value, &mut problems);
        }
    }
    problems
}

fn check(what: &str, schema: &Value, value: &Value, problems: &mut Vec<String>) {
    if let Some(choices) = schema["anyOf"].as_array() {
        let fits = choices.iter().any(|choice| {
            let mut inner = Vec::new();
            check(what, choice, value, &mut inner);
            inner.is_empty()
        });
        if !fits {
            problems.push(format!("{what}: {value} matches none of the allowed forms"));
        }
        return;
    }
    let fits_type = match schema["type"].as_str() {
        Some("string") => value.is_string(),
        Some("number") => value.is_number(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        Some("null") => value.is_null(),
        _ => true,
    };
    if !fits_type {
        return problems.push(format!("{what}: {value} is not of type {}", schema["type"]));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{what}: {value} is not one of {}", schema["enum"]));
    }
    if let (Some(max), Some(text)) = (schema["maxLength"].as_u64(), value.as_str())
        && text.chars().count() as u64 > max
    {
        problems.push(format!("{what}: longer than {max} characters"));
    }
    if let Some(number) = value.as_f64()
        && (schema["minimum"].as_f64().is_some_and(|min| number < min) || schema["maximum"].as_f64().is_some_and(|max| number > max))
    {
        problems.push(format!("{what}: {number} is out of range"));
    }
    if let Some(object) = value.as_object().filter(|_| schema["type"] == "object") {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(required) {
                problems.push(format!("{what}.{required} is required"));
            }
        }
        for (key, field) in object {
            match schema["properties"].get(key) {
                Some(property) => check(&format!("{what}.{key}"), property, field, problems),
                None if schema["additionalProperties"] == false => problems.push(format!("{what}.{key} is not a field of the request")),
                None => {}
            }
        }
    }
}

#[test]
fn the_checker_knows_good_from_bad() {
    use serde_json::json;
    assert!(speech_violations(&json!({ "model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "pcm" })).is_empty());
    assert!(speech_violations(&json!({ "model": "tts-1", "input": "Hi.", "voice": { "id": "voice_1" } })).is_empty());
    assert_eq!(speech_violations(&json!({ "model": "tts-1", "input": "Hi." })).len(), 1, "voice is required");
    assert_eq!(speech_violations(&json!({ "model": "tts-1", "input": "Hi.", "voice": "alloy", "sample_rate": 8000 })).len(), 1);
    assert_eq!(speech_violations(&json!({ "model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "ulaw" })).len(), 1);
    assert_eq!(speech_violations(&json!({ "model": "tts-1", "input": "Hi.", "voice": "alloy", "speed": 9 })).len(), 1);
    let field = |name: &str, text: Option<&str>| (name.to_owned(), text.map(str::to_owned));
    assert!(transcription_violations(&[field("file", None), field("model", Some("whisper-1")), field("language", Some("en"))]).is_empty());
    assert_eq!(transcription_violations(&[field("model", Some("whisper-1"))]).len(), 1, "file is required");
    assert_eq!(transcription_violations(&[field("file", None), field("model", Some("m")), field("response_format", Some("wav"))]).len(), 1);
    assert_eq!(transcription_violations(&[field("file", None), field("model", Some("m")), field("sample_rate", Some("8000"))]).len(), 1);
    assert_eq!(transcription_violations(&[field("file", None), field("model", Some("m")), field("temperature", Some("warm"))]).len(), 1);
}
