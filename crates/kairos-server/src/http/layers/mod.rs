//! Cross-cutting concerns as tower layers, one file each, applied around the routes in
//! [`super::app`].
//!
//! - [`auth`]: bearer tokens checked against the route table.
//! - [`deadline`]: the body timeout and the request timeout.
//! - [`limit`]: the per-client rate limit.
//! - [`observe`]: request ids, request metrics, and the (quiet) request log.

pub mod auth;
pub mod deadline;
pub mod limit;
pub mod observe;
