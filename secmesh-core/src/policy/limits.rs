//! Rate limits declared beside the access rules: `[[limit]]` tables in the policy file.
//!
//! A [`Limit`] applies to a request when every condition it sets matches (the same globs and
//! patterns as the rules: `subjects`, `callers`, `verbs`, `objects`; a condition left out
//! matches anything, and a limit with `callers` never applies to a request without a caller).
//! Its counters are kept [`per`](Limit::per) subject, per calling workload, both, or once for
//! every request it applies to (`per = []`: the route's own limit). The rate is `N/s`, `N/min`,
//! `N/h` or `N/d` with a burst (default: `N`), decided by the generic cell rate algorithm
//! ([`crate::limit`]). Every limit that applies is counted; the first that refuses (file
//! order) decides. A `shadow` limit is counted and reported, never enforced.
//!
//! Deciding is the caller's (the counters live in a process or in Redis); this module says
//! which limits apply and what each counter's key is ([`Limit::key`]).
//!
//! ```toml
//! [[limit]]
//! id = "creates-per-user"        # required, unique among the limits
//! rate = "10/s"                  # N/s, N/min, N/h, N/d
//! burst = 20                     # optional: requests at once (default: N)
//! per = ["subject"]              # optional: subject, caller, both, or [] (default: subject)
//! subjects = ["user:*"]          # optional conditions, as in a rule
//! verbs = ["create"]
//! objects = ["orders/**"]
//! callers = ["spiffe://mesh.test/gateway"]
//! mode = "enforce"               # enforce (default) | shadow
//! ```
//!
//! # Example
//! ```
//! use secmesh_core::policy::{Per, Policy, Request};
//! use secmesh_core::svo::{Object, Subject, Verb};
//!
//! let policy = Policy::from_toml(r#"
//! [[rule]]
//! id = "orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["*"]
//! objects = ["orders/**"]
//!
//! [[limit]]
//! id = "creates-per-user"
//! rate = "10/s"
//! burst = 20
//! verbs = ["create"]
//! objects = ["orders/**"]
//! "#)?;
//! let limit = &policy.limits()[0];
//! assert_eq!((limit.rate().count(), limit.rate().burst_size()), (10, 20));
//! assert_eq!(limit.per(), Per::SUBJECT);
//!
//! let alice: Subject = "user:alice".parse()?;
//! let order: Object = "orders/42".parse()?;
//! let write = Request::new(&alice, &Verb::Create, &order);
//! assert!(limit.applies(&write));
//! assert!(!limit.applies(&Request::new(&alice, &Verb::Read, &order)));
//! let mut key = String::new();
//! limit.key(&write, &mut key);
//! assert_eq!(key, "creates-per-user|s10:user:alice|");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::engine::Request;
use super::model::{Mode, RuleId};
use super::pattern::{Glob, ObjectPattern, VerbPattern};
use crate::limit::Rate;

/// The most `[[limit]]` tables one policy may hold: every request is matched against each.
pub const MAX_LIMITS: usize = 256;

/// What a limit's counters are kept per: a set of [`Per::SUBJECT`] and [`Per::CALLER`]; empty
/// is one counter for every request the limit applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Per(u8);

impl Per {
    /// One counter for every request the limit applies to.
    pub const ROUTE: Per = Per(0);
    /// A counter per token subject.
    pub const SUBJECT: Per = Per(1);
    /// A counter per calling workload.
    pub const CALLER: Per = Per(2);

    /// Both sets together.
    pub const fn and(self, other: Per) -> Per {
        Per(self.0 | other.0)
    }

    /// Whether every part of `other` is in this set.
    pub const fn contains(self, other: Per) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names as written in a policy: `subject`, `caller`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [(Per::SUBJECT, "subject"), (Per::CALLER, "caller")]
            .into_iter()
            .filter(move |(p, _)| self.contains(*p) && p.0 != 0)
            .map(|(_, n)| n)
    }
}

