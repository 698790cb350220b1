//! Down-scoping: the requested grants intersected with the grants the policy allows.
//!
//! Per requested grant `r` and policy grant `p`: `r` within `p` keeps `r`; else `p` within `r`
//! keeps `p` (narrowed); else nothing. "Within" is the conservative inclusion of
//! [`Scope::is_within`](crate::claims::Scope::is_within): the verb pattern and the object
//! pattern each covered, `{sub}` by the same `{sub}`; and, for the subject the token will
//! carry, `{sub}` standing for that subject *taken literally*: `read:orders/user:alice/42` is
//! within `read:orders/{sub}/**` when the subject is `user:alice`, which is exactly what the
//! authorizer will decide for that token. A subject that would read as a pattern (with `*`,
//! `/`, `{` or `}`, or empty) is never put into one: its `{sub}` only covers `{sub}`. Every
//! grant kept is thus within the request and within the policy for this subject. The result is deduplicated, in request
//! order, at most [`MAX_GRANTS`] grants, and the work is at most [`MAX_NARROW_WORK`] pair
//! tests: past either bound the remaining grants are left out (never widened).

use std::collections::HashSet;

use crate::policy::Grant;
use crate::policy::grant::MAX_GRANTS;

/// The most (requested grant, policy grant) pairs one decision tests. A request carries at
/// most [`MAX_GRANTS`] grants and a rule at most as many, so this is reached only when
/// thousands of rules match one ask.
pub const MAX_NARROW_WORK: usize = 1 << 20;

/// The outcome of narrowing.
pub(crate) struct Narrowed<'a> {
    /// The grants kept.
    pub(crate) grants: Vec<&'a Grant>,
    /// The first rule (in the order given) a kept grant came from.
    pub(crate) first_source: Option<u32>,
    /// Whether a bound left grants out.
    pub(crate) truncated: bool,
}

fn within(narrow: &Grant, wide: &Grant) -> bool {
    wide.verb().covers(narrow.verb()) && wide.object().covers(narrow.object())
}

/// A subject that can stand literally inside an object pattern: non-empty, and nothing in it
/// reads as pattern syntax (`*`, `/`, `{`, `}`) or separates words (whitespace), so
/// substituting it for `{sub}` never widens a grant. `None` for any other subject.
pub fn literal_subject(subject: &str) -> Option<&str> {
    let safe = !subject.is_empty()
        && !subject.contains(['*', '/', '{', '}'])
        && !subject.chars().any(char::is_whitespace);
    safe.then_some(subject)
}

/// `g` with `{sub}` replaced by `subject`, when it uses `{sub}` and the result is a grant.
fn substituted(g: &Grant, subject: &str) -> Option<Grant> {
    let text = g.to_string();
    if !text.contains("{sub}") {
        return None;
    }
    text.replace("{sub}", subject).parse().ok()
}

/// [`within`], and within for `subject` (literal-safe) standing for `{sub}` on both sides.
fn within_for(narrow: &Grant, wide: &Grant, subject: Option<&str>) -> bool {
    if within(narrow, wide) {
        return true;
    }
    let Some(sub) = subject else { return false };
    let n = substituted(narrow, sub);
    let w = substituted(wide, sub);
    if n.is_none() && w.is_none() {
        return false;
    }
    within(n.as_ref().unwrap_or(narrow), w.as_ref().unwrap_or(wide))
}

/// Narrow `requested` to the grants of `allowed` (rule index, its grants), rules in file order,
/// for the token's `subject` (see the module docs; `None`: `{sub}` only covers `{sub}`).
pub(crate) fn narrow<'a>(
    requested: &'a [Grant],
    allowed: &[(u32, &'a [Grant])],
    subject: Option<&str>,
) -> Narrowed<'a> {
    let mut out: Vec<&'a Grant> = Vec::new();
    let mut seen: HashSet<&'a Grant> = HashSet::new();
    let mut first_source: Option<u32> = None;
    let mut truncated = false;
    let mut work = 0usize;
    let mut keep = |g: &'a Grant, rule: u32, out: &mut Vec<&'a Grant>| -> bool {
        if !seen.contains(g) {
            if out.len() == MAX_GRANTS {
                return false;
            }
            seen.insert(g);
            out.push(g);
        }
        first_source = Some(first_source.map_or(rule, |f| f.min(rule)));
        true
    };
    'requested: for r in requested {
        // `r` within some policy grant: keep `r` whole.
        let mut covering = None;
        'find: for &(rule, grants) in allowed {
            for p in grants {
                work += 1;
                if work > MAX_NARROW_WORK {
                    truncated = true;
                    break 'requested;
                }
                if within_for(r, p, subject) {
                    covering = Some(rule);
                    break 'find;
                }
            }
        }
        if let Some(rule) = covering {
            if !keep(r, rule, &mut out) {
                truncated = true;
                break;
            }
            continue;
        }
        // Else the policy grants within `r`.
        for &(rule, grants) in allowed {
            for p in grants {
                work += 1;
                if work > MAX_NARROW_WORK {
                    truncated = true;
                    break 'requested;
                }
                if within_for(p, r, subject) && !keep(p, rule, &mut out) {
                    truncated = true;
                    break 'requested;
                }
            }
        }
    }
    Narrowed {
        grants: out,
        first_source,
        truncated,
    }
}
