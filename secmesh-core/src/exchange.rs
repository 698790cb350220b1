//! The Txn-Token Request and Response: the OAuth 2.0 Token Exchange (RFC 8693) profile of the
//! Transaction Tokens draft (draft-ietf-oauth-transaction-tokens, "Txn-Token Request"), as
//! bytes on the wire. No I/O: the Txn-Token Service, the edge and the CLI client build on it.
//!
//! [`TxnTokenRequest::from_form`] reads an `application/x-www-form-urlencoded` body (RFC 6749
//! Appendix B) strictly and answers with a typed [`ExchangeError`] carrying the RFC 6749
//! section 5.2 error code, never a guess:
//!
//! - the body is at most [`MAX_REQUEST`] bytes and [`MAX_PARAMS`] parameters; every name and
//!   value is percent-decoded once (`+` is a space), an invalid escape or bytes that are not
//!   UTF-8 are refused, and so is a parameter given twice (RFC 6749 section 3.2: "MUST NOT be
//!   included more than once") and a pair without `=`;
//! - a parameter with an empty value counts as omitted (RFC 6749 section 3.1);
//! - `grant_type` must be the token-exchange grant (else `unsupported_grant_type`),
//!   `requested_token_type` the txn-token type, `audience` (the trust domain), `scope`,
//!   `subject_token` and `subject_token_type` are required (`invalid_request`);
//! - `scope` is parsed once in the one grant grammar ([`Scope`]; `invalid_scope`);
//! - `txn_class` (a secmesh extension parameter, ignored by other services as RFC 6749
//!   requires) names the expiry class asked for: `fast`, `medium` or `slow`;
//! - `request_context` and `request_details`, when present, are strict JSON objects (no
//!   duplicate key, bounded depth, no lone surrogate);
//! - `actor_token`/`actor_token_type` (delegation) and `resource` are refused rather than
//!   silently ignored: a request whose meaning depends on them is not served half-read;
//!   other unknown parameters are ignored, as RFC 6749 requires.
//!
//! The client side reads the service's answer as strictly: [`TxnTokenResponse::from_json`]
//! and [`ExchangeError::from_json`].
//!
//! Error descriptions are fixed texts and parameter names: no value from the request (a token
//! least of all) is ever echoed. The subject token's `Debug` is redacted.
//!
//! # Example
//! ```
//! use secmesh_core::exchange::{ErrorCode, SubjectTokenType, TxnTokenRequest, TxnTokenResponse};
//!
//! let body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
//!     &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Atxn_token\
//!     &audience=mesh.test&scope=read%3Aorders%2F*\
//!     &subject_token=eyJhbGciOiJFZERTQSJ9.e30.c2ln\
//!     &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
//!     &request_context=%7B%22req_ip%22%3A%2269.151.72.123%22%7D";
//! let request = TxnTokenRequest::from_form(body.as_bytes())?;
//! assert_eq!(request.audience, "mesh.test");
//! assert_eq!(request.subject_token_type, SubjectTokenType::AccessToken);
//! assert_eq!(request.request_context.as_ref().unwrap()["req_ip"], "69.151.72.123");
//! // The client side writes the same request back.
//! assert_eq!(TxnTokenRequest::from_form(request.to_form().as_bytes())?, request);
//! // The token is never printed.
//! assert!(!format!("{request:?}").contains("eyJ"));
//!
//! let refused = TxnTokenRequest::from_form(b"grant_type=password").unwrap_err();
//! assert_eq!(refused.code(), ErrorCode::UnsupportedGrantType);
//! assert_eq!(refused.status(), 400);
//! assert!(refused.to_json().starts_with(r#"{"error":"unsupported_grant_type""#));
//!
//! let response = TxnTokenResponse::new("eyJ...".to_owned()).expires_in(180);
//! assert!(response.to_json().contains(r#""token_type":"N_A""#));
//! # Ok::<(), secmesh_core::exchange::ExchangeError>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::ExpiryClass;
use crate::claims::{JsonMap, Scope};
use crate::json::{self, DEFAULT_MAX_DEPTH};
use crate::svo::check_identifier;

/// The `grant_type` of a token exchange (RFC 8693).
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The token type of a transaction token: the `requested_token_type` of a Txn-Token Request,
/// the `issued_token_type` of its response, and the `subject_token_type` of a replacement.
pub const TOKEN_TYPE_TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";

