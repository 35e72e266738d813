//! The flags a sidecar serves, resolved and indexed once per config load:
//! exact model names in a map, every glob compiled into one regex set, so
//! finding a request's flag costs the same with one flag or a thousand.
//! (A regex set rather than `globset`: globset matches bytes, so its `?`
//! would match one byte of a non-ASCII model name, not one character.)
//!
//! Which flag applies: an explicit `x-aiflags-flag` header wins when the flag
//! covers the request's operation (a header cannot turn an embeddings flag
//! onto chat traffic, and model matching then decides); otherwise, among the flags covering the
//! operation, an exact model pattern beats a glob, a glob with more literal
//! characters beats one with fewer, and a flag listing no models comes last;
//! ties go to the smallest flag key.

pub(crate) mod bucketing;
pub(crate) mod decide;
pub(crate) mod resolved;

use std::collections::HashMap;

use aiflags_api::{Operation, SidecarConfig};
use http::HeaderMap;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use self::resolved::ResolvedFlag;
use crate::upstream::target::Upstreams;

/// Names the flag to apply, bypassing model matching.
pub(crate) const FLAG_HEADER: &str = "x-aiflags-flag";

/// Flags ready to match requests against.
#[derive(Debug, Default)]
pub struct Flags {
    /// Sorted by key.
    flags: Vec<ResolvedFlag>,
    by_key: HashMap<Box<str>, usize>,
    /// Model → flags naming it exactly, by key.
    exact: HashMap<Box<str>, Vec<usize>>,
    globs: GlobMatcher,
    /// Per glob in `globs`: (flag index, literal characters).
    glob_owners: Vec<(usize, usize)>,
    /// Flags listing no models, by key.
    catch_all: Vec<usize>,
}

#[derive(Debug)]
pub enum Selection<'f> {
    /// No flag applies: pass the request through untouched.
    None,
    Selected(&'f ResolvedFlag),
    /// The flag header names a flag this sidecar does not serve.
    UnknownFlag(String),
}

