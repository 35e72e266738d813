//! The model globs of a config, indexed once per load. Nearly every glob in
//! practice is a prefix (`gpt-4o*`) or a suffix (`*-mini`): those go into hash
//! maps keyed by the literal part, bucketed by its length, so matching a
//! model is one lookup per distinct length. Only the others (`a-*-b`, `?`)
//! are compiled, into one regex set: a set of a thousand prefix globs cost
//! 40 MB of automata and prefilter where the maps cost kilobytes.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::keyhash::KeyMap;

/// Room for the compiled set: a thousand long globs fit.
pub(super) const GLOB_SET_LIMIT: usize = 256 << 20;

/// Globs by shape; a match reports the glob's index in the order given to
/// [`GlobIndex::new`].
#[derive(Debug, Default)]
pub(super) struct GlobIndex {
    prefixes: Affixes,
    suffixes: Affixes,
    /// The remaining globs and, per regex, its index among all globs.
    others: GlobMatcher,
    other_ids: Vec<usize>,
}

/// Literal parts by their byte length, ascending, each to the globs that
/// have it.
#[derive(Debug, Default)]
struct Affixes {
    by_len: Vec<(usize, GlobsByLiteral)>,
}

/// A literal part to the globs that have it.
type GlobsByLiteral = KeyMap<Box<str>, Vec<usize>>;

impl Affixes {
    fn insert(&mut self, literal: &str, id: usize) {
        let at = match self
            .by_len
            .binary_search_by_key(&literal.len(), |(len, _)| *len)
        {
            Ok(at) => at,
            Err(at) => {
                self.by_len.insert(at, (literal.len(), KeyMap::default()));
                at
            }
        };
        if let Some((_, map)) = self.by_len.get_mut(at) {
            map.entry(literal.into()).or_default().push(id);
        }
    }

    /// Calls `found` with the globs whose literal is the part of `model`
    /// that `cut` takes at each length (its start for prefixes, its end for
    /// suffixes); `cut` returns `None` off a character boundary.
    fn each<'m>(
        &self,
        model: &'m str,
        cut: impl Fn(&'m str, usize) -> Option<&'m str>,
        found: &mut impl FnMut(usize),
    ) {
        for (len, map) in &self.by_len {
            if *len > model.len() {
                break;
            }
            if let Some(ids) = cut(model, *len).and_then(|part| map.get(part)) {
                ids.iter().for_each(|id| found(*id));
            }
        }
    }
}

/// The shape of a glob: `Some(Prefix(p))` for `p*` and `Some(Suffix(s))` for
/// `*s` with no other wildcard in `p` or `s`.
enum Shape<'p> {
    Prefix(&'p str),
    Suffix(&'p str),
    Other,
}

fn shape(pattern: &str) -> Shape<'_> {
    let wildcards = pattern.matches(['*', '?']).count();
    if wildcards != 1 {
        return Shape::Other;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        Shape::Prefix(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        Shape::Suffix(suffix)
    } else {
        Shape::Other
    }
}

impl GlobIndex {
    /// Indexes `globs` (patterns with at least one wildcard). A glob that
    /// does not compile matches nothing and is logged.
    pub(super) fn new(globs: &[&str], limit: usize) -> GlobIndex {
        let mut index = GlobIndex::default();
        let mut regexes = Vec::new();
        for (id, pattern) in globs.iter().enumerate() {
            match shape(pattern) {
                Shape::Prefix(prefix) => index.prefixes.insert(prefix, id),
                Shape::Suffix(suffix) => index.suffixes.insert(suffix, id),
                Shape::Other => {
                    regexes.push(glob_regex(pattern));
                    index.other_ids.push(id);
                }
            }
        }
        index.others = GlobMatcher::new(&regexes, &mut index.other_ids, limit);
        index
    }

    /// Calls `found` with the index of every glob `model` matches.
    pub(super) fn each_match(&self, model: &str, mut found: impl FnMut(usize)) {
        self.prefixes.each(model, |m, len| m.get(..len), &mut found);
        self.suffixes
            .each(model, |m, len| m.get(m.len() - len..), &mut found);
        for i in self.others.matches(model) {
            if let Some(id) = self.other_ids.get(i) {
                found(*id);
            }
        }
    }
}

/// Globs compiled into one regex set (one pass per request). Should the set
/// not compile as a whole (it is past the size limit), each glob is kept on
/// its own and tried in turn: slower, never wrong.
#[derive(Debug, Default)]
pub(super) enum GlobMatcher {
    #[default]
    Empty,
    Set(RegexSet),
    Each(Vec<Regex>),
}

impl GlobMatcher {
    /// Compiles `regexes`; `ids` (one per regex) loses the entries of any
    /// that do not compile, so indices stay aligned.
    pub(super) fn new(regexes: &[String], ids: &mut Vec<usize>, limit: usize) -> GlobMatcher {
        if regexes.is_empty() {
            return GlobMatcher::Empty;
        }
        match RegexSetBuilder::new(regexes).size_limit(limit).build() {
            Ok(set) => GlobMatcher::Set(set),
            Err(e) => {
                tracing::warn!(error = %e, "model globs do not compile as one set; matching them one by one");
                let mut kept = Vec::with_capacity(regexes.len());
                let mut kept_ids = Vec::with_capacity(ids.len());
                for (regex, id) in regexes.iter().zip(ids.iter()) {
                    match RegexBuilder::new(regex).size_limit(limit).build() {
                        Ok(compiled) => {
                            kept.push(compiled);
                            kept_ids.push(*id);
                        }
                        Err(e) => {
                            tracing::warn!(pattern = %regex, error = %e, "a model glob does not compile; it matches nothing")
                        }
                    }
                }
                *ids = kept_ids;
                GlobMatcher::Each(kept)
            }
        }
    }

    /// Indices of the regexes `model` matches.
    pub(super) fn matches(&self, model: &str) -> Vec<usize> {
        match self {
            GlobMatcher::Empty => Vec::new(),
            GlobMatcher::Set(set) => set.matches(model).into_iter().collect(),
            GlobMatcher::Each(each) => each
                .iter()
                .enumerate()
                .filter(|(_, regex)| regex.is_match(model))
                .map(|(i, _)| i)
                .collect(),
        }
    }
}

/// Whether `pattern` is a glob rather than an exact model name.
pub(super) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The anchored regex of a glob. Our patterns know only `*` (any run of
/// characters, also none) and `?` (exactly one character); everything else
/// is literal.
pub(super) fn glob_regex(pattern: &str) -> String {
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
    regex
}