/// The largest request body read, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The most parameters a request may carry (known and unknown).
pub const MAX_PARAMS: usize = 32;

/// An RFC 6749 section 5.2 error code (with RFC 8693's `invalid_target`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A missing, repeated or malformed parameter; an unsupported value.
    InvalidRequest,
    /// The client (the requesting workload) could not be authenticated.
    InvalidClient,
    /// The subject token is invalid, expired, revoked or not for this service.
    InvalidGrant,
    /// The requesting workload may not make this request.
    UnauthorizedClient,
    /// Not the token-exchange grant.
    UnsupportedGrantType,
    /// The scope is malformed or wider than allowed.
    InvalidScope,
    /// The audience (trust domain) or resource is not one this service issues for.
    InvalidTarget,
}

impl ErrorCode {
    /// The code as it appears in the `error` member.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
        }
    }

    /// The code named by an `error` member, if it is one of these.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        [
            ErrorCode::InvalidRequest,
            ErrorCode::InvalidClient,
            ErrorCode::InvalidGrant,
            ErrorCode::UnauthorizedClient,
            ErrorCode::UnsupportedGrantType,
            ErrorCode::InvalidScope,
            ErrorCode::InvalidTarget,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }

    /// The HTTP status of the error response: 401 for `invalid_client` (RFC 6749 section 5.2),
    /// 400 for every other code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused Txn-Token Request: the error code and a fixed description (never a value from
/// the request).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct ExchangeError {
    code: ErrorCode,
    description: Cow<'static, str>,
}

impl ExchangeError {
    /// An error with its code and description. The description goes to the client: keep it
    /// to fixed text and parameter names.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> ExchangeError {
        ExchangeError {
            code,
            description: description.into(),
        }
    }

    fn request(description: impl Into<Cow<'static, str>>) -> ExchangeError {
        ExchangeError::new(ErrorCode::InvalidRequest, description)
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The HTTP status of the response ([`ErrorCode::status`]).
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The RFC 6749 section 5.2 JSON body: `{"error":..,"error_description":..}`.
    pub fn to_json(&self) -> String {
        let mut map = serde_json::Map::new();
        map.insert("error".into(), self.code.as_str().into());
        map.insert("error_description".into(), self.description.as_ref().into());
        serde_json::Value::Object(map).to_string()
    }
}

/// What the `subject_token` is (`subject_token_type`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectTokenType {
    /// `urn:ietf:params:oauth:token-type:access_token`: an IdP's access token.
    AccessToken,
    /// `urn:ietf:params:oauth:token-type:id_token`: an OpenID Connect ID token.
    IdToken,
    /// `urn:ietf:params:oauth:token-type:jwt`: a JWT.
    Jwt,
    /// [`TOKEN_TYPE_TXN_TOKEN`]: a txn-token to replace.
    TxnToken,
    /// `urn:ietf:params:oauth:token-type:self_signed`: a workload's self-signed JWT.
    SelfSigned,
    /// `urn:ietf:params:oauth:token-type:unsigned_json`: an unsigned JSON object.
    UnsignedJson,
    /// Any other URI agreed between requesters and the service.
    Other(String),
}

impl SubjectTokenType {
    /// The type's URI.
    pub fn as_str(&self) -> &str {
        match self {
            SubjectTokenType::AccessToken => "urn:ietf:params:oauth:token-type:access_token",
            SubjectTokenType::IdToken => "urn:ietf:params:oauth:token-type:id_token",
            SubjectTokenType::Jwt => "urn:ietf:params:oauth:token-type:jwt",
            SubjectTokenType::TxnToken => TOKEN_TYPE_TXN_TOKEN,
            SubjectTokenType::SelfSigned => "urn:ietf:params:oauth:token-type:self_signed",
            SubjectTokenType::UnsignedJson => "urn:ietf:params:oauth:token-type:unsigned_json",
            SubjectTokenType::Other(s) => s,
        }
    }

