//! Down-scoping: the requested grants intersected with the grants the policy allows.
//!
//! Per requested grant `r` and policy grant `p`: `r` within `p` keeps `r`; else `p` within `r`
//! keeps `p` (narrowed); else nothing. "Within" is the conservative inclusion of
//! [`Scope::is_within`](crate::claims::Scope::is_within): the verb pattern and the object
//! pattern each covered, `{sub}` only by the same `{sub}` (never substituted), so every grant
//! kept is within the request and within the policy. The result is deduplicated, in request
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

/// Narrow `requested` to the grants of `allowed` (rule index, its grants), rules in file order.
pub(crate) fn narrow<'a>(requested: &'a [Grant], allowed: &[(u32, &'a [Grant])]) -> Narrowed<'a> {
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
                if within(r, p) {
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
                if within(p, r) && !keep(p, rule, &mut out) {
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