impl Flags {
    pub fn new(config: &SidecarConfig, upstreams: &Upstreams) -> Flags {
        let mut flags: Vec<ResolvedFlag> = config
            .flags
            .iter()
            .map(|flag| ResolvedFlag::new(flag.clone(), upstreams))
            .collect();
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let by_key = flags
            .iter()
            .enumerate()
            .map(|(i, f)| (Box::from(&*f.key), i))
            .collect();
        let mut exact: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut globs = Vec::new();
        let mut glob_owners = Vec::new();
        let mut catch_all = Vec::new();
        for (i, flag) in flags.iter().enumerate() {
            if flag.compiled.models.is_empty() {
                catch_all.push(i);
            }
            for pattern in &flag.compiled.models {
                match glob_regex(pattern) {
                    None => exact.entry(pattern.as_str().into()).or_default().push(i),
                    Some(regex) => {
                        globs.push(regex);
                        glob_owners.push((i, literal_chars(pattern)));
                    }
                }
            }
        }
        for list in exact.values_mut() {
            list.dedup();
        }
        let globs = GlobMatcher::new(&globs, &mut glob_owners, GLOB_SET_LIMIT);
        Flags {
            flags,
            by_key,
            exact,
            globs,
            glob_owners,
            catch_all,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flags.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &ResolvedFlag> {
        self.flags.iter()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&ResolvedFlag> {
        self.by_key.get(key).and_then(|i| self.flags.get(*i))
    }

    /// The flag for a request with this operation, model and headers.
    pub fn select(
        &self,
        operation: Operation,
        model: Option<&str>,
        headers: &HeaderMap,
    ) -> Selection<'_> {
        if let Some(name) = explicit_flag(headers) {
            match self.get(name) {
                Some(flag) if covers(flag, operation) => return Selection::Selected(flag),
                // A client that sends the header on every call (one SDK
                // client for chat and embeddings) still gets the flags its
                // other operations match by model.
                Some(_) => {}
                None => return Selection::UnknownFlag(name.to_string()),
            }
        }
        let Some(model) = model else {
            return Selection::None;
        };
        let covering = |i: &usize| self.flags.get(*i).filter(|f| covers(f, operation));
        if let Some(flag) = self
            .exact
            .get(model)
            .and_then(|list| list.iter().find_map(covering))
        {
            return Selection::Selected(flag);
        }
        let best_glob = self
            .globs
            .matches(model)
            .into_iter()
            .filter_map(|g| self.glob_owners.get(g))
            .filter(|(flag, _)| covering(flag).is_some())
            // Most literal characters, then the smallest key (lowest index).
            .max_by(|(fa, la), (fb, lb)| la.cmp(lb).then_with(|| fb.cmp(fa)));
        if let Some(flag) = best_glob.and_then(|(flag, _)| self.flags.get(*flag)) {
            return Selection::Selected(flag);
        }
        match self.catch_all.iter().find_map(covering) {
            Some(flag) => Selection::Selected(flag),
            None => Selection::None,
        }
    }
}

fn explicit_flag(headers: &HeaderMap) -> Option<&str> {
    let name = headers.get(FLAG_HEADER)?.to_str().ok()?.trim();
    (!name.is_empty()).then_some(name)
}

fn covers(flag: &ResolvedFlag, operation: Operation) -> bool {
    let operations = &flag.compiled.operations;
    operations.is_empty() || operations.contains(&operation)
}

fn literal_chars(pattern: &str) -> usize {
    pattern.chars().filter(|c| !matches!(c, '*' | '?')).count()
}

/// Every glob of the config in one regex set (one pass per request). Should
/// the set not compile as a whole (it is past the size limit), each glob is
/// kept on its own and tried in turn: slower, never wrong. A glob that does
/// not compile even alone matches nothing and is logged; the others keep
/// matching.
#[derive(Debug, Default)]
enum GlobMatcher {
    #[default]
    Empty,
    Set(RegexSet),
    Each(Vec<Regex>),
}

/// Room for the compiled set: a thousand long globs fit.
const GLOB_SET_LIMIT: usize = 256 << 20;

impl GlobMatcher {
    /// Compiles `regexes`; `owners` (one per regex) loses the entries of any
    /// that do not compile, so indices stay aligned.
    fn new(regexes: &[String], owners: &mut Vec<(usize, usize)>, limit: usize) -> GlobMatcher {
        if regexes.is_empty() {
            return GlobMatcher::Empty;
        }
        match RegexSetBuilder::new(regexes).size_limit(limit).build() {
            Ok(set) => GlobMatcher::Set(set),
            Err(e) => {
                tracing::warn!(error = %e, "model globs do not compile as one set; matching them one by one");
                let mut kept = Vec::with_capacity(regexes.len());
                let mut kept_owners = Vec::with_capacity(owners.len());
                for (regex, owner) in regexes.iter().zip(owners.iter()) {
                    match RegexBuilder::new(regex).size_limit(limit).build() {
                        Ok(compiled) => {
                            kept.push(compiled);
                            kept_owners.push(*owner);
                        }
                        Err(e) => {
                            tracing::warn!(pattern = %regex, error = %e, "a model glob does not compile; it matches nothing")
                        }
                    }
                }
                *owners = kept_owners;
                GlobMatcher::Each(kept)
            }
        }
    }

    /// Indices of the globs `model` matches.
    fn matches(&self, model: &str) -> Vec<usize> {
        match self {
            GlobMatcher::Empty => Vec::new(),
            GlobMatcher::Set(set) => set.matches(model).into_iter().collect(),
            GlobMatcher::Each(each) => (0..each.len())
                .filter(|i| each[*i].is_match(model))
                .collect(),
        }
    }
}

/// The anchored regex of a glob; `None` for a pattern without wildcards (an
/// exact name). Our patterns know only `*` (any run of characters, also
/// none) and `?` (exactly one character); everything else is literal.
fn glob_regex(pattern: &str) -> Option<String> {
    if !pattern.contains(['*', '?']) {
        return None;
    }
    let mut regex = String::with_capacity(pattern.len() * 2 + 8);
    regex.push_str("(?s)^");
    let mut literal = [0u8; 4];
    for c in pattern.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            c => regex.push_str(&regex::escape(c.encode_utf8(&mut literal))),
        }
    }
    regex.push('$');
    Some(regex)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
