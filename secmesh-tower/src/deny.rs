//! Denials: the one place where a refused request becomes a response.
//!
//! A layer that refuses a request builds a [`Denial`] and asks a [`DenialResponse`] for the
//! response. The default, [`ProblemJson`], answers HTTP callers with RFC 9457 problem+json and
//! the RFC 6750 `WWW-Authenticate` header on 401, and gRPC callers (requests with
//! `content-type: application/grpc*`) with `grpc-status` 16 (UNAUTHENTICATED), 7
//! (PERMISSION_DENIED), 3 (INVALID_ARGUMENT), 12 (UNIMPLEMENTED) or 14 (UNAVAILABLE) in a
//! trailers-only response. HTTP statuses: 401, 403, 400 (a path that is not a canonical
//! object), 405 (a method that maps to no verb), 415 (not gRPC, to a gRPC-only service),
//! 503 (the audit log cannot record the request under a fail-closed or durable audit layer). Callers learn only the standard code; the
//! full reason stays in the response extensions (as the [`Denial`]) for the audit layer and in
//! tracing. Implement [`DenialResponse`] to answer differently.
//!
//! # Example
//! ```
//! use secmesh_tower::deny::{Denial, DenialResponse, ProblemJson};
//!
//! let req = http::Request::new(());
//! let denial = Denial::unauthenticated_missing();
//! let res: http::Response<String> = ProblemJson.response(req.headers(), &denial);
//! assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], "Bearer");
//! assert!(res.extensions().get::<Denial>().is_some());
//! ```

use std::fmt;

use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use secmesh_tokens::{ErrorKind, VerifyError};

/// Why a request was refused: the full reason, for the audit log and tracing.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Denial {
    /// No token, or an invalid one (401 / UNAUTHENTICATED).
    Unauthenticated {
        /// Why the token was refused, when there was one.
        error: Option<VerifyError>,
    },
    /// The token is valid but the request is not allowed (403 / PERMISSION_DENIED).
    Forbidden {
        /// The rule that denied, if one did.
        rule: Option<String>,
        /// Why, in words (e.g. `missing grant`, `no rule`).
        reason: String,
    },
    /// The request is not well-formed for secmesh: its path is not a canonical object, or its
    /// gRPC method path is malformed (400 / INVALID_ARGUMENT).
    BadRequest {
        /// Why, in words (e.g. `path: an encoded path separator`).
        reason: String,
    },
    /// The method maps to no verb (405 / UNIMPLEMENTED): every method is a verb or refused.
    MethodNotAllowed {
        /// The method, as sent (a valid HTTP token).
        method: String,
    },
    /// A request that is not gRPC reached a gRPC-only service (415).
    UnsupportedMediaType,
    /// The request cannot be served now because its audit event cannot be recorded (the queue
    /// is full, or the sink cannot write) under a fail-closed or durable audit layer
    /// (503 / UNAVAILABLE).
    Unavailable {
        /// Why the audit log cannot take the event.
        audit: secmesh_audit::AuditError,
    },
}

impl Denial {
    /// No token was presented.
    pub fn unauthenticated_missing() -> Denial {
        Denial::Unauthenticated { error: None }
    }

    /// The token was refused.
    pub fn unauthenticated(error: VerifyError) -> Denial {
        Denial::Unauthenticated { error: Some(error) }
    }

    /// A policy or grant said no.
    pub fn forbidden(rule: Option<String>, reason: impl Into<String>) -> Denial {
        Denial::Forbidden {
            rule,
            reason: reason.into(),
        }
    }

    /// The request is malformed for secmesh (400).
    pub fn bad_request(reason: impl Into<String>) -> Denial {
        Denial::BadRequest {
            reason: reason.into(),
        }
    }

    /// The HTTP status for this denial.
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Denial::Forbidden { .. } => StatusCode::FORBIDDEN,
            Denial::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Denial::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Denial::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Denial::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code for this denial.
    pub fn grpc_code(&self) -> u8 {
        match self {
            Denial::Unauthenticated { .. } => 16,
            Denial::Forbidden { .. } => 7,
            Denial::BadRequest { .. } | Denial::UnsupportedMediaType => 3,
            Denial::MethodNotAllowed { .. } => 12,
            Denial::Unavailable { .. } => 14,
        }
    }

