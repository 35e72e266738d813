//! The workspace's modules form a tree: within each crate, at every level, no
//! module reaches a sibling that reaches back to it, directly or around a
//! longer loop. (`../shared/tools/modcycles.py` checks a crate's top level;
//! this checks every level, and runs in `cargo test`.)
//!
//! A module's references are the `crate::`, `super::` and `self::` paths in
//! its code (use lists expanded), outside comments and test-only modules.
//! A reference between two modules neither of which contains the other is an
//! edge between their ancestors that are siblings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

const CRATES: [&str; 5] = ["api", "operator", "sidecar", "devtools", "alloc"];

#[test]
fn no_two_modules_of_a_crate_import_each_other_at_any_level() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for krate in CRATES {
        let modules = modules(&root.join(krate).join("src"));
        assert!(!modules.is_empty(), "no modules found in {krate}/src");
        for cycle in cycles(&edges(&modules)) {
            let names: Vec<String> = cycle
                .iter()
                .map(|m| format!("{krate}::{}", m.join("::")))
                .collect();
            found.push(format!("a loop among {}", names.join(", ")));
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_loop_through_a_use_list_and_ignores_comments_and_tests() {
    let dir = tempfile_dir();
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod a;\nmod b;\nmod c;\n#[cfg(test)]\nmod t;\n");
    write("a.rs", "use crate::{b::{B}, x};\n");
    write("b/mod.rs", "mod inner;\n");
    write("b/inner.rs", "pub fn f() { super::super::c::g() }\n");
    // A doc link and a test module do not count.
    write(
        "c.rs",
        "//! See [`crate::a`].\npub fn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    );
    write("t.rs", "use crate::a;\n");
    let clean = edges(&modules(&dir));
    assert!(cycles(&clean).is_empty(), "{clean:?}");
    assert!(
        clean.contains(&(vec!["a".into()], vec!["b".into()])),
        "{clean:?}"
    );
    assert!(
        clean.contains(&(vec!["b".into()], vec!["c".into()])),
        "{clean:?}"
    );
    write("c.rs", "pub fn g() { let _ = crate::a::A; }\n");
    let cycles = cycles(&edges(&modules(&dir)));
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let mut names: Vec<String> = cycles[0].iter().map(|m| m.join("::")).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aiflags-module-tree-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every non-test module of a crate, with its code (comments and inline
/// test modules removed).
fn modules(src: &Path) -> BTreeMap<ModPath, String> {
    let mut files = Vec::new();
    walk(src, &mut files);
    let module_path = |file: &Path| -> ModPath {
        let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
        let mut path: ModPath = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(
            path.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            path.pop();
        }
        path
    };
    let mut all = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for file in files {
        let path = module_path(&file);
        if path.first().is_some_and(|p| p == "bin") {
            continue; // binaries are crates of their own
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Modules declared `#[cfg(test)]` here (by name, or by `#[path]`).
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if *line != "#[cfg(test)]" {
                continue;
            }
            let next = lines.get(i + 1).copied().unwrap_or_default();
            if let Some(name) = declared_module(next) {
                let mut child = path.clone();
                child.push(name.to_string());
                test_only.insert(child);
            } else if let Some(at) = next
                .strip_prefix("#[path = \"")
                .and_then(|r| r.strip_suffix("\"]"))
            {
                test_only.insert(module_path(&file.parent().unwrap().join(at)));
            }
        }
        all.insert(path, text);
    }
    all.into_iter()
        .filter(|(path, _)| !test_only.iter().any(|t| path.starts_with(t)))
        .map(|(path, text)| (path, code(&text)))
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

/// `name` of a `mod name;` line (any visibility).
fn declared_module(line: &str) -> Option<&str> {
    let rest = line.strip_suffix(';')?;
    let name = rest.rsplit_once("mod ")?.1.trim();
    let before = rest.rsplit_once("mod ")?.0.trim();
    (before.is_empty() || before.starts_with("pub")).then_some(name)
}

/// A file's code without comments, and cut where an inline `#[cfg(test)]`
/// module starts (they close files here).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_end().ends_with('{') && next.contains("mod "))
        {
            break;
        }
        let line = match line.find("//") {
            // Not inside a string on this line (a URL), by an even count of quotes before it.
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Edges between sibling modules: (from, to), each a full module path.
fn edges(modules: &BTreeMap<ModPath, String>) -> BTreeSet<(ModPath, ModPath)> {
    let mut edges = BTreeSet::new();
    for (module, text) in modules {
        for reference in references(text) {
            let Some(target) = resolve(module, &reference, modules) else {
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
            edges.insert((module[..=common].to_vec(), target[..=common].to_vec()));
        }
    }
    edges
}

/// Every `crate::…`, `super::…` or `self::…` path in the code, use lists
/// (`use crate::{a::B, c::{D, e}}`) expanded.
fn references(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        let head = ["crate::", "super::", "self::"]
            .iter()
            .find(|h| bytes[i..].starts_with(h.as_bytes()));
        match head {
            Some(_) if starts_word => {
                let (paths, end) = path_tree(text, i);
                out.extend(paths);
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// The paths of a path or use tree starting at `start`, and where it ends.
fn path_tree(text: &str, start: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut prefix = Vec::new();
    let mut i = start;
    loop {
        let from = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > from {
            prefix.push(text[from..i].to_string());
        }
        if bytes[i..].starts_with(b"::{") {
            // A use list: each member is a tree of its own, relative to the prefix.
            i += 3;
            let mut paths = Vec::new();
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return (paths, i + 1);
                }
                let (members, end) = path_tree(text, i);
                for member in members {
                    let mut path = prefix.clone();
                    path.extend(member);
                    paths.push(path);
                }
                // Skip what follows the member up to the next separator (`as x`).
                i = end;
                while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'}' {
                    i += 1;
                }
            }
        } else if bytes[i..].starts_with(b"::") {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// The module a path names: `super` and `self` taken from `module`, then the
/// longest prefix that is a module.
fn resolve(
    module: &ModPath,
    path: &[String],
    modules: &BTreeMap<ModPath, String>,
) -> Option<ModPath> {
    let mut target: ModPath = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("super" | "self") => {
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
        _ => return None,
    }
    target.extend(rest.iter().cloned());
    while !target.is_empty() && !modules.contains_key(&target) {
        target.pop();
    }
    (!target.is_empty()).then_some(target)
}

/// Every loop among the edges, each once (as the strongly connected groups
/// of more than one module).
fn cycles(edges: &BTreeSet<(ModPath, ModPath)>) -> Vec<Vec<ModPath>> {
    let nodes: BTreeSet<&ModPath> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(node) = todo.pop() {
            for (a, b) in edges {
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
