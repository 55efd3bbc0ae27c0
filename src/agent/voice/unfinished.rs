//! Words that leave a sentence hanging: a transcript that ends in "to", "and", "for the" was cut
//! off mid-sentence (a caller thinking, "I'd like to… um…"), whatever the pause sounded like. The
//! voice holds such words for the agent's patience before answering, so the caller can go on.

/// Words no English sentence ends with (lower case): conjunctions, prepositions, articles,
/// possessives and hesitations.
const ENGLISH: &[&str] = &[
    "and", "or", "but", "because", "so", "if", "than", "to", "for", "with", "of", "in", "on", "at", "from", "into", "about", "the", "a",
    "an", "my", "your", "our", "their", "his", "her", "um", "uh", "erm", "er", "is", "are", "was", "were",
];

/// Whether `transcript` ends mid-sentence, by its last word, in `language` (BCP 47; English
/// only so far: other languages are never held). A question mark ends it whatever the word.
pub(super) fn sounds_unfinished(transcript: &str, language: &str) -> bool {
    if !language.to_ascii_lowercase().starts_with("en") {
        return false;
    }
    let trimmed = transcript.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '.' | ',' | '…' | '-' | '—'));
    if trimmed.ends_with('?') || trimmed.ends_with('!') {
        return false;
    }
    let last = trimmed.rsplit(|c: char| !(c.is_alphanumeric() || c == '\'')).next().unwrap_or_default().to_lowercase();
    ENGLISH.contains(&last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_left_hanging_are_told_from_finished_ones() {
        for text in ["I'd like to", "I'd like to...", "Can I book a table for", "Cheese and", "My address is, um", "Uh.", "It's for the"] {
            assert!(sounds_unfinished(text, "en-US"), "{text}");
        }
        for text in ["I'd like to change my order.", "Who is it for?", "Yes", "Where is my order", "I don't want that", "", "Stop!"] {
            assert!(!sounds_unfinished(text, "en-US"), "{text}");
        }
        assert!(!sounds_unfinished("Je voudrais et", "fr-FR"), "English words only");
    }
}
