//! espeak-ng, the speech synthesiser of every language Switchboard speaks, run as a program
//! (`espeak-ng`, Debian's package) rather than linked: it is GPL-3.0, and a separate process
//! keeps Switchboard's binary under its own licence (ARCHITECTURE records the decision). It
//! speaks a sentence as 22.05 kHz audio, and spells a sentence in IPA phonemes for Piper's
//! neural voice, which reads phonemes rather than text.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::audio::{Audio, wav};

/// How long one sentence may take.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EspeakError {
    #[error("espeak-ng could not be run ({0}); install it (Debian: `apt-get install espeak-ng`)")]
    Missing(String),
    #[error("espeak-ng failed: {0}")]
    Failed(String),
}

/// The espeak-ng voice for a BCP 47 locale (`fr-CA`) or language (`fr`) of the languages
/// Switchboard speaks; English for anything else.
pub fn voice_for(locale: &str) -> &'static str {
    let lower = locale.to_ascii_lowercase();
    let language = lower.split('-').next().unwrap_or_default();
    let by_locale = VOICES.iter().find(|(name, _)| *name == lower);
    by_locale.or_else(|| VOICES.iter().find(|(name, _)| *name == language)).map_or("en-us", |(_, voice)| voice)
}

/// Locales and languages, and espeak-ng's voice for each (a locale's own voice first).
const VOICES: &[(&str, &str)] = &[
    ("en-gb", "en-gb"),
    ("en", "en-us"),
    ("bg", "bg"),
    ("ca", "ca"),
    // Mandarin: espeak's `cmn` voice reads characters poorly; its pinyin voice is clearer.
    ("zh", "cmn-latn-pinyin"),
    ("zh-hk", "yue"),
    ("yue", "yue"),
    ("cs", "cs"),
    ("da", "da"),
    ("et", "et"),
    ("fi", "fi"),
    // Flemish: espeak-ng has Dutch.
    ("nl", "nl"),
    ("fr", "fr-fr"),
    ("fr-be", "fr-be"),
    ("fr-ch", "fr-ch"),
    ("de", "de"),
    ("el", "el"),
    ("hu", "hu"),
    ("id", "id"),
    ("ko", "ko"),
    ("lv", "lv"),
    ("lt", "lt"),
    ("ms", "ms"),
    ("no", "nb"),
    ("nb", "nb"),
    ("pl", "pl"),
    ("pt", "pt-br"),
    ("pt-pt", "pt"),
    ("ro", "ro"),
    ("sk", "sk"),
    ("es", "es"),
    ("es-419", "es-419"),
    ("es-mx", "es-419"),
    ("es-us", "es-419"),
    ("sv", "sv"),
    ("th", "th"),
    ("tr", "tr"),
    ("uk", "uk"),
    ("vi", "vi"),
];

/// `sentence` spoken by `voice`.
pub async fn speak(sentence: &str, voice: &str) -> Result<Audio, EspeakError> {
    let output = run(&["--stdin", "--stdout", "-v", voice], sentence).await?;
    wav::decode(&output).map_err(|e| EspeakError::Failed(format!("unreadable audio: {e}")))
}

/// `sentence` in the IPA phonemes of `voice`, punctuated as Piper's voices were trained: a
/// clause's phonemes followed by the mark that ended it.
pub async fn phonemes(sentence: &str, voice: &str) -> Result<String, EspeakError> {
    let output = run(&["--stdin", "-q", "--ipa", "-v", voice], sentence).await?;
    let text = String::from_utf8_lossy(&output);
    let clauses: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    Ok(punctuate(&clauses, sentence))
}

/// espeak-ng prints one line per clause and drops the punctuation between them: each line gets
/// back the mark that ended its clause when the sentence's marks and the lines agree in number;
/// otherwise the sentence's last mark ends the whole.
fn punctuate(clauses: &[&str], sentence: &str) -> String {
    let chars: Vec<char> = sentence.trim().chars().collect();
    let marks: Vec<char> = chars
        .iter()
        .enumerate()
        .filter(|(i, c)| ",.?!;:".contains(**c) && chars.get(i + 1).is_none_or(|next| next.is_whitespace()))
        .map(|(_, c)| *c)
        .collect();
    if marks.len() == clauses.len() {
        return clauses.iter().zip(&marks).map(|(clause, mark)| format!("{clause}{mark}")).collect::<Vec<_>>().join(" ");
    }
    let mut joined = clauses.join(" ");
    if let Some(last) = marks.last().filter(|_| chars.last().is_some_and(|c| ".?!".contains(*c))) {
        joined.push(*last);
    }
    joined
}

/// Runs espeak-ng with `args`, the text on its standard input (never on the command line, where
/// a leading dash would read as an option).
async fn run(args: &[&str], text: &str) -> Result<Vec<u8>, EspeakError> {
    let mut child = Command::new("espeak-ng")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| EspeakError::Missing(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(text.as_bytes()).await.map_err(|e| EspeakError::Failed(e.to_string()))?;
    drop(stdin);
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| EspeakError::Failed("it took too long".into()))?
        .map_err(|e| EspeakError::Failed(e.to_string()))?;
    if !output.status.success() {
        return Err(EspeakError::Failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    Ok(output.stdout)
}

/// Whether espeak-ng can be run here.
pub async fn available() -> bool {
    speak("ok", "en-us").await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_switchboard_speaks_has_a_voice_and_locales_pick_their_own() {
        for language in crate::domain::languages::all() {
            for locale in &language.locales {
                let voice = voice_for(locale);
                assert!(voice != "en-us" || language.id == "en", "{locale} falls back to English");
            }
        }
        assert_eq!(voice_for("en-US"), "en-us");
        assert_eq!(voice_for("en-GB"), "en-gb");
        assert_eq!(voice_for("pt-PT"), "pt");
        assert_eq!(voice_for("pt-BR"), "pt-br");
        assert_eq!(voice_for("nl-BE"), "nl");
        assert_eq!(voice_for("zh-HK"), "yue");
        assert_eq!(voice_for("es-MX"), "es-419");
    }

    #[test]
    fn clauses_get_back_the_marks_that_ended_them() {
        let sentence = "Hello, how are you? Your total is 1,250 dollars; thanks!";
        assert_eq!(punctuate(&["həlˈoʊ", "hˈaʊ ɑːɹ juː", "jʊɹ tˈoʊɾəl", "θˈæŋks"], sentence), "həlˈoʊ, hˈaʊ ɑːɹ juː? jʊɹ tˈoʊɾəl; θˈæŋks!");
        // Lines and marks disagree: the sentence's own end is kept.
        assert_eq!(punctuate(&["a"], "Dr. Smith is in?"), "a?");
        assert_eq!(punctuate(&["a"], "no mark at all"), "a");
    }
}
