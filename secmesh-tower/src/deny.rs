//! Denials: the typed reason a request is refused, and the one place it becomes a response.
//!
//! Every refusal of every secmesh piece is a [`DenyReason`]: a missing or rejected token (with
//! its [`VerifyError`] kind), a policy deny (with the rule), a token class the route does not
//! accept, a missing grant (naming the verb and object), a request that cannot be classified,
//! an audit log that cannot record the request, a rate limit. The reason stays typed until
//! the edge: a [`Responder`] turns it into the response, chosen from the request itself:
//!
//! | reason | HTTP | gRPC (`content-type: application/grpc*`) |
//! |---|---|---|
//! | [`MissingToken`](DenyReason::MissingToken), [`Token`](DenyReason::Token) | 401 + `WWW-Authenticate: Bearer` (`error="invalid_token"` for a rejected token) | 16 UNAUTHENTICATED |
//! | [`Policy`](DenyReason::Policy), [`ClassNotAllowed`](DenyReason::ClassNotAllowed), [`Unclassified`](DenyReason::Unclassified) ([`ClassifyError::Unclassified`]) | 403 | 7 PERMISSION_DENIED |
//! | [`MissingGrant`](DenyReason::MissingGrant) | 403 + `WWW-Authenticate: Bearer error="insufficient_scope"` | 7 PERMISSION_DENIED |
//! | [`Unclassified`](DenyReason::Unclassified): a bad path / a method with no verb / not gRPC | 400 / 405 / 415 | 3 INVALID_ARGUMENT / 12 UNIMPLEMENTED / 3 |
//! | [`AuditUnavailable`](DenyReason::AuditUnavailable) | 503 | 14 UNAVAILABLE |
//! | [`RateLimited`](DenyReason::RateLimited) | 429 (+ `Retry-After`, `RateLimit-Policy`, `RateLimit`) | 8 RESOURCE_EXHAUSTED |
//! | [`PolicyNeedsAttributes`](DenyReason::PolicyNeedsAttributes) | 500 | 13 INTERNAL |
//! | [`Exchange`](DenyReason::Exchange): the Txn-Token Service refused the edge's exchange | 403 (+ `insufficient_scope` for `invalid_scope`); 401 `invalid_token` for `invalid_grant` | 7 PERMISSION_DENIED / 16 |
//! | [`ExchangeUnavailable`](DenyReason::ExchangeUnavailable) | 503 | 14 UNAVAILABLE |
//!
//! HTTP bodies are RFC 9457 `application/problem+json` with the status's words only; gRPC
//! answers are trailers-only. Callers learn only the standard code; the full reason stays in
//! the response extensions (as the [`Outcome`](crate::Outcome)) for the audit log, and in the
//! INFO log line every denial gets (never with the token). Implement [`Responder`] to answer
//! differently; [`ProblemJson`] is the default.
//!
//! # Example
//! ```
//! use http::{HeaderMap, StatusCode};
//! use secmesh_tower::deny::{DenyReason, ProblemJson, Responder};
//!
//! let res = ProblemJson.respond(&HeaderMap::new(), &DenyReason::MissingToken);
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], "Bearer");
//!
//! let mut grpc = HeaderMap::new();
//! grpc.insert("content-type", "application/grpc".parse()?);
//! let res = ProblemJson.respond(&grpc, &DenyReason::MissingToken);
//! assert_eq!(res.headers()["grpc-status"], "16");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use secmesh_audit::AuditError;
use secmesh_core::exchange::{ErrorCode, ExchangeError};
use secmesh_core::policy::Reason;
use secmesh_core::{ExpiryClass, Object, Verb};
use secmesh_tokens::{ErrorKind, VerifyError};

use crate::authorize::ClassifyError;

/// The declared limit behind a [`DenyReason::RateLimited`], as the IETF httpapi RateLimit
/// headers tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// The limit's id (the policy's `[[limit]]` id).
    pub id: String,
    /// Requests per window (`q`).
    pub quota: u64,
    /// The window, seconds (`w`).
    pub window_secs: u64,
    /// Seconds until the counter is back to a full burst (`t`).
    pub reset_secs: u64,
}

