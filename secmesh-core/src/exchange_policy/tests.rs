//! Unit tests of the exchange policy: reading, deciding, narrowing, classes, shadow.

use super::parse::{MAX_POLICY_LEN, MAX_RULES};
use super::*;
use crate::claims::Scope;
use crate::class::ExpiryClass;
use crate::exchange::{ErrorCode, SubjectTokenType, TxnTokenRequest};
use crate::policy::{Effect, Format, Mode, Position};

const GW: &str = "spiffe://mesh.test/gateway";
const IDP: &str = "https://idp.mesh.test";

const POLICY: &str = r#"
[[exchange]]
id = "gateway-user-tokens"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token", "id_token"]
issuers = ["https://idp.mesh.test"]
subjects = ["user:*"]
audiences = ["mesh.test"]
scopes = ["read:orders/{sub}/**", "create:orders/{sub}/*/dispute"]

[[exchange]]
id = "gateway-medium"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token"]
issuers = ["https://idp.mesh.test"]
audiences = ["mesh.test"]
scopes = ["read:payments/{sub}/3ds"]
max_class = "medium"

[[exchange]]
id = "replacements"
effect = "allow"
workloads = ["spiffe://mesh.test/*"]
subject_token_types = ["txn_token"]
audiences = ["*"]
scopes = ["*:**"]
max_class = "slow"

[[exchange]]
id = "no-legacy"
effect = "deny"
workloads = ["spiffe://mesh.test/legacy-*"]
subject_token_types = ["*"]
audiences = ["*"]

[[exchange]]
id = "no-blocked"
effect = "deny"
workloads = ["*"]
subject_token_types = ["*"]
subjects = ["user:blocked-*"]
audiences = ["*"]

[[exchange]]
id = "try-no-id-tokens"
effect = "deny"
workloads = ["*"]
subject_token_types = ["id_token"]
audiences = ["*"]
mode = "shadow"
"#;

fn policy() -> ExchangePolicy {
    ExchangePolicy::from_toml(POLICY).unwrap()
}

fn scope(s: &str) -> Scope {
    s.parse().unwrap()
}

fn user_ask<'a>(t: &'a SubjectTokenType, sub: &'a str, s: &'a Scope) -> ExchangeAsk<'a> {
    ExchangeAsk::new(GW, t, sub, "mesh.test", s).with_issuer(IDP)
}

fn toml_err(text: &str) -> ExchangePolicyError {
    ExchangePolicy::from_toml(text).unwrap_err()
}

fn rule_with(extra: &str) -> String {
    format!(
        "[[exchange]]\nid = \"a\"\neffect = \"allow\"\nworkloads = [\"*\"]\n\
         subject_token_types = [\"*\"]\naudiences = [\"*\"]\n{extra}\n"
    )
}

#[test]
fn reads_toml_and_the_same_json() {
    let p = policy();
    assert_eq!(p.len(), 6);
    assert!(!p.is_empty());
    let ids: Vec<&str> = p.rule_ids().collect();
    assert_eq!(ids[0], "gateway-user-tokens");
    let r = p.rule("gateway-medium").unwrap();
    assert_eq!(r.max_class(), ExpiryClass::Medium);
    assert_eq!(r.issuers().unwrap().collect::<Vec<_>>(), vec![IDP]);
    assert_eq!(p.rules()[0].max_class(), ExpiryClass::Fast);
    assert_eq!(p.rules()[5].mode(), Mode::Shadow);
    assert_eq!(p.rules()[3].effect(), Effect::Deny);
    assert!(p.rules()[3].scopes().is_empty());

    let json = r#"{"exchange": [{"id": "a", "effect": "allow", "workloads": ["spiffe://x/*"],
        "subject_token_types": ["urn:ietf:params:oauth:token-type:access_token", "jwt"],
        "issuers": ["https://i"], "subjects": ["user:*"], "audiences": ["x"],
        "scopes": ["read:a/**"], "max_class": "slow", "mode": "shadow"}]}"#;
    let toml = r#"[[exchange]]
