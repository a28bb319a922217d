//! The dashboard's sessions and CSRF tokens, and the layer that checks both before any
//! page or action runs.
//!
//! A session is the caller's own bearer token, kept in the `kairos_session` cookie
//! (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, `Max-Age` until the token's `exp`,
//! `Secure` when the request came over TLS): each request verifies it exactly as the API
//! verifies an `Authorization` header ([`Verifier::verify`], [`admit`]), so a session can
//! never do more than its token, and ends when the token expires. Nothing is kept on the
//! server, so a restart or another node of the cluster reads the same session.
//!
//! Every `POST` carries a CSRF token (form field `csrf_token` or header `X-CSRF-Token`):
//! HMAC-SHA256 of the session cookie (empty without one) under a key derived from the
//! HS256 secret (the same on every node), or drawn at start when tokens are verified
//! with a public key (then a page must come from the node it posts to). Another
//! session's token, or none, is a 403 problem. Pages get the token of their session to
//! put in their forms.
//!
//! Without a configured key (loopback only), every page and action is open, as the API
//! is; the CSRF check still applies, so another site open in the same browser cannot
//! post to a dashboard on localhost.

use crate::http::access::{self, Access, Allowed};
use crate::http::layers::auth::{AuthConfig, MAX_AUTHORIZATION, TokenKey, Verifier, admit};
use crate::http::problem::ApiError;
use crate::metrics::Metrics;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// The session cookie's name.
pub const COOKIE: &str = "kairos_session";
/// Largest body a dashboard form may send, in bytes (bulk actions name at most
/// [`super::jobs::MAX_SELECTED`] ids).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// How the dashboard checks its callers.
pub struct Sessions {
    verifier: Option<Arc<Verifier>>,
    csrf_key: [u8; 32],
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Sessions")
            .field("auth", &self.verifier.is_some())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions checked by `verifier` (`None`: everything open), CSRF tokens keyed from
    /// `auth`'s secret when it has one.
    pub fn new(
        auth: Option<&AuthConfig>,
        verifier: Option<Arc<Verifier>>,
        metrics: Arc<Metrics>,
    ) -> Sessions {
        let csrf_key = match auth.map(|a| &a.key) {
            Some(TokenKey::Secret(secret)) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
                mac.update(b"kairos dashboard csrf key v1");
                mac.finalize().into_bytes().into()
            }
            _ => {
                // Two v4 UUIDs: 244 bits from the operating system's generator.
                let mut key = [0u8; 32];
                key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                key
            }
        };
        Sessions {
            verifier,
            csrf_key,
            metrics,
        }
    }

    /// Whether callers need a session (a key is configured).
    pub fn required(&self) -> bool {
        self.verifier.is_some()
    }

    fn mac(&self, session: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.csrf_key).expect("any key length");
        mac.update(b"csrf\0");
        mac.update(session.as_bytes());
        mac
    }

    /// The CSRF token of `session` (the cookie's value, empty without one), in hex.
    pub fn csrf(&self, session: &str) -> String {
        hex(&self.mac(session).finalize().into_bytes())
    }

    fn csrf_matches(&self, session: &str, token: &str) -> bool {
        let Some(bytes) = unhex(token) else {
            return false;
        };
        // Constant-time comparison.
        self.mac(session).verify_slice(&bytes).is_ok()
    }

    /// What the token `session` allows, or why it is refused (401 or 403).
    pub fn admit(&self, session: &str) -> Result<(Access, u64), ApiError> {
        let Some(verifier) = &self.verifier else {
            return Ok((Access::everything(), u64::MAX));
        };
        if session.len() > MAX_AUTHORIZATION {
            self.metrics.auth_denied("oversized");
            return Err(ApiError::Unauthorized(format!(
                "the token is over {MAX_AUTHORIZATION} bytes"
            )));
        }
        let claims = verifier.verify(session).map_err(|reason| {
            self.metrics.auth_denied(reason);
            ApiError::Unauthorized(format!("the token is refused ({reason})"))
        })?;
        let exp = claims.exp;
        let access = admit(claims).inspect_err(|_| self.metrics.auth_denied("role"))?;
        Ok((access, exp))
    }
}

/// Who is looking at a page: what their session allows, and the CSRF token their forms
/// carry (a request extension, set by [`check`]).
#[derive(Debug, Clone)]
pub struct Viewer {
    /// What the session's token allows (everything without auth).
    pub access: Access,
    /// The CSRF token for this session's forms.
    pub csrf: String,
    /// A session is in use (auth is on): the page offers **Log out**.
    pub signed_in: bool,
}

impl Viewer {
    /// Whether the viewer's role may call the API route `method path` (the one table of
    /// [`access::RULES`]): the dashboard offers an action only where the API would
    /// accept it, and refuses a forged one the same way.
    pub fn may(&self, method: &str, path: &str) -> bool {
        match (access::rule(method, path), self.access.role) {
            (None, _) => false,
            (Some(_), None) => true, // no auth: everything
            (Some(Allowed::Roles(roles)), Some(role)) => roles.contains(&role),
            (Some(_), Some(_)) => true,
        }
    }