impl RateLimitInfo {
    /// The limit `id` of `quota` requests per `window_secs`, back to a full burst in
    /// `reset_secs`.
    pub fn new(id: impl Into<String>, quota: u64, window_secs: u64, reset_secs: u64) -> Self {
        RateLimitInfo {
            id: id.into(),
            quota,
            window_secs,
            reset_secs,
        }
    }

    /// The id as a structured-field string (RFC 8941 sf-string): `"` and `\` escaped, any
    /// character outside printable ASCII as `_`.
    fn sf_name(&self) -> String {
        let mut out = String::with_capacity(self.id.len() + 2);
        out.push('"');
        for c in self.id.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                ' '..='~' => out.push(c),
                _ => out.push('_'),
            }
        }
        out.push('"');
        out
    }

    /// `RateLimit-Policy: "id";q=N;w=S`.
    pub fn policy_header(&self) -> HeaderValue {
        let v = format!("{};q={};w={}", self.sf_name(), self.quota, self.window_secs);
        HeaderValue::try_from(v).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
    }

    /// `RateLimit: "id";r=0;t=S` (nothing remains: the request was refused).
    pub fn state_header(&self) -> HeaderValue {
        let v = format!("{};r=0;t={}", self.sf_name(), self.reset_secs);
        HeaderValue::try_from(v).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
    }
}

/// Why a request was refused. Typed until the wire: the [`Responder`] formats it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DenyReason {
    /// No token was presented (401 / UNAUTHENTICATED).
    MissingToken,
    /// The token was rejected; [`VerifyError::kind`] says why (401 / UNAUTHENTICATED).
    Token(VerifyError),
    /// The policy said no: a deny rule matched (`rule` is set), or no allow rule did
    /// (403 / PERMISSION_DENIED).
    Policy {
        /// The deciding rule, when a rule decided.
        rule: Option<String>,
        /// The engine's reason (`deny rule`, `no rule`).
        reason: Reason,
    },
    /// The token's expiry class is slower than the route accepts (403 / PERMISSION_DENIED).
    ClassNotAllowed {
        /// The token's class.
        class: ExpiryClass,
        /// The slowest class the route accepts.
        max: ExpiryClass,
    },
    /// No grant of the token's `scope` covers the request (403 / PERMISSION_DENIED).
    MissingGrant {
        /// The verb that needed a grant.
        verb: Verb,
        /// The object that needed a grant.
        object: Object,
        /// The allow rule that matched, when a policy also decided.
        rule: Option<String>,
    },
    /// The request could not be classified into (verb, object).
    Unclassified(ClassifyError),
    /// The audit log cannot record the request (fail-closed or durable audit) (503 /
    /// UNAVAILABLE).
    AuditUnavailable(AuditError),
    /// Too many requests (429 / RESOURCE_EXHAUSTED): over a declared limit (see
    /// [`limit`](crate::limit)).
    RateLimited {
        /// When to try again, if known.
        retry_after: Option<Duration>,
        /// The limit that refused, when a declared limit did: its id and quota go out in the
        /// `RateLimit-Policy` / `RateLimit` headers.
        limit: Option<RateLimitInfo>,
    },
    /// The policy has rules with attribute conditions and this service has no source of
    /// attributes: refused rather than never matched (500 / INTERNAL; a configuration error,
    /// logged at ERROR).
    PolicyNeedsAttributes {
        /// The first rule with an attribute condition.
        rule: String,
    },
    /// The edge's token exchange was refused by the Txn-Token Service: `invalid_grant` (the
    /// external token did not pass there) is 401 / UNAUTHENTICATED, anything else 403 /
    /// PERMISSION_DENIED.
    Exchange(ExchangeError),
    /// The Txn-Token Service could not be reached or answered with something else than a
    /// token or an RFC 6749 error (503 / UNAVAILABLE).
    ExchangeUnavailable,
}

