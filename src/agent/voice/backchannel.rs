//! Backchannels: the short sounds a listener makes while someone else talks ("mhm", "yeah",
//! "okay", "right"), which tell the agent to go on, not to stop.

/// Words that, alone or a few together, only say "go on" (lower case, without punctuation), in
/// the languages callers use most.
const GO_ON: &[&str] = &[
    // English
    "mhm", "mm", "hmm", "mmhmm", "mm-hmm", "uh-huh", "uh", "huh", "yeah", "yes", "yep", "yup", "okay", "ok", "right", "sure", "alright",
    "all", "got", "it", "i", "see", "cool", "fine", "great", "good", // Spanish, French, German, Italian, Portuguese
    "sí", "si", "vale", "claro", "ajá", "oui", "ouais", "d'accord", "ja", "genau", "gut", "certo", "sim", "tá",
];

/// The most words a backchannel has ("all right, I see").
const MAX_WORDS: usize = 4;

/// Whether `transcript` is only a backchannel.
pub(super) fn is_backchannel(transcript: &str) -> bool {
    let lower = transcript.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-')).filter(|w| !w.is_empty()).collect();
    !words.is_empty() && words.len() <= MAX_WORDS && words.iter().all(|w| GO_ON.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_on_sounds_are_backchannels_and_anything_more_is_not() {
        for text in ["Mhm.", "Yeah, yeah.", "Okay", "Right!", "Uh-huh", "All right, I see.", "Got it.", "Oui, d'accord."] {
            assert!(is_backchannel(text), "{text}");
        }
        for text in ["", "Wait.", "No, Tuesday.", "Yeah but I need it on Tuesday", "Okay okay okay okay okay", "stop"] {
            assert!(!is_backchannel(text), "{text}");
        }
    }
}