    /// The title of the problem+json body and the `grpc-message`: the status's words only.
    fn title(&self) -> &'static str {
        match self {
            Denial::Unauthenticated { .. } => "Unauthorized",
            Denial::Forbidden { .. } => "Forbidden",
            Denial::BadRequest { .. } => "Bad Request",
            Denial::MethodNotAllowed { .. } => "Method Not Allowed",
            Denial::UnsupportedMediaType => "Unsupported Media Type",
            Denial::Unavailable { .. } => "Service Unavailable",
        }
    }

    /// The reason as one line, for logs and audit records.
    pub fn reason(&self) -> String {
        match self {
            Denial::Unauthenticated { error: None } => "missing token".into(),
            Denial::Unauthenticated { error: Some(e) } => e.to_string(),
            Denial::Forbidden {
                rule: Some(rule),
                reason,
            } => format!("{reason} (rule {rule})"),
            Denial::Forbidden { rule: None, reason } => reason.clone(),
            Denial::BadRequest { reason } => format!("bad request: {reason}"),
            Denial::MethodNotAllowed { method } => format!("method not allowed: {method}"),
            Denial::UnsupportedMediaType => "not a gRPC request to a gRPC-only service".to_owned(),
            Denial::Unavailable { audit } => format!("the audit log cannot record it: {audit}"),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

/// Whether the request is a gRPC call (by its content type).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Turns a [`Denial`] into a response. The response must carry the denial in its extensions.
pub trait DenialResponse<B>: Clone + Send + Sync + 'static {
    /// Build the response for a refused request with these headers.
    fn response(&self, request_headers: &HeaderMap, denial: &Denial) -> Response<B>;
}

/// A trailers-only gRPC response with the denial's status (e.g. 16 UNAUTHENTICATED or 7
/// PERMISSION_DENIED) and the denial in its extensions.
fn grpc_response<B: Default>(denial: &Denial) -> Response<B> {
    let mut res = Response::new(B::default());
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-status",
        HeaderValue::from(u16::from(denial.grpc_code())),
    );
    h.insert("grpc-message", HeaderValue::from_static(denial.title()));
    res.extensions_mut().insert(denial.clone());
    res
}

/// An HTTP status with an empty body, for a caller that does not speak gRPC.
fn plain_response<B: Default>(denial: &Denial) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = denial.status();
    if matches!(denial, Denial::Unauthenticated { .. }) {
        res.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res.extensions_mut().insert(denial.clone());
    res
}

/// Denials for gRPC servers whose body type has no `From<String>` (tonic's): a gRPC call gets
/// a trailers-only gRPC status; a request that is not gRPC (a plain HTTP/1.1 request to the
/// gRPC port) gets the HTTP status (e.g. 415) with an empty body, never `200` plus a gRPC
/// status it cannot read.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcStatus;

impl<B: Default> DenialResponse<B> for GrpcStatus {
    fn response(&self, request_headers: &HeaderMap, denial: &Denial) -> Response<B> {
        if is_grpc(request_headers) {
            grpc_response(denial)
        } else {
            plain_response(denial)
        }
    }
}

/// The default denial responses: problem+json for HTTP, trailers-only status for gRPC.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProblemJson;

impl<B: From<String> + Default> DenialResponse<B> for ProblemJson {
    fn response(&self, request_headers: &HeaderMap, denial: &Denial) -> Response<B> {
        let mut res = if is_grpc(request_headers) {
            grpc_response(denial)
        } else {
            let (title, www) = match denial {
                Denial::Unauthenticated { error: None } => ("Unauthorized", "Bearer".to_owned()),
                Denial::Unauthenticated { error: Some(e) } => {
                    let desc = match e.kind() {
                        ErrorKind::Expired => "The token expired",
                        _ => "The token is invalid",
                    };
                    (
                        "Unauthorized",
                        format!("Bearer error=\"invalid_token\", error_description=\"{desc}\""),
                    )
                }
                other => (other.title(), String::new()),
            };
            let status = denial.status();
            let body = serde_json::json!({
                "type": "about:blank",
                "title": title,
                "status": status.as_u16(),
            })
            .to_string();
            let mut res = Response::new(B::from(body));
            *res.status_mut() = status;
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            if !www.is_empty()
                && let Ok(v) = HeaderValue::from_str(&www)
            {
                res.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
            res
        };
        res.extensions_mut().insert(denial.clone());
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_callers_get_grpc_status() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let res: Response<String> =
            ProblemJson.response(&h, &Denial::forbidden(Some("r1".into()), "no rule"));
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "7");
        assert!(res.body().is_empty());
    }

    #[test]
    fn http_callers_learn_only_the_code() {
        let res: Response<String> = ProblemJson.response(
            &HeaderMap::new(),
            &Denial::forbidden(Some("deny-admins".into()), "denied by rule"),
        );
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(!res.body().contains("deny-admins"));
        assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