id = "a"
effect = "allow"
workloads = ["spiffe://x/*"]
subject_token_types = ["access_token", "urn:ietf:params:oauth:token-type:jwt"]
issuers = ["https://i"]
subjects = ["user:*"]
audiences = ["x"]
scopes = ["read:a/**"]
max_class = "slow"
mode = "shadow"
"#;
    assert_eq!(
        ExchangePolicy::from_json(json).unwrap().rules(),
        ExchangePolicy::from_toml(toml).unwrap().rules()
    );
    assert!(ExchangePolicy::from_toml("").unwrap().is_empty());
    assert!(ExchangePolicy::from_json("{}").unwrap().is_empty());
    assert!(
        ExchangePolicy::from_json(r#"{"exchange": []}"#)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn refuses_unknown_and_duplicate_keys() {
    let e = toml_err(&rule_with("scopes = [\"read:a\"]\ncolour = \"red\""));
    assert!(e.message().contains("colour"), "{e}");
    assert_eq!(e.rule_index(), Some(0));
    assert_eq!(e.position().unwrap().line, 8);
    let e = toml_err("version = 2\n");
    assert!(e.message().contains("version"), "{e}");
    assert_eq!(e.rule_index(), None);
    assert_eq!(e.position().unwrap().line, 1);
    // TOML refuses a key twice itself; JSON is refused here.
    assert!(ExchangePolicy::from_toml(&rule_with("scopes = [\"read:a\"]\nscopes = []")).is_err());
    let e = ExchangePolicy::from_json(r#"{"exchange": [], "exchange": []}"#).unwrap_err();
    assert!(e.message().contains("duplicate field `exchange`"), "{e}");
    let e = ExchangePolicy::from_json(
        r#"{"exchange": [{"id": "a", "id": "b", "effect": "deny", "workloads": ["*"],
        "subject_token_types": ["*"], "audiences": ["*"]}]}"#,
    )
    .unwrap_err();
    assert!(e.message().contains("duplicate field `id`"), "{e}");
    assert!(matches!(
        e,
        ExchangePolicyError::Invalid {
            format: Format::Json,
            ..
        }
    ));
    assert!(ExchangePolicy::from_json(r#"{"exchange": []} x"#).is_err());
    assert!(ExchangePolicy::from_json(r#"{"rule": []}"#).is_err());
}

#[test]
fn duplicate_ids_name_the_second_rule() {
    let text = format!(
        "{}{}",
        rule_with("scopes = [\"read:a\"]"),
        rule_with("scopes = [\"read:b\"]")
    );
    let e = toml_err(&text);
    assert!(e.message().contains("duplicate rule id `a`"), "{e}");
    assert_eq!((e.rule_index(), e.rule_id()), (Some(1), Some("a")));
    assert_eq!(e.position(), Some(Position { line: 9, column: 6 }));
    assert!(e.to_string().contains("rule #2 `a`"), "{e}");
}

#[test]
fn deny_rules_take_no_scopes_or_class_and_allow_rules_need_scopes() {
    let deny = rule_with("").replace("\"allow\"", "\"deny\"");
    let e = toml_err(&format!("{deny}scopes = [\"read:a\"]"));
    assert!(e.message().contains("a deny rule takes no `scopes`"), "{e}");
    assert_eq!(e.position().unwrap().line, 2);
    let e = toml_err(&format!("{deny}max_class = \"slow\""));
    assert!(
        e.message().contains("a deny rule takes no `max_class`"),
        "{e}"
    );
    assert!(ExchangePolicy::from_toml(&deny).is_ok());
    let e = toml_err(&rule_with(""));
    assert!(e.message().contains("an allow rule needs `scopes`"), "{e}");
    let e = ExchangePolicy::from_json(
        r#"{"exchange": [{"id": "d", "effect": "deny", "workloads": ["*"],
        "subject_token_types": ["*"], "audiences": ["*"], "max_class": "fast"}]}"#,
    )
    .unwrap_err();
    assert_eq!((e.rule_index(), e.rule_id()), (Some(0), Some("d")));
}

#[test]
fn refuses_bad_values_with_the_rule() {
    for (extra, needle) in [
        ("scopes = [\"read\"]", "invalid grant `read`"),
        ("scopes = [\"read:a/**/b\"]", "`**` is only allowed"),
        (
            "scopes = [\"read:a\"]\nmax_class = \"sometimes\"",
            "sometimes",
        ),
        (
            "scopes = [\"read:a\"]\nissuers = [\"*\"]",
            "issuers are exact",
        ),
        ("scopes = [\"read:a\"]\nissuers = [\"a b\"]", "whitespace"),
        ("scopes = [\"read:a\"]\nsubjects = [\"\"]", "empty pattern"),
        ("scopes = [\"read:a\"]\nmode = \"dry\"", "dry"),
    ] {
        let e = toml_err(&rule_with(extra));
        assert!(e.message().contains(needle), "{extra}: {e}");
        assert_eq!((e.rule_index(), e.rule_id()), (Some(0), Some("a")), "{e}");
        assert!(e.position().is_some(), "{e}");
    }
    for (types, needle) in [
        ("[\"access\"]", "unknown short name"),
        (
            "[\"urn:ietf:params:oauth:token-type:refresh_token\"]",
            "not a token type URI",
        ),
        ("[\"\"]", "empty"),
    ] {
        let text = rule_with("scopes = [\"read:a\"]").replace(
            "subject_token_types = [\"*\"]",
            &format!("subject_token_types = {types}"),
        );
        let e = toml_err(&text);
        assert!(e.message().contains(needle), "{types}: {e}");
    }
    let text = rule_with("scopes = [\"read:a\"]")
        .replace("audiences = [\"*\"]", "audiences = [\"mesh.*\"]");
    assert!(toml_err(&text).message().contains("exact or `*`"));
}

