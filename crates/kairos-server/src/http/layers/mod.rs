//! Cross-cutting concerns as tower layers, one file each, applied around the routes in
//! [`super::app`].
//!
//! - [`deadline`]: the body timeout and the request timeout.
//! - [`observe`]: request ids, request metrics, and the (quiet) request log.

pub mod deadline;
pub mod observe;
