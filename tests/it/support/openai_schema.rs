//! OpenAI's published request schemas as a request checker, excerpts of
//! github.com/openai/openai-openapi with references inlined: `openai-audio-requests.json` (the
//! audio endpoints) and `openai-chat-request.json` (Chat Completions). The fake OpenAI speech
//! server and the fake model refuse, with a 400 as OpenAI would, every body the schemas do not
//! allow. Checked: unknown fields (where a schema forbids extra properties, and at the top of a
//! chat request, which OpenAI refuses as an "unrecognized request argument"), required fields,
//! types, enums, lengths and ranges, array items and sizes, `anyOf`, `oneOf` and `allOf`.

use std::sync::LazyLock;

use serde_json::Value;

static AUDIO: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("openai-audio-requests.json")).expect("the schema excerpt is JSON"));
static CHAT: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("openai-chat-request.json")).expect("the schema excerpt is JSON"));

/// What is wrong with a `POST /audio/speech` body; empty when the schema allows it.
pub fn speech_violations(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check("body", &AUDIO["speech"], body, &mut problems);
    problems
}

/// What is wrong with a `POST /chat/completions` body; empty when the schema allows it.
pub fn chat_violations(body: &Value) -> Vec<String> {
    let schema = &CHAT["chat_completions"];
    let mut problems = Vec::new();
    check("body", schema, body, &mut problems);
    let mut known = Vec::new();
    property_names(schema, &mut known);
    for key in body.as_object().into_iter().flat_map(|object| object.keys()) {
        if !known.contains(&key.as_str()) {
            problems.push(format!("Unrecognized request argument supplied: {key}"));
        }
    }
    problems
}

/// The properties a schema names, through its `allOf` parts.
fn property_names<'a>(schema: &'a Value, names: &mut Vec<&'a str>) {
    names.extend(schema["properties"].as_object().into_iter().flat_map(|p| p.keys().map(String::as_str)));
    for part in schema["allOf"].as_array().into_iter().flatten() {
        property_names(part, names);
    }
}

/// What is wrong with a `POST /audio/transcriptions` form (field names and their text; the
/// file's content is not text); empty when the schema allows it.
pub fn transcription_violations(fields: &[(String, Option<String>)]) -> Vec<String> {
    let schema = &AUDIO["transcriptions"];
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

/// How many of `choices` allow `value`.
fn fitting(what: &str, choices: &[Value], value: &Value) -> usize {
    choices
        .iter()
        .filter(|choice| {
            let mut inner = Vec::new();
            check(what, choice, value, &mut inner);
            inner.is_empty()
        })
        .count()
}

fn check(what: &str, schema: &Value, value: &Value, problems: &mut Vec<String>) {
    if let Some(choices) = schema["anyOf"].as_array()
        && fitting(what, choices, value) == 0
    {
        problems.push(format!("{what}: {value} matches none of the allowed forms"));
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        match fitting(what, choices, value) {
            1 => {}
            0 => problems.push(format!("{what}: {value} matches none of the allowed forms")),
            _ => problems.push(format!("{what}: {value} matches more than one of the allowed forms")),
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        check(what, part, value, problems);
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
    if let Some(items) = value.as_array() {
        if schema["minItems"].as_u64().is_some_and(|min| (items.len() as u64) < min) {
            problems.push(format!("{what}: fewer than {} items", schema["minItems"]));
        }
        if schema["maxItems"].as_u64().is_some_and(|max| items.len() as u64 > max) {
            problems.push(format!("{what}: more than {} items", schema["maxItems"]));
        }
        if schema["items"].is_object() {
            for (i, item) in items.iter().enumerate() {
                check(&format!("{what}[{i}]"), &schema["items"], item, problems);
            }
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(required) {
                problems.push(format!("{what}.{required} is required"));
            }
        }
        for (key, field) in object {
            match schema["properties"].get(key) {
                Some(property) => check(&format!("{what}.{key}"), property, field, problems),
                None if schema["additionalProperties"] == false => problems.push(format!("{what}.{key} is not a field of the request")),
                None if schema["additionalProperties"].is_object() => {
                    check(&format!("{what}.{key}"), &schema["additionalProperties"], field, problems)
                }
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

    let call = json!({ "id": "call_1", "type": "function", "function": { "name": "endConversation", "arguments": "{}" } });
    let chat = json!({
        "model": "m", "stream": true, "stream_options": { "include_usage": true }, "temperature": 0.7,
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Bye." },
            { "role": "assistant", "content": null, "tool_calls": [call] },
            { "role": "tool", "tool_call_id": "call_1", "content": "ended" }
        ],
        "tools": [{ "type": "function", "function": { "name": "endConversation", "description": "Hang up.", "parameters": { "type": "object" } } }],
        "response_format": { "type": "json_schema", "json_schema": { "name": "verdict", "schema": { "type": "object" } } }
    });
    assert_eq!(chat_violations(&chat), Vec::<String>::new());
    let with = |pointer: &str, value: Value| {
        let mut body = chat.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        chat_violations(&body)
    };
    assert!(!with("/messages/3", json!({ "role": "tool", "content": "ended" })).is_empty(), "a tool answer names its call");
    assert!(!with("/messages/2/tool_calls/0/function/arguments", json!({})).is_empty(), "arguments are a JSON text");
    assert!(!with("/messages/1/role", json!("caller")).is_empty());
    assert!(!with("/messages", json!([])).is_empty());
    assert!(!with("/temperature", json!(3)).is_empty());
    assert!(!with("/tools/0/type", json!("tool")).is_empty());
    let mut unknown = chat.clone();
    unknown["max_output_tokens"] = json!(10);
    assert_eq!(chat_violations(&unknown), ["Unrecognized request argument supplied: max_output_tokens"]);
}
