//! Extractors that give malformed input our own problem answers: JSON bodies (400 for
//! bad syntax, 422 naming the field for a missing, unknown or mistyped one, 413 over the
//! body limit), query strings, and job ids in paths.

use super::layers::deadline::BodyDeadline;
use super::problem::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use kairos_core::Invalid;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A JSON body parsed into `T`, with a fingerprint of the raw bytes (for idempotency).
#[derive(Debug)]
pub struct ApiJson<T> {
    /// The parsed body.
    pub value: T,
    /// FNV-1a hash of the body bytes.
    pub fingerprint: u64,
}

/// FNV-1a, 64 bit: a stable hash (the standard library's may change between releases,
/// and fingerprints are stored).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let deadline = req.extensions().get::<BodyDeadline>().copied();
        let read = Bytes::from_request(req, state);
        let read = match deadline {
            Some(BodyDeadline(at)) => tokio::time::timeout_at(at, read)
                .await
                .map_err(|_| ApiError::BodyTimeout)?,
            None => read.await,
        };
        let bytes = read.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge
            } else {
                ApiError::MalformedJson(e.body_text())
            }
        })?;
        // Every body is an object: serde would otherwise fill a struct from an array by
        // position (`[true]` as `{"paused": true}`).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::Invalid(Invalid::field(
                "body",
                "must be a JSON object",
            )));
        }
        let value = parse_json(&bytes)?;
        Ok(ApiJson {
            value,
            fingerprint: fnv1a(&bytes),
        })
    }
}

/// Parses JSON, naming the offending field on a data error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Fast path: plain serde_json. Only a refused body is parsed again with path
    // tracking, which costs ~11% of a batch enqueue when done for every body.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = strip_position(&inner.to_string());
                ApiError::Invalid(Invalid::field(field_of(&path, &message, "body"), message))
            }
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The field a data error is about: the path, plus the missing, unknown or repeated
/// field's name, which serde reports in the message rather than the path; `whole` when
/// the error is about no field in particular (`body`, or `query` for a query string).
fn field_of(path: &str, message: &str, whole: &str) -> String {
    let base = if path == "." { "" } else { path };
    for prefix in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(end) = rest.find('`')
        {
            let name = &rest[..end];
            if base.is_empty() {
                return name.to_string();
            }
            if base.ends_with(name) {
                return base.to_string();
            }
            return format!("{base}.{name}");
        }
    }
    if base.is_empty() {
        whole.to_string()
    } else {
        base.to_string()
    }
}

/// A query string parsed into `T` (unknown parameters refused, naming them).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Invalid(Invalid::field("query", "unreadable query string")))?;
        let raw = raw.unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        let value = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            ApiError::Invalid(Invalid::field(field_of(&path, &message, "query"), message))
        })?;
        Ok(ApiQuery(value))
    }
}

/// A job or schedule id from the path; anything that is not a UUID is simply not there (404).
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        raw.parse().map(PathId).map_err(|_| ApiError::NotFound)
    }
}

/// A queue name from the path, percent-decoded. A name that does not decode to UTF-8 is
/// kept with replacement characters: no queue has such a name and none may be given one,
/// so reads answer 404 and writes 422 naming `name`, as for any other invalid name.
#[derive(Debug, Clone)]
pub struct PathName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Ok(Path(name)) = Path::<String>::from_request_parts(parts, state).await {
            return Ok(PathName(name));
        }
        // `/v1/queues/{name}` and `/v1/queues/{name}/…`: the name is the fourth segment.
        let raw = parts.uri.path().split('/').nth(3).unwrap_or_default();
        Ok(PathName(
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names() {
        assert_eq!(field_of(".", "missing field `kind`", "body"), "kind");
        assert_eq!(
            field_of("jobs[3]", "missing field `kind`", "body"),
            "jobs[3].kind"
        );
        assert_eq!(
            field_of(
                "jobs[3].colour",
                "unknown field `colour`, expected ...",
                "body"
            ),
            "jobs[3].colour"
        );
        assert_eq!(field_of("priority", "invalid type", "body"), "priority");
        assert_eq!(field_of(".", "invalid type", "body"), "body");
        assert_eq!(field_of(".", "duplicate field `limit`", "query"), "limit");
        assert_eq!(field_of(".", "invalid type", "query"), "query");
    }
}
