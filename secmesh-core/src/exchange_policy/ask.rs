//! What the policy decides on: the facts of one Txn-Token Request, once the subject token is
//! verified.
//!
//! # Example
//! ```
//! use secmesh_core::claims::Scope;
//! use secmesh_core::exchange::SubjectTokenType;
//! use secmesh_core::exchange_policy::ExchangeAsk;
//! use secmesh_core::ExpiryClass;
//!
//! let scope: Scope = "read:orders/{sub}/**".parse().unwrap();
//! let ask = ExchangeAsk::new("spiffe://mesh.test/gateway", &SubjectTokenType::IdToken,
//!     "user:alice", "mesh.test", &scope)
//!     .with_issuer("https://idp.mesh.test")
//!     .with_class(ExpiryClass::Medium);
//! assert_eq!((ask.issuer, ask.class), (Some("https://idp.mesh.test"), Some(ExpiryClass::Medium)));
//! ```

use crate::claims::Scope;
use crate::class::ExpiryClass;
use crate::exchange::{SubjectTokenType, TxnTokenRequest};

/// What a workload asks for: the facts of one Txn-Token Request the policy decides on.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ExchangeAsk<'a> {
    /// The SPIFFE ID of the requesting workload (its mTLS identity).
    pub workload: &'a str,
    /// The type of the subject token presented.
    pub subject_token_type: &'a SubjectTokenType,
    /// The issuer (`iss`) of an external subject token, once verified.
    pub issuer: Option<&'a str>,
    /// The words of an external subject token's own `scope` (the IdP's OAuth scopes), once
    /// verified; empty for internal tokens.
    pub subject_scopes: &'a [String],
    /// The subject (`sub`) the issued txn-token will carry.
    pub subject: &'a str,
    /// The audience asked for (the trust domain).
    pub audience: &'a str,
    /// The scope asked for (already within what the subject token allows: the service checks
    /// that).
    pub scope: &'a Scope,
    /// The expiry class asked for; `None` lets the policy choose (`fast`).
    pub class: Option<ExpiryClass>,
}

impl<'a> ExchangeAsk<'a> {
    /// An ask without issuer or class.
    pub fn new(
        workload: &'a str,
        subject_token_type: &'a SubjectTokenType,
        subject: &'a str,
        audience: &'a str,
        scope: &'a Scope,
    ) -> Self {
        ExchangeAsk {
            workload,
            subject_token_type,
            issuer: None,
            subject_scopes: &[],
            subject,
            audience,
            scope,
            class: None,
        }
    }

    /// The ask of a read Txn-Token Request from `workload`, for the subject `subject` (taken
    /// from the verified subject token). Its issuer, when external, is added with
    /// [`with_issuer`](Self::with_issuer).
    pub fn from_request(workload: &'a str, request: &'a TxnTokenRequest, subject: &'a str) -> Self {
        ExchangeAsk {
            class: request.class,
            ..ExchangeAsk::new(
                workload,
                &request.subject_token_type,
                subject,
                &request.audience,
                &request.scope,
            )
        }
    }

    /// With the subject token's issuer.
    #[must_use]
    pub fn with_issuer(mut self, issuer: &'a str) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// With the words of the external subject token's own `scope`.
    #[must_use]
    pub fn with_subject_scopes(mut self, words: &'a [String]) -> Self {
        self.subject_scopes = words;
        self
    }

    /// With the expiry class asked for.
    #[must_use]
    pub fn with_class(mut self, class: ExpiryClass) -> Self {
        self.class = Some(class);
        self
    }
}
