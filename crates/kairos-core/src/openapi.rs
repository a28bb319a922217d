//! OpenAPI schemas for the types that serialize as patterned strings (durations, rates),
//! behind the `openapi` feature.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A string matching `pattern`, described and with examples.
pub(crate) fn patterned_string(
    pattern: &str,
    description: &str,
    examples: &[&str],
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples(examples.iter().copied())
        .into()
}
