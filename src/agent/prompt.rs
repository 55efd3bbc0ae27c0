//! The system prompt: the agent's instructions, its phone instructions, how to end a call, the
//! language policy and the facts of this call, in that order.

use chrono::{DateTime, Utc};

use crate::domain::agent::{AgentSpec, AgentTool};

/// Facts about the call the model may use.
pub struct CallContext<'a> {
    pub caller: &'a str,
    /// When the call began: fixed for the call, so the prompt's start stays the same from turn
    /// to turn (what a model server's prompt cache and the embedded model reuse).
    pub now: DateTime<Utc>,
    /// Locales the caller may be served in besides English (expand languages).
    pub other_languages: &'a [String],
}

/// Rules every phone agent follows, whatever its instructions say.
const PHONE_RULES: &str = "You are speaking on a phone call. Your words are turned into speech: \
answer in short, natural spoken sentences, one or two at a time. Never use lists, markdown, emoji \
or URLs. Ask one question at a time. If you did not understand the caller, ask them to repeat.";

pub fn system_prompt(spec: &AgentSpec, call: &CallContext<'_>) -> String {
    let mut sections = vec![format!("You are {}, a voice agent.", spec.name)];
    if !spec.instructions.trim().is_empty() {
        sections.push(format!("# Instructions\n{}", spec.instructions.trim()));
    }
    let mut phone = PHONE_RULES.to_owned();
    if !spec.phone_instructions.trim().is_empty() {
        phone = format!("{phone}\n{}", spec.phone_instructions.trim());
    }
    sections.push(format!("# On the phone\n{phone}"));
    let mut ending = String::from(
        "When the caller's needs are met, or they say goodbye, call the endConversation tool with a short \
summary of the call and the agreed next steps; its closing_message is the last thing you say, so \
make it a brief, friendly goodbye.",
    );
    if !spec.end_call_instructions.trim().is_empty() {
        ending = format!("{ending}\n{}", spec.end_call_instructions.trim());
    }
    if spec.tools.contains(&AgentTool::TransferCall) {
        ending.push_str("\nIf the caller needs a person, or asks for one, call the transferCall tool.");
    }
    sections.push(format!("# Ending the call\n{ending}"));
    sections.push(format!("# Language\n{}", language_policy(spec, call.other_languages)));
    sections.push(format!(
        "# This call\nCaller's number: {}\nThe call began (UTC): {}",
        call.caller,
        call.now.format("%A %-d %B %Y, %H:%M")
    ));
    sections.join("\n\n")
}

fn language_policy(spec: &AgentSpec, other_languages: &[String]) -> String {
    if other_languages.is_empty() {
        return "Speak English.".to_owned();
    }
    let mut policy =
        format!("Start in English. If the caller speaks one of these languages, answer in it: {}.", other_languages.join(", "));
    if spec.tools.contains(&AgentTool::SwitchLanguage) {
        policy.push_str(
            " Before you change language, call the switchLanguage tool with the locale, so the caller is heard and answered in it.",
        );
    }
    policy
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn sections_come_in_order_with_call_facts() {
        let mut spec = AgentSpec::named("Ava");
        spec.instructions = "You help Acme customers with billing.".into();
        spec.phone_instructions = "Confirm the account number.".into();
        spec.end_call_instructions = "Offer a follow-up e-mail.".into();
        spec.tools.push(AgentTool::SwitchLanguage);
        let langs = vec!["fr-FR".to_owned()];
        let prompt = system_prompt(
            &spec,
            &CallContext { caller: "+14155550123", now: Utc.with_ymd_and_hms(2026, 11, 23, 9, 5, 0).unwrap(), other_languages: &langs },
        );
        let order = [
            "You are Ava",
            "# Instructions",
            "billing",
            "# On the phone",
            "Confirm the account",
            "# Ending the call",
            "endConversation",
            "follow-up",
            "# Language",
            "fr-FR",
            "switchLanguage",
            "# This call",
            "+14155550123",
            "Monday 23 November 2026, 09:05",
        ];
        let mut at = 0;
        for part in order {
            let found = prompt[at..].find(part).unwrap_or_else(|| panic!("`{part}` missing or out of order in:\n{prompt}"));
            at += found;
        }
    }

    #[test]
    fn english_only_without_expanded_languages() {
        let prompt = system_prompt(&AgentSpec::named("Ava"), &CallContext { caller: "x", now: Utc::now(), other_languages: &[] });
        assert!(prompt.contains("Speak English.") && !prompt.contains("transferCall"));
    }
}