#[test]
fn limits() {
    let big = " ".repeat(MAX_POLICY_LEN + 1);
    assert!(matches!(
        ExchangePolicy::from_toml(&big),
        Err(ExchangePolicyError::TooLarge { .. })
    ));
    assert!(matches!(
        ExchangePolicy::parse_bytes(b"\xff", Format::Json),
        Err(ExchangePolicyError::NotUtf8 { offset: 0 })
    ));
    let many = vec!["\"read:a\""; MAX_GRANTS + 1].join(",");
    let e = toml_err(&rule_with(&format!("scopes = [{many}]")));
    assert!(e.message().contains("more than 256 grants"), "{e}");
    let ok = vec!["\"read:a\""; MAX_GRANTS].join(",");
    assert!(ExchangePolicy::from_toml(&rule_with(&format!("scopes = [{ok}]"))).is_ok());
    let list = vec!["\"a\""; 1025].join(",");
    let text = rule_with("scopes = [\"read:a\"]")
        .replace("workloads = [\"*\"]", &format!("workloads = [{list}]"));
    assert!(toml_err(&text).message().contains("more than 1024"));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [64, 10_000] {
        let json = format!(
            "{{\"exchange\": {}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(ExchangePolicy::from_json(&json).is_err());
        let toml = format!("x = {}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(ExchangePolicy::from_toml(&toml).is_err());
        let toml = format!("x = {}1{}", "{a=".repeat(depth), "}".repeat(depth));
        assert!(ExchangePolicy::from_toml(&toml).is_err());
    }
}

#[test]
fn deny_wins_and_names_the_first_deny() {
    let p = policy();
    let at = SubjectTokenType::AccessToken;
    let s = scope("read:orders/{sub}/**");
    let d = p.decide(&user_ask(&at, "user:blocked-bob", &s));
    assert_eq!(
        (d.effect(), d.reason(), d.rule()),
        (Effect::Deny, ExchangeReason::DenyRule, Some("no-blocked"))
    );
    assert_eq!(d.matched_rule().unwrap(), "no-blocked");
    assert!(d.granted().is_none() && d.class().is_none());
    let e = d.error().unwrap();
    assert_eq!(e.code(), ErrorCode::UnauthorizedClient);
    // Both deny rules match: the first in file order is named.
    let tt = SubjectTokenType::TxnToken;
    let legacy = ExchangeAsk::new(
        "spiffe://mesh.test/legacy-a",
        &tt,
        "user:blocked-x",
        "m",
        &s,
    );
    assert_eq!(p.decide(&legacy).rule(), Some("no-legacy"));
    let d = p.decide(&ExchangeAsk::new(
        "spiffe://mesh.test/legacy-a",
        &tt,
        "user:a",
        "m",
        &s,
    ));
    assert_eq!(d.rule(), Some("no-legacy"));
}

#[test]
fn no_rule_audience_issuer_subject_and_type() {
    let p = policy();
    let (at, jwt) = (SubjectTokenType::AccessToken, SubjectTokenType::Jwt);
    let it = SubjectTokenType::IdToken;
    let s = scope("read:orders/{sub}/**");
    assert!(p.decide(&user_ask(&at, "user:alice", &s)).is_allowed());
    // Another workload, type, issuer, no issuer, a subject outside `subjects`.
    let other = ExchangeAsk::new(
        "spiffe://mesh.test/orders",
        &at,
        "user:alice",
        "mesh.test",
        &s,
    )
    .with_issuer(IDP);
    for ask in [
        other,
        user_ask(&jwt, "user:alice", &s),
        user_ask(&at, "user:alice", &s).with_issuer("https://idp.evil.test"),
        ExchangeAsk::new(GW, &at, "user:alice", "mesh.test", &s),
        user_ask(&it, "svc:batch", &s),
    ] {
        let d = p.decide(&ask);
        assert_eq!(
            (d.reason(), d.rule()),
            (ExchangeReason::NoRule, None),
            "{ask:?}"
        );
        assert_eq!(d.matched_rule(), None);
        assert_eq!(d.error().unwrap().code(), ErrorCode::UnauthorizedClient);
    }
    // Everything but the audience: invalid_target, and the near rule is named for audit.
    let d = p.decide(&ExchangeAsk::new(GW, &at, "user:alice", "other.test", &s).with_issuer(IDP));
    assert_eq!(d.reason(), ExchangeReason::AudienceNotAllowed);
    assert_eq!(d.rule(), None);
    assert_eq!(d.matched_rule().unwrap(), "gateway-user-tokens");
    assert_eq!(d.error().unwrap().code(), ErrorCode::InvalidTarget);
    assert_eq!(
        ExchangePolicy::empty()
            .decide(&user_ask(&at, "u", &s))
            .reason(),
        ExchangeReason::NoRule
    );
}

#[test]
fn token_types_by_uri_and_private_types() {
    let p = ExchangePolicy::from_toml(&rule_with("scopes = [\"read:a\"]").replace(
        "subject_token_types = [\"*\"]",
        "subject_token_types = [\"urn:example:token-type:job\", \"txn_token\"]",
    ))
    .unwrap();
    let s = scope("read:a");
    for (t, ok) in [
        (
            SubjectTokenType::Other("urn:example:token-type:job".into()),
            true,
        ),
        (SubjectTokenType::TxnToken, true),
        (
            SubjectTokenType::Other(crate::exchange::TOKEN_TYPE_TXN_TOKEN.into()),
            true,
        ),
        (
            SubjectTokenType::Other("urn:example:token-type:other".into()),
            false,
        ),
        (SubjectTokenType::SelfSigned, false),
    ] {
        let d = p.decide(&ExchangeAsk::new("w", &t, "s", "a", &s));
        assert_eq!(d.is_allowed(), ok, "{t:?}");
    }
}

#[test]
fn down_scoping() {
    let p = policy();
    let at = SubjectTokenType::AccessToken;
    for (asked, granted, narrowed) in [
        // Within: kept as asked.
        ("read:orders/{sub}/**", "read:orders/{sub}/**", false),
        ("read:orders/{sub}/42", "read:orders/{sub}/42", false),
        (
            "read:orders/{sub}/42 create:orders/{sub}/42/dispute",
            "read:orders/{sub}/42 create:orders/{sub}/42/dispute",
            false,
        ),
        // Wider: narrowed to the policy's grants within it.
        (
            "read:**",
            "read:orders/{sub}/** read:payments/{sub}/3ds",
            true,
        ),
        (
            "*:orders/**",
            "read:orders/{sub}/** create:orders/{sub}/*/dispute",
            true,
        ),
        // Partly outside: the rest dropped.
        (
            "read:orders/{sub}/1 delete:orders/{sub}/1",
            "read:orders/{sub}/1",
            true,
        ),
        // Duplicates folded.
        (
            "read:orders/{sub}/1 read:orders/{sub}/1",
            "read:orders/{sub}/1",
            true,
        ),
        (
            "read:** *:orders/{sub}/**",
            "read:orders/{sub}/** read:payments/{sub}/3ds create:orders/{sub}/*/dispute",
            true,
        ),
    ] {
        let s = scope(asked);
        let d = p.decide(&user_ask(&at, "user:alice", &s));
        assert!(d.is_allowed(), "{asked}: {d}");
        assert_eq!(d.granted().unwrap().as_str(), granted, "{asked}");
        assert_eq!(d.narrowed(), narrowed, "{asked}");
        assert!(!d.truncated());
        assert_eq!(d.rule(), Some("gateway-user-tokens"));
        assert!(d.granted().unwrap().is_within(&s), "{asked}");
    }
    for asked in [
        "read:invoices/**",
        "delete:orders/{sub}/1",
        "read:orders/*/1",
    ] {
        let s = scope(asked);
        let d = p.decide(&user_ask(&at, "user:alice", &s));
        assert_eq!(d.reason(), ExchangeReason::ScopeNotAllowed, "{asked}");
        assert_eq!(d.matched_rule().unwrap(), "gateway-user-tokens");
        assert_eq!(d.rule(), None);
        assert_eq!(d.error().unwrap().code(), ErrorCode::InvalidScope);
    }
}

#[test]
fn sub_stands_for_the_subject_taken_literally() {
    let p = policy();
    let at = SubjectTokenType::AccessToken;
    // A literal path of the subject's own is within `{sub}` for that subject, kept as asked.
    let s = scope("read:orders/user:alice/**");
    let d = p.decide(&user_ask(&at, "user:alice", &s));
    assert_eq!(d.granted().unwrap().as_str(), "read:orders/user:alice/**");
    let one = scope("read:orders/user:alice/42");
    let d = p.decide(&user_ask(&at, "user:alice", &one));
    assert_eq!(d.granted().unwrap().as_str(), "read:orders/user:alice/42");
    // Another subject's path is not.
    assert_eq!(
        p.decide(&user_ask(&at, "user:bob", &s)).reason(),
        ExchangeReason::ScopeNotAllowed
    );
    let both = scope("read:orders/user:alice/1 read:orders/user:bob/1");
    let d = p.decide(&user_ask(&at, "user:alice", &both));
    assert_eq!(d.granted().unwrap().as_str(), "read:orders/user:alice/1");
    assert!(d.narrowed());
    // A subject with `*` or `/` is never put into a pattern: the grant stays `{sub}`, and a
    // literal path that the substituted pattern would have covered is refused.
    for sub in ["user:*", "user:a/b", "user:**", "user:{sub}"] {
        let s = scope("read:orders/{sub}/**");
        let d = p.decide(&user_ask(&at, sub, &s));
        assert_eq!(
            d.granted().unwrap().as_str(),
            "read:orders/{sub}/**",
            "{sub}"
        );
        let wide = scope("read:orders/**");
        let d = p.decide(&user_ask(&at, sub, &wide));
        assert_eq!(
            d.granted().unwrap().as_str(),
            "read:orders/{sub}/**",
            "{sub}"
        );
        let other = scope("read:orders/user:bob/1");
        assert_eq!(
            p.decide(&user_ask(&at, sub, &other)).reason(),
            ExchangeReason::ScopeNotAllowed,
            "{sub}"
        );
    }
}

#[test]
fn classes() {
    let p = policy();
    let at = SubjectTokenType::AccessToken;
    let s = scope("read:orders/{sub}/** read:payments/{sub}/3ds");
    // No class: fast, both rules contribute.
    let d = p.decide(&user_ask(&at, "user:alice", &s));
    assert_eq!(d.class(), Some(ExpiryClass::Fast));
    assert_eq!(d.granted().unwrap(), &s);
    // Medium: only the medium rule's grants.
    let d = p.decide(&user_ask(&at, "user:alice", &s).with_class(ExpiryClass::Medium));
    assert_eq!(d.class(), Some(ExpiryClass::Medium));
    assert_eq!(d.granted().unwrap().as_str(), "read:payments/{sub}/3ds");
    assert_eq!(d.rule(), Some("gateway-medium"));
    assert!(d.narrowed());
    // Medium for a grant only a fast rule allows: class, not scope.
    let fast_only = scope("read:orders/{sub}/1");
    let d = p.decide(&user_ask(&at, "user:alice", &fast_only).with_class(ExpiryClass::Medium));
    assert_eq!(d.reason(), ExchangeReason::ClassNotAllowed);
    let e = d.error().unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidScope);
    assert!(e.description().contains("class"));
    // Slow: no matching rule allows it.
    let d = p.decide(&user_ask(&at, "user:alice", &s).with_class(ExpiryClass::Slow));
    assert_eq!(d.reason(), ExchangeReason::ClassNotAllowed);
    // Slow for a grant no rule allows at all: scope.
    let none = scope("read:invoices/1");
    let d = p.decide(&user_ask(&at, "user:alice", &none).with_class(ExpiryClass::Slow));
    assert_eq!(d.reason(), ExchangeReason::ScopeNotAllowed);
    // Replacement tokens may be slow.
    let tt = SubjectTokenType::TxnToken;
    let d = p.decide(
        &ExchangeAsk::new(
            "spiffe://mesh.test/batch",
            &tt,
            "svc:batch",
            "mesh.test",
            &s,
        )
        .with_class(ExpiryClass::Slow),
    );
    assert_eq!(
        (d.rule(), d.class()),
        (Some("replacements"), Some(ExpiryClass::Slow))
    );
    assert!(!d.narrowed());
}

#[test]
fn shadow_beside_never_enforced() {
    let p = policy();
    let it = SubjectTokenType::IdToken;
    let s = scope("read:orders/{sub}/**");
    let d = p.decide(&user_ask(&it, "user:alice", &s));
    assert!(d.is_allowed());
    let sh = d.shadow().unwrap();
    assert_eq!(
        (sh.effect(), sh.reason(), sh.rule()),
        (
            Effect::Deny,
            ExchangeReason::DenyRule,
            Some("try-no-id-tokens")
        )
    );
    assert!(sh.granted().is_none());
    let at = SubjectTokenType::AccessToken;
    let sh = p
        .decide(&user_ask(&at, "user:alice", &s))
        .shadow()
        .cloned()
        .unwrap();
    assert_eq!(sh.reason(), ExchangeReason::NoRule);
    let no_shadow = ExchangePolicy::from_toml(&rule_with("scopes = [\"read:a\"]")).unwrap();
    assert!(no_shadow.decide(&user_ask(&at, "u", &s)).shadow().is_none());
}

#[test]
fn display_and_errors_echo_nothing_of_the_request() {
    let p = policy();
    let at = SubjectTokenType::AccessToken;
    let s = scope("read:orders/{sub}/secret-order");
    for sub in ["user:alice", "user:blocked-zed"] {
        for aud in ["mesh.test", "elsewhere.test"] {
            let d = p.decide(&ExchangeAsk::new(GW, &at, sub, aud, &s).with_issuer(IDP));
            let text = format!("{d}");
            assert!(
                !text.contains(sub) && !text.contains("secret") && !text.contains(aud),
                "{text}"
            );
            if let Some(e) = d.error() {
                let json = e.to_json();
                assert!(!json.contains(sub) && !json.contains("secret") && !json.contains(aud));
            }
        }
    }
    let d = p.decide(&user_ask(&at, "user:alice", &s));
    assert_eq!(
        d.to_string(),
        "allow (allow_rule) rule `gateway-user-tokens` class fast"
    );
    assert_eq!(
        ExchangeReason::AudienceNotAllowed.code(),
        "audience_not_allowed"
    );
    assert!(ExchangeReason::AllowRule.error().is_none());
}

#[test]
fn ask_from_a_request() {
    let body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
        &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Atxn_token\
        &audience=mesh.test&scope=read%3Aorders%2F%7Bsub%7D%2F1&txn_class=medium\
        &subject_token=x.y.z\
        &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
    let req = TxnTokenRequest::from_form(body.as_bytes()).unwrap();
    let ask = ExchangeAsk::from_request(GW, &req, "user:alice").with_issuer(IDP);
    assert_eq!(ask.class, Some(ExpiryClass::Medium));
    let d = policy().decide(&ask);
    assert_eq!(d.reason(), ExchangeReason::ClassNotAllowed);
}

fn many_rules(n: usize, wild_every: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let wl = if wild_every > 0 && i % wild_every == 0 {
            format!("spiffe://mesh.test/pool-{i}-*")
        } else {
            format!("spiffe://mesh.test/wl-{i}")
        };
        text.push_str(&format!(
            "[[exchange]]\nid = \"r{i}\"\neffect = \"allow\"\nworkloads = [\"{wl}\"]\n\
             subject_token_types = [\"access_token\"]\naudiences = [\"mesh.test\"]\n\
             scopes = [\"read:orders/{i}/**\"]\n"
        ));
    }
    text
}

