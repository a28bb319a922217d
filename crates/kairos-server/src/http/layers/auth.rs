//! Authentication: JWT bearer tokens, checked against the one route table
//! ([`crate::http::access::RULES`]) before any handler runs.
//!
//! A token (`Authorization: Bearer …`, at most [`MAX_AUTHORIZATION`] bytes) is verified
//! with the configured key only: HS256 with a secret of at least [`MIN_SECRET`] bytes, or
//! RS256/EdDSA with a public key. `exp` is required, `nbf` checked when present, `iss`
//! and `aud` when configured, with [`LEEWAY_SECS`] of clock leeway. Refused (401, with
//! `WWW-Authenticate: Bearer error="invalid_token"`): no token, a token in the query
//! string, `alg: none` or any algorithm but the configured one (an HS256 token signed
//! with the public key included), a header naming a key to fetch or carrying one
//! (`jku`, `x5u`, `jwk`, `x5c`; `kid` is ignored, never used to pick a key), a bad
//! signature, an expired or not yet valid token, a wrong issuer or audience, an
//! oversized or malformed header. A valid token whose role the route does not allow is
//! 403. Every denial is counted (`kairos_auth_denied_total{reason}`) and logged once at
//! info.
//!
//! Without a configured key (allowed only on a loopback address), everything is
//! allowed; the routes' methods are still those of the table.

use crate::http::access::{self, Access, Allowed, Role};
use crate::http::problem::ApiError;
use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET: usize = 32;
/// Clock leeway for `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// Longest `Authorization` header read, in bytes.
pub const MAX_AUTHORIZATION: usize = 8 * 1024;

/// The key tokens are verified with.
#[derive(Clone)]
pub enum TokenKey {
    /// HS256 with this shared secret.
    Secret(Vec<u8>),
    /// RS256 or EdDSA (by the key's type) with this PEM public key.
    PublicKeyPem(Vec<u8>),
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            TokenKey::Secret(_) => f.write_str("TokenKey::Secret(…)"),
            TokenKey::PublicKeyPem(_) => f.write_str("TokenKey::PublicKeyPem(…)"),
        }
    }
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The verification key.
    pub key: TokenKey,
    /// The `iss` every token must carry, when set.
    pub issuer: Option<String>,
    /// The `aud` every token must carry, when set.
    pub audience: Option<String>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An HS256 secret under [`MIN_SECRET`] bytes.
    #[error("the JWT secret has {0} bytes; at least {MIN_SECRET} are needed")]
    ShortSecret(usize),
    /// Not a PEM RSA or Ed25519 public key.
    #[error("the JWT public key is neither an RSA nor an Ed25519 public key in PEM form")]
    BadPublicKey,
}

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token is for (rate limits and idempotency keys are per subject).
    pub sub: String,
    /// `admin`, `producer`, `worker` or `reader`.
    pub role: String,
    /// The queues (names or `*` patterns) the token is limited to; absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Verifies tokens with one key.
pub struct Verifier {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    metrics_public: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `config`, or why its key cannot be used.
    pub fn new(config: &AuthConfig) -> Result<Verifier, KeyError> {
        let (key, algorithm) = match &config.key {
            TokenKey::Secret(s) if s.len() < MIN_SECRET => {
                return Err(KeyError::ShortSecret(s.len()));
            }
            TokenKey::Secret(s) => (DecodingKey::from_secret(s), Algorithm::HS256),
            TokenKey::PublicKeyPem(pem) => match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => (k, Algorithm::RS256),
                Err(_) => (
                    DecodingKey::from_ed_pem(pem).map_err(|_| KeyError::BadPublicKey)?,
                    Algorithm::EdDSA,
                ),
            },
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Verifier {
            key,
            algorithm,
            validation,
            metrics_public: config.metrics_public,
        })
    }

    /// The claims of a bearer token, or the reason (a metrics label) it is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed")?;
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
        {
            return Err("key_reference");
        }
        if header.alg != self.algorithm {
            return Err("algorithm");
        }
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|t| t.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not_yet_valid",
                ErrorKind::InvalidSignature => "signature",
                ErrorKind::InvalidAudience => "audience",
                ErrorKind::InvalidIssuer => "issuer",
                ErrorKind::InvalidAlgorithm => "algorithm",
                _ => "malformed",
            })
    }
}

