//! Cross-cutting concerns as tower layers, one file each, applied around the routes in
//! [`super::app`].
//!
//! - [`auth`]: bearer tokens checked against the route table.
//! - [`deadline`]: the body timeout and the request timeout.
//! - [`observe`]: request ids, request metrics, and the (quiet) request log.

pub mod auth;
pub mod deadline;
pub mod observe;