#[test]
fn ten_thousand_rules_decide_by_lookup() {
    let p = ExchangePolicy::from_toml(&many_rules(MAX_RULES, 1000)).unwrap();
    assert_eq!(p.len(), MAX_RULES);
    let at = SubjectTokenType::AccessToken;
    let s = scope("read:orders/9999/x");
    let d = p.decide(&ExchangeAsk::new(
        "spiffe://mesh.test/wl-9999",
        &at,
        "u",
        "mesh.test",
        &s,
    ));
    assert_eq!(d.rule(), Some("r9999"));
    // Its own rule and the 10 wildcard rules, not 10,000.
    assert_eq!(d.rules_examined(), 11);
    let d = p.decide(&ExchangeAsk::new(
        "spiffe://nobody",
        &at,
        "u",
        "mesh.test",
        &s,
    ));
    assert_eq!(
        (d.reason(), d.rules_examined()),
        (ExchangeReason::NoRule, 10)
    );
    let e = toml_err(&many_rules(MAX_RULES + 1, 0));
    assert!(e.message().contains("more than 10000 rules"), "{e}");
    assert_eq!(e.rule_index(), Some(MAX_RULES));
    let report = p.lint();
    assert!(report.is_complete());
    // Each rule against its own workload's rules and the 10 wildcard ones.
    assert!(report.work() <= 11 * MAX_RULES, "{}", report.work());
}