impl DenyReason {
    /// A stable word for the reason, for logs and the audit event's `reason_kind`:
    /// `missing_token`, `invalid_token`, `policy_deny`, `no_rule`, `class_not_allowed`,
    /// `missing_grant`, `bad_request`, `method_not_allowed`, `not_grpc`, `unclassified`,
    /// `audit_unavailable`, `rate_limited`, `policy_needs_attributes`.
    pub fn kind(&self) -> &'static str {
        match self {
            DenyReason::MissingToken => "missing_token",
            DenyReason::Token(_) => "invalid_token",
            DenyReason::Policy {
                reason: Reason::NoRule,
                ..
            } => "no_rule",
            DenyReason::Policy { .. } => "policy_deny",
            DenyReason::ClassNotAllowed { .. } => "class_not_allowed",
            DenyReason::MissingGrant { .. } => "missing_grant",
            DenyReason::Unclassified(ClassifyError::BadPath(_)) => "bad_request",
            DenyReason::Unclassified(ClassifyError::Method(_)) => "method_not_allowed",
            DenyReason::Unclassified(ClassifyError::NotGrpc) => "not_grpc",
            DenyReason::Unclassified(_) => "unclassified",
            DenyReason::AuditUnavailable(_) => "audit_unavailable",
            DenyReason::RateLimited { .. } => "rate_limited",
            DenyReason::PolicyNeedsAttributes { .. } => "policy_needs_attributes",
            DenyReason::Exchange(_) => "exchange_refused",
            DenyReason::ExchangeUnavailable => "exchange_unavailable",
        }
    }

    /// The token error, for a rejected token.
    pub fn token_error(&self) -> Option<&VerifyError> {
        match self {
            DenyReason::Token(e) => Some(e),
            _ => None,
        }
    }

    /// The deciding rule, when one decided.
    pub fn rule(&self) -> Option<&str> {
        match self {
            DenyReason::Policy { rule, .. } | DenyReason::MissingGrant { rule, .. } => {
                rule.as_deref()
            }
            DenyReason::PolicyNeedsAttributes { rule } => Some(rule),
            DenyReason::RateLimited {
                limit: Some(limit), ..
            } => Some(&limit.id),
            _ => None,
        }
    }

    /// Whether the caller is not authenticated (401 / UNAUTHENTICATED).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, DenyReason::MissingToken | DenyReason::Token(_))
            || matches!(self, DenyReason::Exchange(e) if e.code() == ErrorCode::InvalidGrant)
    }

    /// The HTTP status for this reason.
    pub fn status(&self) -> StatusCode {
        match self {
            DenyReason::MissingToken | DenyReason::Token(_) => StatusCode::UNAUTHORIZED,
            DenyReason::Policy { .. }
            | DenyReason::ClassNotAllowed { .. }
            | DenyReason::MissingGrant { .. } => StatusCode::FORBIDDEN,
            DenyReason::Unclassified(e) => match e {
                ClassifyError::BadPath(_) => StatusCode::BAD_REQUEST,
                ClassifyError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
                ClassifyError::NotGrpc => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::FORBIDDEN,
            },
            DenyReason::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DenyReason::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            DenyReason::PolicyNeedsAttributes { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            DenyReason::Exchange(e) if e.code() == ErrorCode::InvalidGrant => {
                StatusCode::UNAUTHORIZED
            }
            DenyReason::Exchange(_) => StatusCode::FORBIDDEN,
            DenyReason::ExchangeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code for this reason.
    pub fn grpc_code(&self) -> u8 {
        match self {
            DenyReason::MissingToken | DenyReason::Token(_) => 16,
            DenyReason::Policy { .. }
            | DenyReason::ClassNotAllowed { .. }
            | DenyReason::MissingGrant { .. } => 7,
            DenyReason::Unclassified(e) => match e {
                ClassifyError::BadPath(_) | ClassifyError::NotGrpc => 3,
                ClassifyError::Method(_) => 12,
                _ => 7,
            },
            DenyReason::AuditUnavailable(_) => 14,
            DenyReason::RateLimited { .. } => 8,
            DenyReason::PolicyNeedsAttributes { .. } => 13,
            DenyReason::Exchange(e) if e.code() == ErrorCode::InvalidGrant => 16,
            DenyReason::Exchange(_) => 7,
            DenyReason::ExchangeUnavailable => 14,
        }
    }

    /// The status's words: the problem+json `title` and the `grpc-message`.
    pub fn title(&self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Refused")
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::MissingToken => f.write_str("missing token"),
            DenyReason::Token(e) => write!(f, "{e}"),
            DenyReason::Policy {
                rule: Some(rule),
                reason,
            } => write!(f, "{reason} (rule {rule})"),
            DenyReason::Policy { rule: None, reason } => write!(f, "{reason}"),
            DenyReason::ClassNotAllowed { class, max } => {
                write!(f, "class not allowed: a {class} token on a {max} route")
            }
            DenyReason::MissingGrant { verb, object, .. } => {
                write!(f, "missing grant: {verb}:{object}")
            }
            DenyReason::Unclassified(ClassifyError::BadPath(e)) => {
                write!(f, "bad request: path: {e}")
            }
            DenyReason::Unclassified(ClassifyError::Method(m)) => {
                write!(f, "method not allowed: {m}")
            }
            DenyReason::Unclassified(ClassifyError::NotGrpc) => {
                f.write_str("not a gRPC request to a gRPC-only service")
            }
            DenyReason::Unclassified(e) => write!(f, "{e}"),
            DenyReason::AuditUnavailable(e) => write!(f, "the audit log cannot record it: {e}"),
            DenyReason::RateLimited {
                limit: Some(limit), ..
            } => write!(f, "rate limited by limit {}", limit.id),
            DenyReason::RateLimited { .. } => f.write_str("rate limited"),
            DenyReason::PolicyNeedsAttributes { rule } => write!(
                f,
                "rule {rule} has attribute conditions and the service has no attribute source"
            ),
            DenyReason::Exchange(e) => write!(f, "token exchange refused: {e}"),
            DenyReason::ExchangeUnavailable => f.write_str("the Txn-Token Service is unavailable"),
        }
    }
}

/// Whether the request is a gRPC call (by its content type).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Turns a [`DenyReason`] into the response, for the request with these headers. The one
/// mapping from denials to the wire; swap it by implementing this trait. The secmesh layers
/// put the [`Outcome`](crate::Outcome) in the response's extensions themselves.
pub trait Responder: Clone + Send + Sync + 'static {
    /// The response (status, headers, body bytes) for a refused request.
    fn respond(&self, request_headers: &HeaderMap, reason: &DenyReason) -> Response<Bytes>;
}

