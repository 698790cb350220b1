//! The matcher: arbitrary patterns, globs, scopes and requests. Parsing must not panic, and an
//! object pattern must agree with a direct segment-by-segment reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_core::policy::{Glob, ObjectPattern, parse_scope};
use secmesh_core::svo::{Object, Subject, Verb};

/// `{sub}` replaced literally (it may span segments), `*` one segment, trailing `**` the rest.
fn reference(pattern: &str, object: &str, sub: &str) -> bool {
    fn go(p: &[&str], o: &[&str], sub: &str) -> bool {
        match p.split_first() {
            None => o.is_empty(),
            Some((&"**", _)) => true,
            Some((&"*", rest)) => !o.is_empty() && go(rest, &o[1..], sub),
            Some((seg, rest)) => {
                let lit = seg.replace("{sub}", sub);
                let k = lit.split('/').count();
                o.len() >= k && o[..k].join("/") == lit && go(rest, &o[k..], sub)
            }
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let o: Vec<&str> = if object.is_empty() {
        Vec::new()
    } else {
        object.split('/').collect()
    };
    go(&p, &o, sub)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // pattern \n object \n subject \n scope
    let mut parts = text.splitn(4, '\n');
    let (pattern, object, subject) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let scope = parts.next().unwrap_or("");
    let (Ok(obj), Ok(sub)) = (object.parse::<Object>(), subject.parse::<Subject>()) else {
        return;
    };
    if let Ok(p) = pattern.parse::<ObjectPattern>() {
        assert_eq!(
            p.matches(obj.as_str(), sub.as_str()),
            reference(pattern, obj.as_str(), sub.as_str()),
            "pattern {pattern:?} object {object:?} subject {subject:?}"
        );
    }
    if let Ok(g) = pattern.parse::<Glob>() {
        let _ = g.matches(subject);
    }
    if let Ok(grants) = parse_scope(scope) {
        for g in &grants {
            let _ = g.covers(&Verb::Read, &obj, &sub);
            assert_eq!(g.to_string().parse::<secmesh_core::policy::Grant>().as_ref(), Ok(g));
        }
    }
});