    /// The type named by a `subject_token_type` URI. A refresh token is refused (the draft
    /// excludes it), and so is a value that is not a URI-like identifier.
    pub fn from_uri(uri: &str) -> Result<SubjectTokenType, ExchangeError> {
        let known = [
            SubjectTokenType::AccessToken,
            SubjectTokenType::IdToken,
            SubjectTokenType::Jwt,
            SubjectTokenType::TxnToken,
            SubjectTokenType::SelfSigned,
            SubjectTokenType::UnsignedJson,
        ];
        if let Some(t) = known.into_iter().find(|t| t.as_str() == uri) {
            return Ok(t);
        }
        if uri == "urn:ietf:params:oauth:token-type:refresh_token" {
            return Err(ExchangeError::request(
                "a refresh token is not a subject token",
            ));
        }
        if check_identifier(uri).is_err() || !uri.contains(':') {
            return Err(ExchangeError::request(
                "subject_token_type is not a token type URI",
            ));
        }
        Ok(SubjectTokenType::Other(uri.to_owned()))
    }
}

/// The subject token of a request: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectToken(String);

impl SubjectToken {
    /// Wrap a token.
    pub fn new(token: impl Into<String>) -> SubjectToken {
        SubjectToken(token.into())
    }

    /// The token itself (to verify it; never to log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectToken({} bytes)", self.0.len())
    }
}

/// A Txn-Token Request, read and checked; see the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TxnTokenRequest {
    /// The trust domain the token is for (`audience`).
    pub audience: String,
    /// What the requester asks for (`scope`), in the one grant grammar.
    pub scope: Scope,
    /// The subject token (`subject_token`).
    pub subject_token: SubjectToken,
    /// Its type (`subject_token_type`).
    pub subject_token_type: SubjectTokenType,
    /// The transaction's context (`request_context`: client IP, authentication method, ...).
    pub request_context: Option<JsonMap>,
    /// Details of the request (`request_details`).
    pub request_details: Option<JsonMap>,
    /// The expiry class asked for (`txn_class`, a secmesh extension parameter: `fast`,
    /// `medium` or `slow`). The service issues this class or refuses; without it, the service
    /// chooses (the fastest the policy allows).
    pub class: Option<ExpiryClass>,
}

impl TxnTokenRequest {
    /// A request for `audience` and `scope` on behalf of `subject_token`.
    pub fn new(
        audience: impl Into<String>,
        scope: Scope,
        subject_token: SubjectToken,
        subject_token_type: SubjectTokenType,
    ) -> TxnTokenRequest {
        TxnTokenRequest {
            audience: audience.into(),
            scope,
            subject_token,
            subject_token_type,
            request_context: None,
            request_details: None,
            class: None,
        }
    }

    /// With an expiry class (`txn_class`).
    pub fn class(mut self, class: ExpiryClass) -> TxnTokenRequest {
        self.class = Some(class);
        self
    }

    /// With a `request_context`.
    pub fn request_context(mut self, context: JsonMap) -> TxnTokenRequest {
        self.request_context = Some(context);
        self
    }

    /// With `request_details`.
    pub fn request_details(mut self, details: JsonMap) -> TxnTokenRequest {
        self.request_details = Some(details);
        self
    }

    /// Read a form-encoded request body; see the [module docs](self) for the rules.
    pub fn from_form(body: &[u8]) -> Result<TxnTokenRequest, ExchangeError> {
        let params = Params::parse(body)?;
        match params.get("grant_type") {
            None => return Err(ExchangeError::request("grant_type is missing")),
            Some(GRANT_TYPE_TOKEN_EXCHANGE) => {}
            Some(_) => {
                return Err(ExchangeError::new(
                    ErrorCode::UnsupportedGrantType,
                    "only the token-exchange grant is supported",
                ));
            }
        }
        match params.get("requested_token_type") {
            Some(TOKEN_TYPE_TXN_TOKEN) => {}
            Some(_) => {
                return Err(ExchangeError::request(
                    "requested_token_type must be the txn_token type",
                ));
            }
            None => return Err(ExchangeError::request("requested_token_type is missing")),
        }
        for refused in ["actor_token", "actor_token_type"] {
            if params.get(refused).is_some() {
                return Err(ExchangeError::request("actor tokens are not supported"));
            }
        }
        if params.get("resource").is_some() {
            return Err(ExchangeError::new(
                ErrorCode::InvalidTarget,
                "resource is not supported: name the trust domain in audience",
            ));
        }
        let audience = params.required("audience")?;
        if check_identifier(audience).is_err() {
            return Err(ExchangeError::new(
                ErrorCode::InvalidTarget,
                "audience is not a valid trust domain name",
            ));
        }
        let scope = Scope::new(params.required("scope")?).map_err(|_| {
            ExchangeError::new(
                ErrorCode::InvalidScope,
                "scope is not a list of verb:object grants",
            )
        })?;
        let subject_token = SubjectToken::new(params.required("subject_token")?);
        let subject_token_type =
            SubjectTokenType::from_uri(params.required("subject_token_type")?)?;
        let class = match params.get("txn_class") {
            None => None,
            Some(c) => Some(c.parse::<ExpiryClass>().map_err(|_| {
                ExchangeError::new(
                    ErrorCode::InvalidScope,
                    "txn_class is not fast, medium or slow",
                )
            })?),
        };
        Ok(TxnTokenRequest {
            audience: audience.to_owned(),
            scope,
            subject_token,
            subject_token_type,
            request_context: params.object("request_context")?,
            request_details: params.object("request_details")?,
            class,
        })
    }

