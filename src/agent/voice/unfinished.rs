//! Words that leave a sentence hanging: a transcript that ends in "to", "and", "for the" was cut
//! off mid-sentence (a caller thinking, "I'd like to… um…"), whatever the pause sounded like. The
//! voice holds such words for the agent's patience before answering, so the caller can go on.
//! English, Spanish, French, German, Italian and Portuguese so far.

/// Words no sentence ends with (lower case), per language: conjunctions, prepositions,
/// articles, possessives and hesitations, in the languages callers use most. Words that also
/// end whole sentences are left out ("log in", "I think so", "ruf mich an", "quiero una",
/// "prends-le"): a held turn only waits, but it waits.
const HANGING: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "and", "or", "but", "because", "if", "than", "to", "for", "with", "of", "from", "the", "a", "an", "my", "your", "our", "their",
            "um", "uh", "erm", "er",
        ],
    ),
    (
        "es",
        &[
            "y", "o", "pero", "porque", "si", "que", "de", "del", "a", "al", "en", "con", "para", "por", "el", "la", "los", "las", "un",
            "mi", "su", "eh",
        ],
    ),
    ("fr", &["et", "ou", "mais", "parce", "que", "de", "du", "des", "à", "au", "aux", "avec", "pour", "mon", "ma", "mes", "euh"]),
    ("de", &["und", "oder", "aber", "weil", "wenn", "dass", "für", "von", "vom", "im", "am", "zum", "zur", "äh", "ähm"]),
    (
        "it",
        &["e", "o", "ma", "perché", "se", "che", "di", "del", "a", "al", "con", "per", "da", "il", "lo", "la", "gli", "le", "un", "ehm"],
    ),
    (
        "pt",
        &[
            "e", "ou", "mas", "porque", "se", "que", "de", "do", "da", "a", "ao", "em", "no", "na", "com", "para", "por", "o", "os", "as",
            "hum",
        ],
    ),
];

/// Whether `transcript` ends mid-sentence, by its last word, in `language` (BCP 47; languages
/// without a list are never held). A question or exclamation mark ends it whatever the word.
pub(super) fn sounds_unfinished(transcript: &str, language: &str) -> bool {
    // A recogniser that punctuates ends a clause cut off by a pause with a comma or dots.
    let end = transcript.trim_end();
    if end.ends_with(',') || end.ends_with('…') || end.ends_with("...") {
        return true;
    }
    let primary = language.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
    let Some((_, words)) = HANGING.iter().find(|(code, _)| *code == primary) else { return false };
    let trimmed = transcript.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '.' | ',' | '…' | '-' | '—'));
    if trimmed.ends_with('?') || trimmed.ends_with('!') {
        return false;
    }
    let last = trimmed.rsplit(|c: char| !(c.is_alphanumeric() || c == '\'')).next().unwrap_or_default().to_lowercase();
    words.contains(&last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_left_hanging_are_told_from_finished_ones() {
        for text in ["I'd like to", "I'd like to...", "Can I book a table for", "Cheese and", "My address is, um", "Uh.", "It's for the"] {
            assert!(sounds_unfinished(text, "en-US"), "{text}");
        }
        // A clause the recogniser ended with a comma, in any language.
        for (text, language) in [("Tuesday,", "en-US"), ("Mardi, ", "fr-FR"), ("Wtorek…", "pl-PL")] {
            assert!(sounds_unfinished(text, language), "{text}");
        }
        for text in [
            "I'd like to change my order.",
            "Who is it for?",
            "Yes",
            "Where is my order",
            "I don't want that",
            "",
            "Stop!",
            "I can't log in.",
            "I think so",
        ] {
            assert!(!sounds_unfinished(text, "en-US"), "{text}");
        }
        assert!(sounds_unfinished("Je voudrais changer la date de", "fr-FR"));
        assert!(sounds_unfinished("Quiero reservar una mesa para", "es"));
        assert!(!sounds_unfinished("Quiero reservar una mesa para dos.", "es"));
        assert!(!sounds_unfinished("I'd like to", "fr-FR"), "the call's language's words only");
        assert!(!sounds_unfinished("Ich rufe morgen an.", "de-DE"), "a separable verb's particle ends a sentence");
        assert!(!sounds_unfinished("Ik wil en", "nl"), "languages without a list are never held");
    }
}
