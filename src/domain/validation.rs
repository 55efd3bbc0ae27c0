//! Validation failures in domain terms: which field is wrong and what to do about it.

use std::fmt;

/// One rejected input field, with a message that tells the user how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// Checks a required free-text field: trimmed, non-empty, at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    bounded_text(field, trimmed, max)
}

/// Checks an optional free-text field: at most `max` characters (empty is allowed).
pub fn bounded_text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let len = value.chars().count();
    if len > max {
        return Err(Invalid::new(field, format!("is {len} characters long; the limit is {max}")));
    }
    Ok(value.to_owned())
}

/// Checks that a number lies in `min..=max`, naming the unit in the message.
pub fn in_range(field: &str, value: i64, min: i64, max: i64, unit: &str) -> Result<i64, Invalid> {
    if value < min || value > max {
        return Err(Invalid::new(field, format!("must be between {min} and {max} {unit}, got {value}")));
    }
    Ok(value)
}

/// Checks that a URL is absolute and uses http or https.
pub fn http_url(field: &str, value: &str) -> Result<url::Url, Invalid> {
    let url = url::Url::parse(value.trim()).map_err(|e| Invalid::new(field, format!("is not a valid absolute URL ({e})")))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(Invalid::new(field, "must name a host")),
        other => Err(Invalid::new(field, format!("must use http or https, not `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert!(required_text("name", "  ", 10).is_err());
        assert_eq!(required_text("name", " héllo ", 5).unwrap(), "héllo");
        assert!(required_text("name", "héllo!", 5).is_err());
    }

    #[test]
    fn urls_must_be_http() {
        assert!(http_url("u", "https://api.example.com/v1").is_ok());
        assert!(http_url("u", "ftp://example.com").unwrap_err().message.contains("ftp"));
        assert!(http_url("u", "not a url").is_err());
    }

    #[test]
    fn ranges_name_their_unit() {
        let err = in_range("t", 2, 5, 10, "seconds").unwrap_err();
        assert_eq!(err.message, "must be between 5 and 10 seconds, got 2");
    }
}
