//! The stored text of a job's JSON-valued columns (`tags`, `errors`, `backoff`), the same
//! in every backend. The common values (an empty list, the default backoff) are written
//! and read without serde, since most jobs have them.

use kairos_core::Backoff;

/// A list as stored.
pub(crate) fn list_text<T: serde::Serialize>(items: &[T]) -> serde_json::Result<String> {
    if items.is_empty() {
        Ok("[]".to_string())
    } else {
        serde_json::to_string(items)
    }
}

/// A stored list back.
pub(crate) fn list<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<Vec<T>> {
    if text == "[]" {
        Ok(Vec::new())
    } else {
        serde_json::from_str(text)
    }
}

/// A backoff policy as stored.
pub(crate) fn backoff_text(b: &Backoff) -> serde_json::Result<String> {
    if *b == Backoff::default() {
        Ok(default_backoff_text().to_string())
    } else {
        serde_json::to_string(b)
    }
}

/// A stored backoff policy back.
pub(crate) fn backoff(text: &str) -> serde_json::Result<Backoff> {
    if text == default_backoff_text() {
        Ok(Backoff::default())
    } else {
        serde_json::from_str(text)
    }
}

fn default_backoff_text() -> &'static str {
    static DEFAULT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        serde_json::to_string(&Backoff::default()).expect("a backoff renders")
    });
    &DEFAULT
}
