//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` annotations
//! and the API types' schemas (collected by `utoipa_axum`'s router, so a route cannot be
//! served without its description), then finished here with what every operation shares:
//! the bearer scheme and the problem answers each status can carry, from the one table of
//! problem codes. Served at `GET /openapi.json`, browsable at `GET /docs` (Swagger UI,
//! from assets inside the binary).

use kairos_core::ProblemCode;
use kairos_core::api::Problem;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder, SecurityRequirement, Tag};
use utoipa::{PartialSchema, ToSchema};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub const UI_PATH: &str = "/docs";

/// Problems any operation may answer, whatever it does.
const ANY: &[ProblemCode] = &[
    ProblemCode::BadRequest,
    ProblemCode::UriTooLong,
    ProblemCode::HeadersTooLarge,
    ProblemCode::Overloaded,
    ProblemCode::Timeout,
    ProblemCode::StorageFailure,
];
/// Problems of operations that need a token (all but the health probes).
const GUARDED: &[ProblemCode] = &[
    ProblemCode::Unauthorized,
    ProblemCode::Forbidden,
    ProblemCode::RateLimited,
];
/// Problems of operations that read a body or a query.
const INPUT: &[ProblemCode] = &[
    ProblemCode::MalformedJson,
    ProblemCode::RequestTimeout,
    ProblemCode::TooLarge,
    ProblemCode::Validation,
];
/// Problems of operations that write to the store.
const WRITE: &[ProblemCode] = &[ProblemCode::Unavailable, ProblemCode::StorageFull];

/// The finished document for the operations `api` collected.
pub fn finish(mut api: OpenApi) -> OpenApi {
    api.info.title = "Kairos".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "Durable jobs, retries, a dead-letter queue and cron schedules over HTTP/JSON. \
         Every error is application/problem+json; its `type` is urn:kairos:problem:<code>."
            .into(),
    );
    let components = api.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "bearer".into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT with a `role` claim (admin, producer, worker, reader) and an \
                     optional `queues` claim; required whenever the server has a key.",
                ))
                .build(),
        )
        .into(),
    );
    components
        .schemas
        .insert(Problem::name().into(), Problem::schema());
    let mut tags = Vec::new();
    for (path, item) in api.paths.paths.iter_mut() {
        let open = path.starts_with("/health");
        for op in operations(item) {
            let input = op.request_body.is_some()
                || op.parameters.as_ref().is_some_and(|ps| !ps.is_empty());
            let mut codes: Vec<ProblemCode> = ANY.to_vec();
            if !open {
                codes.extend_from_slice(GUARDED);
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
            if input {
                codes.extend_from_slice(INPUT);
            }
            if op.request_body.is_some() || path.starts_with("/v1/") {
                codes.extend_from_slice(WRITE);
            }
            for code in known_codes(op) {
                codes.push(code);
            }
            add_problems(op, &codes);
            for t in op.tags.iter().flatten() {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
    }
    api.tags = Some(tags.into_iter().map(Tag::new).collect());
    api
}

/// Problem codes an operation's own annotations already name by status (404, 409, 503).
fn known_codes(op: &Operation) -> Vec<ProblemCode> {
    let statuses: Vec<u16> = op
        .responses
        .responses
        .keys()
        .filter_map(|s| s.parse().ok())
        .collect();
    ProblemCode::ALL
        .into_iter()
        .filter(|c| c.status() >= 400 && statuses.contains(&c.status()))
        .collect()
}

/// Adds, for each status among `codes`, a problem+json answer naming the codes it carries.
fn add_problems(op: &mut Operation, codes: &[ProblemCode]) {
    let mut statuses: Vec<u16> = codes.iter().map(|c| c.status()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let mut carried: Vec<&str> = codes
            .iter()
            .filter(|c| c.status() == status)
            .map(|c| c.as_str())
            .collect();
        carried.sort_unstable();
        carried.dedup();
        let list = carried
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let described = match op.responses.responses.get(&status.to_string()) {
            Some(utoipa::openapi::RefOr::T(r)) => {
                format!("{} Problem codes: {list}.", r.description)
            }
            _ => format!("A problem: {list}."),
        };
        let response = ResponseBuilder::new()
            .description(described)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(Problem::name())))
                    .build(),
            )
            .build();
        op.responses
            .responses
            .insert(status.to_string(), response.into());
    }
}

/// Every operation of a path.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Every (method, path) the document describes, methods in upper case.
pub fn routes(api: &OpenApi) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in &api.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PATCH", item.patch.is_some()),
        ];
        for (m, present) in methods {
            if present {
                out.push((m.to_string(), path.clone()));
            }
        }
    }
    out
}