#[test]
fn granted_is_bounded_and_narrowing_is_budgeted() {
    // 256 policy grants within one requested grant, from two rules: at most 256 granted.
    let grants = |prefix: &str| -> String {
        (0..MAX_GRANTS)
            .map(|i| format!("\"read:{prefix}/{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let text = format!(
        "{}{}",
        rule_with(&format!("scopes = [{}]", grants("a"))),
        rule_with(&format!("scopes = [{}]", grants("b"))).replace("id = \"a\"", "id = \"b\"")
    );
    let p = ExchangePolicy::from_toml(&text).unwrap();
    let s = scope("read:**");
    let t = SubjectTokenType::Jwt;
    let d = p.decide(&ExchangeAsk::new("w", &t, "s", "x", &s));
    assert!(d.is_allowed() && d.truncated() && d.narrowed());
    assert_eq!(d.granted().unwrap().grants().len(), MAX_GRANTS);
    assert!(d.granted().unwrap().is_within(&s));
}

#[test]
fn lint_findings() {
    let text = r#"
[[exchange]]
id = "deny-batch"
effect = "deny"
workloads = ["spiffe://mesh.test/batch-*"]
subject_token_types = ["*"]
audiences = ["*"]

[[exchange]]
id = "batch-a"
effect = "allow"
workloads = ["spiffe://mesh.test/batch-a"]
subject_token_types = ["self_signed"]
audiences = ["mesh.test"]
scopes = ["read:a/**"]

[[exchange]]
id = "deny-batch-b"
effect = "deny"
workloads = ["spiffe://mesh.test/batch-b"]
subject_token_types = ["jwt"]
audiences = ["mesh.test"]

[[exchange]]
id = "gw"
effect = "allow"
workloads = ["spiffe://mesh.test/gw"]
subject_token_types = ["access_token"]
audiences = ["mesh.test"]
scopes = ["read:orders/**"]

[[exchange]]
id = "gw-narrow"
effect = "allow"
workloads = ["spiffe://mesh.test/gw"]
subject_token_types = ["access_token"]
subjects = ["user:*"]
audiences = ["mesh.test"]
scopes = ["read:orders/{sub}"]

[[exchange]]
id = "gw-slow"
effect = "allow"
workloads = ["spiffe://mesh.test/gw"]
subject_token_types = ["access_token"]
audiences = ["mesh.test"]
scopes = ["read:orders/1"]
max_class = "slow"

[[exchange]]
id = "gw-again"
effect = "allow"
workloads = ["spiffe://mesh.test/gw"]
subject_token_types = ["access_token"]
audiences = ["mesh.test"]
scopes = ["read:orders/**"]

[[exchange]]
id = "anyone"
effect = "allow"
workloads = ["*"]
subject_token_types = ["urn:example:private"]
audiences = ["mesh.test"]
scopes = ["read:**"]

[[exchange]]
id = "nobody"
effect = "allow"
workloads = []
subject_token_types = ["*"]
audiences = ["*"]
scopes = ["read:a"]

[[exchange]]
id = "nothing"
effect = "allow"
workloads = ["x"]
subject_token_types = ["*"]
audiences = ["*"]
scopes = []
"#;
    let p = ExchangePolicy::from_toml(text).unwrap();
    let report = p.lint();
    assert!(report.is_complete());
    let got: Vec<(&str, &ExchangeFindingKind)> = report
        .findings()
        .iter()
        .map(|f| (f.rule(), f.kind()))
        .collect();
    let by = |s: &str| crate::policy::RuleId::new(s);
    assert_eq!(
        got,
        vec![
            (
                "batch-a",
                &ExchangeFindingKind::ShadowedByDeny {
                    by: by("deny-batch")
                }
            ),
            (
                "deny-batch-b",
                &ExchangeFindingKind::NeverDecides {
                    by: by("deny-batch")
                }
            ),
            (
                "gw-narrow",
                &ExchangeFindingKind::ScopesWithin { by: by("gw") }
            ),
            (
                "gw-again",
                &ExchangeFindingKind::ScopesWithin { by: by("gw") }
            ),
            (
                "anyone",
                &ExchangeFindingKind::UnknownTokenType {
                    uri: "urn:example:private".into()
                }
            ),
            ("anyone", &ExchangeFindingKind::AnyWorkload),
            (
                "anyone",
                &ExchangeFindingKind::RootDoubleStar {
                    grant: "read:**".into()
                }
            ),
            (
                "nobody",
                &ExchangeFindingKind::NeverMatches {
                    why: "empty `workloads`"
                }
            ),
            (
                "nothing",
                &ExchangeFindingKind::NeverMatches {
                    why: "empty `scopes`: grants nothing"
                }
            ),
        ]
    );
    assert!(report.findings()[4].kind().is_advisory());
    assert!(!report.findings()[0].kind().is_advisory());
    assert_eq!(
        report.findings()[0].to_string(),
        "exchange rule `batch-a` (#2): shadowed by deny rule `deny-batch`: can never allow"
    );
}

#[test]
fn shared_reload_keeps_the_last_good_policy() {
    let shared = SharedExchangePolicy::default();
    let other = shared.clone();
    assert_eq!(shared.reload_from_str(POLICY, Format::Toml).unwrap(), 1);
    assert_eq!(other.generation(), 1);
    assert_eq!(other.current().len(), 6);
    assert!(other.reload_from_slice(b"\xff", Format::Toml).is_err());
    assert!(
        other
            .reload_from_str("{\"exchange\": 1}", Format::Json)
            .is_err()
    );
    assert_eq!((shared.generation(), shared.current().len()), (1, 6));
    assert_eq!(shared.store(ExchangePolicy::empty()), 2);
    let at = SubjectTokenType::AccessToken;
    let s = scope("read:orders/{sub}/1");
    let (d, g) = shared.decide_with_generation(&user_ask(&at, "user:a", &s));
    assert_eq!((d.reason(), g), (ExchangeReason::NoRule, 2));
}

#[test]
fn shared_decisions_during_reloads() {
    let shared = SharedExchangePolicy::default();
    std::thread::scope(|scope_| {
        for _ in 0..2 {
            let shared = shared.clone();
            scope_.spawn(move || {
                let at = SubjectTokenType::AccessToken;
                let s = scope("read:orders/{sub}/1");
                let mut last = 0;
                for _ in 0..2000 {
                    let (d, g) = shared.decide_with_generation(&user_ask(&at, "user:a", &s));
                    assert!(g >= last);
                    last = g;
                    assert!(d.rule().is_none() || d.rule() == Some("gateway-user-tokens"));
                }
            });
        }
        for i in 0..200 {
            let text = if i % 2 == 0 { POLICY } else { "" };
            shared.reload_from_str(text, Format::Toml).unwrap();
        }
    });
    assert_eq!(shared.generation(), 200);
}

#[test]
fn subject_scopes_are_what_the_subject_token_allows() {
    let p = ExchangePolicy::from_toml(
        r#"
[[exchange]]
id = "orders-with-the-orders-scope"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token", "txn_token"]
subject_scopes = ["orders", "openid"]
audiences = ["mesh.test"]
scopes = ["read:orders/{sub}/**"]

[[exchange]]
id = "profile-for-everyone"
effect = "allow"
workloads = ["spiffe://mesh.test/gateway"]
subject_token_types = ["access_token"]
audiences = ["mesh.test"]
scopes = ["read:profiles/{sub}"]
"#,
    )
    .unwrap();
    let at = SubjectTokenType::AccessToken;
    let s = scope("read:orders/{sub}/1 read:profiles/{sub}");
    let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let ask = |t| {
        ExchangeAsk::new(
            "spiffe://mesh.test/gateway",
            t,
            "user:alice",
            "mesh.test",
            &s,
        )
    };
    // Both words: both grants.
    let both = words(&["openid", "orders", "email"]);
    let d = p.decide(&ask(&at).with_subject_scopes(&both));
    assert_eq!(d.granted().unwrap(), &s);
    // One word missing: the orders grant is not given.
    let one = words(&["orders"]);
    let d = p.decide(&ask(&at).with_subject_scopes(&one));
    assert_eq!(d.granted().unwrap().as_str(), "read:profiles/{sub}");
    // An internal token carries no IdP scope words: never the word rule.
    let tt = SubjectTokenType::TxnToken;
    assert!(!p.decide(&ask(&tt)).is_allowed());
    // A word with a star is refused in the file.
    assert!(
        ExchangePolicy::from_toml(
            "[[exchange]]\nid='x'\neffect='allow'\nworkloads=['*']\nsubject_token_types=['*']\n\
             audiences=['*']\nscopes=['read:a']\nsubject_scopes=['ord*']\n"
        )
        .is_err()
    );
}
