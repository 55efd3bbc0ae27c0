//! AI classification of a finished call: sentiment, resolution, satisfaction (1–5), a summary
//! and the automation's own categories, as JSON.
//!
//! The request carries a JSON Schema as `response_format` (constrained decoding where the
//! provider supports it). A provider that refuses it with any error status (some answer 500,
//! not 4xx) is asked at once for plain JSON mode (`json_object`), then without `response_format`;
//! the step that worked is remembered per endpoint and model for the life of the process, and a
//! refusal does not count as one of the tries. Either way the answer is validated here: JSON (code fences tolerated), every field present,
//! values from the allowed sets. An invalid answer is asked for again, up to [`TRIES`] times, and
//! then the action fails with what was wrong.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde_json::{Value, json};

use super::ActionError;
use crate::agent::model;
use crate::agent::usage::{MeteredModel, UsageMeter};
use crate::domain::agent::AgentSpec;
use crate::domain::automation::Category;
use crate::domain::event::{Analysis, CallEvent, Resolution, Sentiment};
use crate::domain::ids::OrgId;
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::providers::llm::{self, ChatMessage, ChatRequest, LlmError};
use crate::storage::{Db, StorageError, agents, costs};

/// Answers asked for before an invalid classification fails the action.
pub const TRIES: usize = 3;

/// Classifies the event's call with the model of its agent (else the organisation's newest).
pub async fn classify(
    db: &Db,
    egress: &Egress,
    models: &LoadedModels,
    org: OrgId,
    event: &CallEvent,
    categories: &[Category],
    instructions: &str,
) -> Result<Analysis, ActionError> {
    let spec = match &event.call.agent {
        Some(agent) => match agents::get(db, org, agent.id).await {
            Ok(agent) => agent.spec,
            Err(StorageError::NotFound) => AgentSpec::named("deleted agent"),
            Err(e) => return Err(ActionError::Retry(e.to_string())),
        },
        None => AgentSpec::named("no agent"),
    };
    let found = model::for_agent(db, egress, models, org, &spec).await.map_err(|e| ActionError::Retry(e.to_string()))?;
    let Some(model::AgentModel { client, model, provider_id, endpoint }) = found else {
        return Err(ActionError::Fail("the organisation has no LLM provider to classify with".into()));
    };
    // What the classification costs joins the call's cost, whatever comes of it.
    let llm = MeteredModel::new(client, provider_id, UsageMeter::default());
    let outcome = ask(&llm, model, event, categories, instructions, &endpoint).await;
    let used = llm.meter.usage();
    let tokens = (used.model_input_tokens, used.model_output_tokens);
    if tokens != (0, 0) {
        let recorded = costs::record_classification(db, org, event.call.id, provider_id, tokens, used.model_tokens_estimated).await;
        if let Err(e) = recorded {
            tracing::warn!(call = %event.call.id, error = ?e, "could not add the classification's tokens to the call's cost");
        }
    }
    outcome
}

/// Asks `llm` for the classification until a valid one comes, [`TRIES`] times at most.
async fn ask(
    llm: &MeteredModel,
    model: String,
    event: &CallEvent,
    categories: &[Category],
    instructions: &str,
    endpoint: &str,
) -> Result<Analysis, ActionError> {
    let mut format = remembered_format(endpoint);
    let mut request = ChatRequest {
        model,
        temperature: Some(0.0),
        messages: vec![
            ChatMessage::System { content: system_prompt(categories, instructions) },
            ChatMessage::User { content: call_description(event) },
        ],
        tools: vec![],
        response_format: format.response_format(categories),
    };
    let mut problem = String::new();
    let mut tries = 0;
    while tries < TRIES {
        let answer = match llm::complete(llm, request.clone()).await {
            Ok(answer) => answer,
            Err(error @ LlmError::Refused { .. }) if format != OutputFormat::Plain => {
                format = format.simpler();
                tracing::info!(%error, ?format, "the model refused a structured-output request; asking more simply");
                remember_format(endpoint, format);
                request.response_format = format.response_format(categories);
                continue;
            }
            Err(error) if error.is_transient() => return Err(ActionError::Retry(format!("the model failed: {error}"))),
            Err(error) => return Err(ActionError::Fail(format!("the model refused the request: {error}"))),
        };
        tries += 1;
        match parse_analysis(&answer, categories) {
            Ok(analysis) => return Ok(analysis),
            Err(why) => {
                tracing::info!(%why, "the model's classification was invalid; asking again");
                problem = why;
            }
        }
    }
    Err(ActionError::Fail(format!("the model gave no valid classification in {TRIES} tries; last problem: {problem}")))
}

/// How the answer's shape is asked for, from the strictest down.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OutputFormat {
    JsonSchema,
    JsonObject,
    Plain,
}

impl OutputFormat {
    fn simpler(self) -> Self {
        match self {
            OutputFormat::JsonSchema => OutputFormat::JsonObject,
            OutputFormat::JsonObject | OutputFormat::Plain => OutputFormat::Plain,
        }
    }

    fn response_format(self, categories: &[Category]) -> Option<Value> {
        match self {
            OutputFormat::JsonSchema => Some(json!({ "type": "json_schema", "json_schema": {
                "name": "call_classification", "strict": true, "schema": response_schema(categories) } })),
            OutputFormat::JsonObject => Some(json!({ "type": "json_object" })),
            OutputFormat::Plain => None,
        }
    }
}

/// The format each endpoint and model last accepted (endpoints that took the strictest are absent).
static ACCEPTED_FORMATS: LazyLock<Mutex<HashMap<String, OutputFormat>>> = LazyLock::new(Mutex::default);

