//! The per-client rate limit (`--rate-limit 1000/s`, `--rate-limit-burst`): GCRA per
//! client (governor), the client being the token's subject, or without auth the peer's
//! IP address. `X-Forwarded-For` counts only when the peer is a trusted proxy: then the
//! client is the right-most address in it that is not a trusted proxy. Over the limit:
//! 429 `rate-limited` with `Retry-After` (whole seconds, at least 1). Only requests the
//! auth layer admitted as a caller's (it puts an `Access` on them) are counted: health
//! probes and public metrics never are. At most [`MAX_CLIENTS`] clients are tracked; past that, those idle
//! long enough to be back at a full burst are forgotten.

use crate::http::access::Access;
use crate::http::conn::Peer;
use crate::http::problem::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use kairos_core::rate::Rate;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

/// Clients tracked before idle ones are forgotten.
pub const MAX_CLIENTS: usize = 100_000;

/// How clients are limited.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// The sustained rate per client.
    pub rate: Rate,
    /// Requests a client may send at once; default one second's worth.
    pub burst: Option<u32>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

/// Who is limited: a token's subject, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Subject(Arc<str>),
    Address(IpAddr),
}

/// The layer's state.
#[derive(Clone)]
pub struct Limiter {
    limiter: Arc<DefaultKeyedRateLimiter<Client>>,
    trusted: Arc<[IpAddr]>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter for `config`.
    pub fn new(config: &RateLimitConfig) -> Limiter {
        let burst = config
            .burst
            .unwrap_or_else(|| config.rate.one_seconds_worth());
        let quota = Quota::with_period(config.rate.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
        Limiter {
            limiter: Arc::new(DefaultKeyedRateLimiter::dashmap(quota)),
            trusted: config.trusted_proxies.clone().into(),
        }
    }

    /// The client a request counts against; `None` for a request without a caller.
    fn client(&self, req: &Request) -> Option<Client> {
        if let Some(s) = &req.extensions().get::<Access>()?.subject {
            return Some(Client::Subject(s.clone()));
        }
        let peer = req.extensions().get::<Peer>()?.0.ip();
        if !self.trusted.contains(&peer) {
            return Some(Client::Address(peer));
        }
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        let client = forwarded
            .into_iter()
            .rev()
            .find(|a| !self.trusted.contains(a))
            .unwrap_or(peer);
        Some(Client::Address(client))
    }
}

/// The middleware (inside auth, so the token's subject is known).
pub async fn limit(State(limiter): State<Option<Limiter>>, req: Request, next: Next) -> Response {
    let Some(limiter) = limiter else {
        return next.run(req).await;
    };
    let Some(client) = limiter.client(&req) else {
        return next.run(req).await;
    };
    let checked = limiter.limiter.check_key(&client);
    if limiter.limiter.len() > MAX_CLIENTS {
        limiter.limiter.retain_recent();
    }
    match checked {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = ApiError::RateLimited.into_response();
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: Option<&str>) -> Request {
        let mut req = Request::new(axum::body::Body::empty());
        req.extensions_mut()
            .insert(Peer(format!("{peer}:4000").parse().unwrap()));
        req.extensions_mut().insert(Access::everything());
        if let Some(f) = forwarded {
            req.headers_mut()
                .insert("x-forwarded-for", HeaderValue::from_str(f).unwrap());
        }
        req
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let limiter = Limiter::new(&RateLimitConfig {
            rate: "10/s".parse().unwrap(),
            burst: None,
            trusted_proxies: vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        });
        let addr = |a: &str| Some(Client::Address(a.parse().unwrap()));
        // An untrusted peer cannot pretend to be someone else.
        assert_eq!(
            limiter.client(&request("192.0.2.9", Some("1.2.3.4"))),
            addr("192.0.2.9")
        );
        // Behind trusted proxies: the right-most address that is not one of them.
        assert_eq!(
            limiter.client(&request("10.0.0.1", Some("6.6.6.6, 1.2.3.4, 10.0.0.2"))),
            addr("1.2.3.4")
        );
        assert_eq!(limiter.client(&request("10.0.0.1", None)), addr("10.0.0.1"));
        // A token's subject wins over any address.
        let mut req = request("192.0.2.9", None);
        req.extensions_mut().insert(Access {
            subject: Some(Arc::from("alice")),
            role: None,
            queues: None,
        });
        assert_eq!(
            limiter.client(&req),
            Some(Client::Subject(Arc::from("alice")))
        );
    }
}