/// Mints an HS256 token with `secret` (for `kairos token create`).
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, KeyError> {
    if secret.len() < MIN_SECRET {
        return Err(KeyError::ShortSecret(secret.len()));
    }
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("claims serialise and HS256 signs with any secret"))
}

/// The layer's state.
#[derive(Debug, Clone)]
pub struct Guard {
    /// `None`: no key is configured, everything is allowed.
    pub verifier: Option<Arc<Verifier>>,
    /// Where denials are counted.
    pub metrics: Arc<Metrics>,
    /// Who may call each route.
    pub rules: access::Rules,
}

impl Guard {
    fn deny(&self, reason: &'static str, answer: ApiError) -> Response {
        self.metrics.auth_denied(reason);
        tracing::info!(reason, "request denied");
        answer.into_response()
    }
}

/// The middleware (inside routing, so the matched route is known).
pub async fn authorize(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    // A cheap clone (the template is shared), so the request stays free to change.
    let Some(matched) = req.extensions().get::<MatchedPath>().cloned() else {
        return next.run(req).await; // no route: answered 404 by the fallback
    };
    let path = matched.as_str();
    let Some(allowed) = guard.rules.rule(req.method().as_str(), path) else {
        let mut resp = ApiError::MethodNotAllowed.into_response();
        if let Ok(v) = HeaderValue::from_str(&guard.rules.methods(path).join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        return resp;
    };
    // Open routes carry no `Access`: the rate limit passes them by.
    if allowed == Allowed::Open {
        return next.run(req).await;
    }
    let Some(verifier) = &guard.verifier else {
        req.extensions_mut().insert(Access::everything());
        return next.run(req).await;
    };
    if allowed == Allowed::Metrics && verifier.metrics_public {
        return next.run(req).await;
    }
    let in_query = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p.starts_with("access_token=") || p == "access_token")
    });
    if in_query {
        return guard.deny(
            "token_in_query",
            ApiError::Unauthorized("tokens go in the Authorization header, never the URL".into()),
        );
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return guard.deny(
            "missing",
            ApiError::Unauthorized("an Authorization: Bearer token is needed".into()),
        );
    };
    if value.len() > MAX_AUTHORIZATION {
        return guard.deny(
            "oversized",
            ApiError::Unauthorized(format!(
                "the Authorization header is over {MAX_AUTHORIZATION} bytes"
            )),
        );
    }
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = token else {
        return guard.deny(
            "malformed",
            ApiError::Unauthorized("the Authorization header is not `Bearer <token>`".into()),
        );
    };
    let claims = match verifier.verify(token) {
        Ok(c) => c,
        Err(reason) => {
            return guard.deny(
                reason,
                ApiError::Unauthorized(format!("the token is refused ({reason})")),
            );
        }
    };
    let access = match admit(claims) {
        Ok(a) => a,
        Err(refused) => return guard.deny("role", refused),
    };
    let role = access.role.expect("admitted tokens have a role");
    if let Allowed::Roles(roles) = allowed
        && !roles.contains(&role)
    {
        return guard.deny(
            "role",
            ApiError::Forbidden(format!(
                "role {} may not {} {path}",
                role.as_str(),
                req.method()
            )),
        );
    }
    req.extensions_mut().insert(access);
    next.run(req).await
}

/// What a verified token's claims allow, or 403 when its role is not one of Kairos's
/// (the API's bearer tokens and the dashboard's sessions alike).
pub fn admit(claims: Claims) -> Result<Access, ApiError> {
    let Ok(role) = claims.role.parse::<Role>() else {
        return Err(ApiError::Forbidden(format!(
            "the token's role {:?} is not one of Kairos's",
            claims.role
        )));
    };
    Ok(Access {
        subject: Some(Arc::from(claims.sub.as_str())),
        role: Some(role),
        queues: claims.queues.map(Arc::from),
    })
}
