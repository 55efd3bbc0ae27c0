//! The languages a phone service can offer: English always, the rest behind "expand languages".
//! The list ships in `assets/languages.json` (a copy of `shared/languages.json`) and is compiled in.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::validation::Invalid;

/// One language with the BCP-47 locales callers may be served in.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Language {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub always_on: bool,
    pub default_locale: String,
    pub locales: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Deserialize)]
struct LanguageFile {
    languages: Vec<Language>,
}

/// Every supported language, in the file's order.
pub fn all() -> &'static [Language] {
    static LANGUAGES: OnceLock<Vec<Language>> = OnceLock::new();
    LANGUAGES.get_or_init(|| {
        serde_json::from_str::<LanguageFile>(include_str!("../../assets/languages.json"))
            .expect("assets/languages.json is valid (checked by a unit test)")
            .languages
    })
}

/// Finds the language a code names: a language id (`fr`) or one of its locales (`fr-CA`).
pub fn find(code: &str) -> Option<&'static Language> {
    all().iter().find(|l| l.id == code || l.locales.iter().any(|loc| loc == code))
}

/// Validates a service's language list: known codes, no duplicates.
pub fn validate_codes(codes: &[String]) -> Result<Vec<String>, Invalid> {
    let mut out: Vec<String> = Vec::with_capacity(codes.len());
    for code in codes {
        let code = code.trim();
        if find(code).is_none() {
            return Err(Invalid::new(
                "languages",
                format!("`{code}` is not a supported language; GET /api/v1/languages lists the ids and locales"),
            ));
        }
        if !out.iter().any(|c| c == code) {
            out.push(code.to_owned());
        }
    }
    Ok(out)
}

/// The locales to offer for the given codes besides US English: a locale stays itself, a
/// language id becomes its default locale.
pub fn other_locales(codes: &[String]) -> Vec<String> {
    let mut locales: Vec<String> = Vec::new();
    for code in codes {
        let Some(language) = find(code) else { continue };
        let locale = if language.locales.contains(code) { code.clone() } else { language.default_locale.clone() };
        if locale != "en-US" && !locales.contains(&locale) {
            locales.push(locale);
        }
    }
    locales
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_languages_with_english_always_on() {
        assert_eq!(all().len(), 30);
        let always: Vec<_> = all().iter().filter(|l| l.always_on).map(|l| l.id.as_str()).collect();
        assert_eq!(always, ["en"]);
        assert!(all().iter().all(|l| l.locales.contains(&l.default_locale)));
    }

    #[test]
    fn codes_are_ids_or_locales() {
        assert_eq!(find("fr-CA").unwrap().id, "fr");
        assert_eq!(validate_codes(&["fr".into(), "fr".into(), "de-DE".into()]).unwrap(), ["fr", "de-DE"]);
        assert!(validate_codes(&["klingon".into()]).unwrap_err().message.contains("klingon"));
    }

    #[test]
    fn ids_become_default_locales() {
        let codes = ["fr", "es-MX", "en", "fr-FR", "tlh"].map(String::from);
        assert_eq!(other_locales(&codes), ["fr-FR", "es-MX"]);
    }

    #[test]
    fn shipped_copy_matches_shared_list_when_present() {
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/languages.json");
        if let Ok(text) = std::fs::read_to_string(shared) {
            assert_eq!(text, include_str!("../../assets/languages.json"), "assets/languages.json drifted from shared/");
        }
    }
}