fn remembered_format(endpoint: &str) -> OutputFormat {
    ACCEPTED_FORMATS.lock().expect("format memory lock").get(endpoint).copied().unwrap_or(OutputFormat::JsonSchema)
}

fn remember_format(endpoint: &str, format: OutputFormat) {
    ACCEPTED_FORMATS.lock().expect("format memory lock").insert(endpoint.to_owned(), format);
}

fn system_prompt(categories: &[Category], instructions: &str) -> String {
    let mut prompt = String::from(
        "You review transcripts of phone calls between a customer (the caller) and an AI agent. Classify the call and \
         answer with one JSON object and nothing else, with these fields:\n\
         - sentiment: the caller's mood, one of \"positive\", \"neutral\", \"negative\"\n\
         - resolution: \"resolved\" if the caller's matter was settled, \"escalated\" if it was handed to a person or needs \
         one, else \"unresolved\"\n\
         - satisfaction: how satisfied the caller seemed, an integer from 1 (very unhappy) to 5 (very happy)\n\
         - summary: two sentences at most on what the call was about and how it ended\n\
         - categories: an object with one key per category below (an empty object if there are none)\n",
    );
    for category in categories {
        let values = category.values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ");
        prompt.push_str(&format!("  - {}: one of {values}. {}\n", category.name, category.description));
    }
    if !instructions.trim().is_empty() {
        prompt.push_str(&format!("\nMore guidance:\n{}\n", instructions.trim()));
    }
    prompt
}

fn call_description(event: &CallEvent) -> String {
    let call = &event.call;
    format!(
        "Caller: {}\nEnded by: {} ({})\nAgent's closing summary: {}\n\nTranscript:\n{}",
        call.from,
        call.ended_by.as_deref().unwrap_or("unknown"),
        call.ended_reason.as_deref().unwrap_or("unknown"),
        call.summary.as_deref().unwrap_or("none"),
        if call.transcript.text.is_empty() { "(nothing was said)" } else { &call.transcript.text },
    )
}

/// The JSON Schema the answer must follow.
pub fn response_schema(categories: &[Category]) -> Value {
    let category_properties: serde_json::Map<String, Value> =
        categories.iter().map(|c| (c.name.clone(), json!({ "type": "string", "enum": c.values }))).collect();
    let enum_of = |values: Vec<&str>| json!({ "type": "string", "enum": values });
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["sentiment", "resolution", "satisfaction", "summary", "categories"],
        "properties": {
            "sentiment": enum_of(Sentiment::ALL.iter().map(|s| s.as_str()).collect()),
            "resolution": enum_of(Resolution::ALL.iter().map(|r| r.as_str()).collect()),
            "satisfaction": { "type": "integer", "minimum": 1, "maximum": 5 },
            "summary": { "type": "string" },
            "categories": {
                "type": "object",
                "additionalProperties": false,
                "required": categories.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                "properties": category_properties,
            },
        },
    })
}

/// Reads and checks the model's answer.
pub fn parse_analysis(answer: &str, categories: &[Category]) -> Result<Analysis, String> {
    let trimmed = answer.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    let analysis: Analysis = serde_json::from_str(unfenced).map_err(|e| format!("not the expected JSON ({e})"))?;
    if !(1..=5).contains(&analysis.satisfaction) {
        return Err(format!("satisfaction {} is not between 1 and 5", analysis.satisfaction));
    }
    if analysis.summary.trim().is_empty() {
        return Err("the summary is empty".into());
    }
    for category in categories {
        match analysis.categories.get(&category.name) {
            Some(value) if category.values.contains(value) => {}
            Some(value) => return Err(format!("category {} has `{value}`, which is not one of its values", category.name)),
            None => return Err(format!("category {} is missing", category.name)),
        }
    }
    if let Some(extra) = analysis.categories.keys().find(|k| !categories.iter().any(|c| &c.name == *k)) {
        return Err(format!("category {extra} was not asked for"));
    }
    Ok(analysis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Vec<Category> {
        vec![Category { name: "topic".into(), values: vec!["billing".into(), "other".into()], description: String::new() }]
    }

    #[test]
    fn valid_answers_are_read_even_in_code_fences() {
        let answer = "```json\n{\"sentiment\":\"negative\",\"resolution\":\"escalated\",\"satisfaction\":2,\"summary\":\"Bill dispute.\",\"categories\":{\"topic\":\"billing\"}}\n```";
        let analysis = parse_analysis(answer, &topic()).unwrap();
        assert_eq!((analysis.sentiment, analysis.resolution, analysis.satisfaction), (Sentiment::Negative, Resolution::Escalated, 2));
        assert_eq!(analysis.categories["topic"], "billing");
    }

    #[test]
    fn invalid_answers_say_what_is_wrong() {
        let base = |satisfaction: i64, topic: &str| {
            format!(
                r#"{{"sentiment":"neutral","resolution":"resolved","satisfaction":{satisfaction},"summary":"x","categories":{{"topic":"{topic}"}}}}"#
            )
        };
        assert!(parse_analysis("I think it went well", &topic()).unwrap_err().contains("JSON"));
        assert!(parse_analysis(&base(9, "billing"), &topic()).unwrap_err().contains("satisfaction"));
        assert!(parse_analysis(&base(3, "sports"), &topic()).unwrap_err().contains("sports"));
        assert!(parse_analysis(&base(3, "billing").replace("neutral", "meh"), &topic()).is_err());
        assert!(parse_analysis(&base(3, "billing"), &[]).unwrap_err().contains("not asked"));
    }
}