/// The default [`Responder`]: problem+json with RFC 6750 `WWW-Authenticate` for HTTP, a
/// trailers-only gRPC status for gRPC callers (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProblemJson;

impl Responder for ProblemJson {
    fn respond(&self, request_headers: &HeaderMap, reason: &DenyReason) -> Response<Bytes> {
        if is_grpc(request_headers) {
            return grpc_response(reason);
        }
        let status = reason.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": reason.title(),
            "status": status.as_u16(),
        })
        .to_string();
        let mut res = Response::new(Bytes::from(body));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(www) = www_authenticate(reason) {
            h.insert(WWW_AUTHENTICATE, www);
        }
        if let DenyReason::RateLimited { retry_after, limit } = reason {
            if let Some(after) = retry_after {
                // Whole seconds, rounded up: a client that waits this long is let in.
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                h.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            if let Some(limit) = limit {
                h.insert(RATELIMIT_POLICY, limit.policy_header());
                h.insert(RATELIMIT, limit.state_header());
            }
        }
        res
    }
}

const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// The RFC 6750 challenge for a reason, when it has one.
fn www_authenticate(reason: &DenyReason) -> Option<HeaderValue> {
    Some(HeaderValue::from_static(match reason {
        DenyReason::MissingToken => "Bearer",
        DenyReason::Token(e) if e.kind() == ErrorKind::Expired => {
            r#"Bearer error="invalid_token", error_description="The token expired""#
        }
        DenyReason::Token(_) => {
            r#"Bearer error="invalid_token", error_description="The token is invalid""#
        }
        DenyReason::MissingGrant { .. } => r#"Bearer error="insufficient_scope""#,
        DenyReason::Exchange(e) => match e.code() {
            ErrorCode::InvalidGrant => {
                r#"Bearer error="invalid_token", error_description="The token is invalid""#
            }
            ErrorCode::InvalidScope => r#"Bearer error="insufficient_scope""#,
            _ => return None,
        },
        _ => return None,
    }))
}

/// A trailers-only gRPC response with the reason's status.
fn grpc_response(reason: &DenyReason) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-status",
        HeaderValue::from(u16::from(reason.grpc_code())),
    );
    h.insert("grpc-message", HeaderValue::from_static(reason.title()));
    res
}