    /// The request as a form body (the client side): every byte outside the unreserved set
    /// percent-encoded.
    pub fn to_form(&self) -> String {
        let mut out = String::new();
        let mut put = |name: &str, value: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            encode(value, &mut out);
        };
        put("grant_type", GRANT_TYPE_TOKEN_EXCHANGE);
        put("requested_token_type", TOKEN_TYPE_TXN_TOKEN);
        put("audience", &self.audience);
        put("scope", self.scope.as_str());
        put("subject_token", self.subject_token.expose());
        put("subject_token_type", self.subject_token_type.as_str());
        if let Some(c) = &self.request_context {
            put(
                "request_context",
                &serde_json::Value::Object(c.clone()).to_string(),
            );
        }
        if let Some(d) = &self.request_details {
            put(
                "request_details",
                &serde_json::Value::Object(d.clone()).to_string(),
            );
        }
        if let Some(c) = self.class {
            put("txn_class", c.as_str());
        }
        out
    }
}

/// A successful Txn-Token Response.
#[derive(Clone, PartialEq, Eq)]
pub struct TxnTokenResponse {
    access_token: String,
    expires_in: Option<u64>,
    scope: Option<Scope>,
}

/// How large a response body the client side reads ([`TxnTokenResponse::from_json`]).
pub const MAX_RESPONSE: usize = 64 * 1024;

impl TxnTokenResponse {
    /// The response carrying the issued txn-token.
    pub fn new(access_token: String) -> TxnTokenResponse {
        TxnTokenResponse {
            access_token,
            expires_in: None,
            scope: None,
        }
    }

    /// With `expires_in` (seconds; RFC 8693 recommends it).
    pub fn expires_in(mut self, secs: u64) -> TxnTokenResponse {
        self.expires_in = Some(secs);
        self
    }

    /// With the issued `scope` (RFC 8693 section 2.2.1: required when it is not the scope
    /// that was asked for, e.g. narrowed by the service).
    pub fn scope(mut self, scope: Scope) -> TxnTokenResponse {
        self.scope = Some(scope);
        self
    }

    /// The issued token.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The issued token, taken.
    pub fn into_access_token(self) -> String {
        self.access_token
    }

    /// `expires_in`, when the service said.
    pub fn expires_in_secs(&self) -> Option<u64> {
        self.expires_in
    }