/// One validated `[[limit]]`; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub(crate) id: RuleId,
    pub(crate) rate: Rate,
    pub(crate) per: Per,
    pub(crate) subjects: Option<Vec<Glob>>,
    pub(crate) callers: Option<Vec<Glob>>,
    pub(crate) verbs: Option<Vec<VerbPattern>>,
    pub(crate) objects: Option<Vec<ObjectPattern>>,
    pub(crate) mode: Mode,
}

impl Limit {
    /// The limit's id.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The rate with its burst.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// What the counters are kept per.
    pub fn per(&self) -> Per {
        self.per
    }

    /// Enforce or shadow.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The subject globs, when the limit restricts subjects.
    pub fn subjects(&self) -> Option<&[Glob]> {
        self.subjects.as_deref()
    }

    /// The caller globs, when the limit restricts callers.
    pub fn callers(&self) -> Option<&[Glob]> {
        self.callers.as_deref()
    }

    /// The verb patterns, when the limit restricts verbs.
    pub fn verbs(&self) -> Option<&[VerbPattern]> {
        self.verbs.as_deref()
    }

    /// The object patterns, when the limit restricts objects.
    pub fn objects(&self) -> Option<&[ObjectPattern]> {
        self.objects.as_deref()
    }

    /// Whether the limit applies to `req` (its class, grants and attributes aside).
    pub fn applies(&self, req: &Request<'_>) -> bool {
        let subject = req.subject.as_str();
        if let Some(verbs) = &self.verbs
            && !verbs.iter().any(|v| v.matches(req.verb.as_str()))
        {
            return false;
        }
        if let Some(objects) = &self.objects
            && !objects
                .iter()
                .any(|o| o.matches(req.object.as_str(), subject))
        {
            return false;
        }
        if let Some(subjects) = &self.subjects
            && !subjects.iter().any(|g| g.matches(subject))
        {
            return false;
        }
        if let Some(callers) = &self.callers {
            match req.caller {
                Some(c) if callers.iter().any(|g| g.matches(c)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Write into `out` (cleared first) the key of `req`'s counter for this limit: the id,
    /// then each part the counters are kept per, length-prefixed so that no two different
    /// requests share a key (`id|s<len>:<subject>|c<len>:<caller>`; a request without a
    /// caller has `c-`).
    pub fn key(&self, req: &Request<'_>, out: &mut String) {
        out.clear();
        out.push_str(self.id.as_str());
        out.push('|');
        if self.per.contains(Per::SUBJECT) {
            let s = req.subject.as_str();
            out.push('s');
            push_len(out, s.len());
            out.push(':');
            out.push_str(s);
            out.push('|');
        }
        if self.per.contains(Per::CALLER) {
            match req.caller {
                Some(c) => {
                    out.push('c');
                    push_len(out, c.len());
                    out.push(':');
                    out.push_str(c);
                }
                None => out.push_str("c-"),
            }
        }
    }
}

/// `n` in decimal, without the formatting machinery (this is on every request's path).
fn push_len(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::Policy;
    use crate::svo::{Object, Subject, Verb};

    fn limits(text: &str) -> Vec<Limit> {
        Policy::from_toml(text).unwrap().limits().to_vec()
    }

    #[test]
    fn defaults_and_conditions() {
        let l = limits("[[limit]]\nid = \"all\"\nrate = \"5/min\"\n");
        assert_eq!(l[0].rate().burst_size(), 5);
        assert_eq!(l[0].rate().period_secs(), 60);
        assert_eq!(l[0].per(), Per::SUBJECT);
        assert_eq!(l[0].mode(), Mode::Enforce);
        let alice: Subject = "user:alice".parse().unwrap();
        let o: Object = "a/b".parse().unwrap();
        assert!(l[0].applies(&Request::new(&alice, &Verb::Delete, &o)));

        let l = limits(
            "[[limit]]\nid = \"gw\"\nrate = \"1/s\"\nper = []\ncallers = [\"spiffe://m/gw\"]\nsubjects = [\"svc:*\"]\nobjects = [\"{sub}/**\"]\n",
        );
        let svc: Subject = "svc:x".parse().unwrap();
        let own: Object = "svc:x/1".parse().unwrap();
        let other: Object = "svc:y/1".parse().unwrap();
        let r = Request::new(&svc, &Verb::Read, &own);
        assert!(!l[0].applies(&r), "no caller");
        assert!(l[0].applies(&r.with_caller("spiffe://m/gw")));
        assert!(!l[0].applies(&r.with_caller("spiffe://m/other")));
        assert!(
            !l[0].applies(&Request::new(&svc, &Verb::Read, &other).with_caller("spiffe://m/gw"))
        );
        assert!(
            !l[0].applies(&Request::new(&alice, &Verb::Read, &own).with_caller("spiffe://m/gw"))
        );
    }

    #[test]
    fn keys_never_collide_across_parts() {
        let l = limits("[[limit]]\nid = \"x\"\nrate = \"1/s\"\nper = [\"subject\", \"caller\"]\n");
        let o: Object = "a".parse().unwrap();
        let mut seen = std::collections::HashSet::new();
        for (s, c) in [
            ("user:a", Some("b")),
            ("user:a|c1:b", None),
            ("user:a", None),
            ("user:a|", Some("b")),
            ("user:ab", Some("")),
        ] {
            let s: Subject = s.parse().unwrap();
            let mut r = Request::new(&s, &Verb::Read, &o);
            if let Some(c) = c {
                r = r.with_caller(c);
            }
            let mut k = String::new();
            l[0].key(&r, &mut k);
            assert!(seen.insert(k.clone()), "{k}");
        }
        let route = limits("[[limit]]\nid = \"r\"\nrate = \"1/s\"\nper = []\n");
        let s: Subject = "user:z".parse().unwrap();
        let mut k = String::new();
        route[0].key(&Request::new(&s, &Verb::Read, &o), &mut k);
        assert_eq!(k, "r|");
    }

    #[test]
    fn refused_declarations() {
        for (text, msg) in [
            ("[[limit]]\nid = \"a\"\n", "missing field `rate`"),
            ("[[limit]]\nid = \"a\"\nrate = \"0/s\"\n", "rate"),
            ("[[limit]]\nid = \"a\"\nrate = \"5/week\"\n", "rate"),
            (
                "[[limit]]\nid = \"a\"\nrate = \"5/s\"\nburst = 0\n",
                "burst",
            ),
            (
                "[[limit]]\nid = \"a\"\nrate = \"5/s\"\nper = [\"ip\"]\n",
                "per",
            ),
            (
                "[[limit]]\nid = \"a\"\nrate = \"5/s\"\nper = [\"subject\", \"subject\"]\n",
                "twice",
            ),
            (
                "[[limit]]\nid = \"a\"\nrate = \"5/s\"\ncolor = 1\n",
                "unknown field",
            ),
            (
                "[[limit]]\nid = \"a\"\nrate = \"5/s\"\n[[limit]]\nid = \"a\"\nrate = \"5/s\"\n",
                "duplicate limit id",
            ),
            (
                "[[limit]]\nid = \"a\"\nrate = \"5/s\"\nobjects = [\"a/**/b\"]\n",
                "**",
            ),
            (
                "[[limit]]\nid = \"a\"\nrate = \"5/s\"\nverbs = []\n",
                "empty `verbs` would match nothing",
            ),
        ] {
            let err = Policy::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
        let many: String = (0..=MAX_LIMITS)
            .map(|i| format!("[[limit]]\nid = \"l{i}\"\nrate = \"1/s\"\n"))
            .collect();
        let err = Policy::from_toml(&many).unwrap_err().to_string();
        assert!(err.contains("more than 256 limits"), "{err}");
    }

    #[test]
    fn lengths_in_decimal() {
        for n in [0usize, 7, 10, 99, 100, 12345, usize::MAX] {
            let mut s = String::new();
            push_len(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn json_too() {
        let p = Policy::from_json(
            r#"{"limit": [{"id": "a", "rate": "3/s", "burst": 6, "per": ["caller"], "mode": "shadow"}]}"#,
        )
        .unwrap();
        let l = &p.limits()[0];
        assert_eq!(
            (l.per(), l.mode(), l.rate().burst_size()),
            (Per::CALLER, Mode::Shadow, 6)
        );
        assert!(p.rules().is_empty());
    }
}