/// A response body a denial can be written into (the à-la-carte layers keep the inner
/// service's body type).
pub trait DenyBody: Sized {
    /// The body holding `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;
}

impl DenyBody for String {
    fn from_bytes(bytes: Bytes) -> Self {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl DenyBody for Bytes {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes
    }
}

impl DenyBody for Vec<u8> {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes.to_vec()
    }
}

#[cfg(feature = "axum")]
impl DenyBody for axum::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        axum::body::Body::from(bytes)
    }
}

/// How an à-la-carte layer answers a refusal in the inner service's body type `B`. Every
/// [`Responder`] is one for bodies secmesh can write into ([`DenyBody`]); [`GrpcStatus`] is
/// one for any body with a `Default` (tonic's), at the cost of empty HTTP bodies. The
/// [`SecureLayer`](crate::SecureLayer) needs neither: it answers any body type.
pub trait DenialResponse<B>: Clone + Send + Sync + 'static {
    /// Build the response for a refused request with these headers.
    fn response(&self, request_headers: &HeaderMap, reason: &DenyReason) -> Response<B>;
}

impl<R: Responder, B: DenyBody> DenialResponse<B> for R {
    fn response(&self, request_headers: &HeaderMap, reason: &DenyReason) -> Response<B> {
        self.respond(request_headers, reason).map(B::from_bytes)
    }
}

/// Denials for à-la-carte layers of gRPC servers whose body type has no [`DenyBody`]
/// (tonic's): [`ProblemJson`]'s status and headers, with an empty body.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcStatus;

impl<B: Default> DenialResponse<B> for GrpcStatus {
    fn response(&self, request_headers: &HeaderMap, reason: &DenyReason) -> Response<B> {
        let (parts, _) = ProblemJson.respond(request_headers, reason).into_parts();
        let mut res = Response::from_parts(parts, B::default());
        if !is_grpc(request_headers) {
            res.headers_mut().remove(CONTENT_TYPE);
        }
        res
    }
}