    /// The issued scope, when the service said (it differs from the one asked for).
    pub fn issued_scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// The JSON body: `access_token`, `issued_token_type` (txn_token), `token_type` (`N_A`),
    /// and `expires_in` and `scope` when set; never a refresh token. Serve it with
    /// `Cache-Control: no-store`.
    pub fn to_json(&self) -> String {
        /// The body, borrowed: written straight out, the token not copied into a map first.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            access_token: &'a str,
            issued_token_type: &'static str,
            token_type: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_in: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            scope: Option<&'a str>,
        }
        let body = Body {
            access_token: &self.access_token,
            issued_token_type: TOKEN_TYPE_TXN_TOKEN,
            token_type: "N_A",
            expires_in: self.expires_in,
            scope: self.scope.as_ref().map(Scope::as_str),
        };
        // Strings and an integer: serializing cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// Read a response body (the client side): a strict JSON object of at most
    /// [`MAX_RESPONSE`] bytes with a non-empty `access_token`, `issued_token_type` the txn-token
    /// type and `token_type` `N_A` (case-insensitive); `expires_in` an integer and `scope` a
    /// scope in the grant grammar when present. A response that says anything else is refused
    /// rather than half-read.
    pub fn from_json(body: &[u8]) -> Result<TxnTokenResponse, ResponseError> {
        let map = strict_object(body)?;
        let access_token = match map.get("access_token") {
            Some(serde_json::Value::String(t)) if !t.is_empty() => t.clone(),
            _ => return Err(ResponseError::Malformed("access_token")),
        };
        match map.get("issued_token_type") {
            Some(serde_json::Value::String(t)) if t == TOKEN_TYPE_TXN_TOKEN => {}
            _ => return Err(ResponseError::Malformed("issued_token_type")),
        }
        match map.get("token_type") {
            Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("N_A") => {}
            _ => return Err(ResponseError::Malformed("token_type")),
        }
        let expires_in = match map.get("expires_in") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or(ResponseError::Malformed("expires_in"))?),
        };
        let scope = match map.get("scope") {
            None => None,
            Some(serde_json::Value::String(s)) => {
                Some(Scope::new(s).map_err(|_| ResponseError::Malformed("scope"))?)
            }
            Some(_) => return Err(ResponseError::Malformed("scope")),
        };
        Ok(TxnTokenResponse {
            access_token,
            expires_in,
            scope,
        })
    }
}

impl ExchangeError {
    /// Read an RFC 6749 section 5.2 error body (the client side): a strict JSON object of at
    /// most [`MAX_RESPONSE`] bytes whose `error` is one of the [`ErrorCode`]s. The
    /// description is the service's, kept only when it is printable ASCII of at most 256
    /// bytes (it is shown to people; nothing else from the body is).
    pub fn from_json(body: &[u8]) -> Result<ExchangeError, ResponseError> {
        let map = strict_object(body)?;
        let code = match map.get("error") {
            Some(serde_json::Value::String(e)) => {
                ErrorCode::from_name(e).ok_or(ResponseError::Malformed("error"))?
            }
            _ => return Err(ResponseError::Malformed("error")),
        };
        let description = match map.get("error_description") {
            Some(serde_json::Value::String(d))
                if d.len() <= 256 && d.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
            {
                d.clone()
            }
            _ => String::new(),
        };
        Ok(ExchangeError::new(code, description))
    }
}

/// Why a response body could not be read ([`TxnTokenResponse::from_json`],
/// [`ExchangeError::from_json`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Over [`MAX_RESPONSE`] bytes.
    #[error("the response body is larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    /// Not a strict JSON object (duplicate key, invalid UTF-8, too deep, not an object).
    #[error("the response body is not a JSON object")]
    NotJson,
    /// A member is missing or not what the profile says.
    #[error("the response member `{0}` is missing or invalid")]
    Malformed(&'static str),
}

fn strict_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ResponseError> {
    if body.len() > MAX_RESPONSE {
        return Err(ResponseError::TooLarge);
    }
    json::check_object(body, DEFAULT_MAX_DEPTH).map_err(|_| ResponseError::NotJson)?;
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(ResponseError::NotJson),
    }
}

