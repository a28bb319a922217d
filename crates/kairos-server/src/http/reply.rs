//! JSON answers. Like axum's `Json`, but rendered into one growing `Vec` instead of a
//! `BytesMut` written piecemeal: a 1,000-job batch answer is ~450 KB, and axum's writer
//! spent more instructions copying it than the store spent inserting the jobs
//! (callgrind, docs/performance.md).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON answer with status 200 (pair it with a status for others).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(4096);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => {
                let mut resp = body.into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(e) => {
                tracing::error!(error = %e, "could not render an answer as JSON");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