/// Log a denial at INFO, once, with what was asked and why (never the token).
pub(crate) fn log_denial(
    reason: &DenyReason,
    subject: Option<&str>,
    verb: Option<&str>,
    object: Option<&str>,
    caller: Option<&str>,
) {
    tracing::info!(
        target: "secmesh::deny",
        verb = verb.unwrap_or("-"),
        object = object.unwrap_or("-"),
        subject = subject.unwrap_or("-"),
        caller = caller.unwrap_or("-"),
        reason = reason.kind(),
        rule = reason.rule().unwrap_or("-"),
        detail = %reason,
        "request denied"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secmesh_core::svo::SvoError;

    fn grpc() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        h
    }

    fn every_reason() -> Vec<DenyReason> {
        vec![
            DenyReason::MissingToken,
            DenyReason::Token(VerifyError::new(ErrorKind::Expired, "expired")),
            DenyReason::Token(VerifyError::malformed("x")),
            DenyReason::Policy {
                rule: Some("deny-admins".into()),
                reason: Reason::DenyRule,
            },
            DenyReason::Policy {
                rule: None,
                reason: Reason::NoRule,
            },
            DenyReason::ClassNotAllowed {
                class: ExpiryClass::Slow,
                max: ExpiryClass::Fast,
            },
            DenyReason::MissingGrant {
                verb: Verb::Read,
                object: "orders/1".parse().unwrap(),
                rule: None,
            },
            DenyReason::Unclassified(ClassifyError::BadPath(SvoError::Empty)),
            DenyReason::Unclassified(ClassifyError::Method(http::Method::TRACE)),
            DenyReason::Unclassified(ClassifyError::NotGrpc),
            DenyReason::Unclassified(ClassifyError::Unclassified),
            DenyReason::AuditUnavailable(AuditError::QueueFull),
            DenyReason::RateLimited {
                retry_after: Some(Duration::from_millis(1500)),
                limit: Some(RateLimitInfo::new("per-\"user\"\u{e9}", 10, 1, 3)),
            },
            DenyReason::PolicyNeedsAttributes { rule: "r".into() },
            DenyReason::Exchange(ExchangeError::new(ErrorCode::InvalidGrant, "x")),
            DenyReason::Exchange(ExchangeError::new(ErrorCode::InvalidScope, "x")),
            DenyReason::Exchange(ExchangeError::new(ErrorCode::UnauthorizedClient, "x")),
            DenyReason::ExchangeUnavailable,
        ]
    }

    #[test]
    fn every_reason_over_http() {
        let expect = [
            (401, "missing_token", Some("Bearer")),
            (
                401,
                "invalid_token",
                Some(r#"Bearer error="invalid_token", error_description="The token expired""#),
            ),
            (
                401,
                "invalid_token",
                Some(r#"Bearer error="invalid_token", error_description="The token is invalid""#),
            ),
            (403, "policy_deny", None),
            (403, "no_rule", None),
            (403, "class_not_allowed", None),
            (
                403,
                "missing_grant",
                Some(r#"Bearer error="insufficient_scope""#),
            ),
            (400, "bad_request", None),
            (405, "method_not_allowed", None),
            (415, "not_grpc", None),
            (403, "unclassified", None),
            (503, "audit_unavailable", None),
            (429, "rate_limited", None),
            (500, "policy_needs_attributes", None),
            (
                401,
                "exchange_refused",
                Some(r#"Bearer error="invalid_token", error_description="The token is invalid""#),
            ),
            (
                403,
                "exchange_refused",
                Some(r#"Bearer error="insufficient_scope""#),
            ),
            (403, "exchange_refused", None),
            (503, "exchange_unavailable", None),
        ];
        for (reason, (status, kind, www)) in every_reason().iter().zip(expect) {
            let res = ProblemJson.respond(&HeaderMap::new(), reason);
            assert_eq!(res.status().as_u16(), status, "{reason}");
            assert_eq!(reason.kind(), kind);
            assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
            assert_eq!(
                res.headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                www
            );
            let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
            assert_eq!(body["status"], status);
            // Callers learn the code, never the rule or the detail.
            let text = String::from_utf8_lossy(res.body());
            assert!(!text.contains("deny-admins") && !text.contains("orders/1"));
        }
        let limited = ProblemJson.respond(&HeaderMap::new(), &every_reason()[12]);
        assert_eq!(limited.headers()[RETRY_AFTER], "2");
        assert_eq!(
            limited.headers()["ratelimit-policy"],
            r#""per-\"user\"_";q=10;w=1"#
        );
        assert_eq!(limited.headers()["ratelimit"], r#""per-\"user\"_";r=0;t=3"#);
    }

    #[test]
    fn every_reason_over_grpc() {
        let codes = [16, 16, 16, 7, 7, 7, 7, 3, 12, 3, 7, 14, 8, 13, 16, 7, 7, 14];
        for (reason, code) in every_reason().iter().zip(codes) {
            let res = ProblemJson.respond(&grpc(), reason);
            assert_eq!(res.status(), StatusCode::OK, "{reason}");
            assert_eq!(res.headers()["grpc-status"], code.to_string().as_str());
            assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
            assert!(res.body().is_empty());
        }
    }

    #[test]
    fn grpc_status_keeps_any_body_type() {
        #[derive(Default)]
        struct Opaque;
        let res: Response<Opaque> = GrpcStatus.response(&grpc(), &DenyReason::MissingToken);
        assert_eq!(res.headers()["grpc-status"], "16");
        let res: Response<Opaque> =
            GrpcStatus.response(&HeaderMap::new(), &DenyReason::MissingToken);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res: Response<String> =
            ProblemJson.response(&HeaderMap::new(), &DenyReason::MissingToken);
        assert!(res.body().contains("Unauthorized"));
    }

    #[test]
    fn keys_unavailable_is_unauthenticated_like_unknown_kid() {
        for kind in [ErrorKind::UnknownKid, ErrorKind::KeysUnavailable] {
            let reason = DenyReason::Token(VerifyError::new(kind, "no keys"));
            assert_eq!(reason.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(reason.grpc_code(), 16);
            assert!(reason.is_unauthenticated());
            let res: Response<String> = ProblemJson.response(&HeaderMap::new(), &reason);
            assert!(
                res.headers()[WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap_or("")
                    .contains("invalid_token")
            );
        }
    }
}