    /// [`Viewer::may`], or the 403 problem the API would answer.
    pub fn must(&self, method: &str, path: &str) -> Result<(), ApiError> {
        if self.may(method, path) {
            return Ok(());
        }
        let role = self.access.role.map_or("none", |r| r.as_str());
        Err(ApiError::Forbidden(format!(
            "role {role} may not {method} {path}"
        )))
    }
}

/// A form's fields, read by [`check`] (bounded by [`MAX_FORM_BYTES`]).
#[derive(Debug, Clone, Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The session cookie's value in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the request came over TLS (to a proxy in front of Kairos, which terminates
/// it and says so in `X-Forwarded-Proto` or `Forwarded`).
pub fn over_tls(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase())
    };
    text(header::HeaderName::from_static("x-forwarded-proto")).is_some_and(|p| p == "https")
        || text(header::FORWARDED).is_some_and(|f| f.contains("proto=https"))
}

/// Paths served to anyone: the login page, **Log out** (so a session whose token just
/// expired can still clear its cookie; its CSRF token is still checked), and what every
/// page loads.
fn public(path: &str) -> bool {
    matches!(path, "/ui/login" | "/ui/logout" | "/favicon.ico") || path.starts_with("/ui/assets/")
}

/// Whether an answer for this request should be a page (a browser's own form post or
/// navigation) rather than a problem document (a script's fetch, a tool).
pub fn wants_page(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("text/html") && !accept.contains("application/problem+json")
}

/// The layer: sets the [`Viewer`] of every request (sending a browser without a valid
/// session to the login page, answering other requests 401), and checks every `POST`'s
/// CSRF token, reading its form into [`Form`].
pub async fn check(State(sessions): State<Arc<Sessions>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let session = cookie(&parts.headers).unwrap_or("").to_string();
    let viewer = if sessions.required() && !public(&path) {
        match sessions.admit(&session) {
            Ok((access, _)) if !session.is_empty() => Viewer {
                access,
                csrf: sessions.csrf(&session),
                signed_in: true,
            },
            refused => {
                let error = match refused {
                    Err(e) => e,
                    Ok(_) => ApiError::Unauthorized("sign in first".into()),
                };
                if parts.method == Method::GET || parts.method == Method::HEAD {
                    let next = parts
                        .uri
                        .path_and_query()
                        .map_or("/ui", |p| p.as_str())
                        .to_string();
                    let to = format!("/ui/login?next={}", super::page::encode(&next));
                    return Redirect::to(&to).into_response();
                }
                return super::page::failure(&parts.headers, error);
            }
        }
    } else {
        Viewer {
            access: Access::everything(),
            csrf: sessions.csrf(&session),
            signed_in: false,
        }
    };
    let mut form = Form::default();
    let body = if parts.method == Method::POST {
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => return super::page::failure(&parts.headers, ApiError::BodyTooLarge),
        };
        form = Form(
            form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        );
        let token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| form.get("csrf_token"));
        let fine = token.is_some_and(|t| sessions.csrf_matches(&session, t));
        if !fine {
            sessions.metrics.auth_denied("csrf");
            tracing::info!(
                path,
                "dashboard post refused: CSRF token missing or not this session's"
            );
            let why = if token.is_none() {
                "the request carries no CSRF token (form field csrf_token or header X-CSRF-Token)"
            } else {
                "the CSRF token is not this session's: reload the page and try again"
            };
            return super::page::failure(&parts.headers, ApiError::Forbidden(why.into()));
        }
        Body::from(Bytes::new())
    } else {
        body
    };
    // What the rate limit keys on, as for an API call: the session's subject, else (the
    // login page included, so guessing tokens is limited too) the peer's address.
    parts.extensions.insert(viewer.access.clone());
    parts.extensions.insert(viewer);
    parts.extensions.insert(form);
    next.run(Request::from_parts(parts, body)).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        let auth = AuthConfig {
            key: TokenKey::Secret(vec![7; 32]),
            issuer: None,
            audience: None,
            metrics_public: false,
        };
        let verifier = Arc::new(Verifier::new(&auth).unwrap());
        Sessions::new(Some(&auth), Some(verifier), Arc::new(Metrics::new()))
    }

    #[test]
    fn a_csrf_token_is_its_sessions_own() {
        let s = sessions();
        let a = s.csrf("session-a");
        assert!(s.csrf_matches("session-a", &a));
        assert!(!s.csrf_matches("session-b", &a), "another session's token");
        assert!(!s.csrf_matches("session-a", &a[..62]), "a cut token");
        assert!(!s.csrf_matches("session-a", ""), "no token");
        assert_eq!(
            a,
            sessions().csrf("session-a"),
            "every node derives the same key"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; kairos_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("tok"));
        h.insert(header::COOKIE, "kairos_session=".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }
}