impl fmt::Debug for TxnTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnTokenResponse")
            .field(
                "access_token",
                &format_args!("{} bytes", self.access_token.len()),
            )
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The decoded parameters of a form body: names unique, empty values dropped.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(body: &[u8]) -> Result<Params, ExchangeError> {
        if body.len() > MAX_REQUEST {
            return Err(ExchangeError::request("the request body is too large"));
        }
        let mut params: Vec<(String, String)> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        if body.is_empty() {
            return Ok(Params(params));
        }
        for pair in body.split(|&b| b == b'&') {
            if names.len() == MAX_PARAMS {
                return Err(ExchangeError::request("too many parameters"));
            }
            let eq = pair
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| ExchangeError::request("a parameter without '='"))?;
            let name = decode(&pair[..eq])?;
            let value = decode(&pair[eq + 1..])?;
            // Names are compared decoded: `grant%5Ftype` is `grant_type`, and repeats either way.
            if names.contains(&name) {
                return Err(ExchangeError::request("a parameter is repeated"));
            }
            names.push(name.clone());
            if !value.is_empty() {
                params.push((name, value));
            }
        }
        Ok(Params(params))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, ExchangeError> {
        self.get(name).ok_or_else(|| {
            ExchangeError::request(match name {
                "audience" => "audience is missing",
                "scope" => "scope is missing",
                "subject_token" => "subject_token is missing",
                "subject_token_type" => "subject_token_type is missing",
                _ => "a required parameter is missing",
            })
        })
    }

    fn object(&self, name: &'static str) -> Result<Option<JsonMap>, ExchangeError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let bad = || {
            ExchangeError::request(if name == "request_context" {
                "request_context is not a strict JSON object"
            } else {
                "request_details is not a strict JSON object"
            })
        };
        json::check_object(text.as_bytes(), DEFAULT_MAX_DEPTH).map_err(|_| bad())?;
        serde_json::from_str(text).map(Some).map_err(|_| bad())
    }
}

/// Percent-decode one form name or value (`+` is a space), strictly: a bad escape or bytes
/// that are not UTF-8 are refused.
fn decode(raw: &[u8]) -> Result<String, ExchangeError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(raw.get(i + 1)), hex(raw.get(i + 2))) else {
                    return Err(ExchangeError::request("an invalid percent-escape"));
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ExchangeError::request("a parameter is not UTF-8"))
}

