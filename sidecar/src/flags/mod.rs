//! The flags a sidecar serves, resolved and indexed once per config load:
//! exact model names in a map, globs in [`globs::GlobIndex`] (prefix and
//! suffix globs in maps, the rest in one regex set), so finding a request's
//! flag costs the same with one flag or a thousand. (Not `globset`: it
//! matches bytes, so its `?` would match one byte of a non-ASCII model name,
//! not one character.)
//!
//! Which flag applies: an explicit `x-aiflags-flag` header wins when the flag
//! covers the request's operation (a header cannot turn an embeddings flag
//! onto chat traffic, and model matching then decides); otherwise, among the flags covering the
//! operation, an exact model pattern beats a glob, a glob with more literal
//! characters beats one with fewer, and a flag listing no models comes last;
//! ties go to the smallest flag key.

pub(crate) mod bucketing;
pub(crate) mod decide;
mod globs;
pub(crate) mod resolved;

use std::sync::Arc;

use aiflags_api::{CompiledFlag, Operation};
use http::{HeaderMap, HeaderName};

use self::globs::{GLOB_SET_LIMIT, GlobIndex, is_glob};
use self::resolved::ResolvedFlag;
use crate::keyhash::KeyMap;
use crate::upstream::target::Upstreams;

/// Names the flag to apply, bypassing model matching.
pub(crate) const FLAG_HEADER: HeaderName = HeaderName::from_static("x-aiflags-flag");

/// Flags ready to match requests against.
#[derive(Debug, Default)]
pub struct Flags {
    /// Sorted by key.
    flags: Vec<ResolvedFlag>,
    by_key: KeyMap<Box<str>, usize>,
    /// Model → flags naming it exactly, by key.
    exact: KeyMap<Box<str>, Vec<usize>>,
    globs: GlobIndex,
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
    pub fn new(compiled: Vec<Arc<CompiledFlag>>, upstreams: &Upstreams) -> Flags {
        let resolver = upstreams.resolver();
        let mut flags: Vec<ResolvedFlag> = compiled
            .into_iter()
            .map(|flag| ResolvedFlag::new(flag, &resolver))
            .collect();
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let by_key = flags
            .iter()
            .enumerate()
            .map(|(i, f)| (Box::from(&*f.key), i))
            .collect();
        let mut exact: KeyMap<Box<str>, Vec<usize>> = KeyMap::default();
        let mut globs = Vec::new();
        let mut glob_owners = Vec::new();
        let mut catch_all = Vec::new();
        for (i, flag) in flags.iter().enumerate() {
            if flag.compiled.models.is_empty() {
                catch_all.push(i);
            }
            for pattern in &flag.compiled.models {
                if is_glob(pattern) {
                    globs.push(pattern.as_str());
                    glob_owners.push((i, literal_chars(pattern)));
                } else {
                    exact.entry(pattern.as_str().into()).or_default().push(i);
                }
            }
        }
        for list in exact.values_mut() {
            list.dedup();
        }
        let globs = GlobIndex::new(&globs, GLOB_SET_LIMIT);
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
        // Most literal characters, then the smallest key (lowest index).
        let mut best_glob: Option<(usize, usize)> = None;
        self.globs.each_match(model, |g| {
            let Some(&(flag, literal)) = self.glob_owners.get(g) else {
                return;
            };
            let better = best_glob.is_none_or(|(best, most)| {
                literal.cmp(&most).then_with(|| best.cmp(&flag)).is_gt()
            });
            if better && covering(&flag).is_some() {
                best_glob = Some((flag, literal));
            }
        });
        if let Some(flag) = best_glob.and_then(|(flag, _)| self.flags.get(flag)) {
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
