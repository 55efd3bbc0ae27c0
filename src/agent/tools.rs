//! The built-in phone tools the model may call: `endConversation` (always), `transferCall` (when
//! the agent has a transfer number) and `switchLanguage` (when languages are expanded).

use serde::Deserialize;
use serde_json::json;

use crate::domain::agent::{AgentSpec, AgentTool};
use crate::providers::llm::{ToolCall, ToolSpec};

/// What a tool call asks the session to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolAction {
    End { summary: String, next_steps: String, closing: String },
    Transfer { reason: String, closing: String },
    SwitchLanguage { locale: String },
}

/// The tools offered to the model for this agent and call.
pub fn offered(spec: &AgentSpec, other_languages: &[String]) -> Vec<ToolSpec> {
    let mut tools = vec![ToolSpec {
        name: "endConversation",
        description: "End the call: say a short goodbye, then hang up. Use when the caller's needs are met or they say goodbye.".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "summary": { "type": "string", "description": "What the call was about and what was resolved, in one or two sentences." },
                "next_steps": { "type": "string", "description": "What happens next, for the caller or the team." },
                "closing_message": { "type": "string", "description": "The goodbye to say to the caller." },
            },
            "required": ["summary", "closing_message"],
        }),
    }];
    if spec.tools.contains(&AgentTool::TransferCall) && spec.transfer_number.is_some() {
        tools.push(ToolSpec {
            name: "transferCall",
            description: "Transfer the caller to a person.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "reason": { "type": "string" },
                    "closing_message": { "type": "string", "description": "What to say before transferring." },
                },
                "required": ["closing_message"],
            }),
        });
    }
    if spec.tools.contains(&AgentTool::SwitchLanguage) && !other_languages.is_empty() {
        let mut locales = vec!["en-US".to_owned()];
        locales.extend(other_languages.iter().cloned());
        tools.push(ToolSpec {
            name: "switchLanguage",
            description: "Switch the language you hear and speak in.".into(),
            parameters: json!({
                "type": "object",
                "properties": { "language": { "type": "string", "enum": locales } },
                "required": ["language"],
            }),
        });
    }
    tools
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Arguments {
    summary: String,
    next_steps: String,
    closing_message: String,
    reason: String,
    language: String,
}

/// Reads a tool call; an unknown tool or unreadable arguments is an error for the model.
pub fn parse(call: &ToolCall) -> Result<ToolAction, String> {
    let args: Arguments = if call.arguments.trim().is_empty() {
        Arguments::default()
    } else {
        serde_json::from_str(&call.arguments).map_err(|e| format!("the arguments are not valid JSON: {e}"))?
    };
    match call.name.as_str() {
        "endConversation" => Ok(ToolAction::End { summary: args.summary, next_steps: args.next_steps, closing: args.closing_message }),
        "transferCall" => Ok(ToolAction::Transfer { reason: args.reason, closing: args.closing_message }),
        "switchLanguage" if !args.language.is_empty() => Ok(ToolAction::SwitchLanguage { locale: args.language }),
        "switchLanguage" => Err("give the language to switch to".into()),
        other => Err(format!("there is no tool `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::phone_number::E164;

    #[test]
    fn tools_follow_the_agent_and_the_call() {
        let mut spec = AgentSpec::named("Ava");
        assert_eq!(offered(&spec, &[]).iter().map(|t| t.name).collect::<Vec<_>>(), ["endConversation"]);
        spec.tools = vec![AgentTool::EndConversation, AgentTool::TransferCall, AgentTool::SwitchLanguage];
        spec.transfer_number = Some(E164::parse("t", "+14155550199").unwrap());
        let langs = vec!["fr-FR".to_owned()];
        let tools = offered(&spec, &langs);
        assert_eq!(tools.iter().map(|t| t.name).collect::<Vec<_>>(), ["endConversation", "transferCall", "switchLanguage"]);
        assert_eq!(tools[2].parameters["properties"]["language"]["enum"], json!(["en-US", "fr-FR"]));
    }

    #[test]
    fn tool_calls_are_read_leniently() {
        let call = |name: &str, args: &str| ToolCall { id: "c".into(), name: name.into(), arguments: args.into() };
        assert_eq!(
            parse(&call("endConversation", r#"{"summary":"Paid","closing_message":"Bye!","extra":1}"#)).unwrap(),
            ToolAction::End { summary: "Paid".into(), next_steps: String::new(), closing: "Bye!".into() }
        );
        assert_eq!(
            parse(&call("endConversation", "")).unwrap(),
            ToolAction::End { summary: String::new(), next_steps: String::new(), closing: String::new() }
        );
        assert!(parse(&call("endConversation", "{oops")).is_err());
        assert!(parse(&call("launchRocket", "{}")).is_err());
        assert!(parse(&call("switchLanguage", "{}")).is_err());
    }
}