/// Percent-encode a form value: ASCII letters, digits and `-._~` stay, every other byte is
/// escaped.
fn encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> TxnTokenRequest {
        let mut ctx = JsonMap::new();
        ctx.insert("req_ip".into(), "69.151.72.123".into());
        ctx.insert("authn".into(), "face".into());
        TxnTokenRequest::new(
            "mesh.test",
            Scope::new("read:orders/* create:orders/{sub}/**").unwrap(),
            SubjectToken::new("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"),
            SubjectTokenType::AccessToken,
        )
        .request_context(ctx)
        .class(ExpiryClass::Medium)
    }

    fn form(pairs: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for (n, v) in pairs {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(n);
            out.push('=');
            encode(v, &mut out);
        }
        out
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
            ("requested_token_type", TOKEN_TYPE_TXN_TOKEN),
            ("audience", "mesh.test"),
            ("scope", "read:orders/*"),
            ("subject_token", "eyJ.e30.sig"),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ]
    }

    fn code(body: &str) -> ErrorCode {
        TxnTokenRequest::from_form(body.as_bytes())
            .unwrap_err()
            .code()
    }

    #[test]
    fn round_trip() {
        let r = request();
        assert_eq!(TxnTokenRequest::from_form(r.to_form().as_bytes()), Ok(r));
    }

    #[test]
    fn the_drafts_example_reads() {
        let body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Atxn_token\
&audience=trust-domain.example\
&scope=trade:stocks\
&subject_token=eyJhbGciOiJFUzI1NiIsImtpZC...kdXjwhw\
&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
&request_context=%7B%0A%20%20%20%20%20%20%22req_ip%22%3A%20%2269.151.72.123%22%2C%20%0A%20%20%20%20%20%20%22authn%22%3A%20%22face%22%0A%7D\
&request_details=%7B%0A%20%20%20%20%20%20%22action%22%3A%20%22BUY%22%2C%0A%20%20%20%20%20%20%22ticker%22%3A%20%22MSFT%22%2C%0A%20%20%20%20%20%20%22quantity%22%3A%20%22100%22%0A%7D";
        let r = TxnTokenRequest::from_form(body.as_bytes()).unwrap();
        assert_eq!(r.audience, "trust-domain.example");
        assert_eq!(r.request_context.unwrap()["authn"], "face");
        assert_eq!(r.request_details.unwrap()["ticker"], "MSFT");
    }

    #[test]
    fn every_required_parameter() {
        assert!(TxnTokenRequest::from_form(form(&base()).as_bytes()).is_ok());
        for missing in 0..base().len() {
            let mut pairs = base();
            let (name, _) = pairs.remove(missing);
            assert_eq!(code(&form(&pairs)), ErrorCode::InvalidRequest, "{name}");
            // An empty value is an omitted parameter.
            let mut pairs = base();
            pairs[missing].1 = "";
            assert_eq!(code(&form(&pairs)), ErrorCode::InvalidRequest, "{name}");
        }
    }

    #[test]
    fn wrong_values_get_their_codes() {
        let with = |name: &str, value: &'static str| {
            let mut pairs = base();
            pairs.iter_mut().find(|(n, _)| *n == name).unwrap().1 = value;
            code(&form(&pairs))
        };
        assert_eq!(
            with("grant_type", "password"),
            ErrorCode::UnsupportedGrantType
        );
        assert_eq!(
            with(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token"
            ),
            ErrorCode::InvalidRequest
        );
        assert_eq!(with("scope", "read:orders/** x"), ErrorCode::InvalidScope);
        assert_eq!(with("scope", "read:a  read:b"), ErrorCode::InvalidScope);
        assert_eq!(with("audience", "mesh test"), ErrorCode::InvalidTarget);
        assert_eq!(
            with(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token"
            ),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            with("subject_token_type", "plain"),
            ErrorCode::InvalidRequest
        );
        let mut pairs = base();
        pairs.push(("resource", "https://orders.mesh.test"));
        assert_eq!(code(&form(&pairs)), ErrorCode::InvalidTarget);
        let mut pairs = base();
        pairs.push(("actor_token", "eyJ"));
        assert_eq!(code(&form(&pairs)), ErrorCode::InvalidRequest);
        // Unknown parameters are ignored.
        let mut pairs = base();
        pairs.push(("client_id", "x"));
        assert!(TxnTokenRequest::from_form(form(&pairs).as_bytes()).is_ok());
        // Other token types are carried.
        let mut pairs = base();
        pairs[5].1 = "urn:example:workload-assertion";
        let r = TxnTokenRequest::from_form(form(&pairs).as_bytes()).unwrap();
        assert_eq!(
            r.subject_token_type,
            SubjectTokenType::Other("urn:example:workload-assertion".into())
        );
    }

    #[test]
    fn hostile_bodies_are_invalid_requests() {
        let ok = form(&base());
        let hostile: Vec<Vec<u8>> = vec![
            // repeated parameters, also when one spelling is encoded
            format!("{ok}&scope=read:x").into_bytes(),
            format!("{ok}&sc%6Fpe=read:x").into_bytes(),
            format!("{ok}&audience=").into_bytes(),
            // no '=' / empty pairs
            format!("{ok}&audience").into_bytes(),
            format!("{ok}&&x=1").into_bytes(),
            format!("{ok}&").into_bytes(),
            // bad escapes, not UTF-8 (raw and encoded)
            format!("{ok}&x=%4").into_bytes(),
            format!("{ok}&x=%zz").into_bytes(),
            format!("{ok}&x=%C3%28").into_bytes(),
            [ok.as_bytes(), b"&x=\xff"].concat(),
            // too large, too many parameters
            format!("{ok}&x={}", "a".repeat(MAX_REQUEST)).into_bytes(),
            format!(
                "{ok}{}",
                (0..MAX_PARAMS)
                    .map(|i| format!("&p{i}=1"))
                    .collect::<String>()
            )
            .into_bytes(),
            // request_context not a strict object
            format!("{ok}&request_context=%5B1%5D").into_bytes(),
            format!("{ok}&request_context=%7B%22a%22%3A1%2C%22a%22%3A2%7D").into_bytes(),
            format!("{ok}&request_details=%7B%22a%22%3A%22%5Cud800%22%7D").into_bytes(),
            format!("{ok}&request_context={}", "%5B".repeat(100)).into_bytes(),
        ];
        for body in hostile {
            let e = TxnTokenRequest::from_form(&body).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidRequest, "{e}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn errors_never_echo_the_request() {
        let secret = "eyJzZWNyZXQiOiJ0b2tlbiJ9";
        let mut pairs = base();
        pairs[4].1 = secret;
        pairs[3].1 = "not a scope";
        let e = TxnTokenRequest::from_form(form(&pairs).as_bytes()).unwrap_err();
        assert!(!e.to_json().contains(secret) && !e.to_json().contains("not a scope"));
        let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(json["error"], "invalid_scope");
        let r = request();
        assert!(!format!("{r:?}").contains("eyJ"));
        let res = TxnTokenResponse::new(secret.into()).expires_in(180);
        assert!(!format!("{res:?}").contains(secret));
        let json: serde_json::Value = serde_json::from_str(&res.to_json()).unwrap();
        assert_eq!(json["access_token"], secret);
        assert_eq!(json["issued_token_type"], TOKEN_TYPE_TXN_TOKEN);
        assert_eq!(json["token_type"], "N_A");
        assert_eq!(json["expires_in"], 180);
        assert!(json.get("refresh_token").is_none());
        assert_eq!(
            ExchangeError::new(ErrorCode::InvalidClient, "no client certificate").status(),
            401
        );
    }

    #[test]
    fn plus_is_a_space_and_escapes_decode_once() {
        assert_eq!(decode(b"a+b%2Bc%2525").unwrap(), "a b+c%25");
        let mut out = String::new();
        encode("a b+c/é", &mut out);
        assert_eq!(out, "a%20b%2Bc%2F%C3%A9");
        assert_eq!(decode(out.as_bytes()).unwrap(), "a b+c/é");
    }

    #[test]
    fn the_class_is_optional_and_strict() {
        let mut pairs = base();
        assert_eq!(
            TxnTokenRequest::from_form(form(&pairs).as_bytes())
                .unwrap()
                .class,
            None
        );
        pairs.push(("txn_class", "slow"));
        assert_eq!(
            TxnTokenRequest::from_form(form(&pairs).as_bytes())
                .unwrap()
                .class,
            Some(ExpiryClass::Slow)
        );
        pairs.pop();
        pairs.push(("txn_class", "Slow"));
        assert_eq!(code(&form(&pairs)), ErrorCode::InvalidScope);
    }

    #[test]
    fn responses_round_trip_and_strictly() {
        let r = TxnTokenResponse::new("eyJ.e30.sig".into())
            .expires_in(180)
            .scope(Scope::new("read:orders/42").unwrap());
        assert_eq!(TxnTokenResponse::from_json(r.to_json().as_bytes()), Ok(r));
        let bad = |body: &str| TxnTokenResponse::from_json(body.as_bytes()).unwrap_err();
        let ok = r#""issued_token_type":"urn:ietf:params:oauth:token-type:txn_token","token_type":"N_A""#;
        assert_eq!(
            bad(&format!("{{{ok}}}")),
            ResponseError::Malformed("access_token")
        );
        assert_eq!(
            bad(&format!(
                r#"{{"access_token":"a","access_token":"b",{ok}}}"#
            )),
            ResponseError::NotJson
        );
        assert_eq!(
            bad(
                r#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"N_A"}"#
            ),
            ResponseError::Malformed("issued_token_type")
        );
        assert_eq!(
            bad(&format!(r#"{{"access_token":"a",{ok},"expires_in":-1}}"#)),
            ResponseError::Malformed("expires_in")
        );
        assert_eq!(
            bad(&format!(
                r#"{{"access_token":"a",{ok},"scope":"read:a/**/b"}}"#
            )),
            ResponseError::Malformed("scope")
        );
        assert_eq!(bad(&" ".repeat(MAX_RESPONSE + 1)), ResponseError::TooLarge);
        assert_eq!(bad("[1]"), ResponseError::NotJson);
        assert_eq!(
            bad("{\"access_token\":\"\\ud800\"}"),
            ResponseError::NotJson
        );
    }

    #[test]
    fn error_bodies_read_back_and_sanitised() {
        let e = ExchangeError::new(ErrorCode::UnauthorizedClient, "not allowed");
        assert_eq!(ExchangeError::from_json(e.to_json().as_bytes()), Ok(e));
        let hostile = ExchangeError::from_json(
            br#"{"error":"invalid_grant","error_description":"\u001b[2Jgotcha"}"#,
        )
        .unwrap();
        assert_eq!(
            (hostile.code(), hostile.description()),
            (ErrorCode::InvalidGrant, "")
        );
        assert!(ExchangeError::from_json(br#"{"error":"server_error"}"#).is_err());
        assert!(ExchangeError::from_json(br#"{"error":1}"#).is_err());
    }
}
