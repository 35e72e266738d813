//! Which flag and variant a request must get, from the rules DESIGN and the
//! flags module's documentation state, evaluated naively over the compiled
//! config (no index, no regex): the explicit flag header wins if the flag
//! covers the operation (a named flag that does not leaves the choice to
//! model matching; an unknown name is an error); else the most specific model match (exact, then the
//! glob with most literal characters, then a flag naming no models), ties to
//! the smallest key. Then: the kill switch, targeting in order, the split.

use aiflags_api::{CompiledFlag, Operation, SidecarConfig, StickySource};
use http::HeaderMap;
use serde_json::Value;

pub const FLAG_HEADER: &str = "x-aiflags-flag";

#[derive(Debug, PartialEq)]
pub enum Expected<'c> {
    /// No flag: the request passes through.
    Pass,
    /// The header names a flag the sidecar does not serve.
    Unknown(String),
    Flag(&'c CompiledFlag),
}

pub fn expected_flag<'c>(
    config: &'c SidecarConfig,
    operation: Operation,
    model: Option<&str>,
    headers: &HeaderMap,
) -> Expected<'c> {
    let covers = |f: &CompiledFlag| f.operations.is_empty() || f.operations.contains(&operation);
    let named = headers
        .get(FLAG_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|name| !name.is_empty());
    if let Some(name) = named {
        match config.flags.iter().find(|f| f.key == name) {
            None => return Expected::Unknown(name.to_string()),
            Some(flag) if covers(flag) && model.is_some() => return Expected::Flag(flag),
            Some(flag) if covers(flag) => return Expected::Pass,
            Some(_) => {}
        }
    }
    let Some(model) = model else {
        return Expected::Pass;
    };
    // (tier, literal characters): exact 2, glob 1, no models 0.
    let rank = |f: &CompiledFlag| -> Option<(u8, usize)> {
        if f.models.is_empty() {
            return Some((0, 0));
        }
        f.models
            .iter()
            .filter_map(|p| {
                let wild = p.contains(['*', '?']);
                match (wild, glob_matches(p, model)) {
                    (false, true) => Some((2, 0)),
                    (true, true) => {
                        Some((1, p.chars().filter(|c| !matches!(c, '*' | '?')).count()))
                    }
                    (_, false) => None,
                }
            })
            .max()
    };
    let best = config
        .flags
        .iter()
        .filter(|f| covers(f))
        .filter_map(|f| Some((rank(f)?, f)))
        .max_by(|(ra, fa), (rb, fb)| ra.cmp(rb).then_with(|| fb.key.cmp(&fa.key)));
    match best {
        Some((_, flag)) => Expected::Flag(flag),
        None => Expected::Pass,
    }
}

/// `*` is any run of characters (also none), `?` exactly one character;
/// everything else stands for itself. By characters, not bytes: the usual
/// backtracking to the last `*`.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (mut p, mut t) = (pattern.chars(), text.chars());
    // Where to resume after the last `*`: the pattern after it, and the text
    // it has not yet swallowed.
    let mut star: Option<(std::str::Chars<'_>, std::str::Chars<'_>)> = None;
    loop {
        match (p.clone().next(), t.clone().next()) {
            (Some('*'), _) => {
                p.next();
                star = Some((p.clone(), t.clone()));
            }
            (Some('?'), Some(_)) => {
                p.next();
                t.next();
            }
            (Some(a), Some(b)) if a == b => {
                p.next();
                t.next();
            }
            (None, None) => return true,
            _ => {
                let Some((after_star, swallowed)) = &mut star else {
                    return false;
                };
                if swallowed.next().is_none() {
                    return false;
                }
                p = after_star.clone();
                t = swallowed.clone();
            }
        }
    }
}

/// What the variant decision must be.
#[derive(Debug, PartialEq, Eq)]
pub enum Variant<'c> {
    /// This variant, by name.
    Exactly(&'c str),
    /// Whatever the random number: the split is sticky.
    Sticky,
    /// Any variant with a weight.
    Split,
    /// The oracle cannot tell (a value whose reading the spec leaves open).
    Unknown,
}

/// `body` is the body as a tolerant reader sees it, when it could.
pub fn expected_variant<'c>(
    flag: &'c CompiledFlag,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Variant<'c> {
    if !flag.enabled {
        return Variant::Exactly(&flag.default_variant);
    }
    let Some(body) = body else {
        return Variant::Unknown;
    };
    for rule in &flag.targeting {
        let headers_hold = rule.headers.iter().all(|(name, accepted)| {
            headers.get_all(name.as_str()).iter().any(|v| {
                std::str::from_utf8(v.as_bytes()).is_ok_and(|v| accepted.iter().any(|a| a == v))
            })
        });
        let mut body_holds = Some(true);
        for (path, accepted) in &rule.body {
            match at_path(body, path.split('.')) {
                Some(Value::String(s)) if accepted.contains(s) => {}
                // "Accepted string values": a number or boolean is left open.
                Some(Value::Number(_) | Value::Bool(_)) => body_holds = None,
                _ => body_holds = Some(false),
            }
        }
        match (headers_hold, body_holds) {
            (true, Some(true)) => return Variant::Exactly(&rule.variant),
            (false, _) | (_, Some(false)) => {}
            (true, None) => return Variant::Unknown,
        }
    }
    for source in &flag.sticky_by {
        let present = match source {
            StickySource::Header(name) => headers
                .get_all(name.as_str())
                .iter()
                .find_map(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(|v| !v.trim().is_empty()),
            StickySource::Body(path) => match at_path(body, path.iter().map(String::as_str)) {
                Some(Value::String(s)) => Some(!s.trim().is_empty()),
                Some(Value::Number(_)) => Some(true),
                None | Some(Value::Null) => None,
                // Booleans and structures: the spec does not say.
                Some(_) => return Variant::Unknown,
            },
        };
        if present == Some(true) {
            return Variant::Sticky;
        }
    }
    Variant::Split
}

fn at_path<'v, 'p>(body: &'v Value, path: impl IntoIterator<Item = &'p str>) -> Option<&'v Value> {
    path.into_iter()
        .try_fold(body, |value, key| value.as_object()?.get(key))
}

pub fn self_check() {
    for (pattern, text, expected) in [
        ("gpt-4o*", "gpt-4o-mini", true),
        ("gpt-4o*", "gpt-4", false),
        ("o?-*", "o4-mini", true),
        ("?", "é", true),
        ("?", "ab", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("*", "", true),
        ("", "", true),
        ("", "a", false),
        ("*x", "a\nx", true),
        ("*a*", "bab", true),
        ("a*", "", false),
        ("**?", "é", true),
        ("*?*?", "a", false),
        ("?-*", "o4-mini", false),
    ] {
        assert_eq!(
            glob_matches(pattern, text),
            expected,
            "{pattern:?} {text:?}"
        );
    }
}
