//! The workspace's modules form a tree: within each crate, at every level, no
//! module reaches a sibling that reaches back to it, directly or around a
//! longer loop. (The shared `modcycles.py` tool checks a crate's top level;
//! this checks every level, and runs in `cargo test`.)
//!
//! A module's references are the `crate::`, `super::` and `self::` paths in
//! its code (use lists expanded), outside comments and test-only modules;
//! a path through a name some module imports (`pub use a::B` in `lib.rs`,
//! then `crate::B`) is followed to where the name comes from. A reference
//! between two modules neither of which contains the other is an edge
//! between their ancestors that are siblings. Test-only modules (declared
//! `#[cfg(test)]`) are checked among themselves: a test module may use
//! anything, but two test-support modules must not import each other.
//!
//! It reads source text, not Rust's syntax tree: inline `mod x { … }` blocks
//! other than test modules are read as part of the file's module (the
//! sidecar's `lib.rs` has one, `fuzzing`, of re-exports only), and an item
//! is known by its keyword and name (`fn g`, `struct S`), not its scope.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

/// One module: its code (comments and inline test modules removed), the
/// names its `use` items bring in (name → the path they name), and whether
/// it exists for tests only.
struct Module {
    code: String,
    imports: BTreeMap<String, Vec<String>>,
    /// Where its `use …::*` items bring names in from.
    globs: Vec<Vec<String>>,
    /// The names of the items it defines (`fn`, `struct`, `const`, …).
    defines: BTreeSet<String>,
    test_only: bool,
}

type Crate = BTreeMap<ModPath, Module>;

type Edges = BTreeMap<(ModPath, ModPath), String>;

#[test]
fn no_two_modules_of_a_crate_import_each_other_at_any_level() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = workspace_members(&manifest);
    assert!(members.contains(&"sidecar".to_string()), "{members:?}");
    let mut found = Vec::new();
    for member in &members {
        let modules = modules(&root.join(member).join("src"));
        assert!(!modules.is_empty(), "no modules found in {member}/src");
        let edges = edges(&modules);
        if member == "sidecar" {
            // The check sees the request path's first step at all.
            let route = (vec!["route".to_string()], vec!["attempts".to_string()]);
            assert!(edges.contains_key(&route), "{:?}", edges.keys());
        }
        for cycle in cycles(&edges) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            found.push(format!("{member}: a loop among {}", names.join(", ")));
            for ((a, b), example) in &edges {
                if cycle.contains(a) && cycle.contains(b) {
                    found.push(format!("  {} -> {}: {example}", a.join("::"), b.join("::")));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_follows_use_lists_and_imports_and_ignores_comments_and_tests() {
    let dir = scratch_dir("loops");
    let write = |path: &str, text: &str| write_file(&dir, path, text);
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\npub use c::G;\n#[cfg(test)]\n#[path = \"t_tests.rs\"]\nmod t;\n",
    );
    write("main.rs", "use crate::a;\n"); // a crate of its own
    write("a.rs", "use crate::{b::{B}, x};\n");
    write("b/mod.rs", "mod inner;\n");
    write("b/inner.rs", "pub fn f() { super::super::c::g() }\n");
    // A doc link, a block comment, a string and a test module do not count;
    // what follows the test module does.
    write(
        "c.rs",
        "//! See [`crate::a`].\n/* crate::a */\nconst S: &str = \"// crate::a\";\n\
         #[cfg(test)]\nmod tests {\n    use crate::a;\n    fn f() { if true { crate::a::A } }\n}\n\
         pub fn g() {}\n",
    );
    write("t_tests.rs", "use crate::a;\n");
    let parsed = modules(&dir);
    assert!(!parsed.contains_key(&vec!["main".to_string()]));
    assert!(parsed[&vec!["t_tests".to_string()]].test_only);
    assert!(!parsed[&vec!["a".to_string()]].test_only);
    let clean = edges(&parsed);
    assert!(cycles(&clean).is_empty(), "{clean:?}");
    let edge = |a: &str, b: &str| (vec![a.to_string()], vec![b.to_string()]);
    assert!(clean.contains_key(&edge("a", "b")), "{clean:?}");
    assert!(clean.contains_key(&edge("b", "c")), "{clean:?}");

    // Through the crate root's import of `c::G`, after the test module.
    write(
        "c.rs",
        "#[cfg(test)]\nmod tests {\n    use super::*;\n}\npub fn g() { let _ = crate::a::A; }\n",
    );
    write("a.rs", "use crate::G;\n");
    write("b/inner.rs", "pub fn f() {}\n");
    let loops = cycles(&edges(&modules(&dir)));
    assert_eq!(
        loops,
        vec![vec![vec!["a".to_string()], vec!["c".to_string()]]]
    );

    // Around three modules.
    write("a.rs", "use crate::{b::{B}, x};\n");
    write("b/inner.rs", "pub fn f() { super::super::c::g() }\n");
    let loops = cycles(&edges(&modules(&dir)));
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert_eq!(loops[0].len(), 3, "{loops:?}");

    // Through a glob's item, and a test module of b's that uses a does not
    // close a loop with a using b.
    write("lib.rs", "mod a;\nmod b;\nmod c;\npub use c::*;\n");
    write("a.rs", "fn f() { crate::g(); crate::b::B; }\n");
    write(
        "b/mod.rs",
        "pub struct B;\n#[cfg(test)]\n// its tests\nmod t;\n",
    );
    write("b/t.rs", "use crate::a;\n");
    std::fs::remove_file(dir.join("b/inner.rs")).unwrap();
    write("c.rs", "pub fn g() {}\n");
    assert!(cycles(&edges(&modules(&dir))).is_empty());
    write("c.rs", "pub fn g() {}\nfn h() { crate::r#a::f() }\n");
    let loops = cycles(&edges(&modules(&dir)));
    assert_eq!(
        loops,
        vec![vec![vec!["a".to_string()], vec!["c".to_string()]]]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn two_test_support_modules_may_not_import_each_other() {
    let dir = scratch_dir("support");
    let write = |path: &str, text: &str| write_file(&dir, path, text);
    write(
        "lib.rs",
        "mod a;\n#[cfg(test)]\nmod fixtures;\n#[cfg(test)]\nmod mock;\n",
    );
    write("a.rs", "pub struct A;\n");
    write("fixtures.rs", "use crate::{a::A, mock::Server};\n");
    write("mock.rs", "use crate::a::A;\n");
    assert!(cycles(&edges(&modules(&dir))).is_empty());
    write("mock.rs", "use crate::fixtures::Builder;\n");
    assert_eq!(cycles(&edges(&modules(&dir))).len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("aiflags-module-tree-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a scratch crate's file, making its folders.
fn write_file(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The `members = [...]` of the workspace's manifest.
fn workspace_members(manifest: &str) -> Vec<String> {
    let start = manifest.find("members").expect("a members list");
    let list = &manifest[start..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Every module of a crate whose root is `src/lib.rs` (`main.rs` beside it
/// is a crate of its own, as is everything under `src/bin/`).
fn modules(src: &Path) -> Crate {
    let mut files = Vec::new();
    walk(src, &mut files);
    let module_path = |file: &Path| -> ModPath {
        let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
        let mut path: ModPath = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
            path.pop();
        }
        path
    };
    let mut texts = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        if rel == Path::new("main.rs") || rel.starts_with("bin") {
            continue;
        }
        let path = module_path(&file);
        let raw = std::fs::read_to_string(&file).unwrap();
        for (name, at) in test_declarations(&raw) {
            test_only.insert(match at {
                Some(at) => module_path(&file.parent().unwrap().join(at)),
                None => [path.clone(), vec![name]].concat(),
            });
        }
        texts.insert(path, strip_comments(&raw));
    }
    let names: BTreeSet<ModPath> = texts.keys().cloned().collect();
    texts
        .into_iter()
        .map(|(path, text)| {
            let code = without_test_blocks(&text);
            let (imports, globs) = imports(&path, &code, &names);
            let defines = defines(&code);
            let test_only = test_only.iter().any(|t| path.starts_with(t));
            (
                path,
                Module {
                    code,
                    imports,
                    globs,
                    defines,
                    test_only,
                },
            )
        })
        .collect()
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Code without `//` and `/* */` comments (nested ones too) and without
/// the contents of string and character literals (a string may hold `//`
/// or braces) — except a string that is a path alone, as in
/// `#[serde(with = "crate::x")]`, which is kept.
fn strip_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if bytes[i] == b'\n' {
                            out.push(b'\n');
                        }
                        i += 1;
                    }
                }
            }
            b'"' => {
                // A raw string's `#`s are kept with the `r` before the quote;
                // its end is the quote followed by as many.
                let hashes = bytes[..i].iter().rev().take_while(|b| **b == b'#').count();
                let raw = bytes[..i - hashes].last() == Some(&b'r');
                let start = i + 1;
                i = start;
                let mut lines = 0;
                while i < bytes.len() {
                    let closes = bytes[i] == b'"'
                        && (!raw
                            || bytes[i + 1..]
                                .iter()
                                .take(hashes)
                                .filter(|b| **b == b'#')
                                .count()
                                == hashes);
                    if closes {
                        break;
                    }
                    if !raw && bytes[i] == b'\\' {
                        i += 1;
                    } else if bytes[i] == b'\n' {
                        lines += 1;
                    }
                    i += 1;
                }
                let content = text.get(start..i.min(bytes.len())).unwrap_or_default();
                out.push(b'"');
                if is_path(content) {
                    out.extend_from_slice(content.as_bytes());
                }
                out.extend(std::iter::repeat_n(b'\n', lines));
                out.push(b'"');
                i += 1;
            }
            b'\'' => {
                // A character literal ('"', '{', '\'', '×'); a lifetime or a
                // label ('a, 'static, 'outer:) has no closing quote.
                let rest = &text[i + 1..];
                let mut chars = rest.chars();
                let literal_len = match chars.next() {
                    Some('\\') => rest.get(2..).and_then(|r| r.find('\'')).map(|e| 2 + e),
                    Some(c) => (chars.next() == Some('\'')).then(|| c.len_utf8()),
                    None => None,
                };
                match literal_len {
                    Some(len) => {
                        out.extend_from_slice(b"' '");
                        i += 1 + len + 1;
                    }
                    None => {
                        out.push(b'\'');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `crate::a::b`, `super::x`: a path and nothing else.
fn is_path(s: &str) -> bool {
    ["crate::", "super::", "self::"]
        .iter()
        .any(|h| s.starts_with(h))
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `#[cfg(test)]`-only modules declared in a file: name, and the file a
/// `#[path]` attribute names. Attributes, comments and blank lines may sit
/// between the two.
fn test_declarations(text: &str) -> Vec<(String, Option<String>)> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !is_test_cfg(line) {
            continue;
        }
        let mut at = None;
        for next in &lines[i + 1..] {
            if let Some(file) = next
                .strip_prefix("#[path = \"")
                .and_then(|r| r.strip_suffix("\"]"))
            {
                at = Some(file.to_string());
            } else if !between_attribute_and_item(next) {
                if let Some(name) = declared_module(next) {
                    out.push((name.to_string(), at));
                }
                break;
            }
        }
    }
    out
}

/// A line that may sit between an attribute and its item.
fn between_attribute_and_item(line: &str) -> bool {
    line.is_empty() || line.starts_with("#[") || line.starts_with("//")
}

/// `#[cfg(test)]` or `#[cfg(all(test, …))]`, a comment after it allowed.
fn is_test_cfg(line: &str) -> bool {
    let line = line.split("//").next().unwrap_or_default().trim();
    line == "#[cfg(test)]" || line.starts_with("#[cfg(all(test,")
}

/// `name` of a `mod name;` line (any visibility).
fn declared_module(line: &str) -> Option<&str> {
    let rest = line.strip_suffix(';')?;
    let (before, name) = rest.rsplit_once("mod ")?;
    let before = before.trim();
    (before.is_empty() || before.starts_with("pub")).then(|| name.trim())
}

/// The code without inline `#[cfg(test)] mod x { … }` blocks (other
/// attributes may sit between the two).
fn without_test_blocks(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let opens = is_test_cfg(lines[i].trim()).then(|| {
            let mut j = i + 1;
            while j < lines.len() && between_attribute_and_item(lines[j].trim()) {
                j += 1;
            }
            j
        });
        let Some(mut j) = opens.filter(|&j| {
            lines
                .get(j)
                .is_some_and(|l| l.contains("mod ") && l.contains('{'))
        }) else {
            out.push_str(lines[i]);
            i += 1;
            continue;
        };
        let mut depth = 0usize;
        while j < lines.len() {
            depth += lines[j].matches('{').count();
            depth = depth.saturating_sub(lines[j].matches('}').count());
            j += 1;
            if depth == 0 {
                break;
            }
        }
        out.push_str(&"\n".repeat(j - i)); // keep the line count
        i = j;
    }
    out
}

/// The names a module's `use` items bring in, each with the path it names
/// (resolved from the module, so it starts at the crate root), for paths
/// that stay in the crate; and the paths its globs (`use a::*`) name.
fn imports(
    module: &ModPath,
    code: &str,
    names: &BTreeSet<ModPath>,
) -> (BTreeMap<String, Vec<String>>, Vec<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut globs = Vec::new();
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let statement = &rest[at..];
        let end = statement.find(';').unwrap_or(statement.len());
        for (path, alias) in use_tree(&statement[..end]) {
            let Some(mut target) = absolute(module, &path, names) else {
                continue;
            };
            let mut name = alias.or_else(|| path.last().cloned());
            match target.last().map(String::as_str) {
                Some("*") => {
                    target.pop();
                    globs.push(target);
                    continue;
                }
                // `use a::b::{self}`: the name is `b`.
                Some("self") => {
                    target.pop();
                    if name.as_deref() == Some("self") {
                        name = target.last().cloned();
                    }
                }
                _ => {}
            }
            if let Some(name) = name {
                out.insert(name, target);
            }
        }
        rest = &statement[end..];
    }
    (out, globs)
}

/// The names of the items a module's code defines.
fn defines(code: &str) -> BTreeSet<String> {
    const KINDS: [&str; 9] = [
        "fn",
        "struct",
        "enum",
        "const",
        "static",
        "type",
        "trait",
        "union",
        "macro_rules!",
    ];
    let words = tokens(&code.replace("macro_rules!", "macro_rules_ "));
    let mut out = BTreeSet::new();
    for pair in words.windows(2) {
        let kind = if pair[0] == "macro_rules_" {
            "macro_rules!"
        } else {
            pair[0].as_str()
        };
        if KINDS.contains(&kind) {
            out.insert(pair[1].clone());
        }
    }
    out
}

/// Where the next `use` item's tree starts (after `use `).
fn find_use(code: &str) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find("use ") {
        let at = from + at;
        let starts = at == 0 || matches!(bytes[at - 1], b'\n' | b' ' | b';' | b'{' | b'}' | b')');
        if starts {
            return Some(at + 4);
        }
        from = at + 4;
    }
    None
}

/// The paths of a use tree (`a::{b::C, d as e, f::*}`), each with its
/// `as` name.
fn use_tree(text: &str) -> Vec<(Vec<String>, Option<String>)> {
    let tokens = tokens(text);
    let mut out = Vec::new();
    let mut at = 0;
    tree(&tokens, &mut at, &[], &mut out);
    out
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == 'r' && chars.peek() == Some(&'#') {
            chars.next(); // a raw identifier: `r#type` is `type`
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&next) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                word.push(next);
                chars.next();
            }
            out.push(word);
        } else if matches!(c, '{' | '}' | ',' | '*') {
            out.push(c.to_string());
        }
    }
    out
}

/// One tree at `tokens[*at..]` under `prefix`: a path, then a `{…}` list
/// of trees, a `*`, an `as` name, or nothing.
fn tree(
    tokens: &[String],
    at: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    while let Some(token) = tokens.get(*at) {
        match token.as_str() {
            "{" => {
                *at += 1;
                while let Some(token) = tokens.get(*at) {
                    match token.as_str() {
                        "}" => {
                            *at += 1;
                            return;
                        }
                        "," => *at += 1,
                        _ => tree(tokens, at, &path, out),
                    }
                }
                return;
            }
            "}" | "," => break,
            "as" => {
                *at += 1;
                let alias = tokens.get(*at).cloned();
                *at += 1;
                out.push((path, alias));
                return;
            }
            _ => {
                path.push(token.clone());
                *at += 1;
            }
        }
    }
    out.push((path, None));
}

/// A path (`crate::`, `super::`, `self::`, or a child module's name)
/// resolved from `module` to one from the crate root; `None` for paths
/// that leave the crate.
fn absolute(module: &ModPath, path: &[String], names: &BTreeSet<ModPath>) -> Option<Vec<String>> {
    let mut target: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str)? {
        "crate" => rest = &path[1..],
        "super" | "self" => {
            target = module.clone();
            while let Some(step) = rest.first() {
                match step.as_str() {
                    "super" => {
                        target.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        first => {
            let child = [module.clone(), vec![first.to_string()]].concat();
            if !names.contains(&child) {
                return None;
            }
            target = module.clone();
        }
    }
    target.extend(rest.iter().cloned());
    Some(target)
}

/// The module a path from the crate root names: its longest prefix that is
/// a module, following names that module imports.
fn resolve(path: &[String], modules: &Crate) -> Option<ModPath> {
    resolve_within(path, modules, 8)
}

/// [`resolve`], following at most `hops` imports or globs.
fn resolve_within(path: &[String], modules: &Crate, hops: usize) -> Option<ModPath> {
    let mut module = path.to_vec();
    while !module.is_empty() && !modules.contains_key(&module) {
        module.pop();
    }
    let found = (!module.is_empty()).then(|| module.clone());
    let (Some(name), Some(this)) = (path.get(module.len()), modules.get(&module)) else {
        return found;
    };
    if hops == 0 {
        return found;
    }
    let rest = &path[module.len() + 1..];
    if let Some(source) = this.imports.get(name) {
        return resolve_within(&[source.clone(), rest.to_vec()].concat(), modules, hops - 1);
    }
    // A name from a glob: the first glob source that defines, imports or
    // has as a module a thing by that name.
    for glob in &this.globs {
        let through = [glob.clone(), vec![name.clone()], rest.to_vec()].concat();
        let named = [glob.clone(), vec![name.clone()]].concat();
        let has = modules.contains_key(&named)
            || modules
                .get(glob)
                .is_some_and(|g| g.imports.contains_key(name) || g.defines.contains(name));
        if has {
            return resolve_within(&through, modules, hops - 1);
        }
    }
    found
}

/// Edges between sibling modules: (from, to), each a full module path,
/// with the first reference that makes it (the module it is in, the path).
/// A test-only module's references count only between test-only modules.
fn edges(modules: &Crate) -> Edges {
    let names: BTreeSet<ModPath> = modules.keys().cloned().collect();
    let mut edges = Edges::new();
    for (module, this) in modules {
        for reference in references(&this.code) {
            let Some(target) =
                absolute(module, &reference, &names).and_then(|p| resolve(&p, modules))
            else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // one contains the other
            }
            let (from, to) = (module[..=common].to_vec(), target[..=common].to_vec());
            let test_only = |m: &ModPath| modules.get(m).is_some_and(|m| m.test_only);
            if this.test_only && !(test_only(&from) && test_only(&to)) {
                continue; // a test may use anything but its fellow test modules
            }
            edges
                .entry((from, to))
                .or_insert_with(|| format!("{} uses {}", module.join("::"), reference.join("::")));
        }
    }
    edges
}

/// Every `crate::…`, `super::…` or `self::…` path in the code, use lists
/// (`use crate::{a::B, c::{D, e}}`) expanded.
fn references(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        let head = ["crate::", "super::", "self::"]
            .iter()
            .any(|h| bytes[i..].starts_with(h.as_bytes()));
        if starts_word && head {
            let end = path_end(bytes, i);
            out.extend(use_tree(&code[i..end]).into_iter().map(|(path, _)| path));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Where a path or use tree that starts at `start` ends.
fn path_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if i > 0 && bytes[i - 1] == b':' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b if b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'*' | b'#') => {}
            b',' | b' ' | b'\n' if depth > 0 => {}
            _ if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Every loop among the edges, each once: the groups of more than one
/// module that all reach each other.
fn cycles(edges: &Edges) -> Vec<Vec<ModPath>> {
    let nodes: BTreeSet<&ModPath> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(node) = todo.pop() {
            for (a, b) in edges.keys() {
                if *a == node && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut groups: Vec<Vec<ModPath>> = Vec::new();
    for node in &nodes {
        if groups.iter().any(|g| g.contains(node)) || !reaches[node].contains(*node) {
            continue;
        }
        let group: Vec<ModPath> = nodes
            .iter()
            .filter(|other| reaches[node].contains(**other) && reaches[**other].contains(*node))
            .map(|n| (*n).clone())
            .collect();
        groups.push(group);
    }
    groups
}
