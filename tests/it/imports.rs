//! The module graph of `src/` runs one way: no file uses a file that uses it back, directly or
//! through a ring of others. A file "uses" another when it names an item defined there — by a
//! `use`, or by a path such as `super::queue::Status` or `crate::store::Store` in its code;
//! re-exports (`pub use`) are names, followed to the file that defines the item, and a
//! parent's `mod child;` is no use. Test modules (from the first `#[cfg(test)]` on) are left
//! out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// One source file: what it names and which of its `use`s are re-exports.
struct File {
    /// `use` paths, each with whether it is a `pub use`.
    uses: Vec<(String, bool)>,
    /// Paths in code (outside `use`s) that start at `crate`, `super` or `self`.
    paths: Vec<String>,
    /// The first segment of every other `a::b` path in code, for `child::item`.
    heads: BTreeSet<String>,
}

/// Code without comments, string and char literals, and test modules.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |j| j + 2);
        } else if let Some(hashes) = raw_string_start(text, i) {
            let open = i + text[i..].find('"').unwrap() + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            i = text[open..]
                .find(&close)
                .map_or(b.len(), |j| open + j + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
            i += char_literal_len(rest).unwrap();
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    match out.find("#[cfg(test)]") {
        Some(at) => out[..at].to_string(),
        None => out,
    }
}

/// The number of `#`s of a raw string starting at `i` (`r"`, `r#"`, `br"`), if one does.
fn raw_string_start(text: &str, i: usize) -> Option<usize> {
    let b = text.as_bytes();
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|c| **c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`, `'\u{7f}'`), or `None`
/// for a lifetime.
fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        let close = s[2..].find('\'')?;
        return (close <= 10).then_some(close + 3);
    }
    let (j, end) = chars.next()?;
    (end == '\'').then_some(j + 1)
}

/// `a::{b, c::{d, self}, e as f}` → `a::b`, `a::c::d`, `a::c`, `a::e`.
fn expand(tree: &str) -> Vec<String> {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut tree = words.join(" ");
    for sep in ["::", "{", "}", ","] {
        tree = tree
            .replace(&format!(" {sep}"), sep)
            .replace(&format!("{sep} "), sep);
    }
    expand_tight(&tree)
}

fn expand_tight(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len() - 1];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(expand_tight)
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads one file's uses and paths.
fn parse(text: &str) -> File {
    let code = code_of(text);
    let mut uses = Vec::new();
    let mut rest = String::new();
    let mut i = 0;
    while let Some(at) = code[i..].find("use ").map(|j| i + j) {
        let word_start = at == 0 || !is_ident(code[..at].chars().last().unwrap());
        let end = code[at..].find(';').map_or(code.len(), |j| at + j);
        if !word_start {
            rest.push_str(&code[i..at + 4]);
            i = at + 4;
            continue;
        }
        let before = code[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')');
        rest.push_str(&code[i..at]);
        for path in expand(&code[at + 4..end]) {
            uses.push((path, public));
        }
        i = (end + 1).min(code.len());
    }
    rest.push_str(&code[i..]);
    let mut paths = Vec::new();
    let mut heads = BTreeSet::new();
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (at, c) = chars[k];
        let starts_path = k == 0 || !(is_ident(chars[k - 1].1) || chars[k - 1].1 == ':');
        if is_ident(c) && starts_path {
            let mut end;
            let mut j = k;
            loop {
                while j < chars.len() && is_ident(chars[j].1) {
                    j += 1;
                }
                end = chars.get(j).map_or(rest.len(), |c| c.0);
                if rest[end..].starts_with("::")
                    && rest[end + 2..].starts_with(|c: char| is_ident(c))
                {
                    j += 2;
                    continue;
                }
                break;
            }
            let path = &rest[at..end];
            if path.contains("::") {
                let head = path.split("::").next().unwrap();
                if ["crate", "super", "self"].contains(&head) {
                    paths.push(path.to_string());
                } else {
                    heads.insert(head.to_string());
                }
            }
            k = j.max(k + 1);
        } else {
            k += 1;
        }
    }
    File { uses, paths, heads }
}

/// Every `.rs` file under `src`, by module path (`store::queue`; the crate root is empty).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .filter(|p| p != &src.join("main.rs"))
        .map(|p| {
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            (module, p)
        })
        .collect()
}

struct Graph {
    files: BTreeMap<Module, File>,
}

impl Graph {
    /// A path as written in `module`, made absolute; `None` for another crate's.
    fn absolute(&self, module: &Module, path: &str) -> Option<Module> {
        let mut segs: Vec<&str> = path.split("::").collect();
        let mut base: Module = match segs[0] {
            "crate" => {
                segs.remove(0);
                Vec::new()
            }
            "super" | "self" => {
                let mut base = module.clone();
                while segs.first() == Some(&"super") {
                    base.pop();
                    segs.remove(0);
                }
                if segs.first() == Some(&"self") {
                    segs.remove(0);
                }
                base
            }
            first => {
                let mut child = module.clone();
                child.push(first.to_string());
                if !self.files.contains_key(&child) {
                    return None;
                }
                module.clone()
            }
        };
        base.extend(segs.into_iter().map(String::from));
        Some(base)
    }

    /// The file that defines what an absolute path names, following re-exports.
    fn resolve(&self, path: &Module, depth: usize) -> Module {
        let mut module = Vec::new();
        for (i, seg) in path.iter().enumerate() {
            let mut child = module.clone();
            child.push(seg.clone());
            if self.files.contains_key(&child) {
                module = child;
                continue;
            }
            if depth < 8
                && let Some(file) = self.files.get(&module)
            {
                for (used, public) in &file.uses {
                    let name = used.rsplit("::").next().unwrap_or_default();
                    if *public
                        && name == seg
                        && let Some(target) = self.absolute(&module, used)
                        && target != child
                    {
                        let mut target = target;
                        target.extend(path[i + 1..].iter().cloned());
                        return self.resolve(&target, depth + 1);
                    }
                }
            }
            return module;
        }
        module
    }

    /// Which files each file uses.
    fn edges(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut edges = BTreeMap::new();
        for (module, file) in &self.files {
            let mut to = BTreeSet::new();
            let private_uses = file.uses.iter().filter(|(_, public)| !public);
            let named = private_uses
                .map(|(p, _)| p.clone())
                .chain(file.paths.iter().cloned())
                .chain(file.heads.iter().map(|h| format!("{h}::x")));
            for path in named {
                if let Some(abs) = self.absolute(module, &path) {
                    let target = self.resolve(&abs, 0);
                    if &target != module && self.files.contains_key(&target) {
                        to.insert(target);
                    }
                }
            }
            edges.insert(module.clone(), to);
        }
        edges
    }
}

/// The rings of files that use each other, each as a path that closes on itself.
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let mut found = Vec::new();
    let mut done: BTreeSet<Module> = BTreeSet::new();
    for start in edges.keys() {
        // The shortest way back to `start`, by breadth-first search.
        let mut previous: BTreeMap<&Module, &Module> = BTreeMap::new();
        let mut frontier = vec![start];
        let mut back = None;
        'search: while !frontier.is_empty() {
            let mut next = Vec::new();
            for m in frontier {
                for t in &edges[m] {
                    if t == start {
                        back = Some(m);
                        break 'search;
                    }
                    if !previous.contains_key(t) && !done.contains(t) {
                        previous.insert(t, m);
                        next.push(t);
                    }
                }
            }
            frontier = next;
        }
        if let Some(mut m) = back {
            let mut ring = vec![start.clone()];
            while m != start {
                ring.push(m.clone());
                m = previous[m];
            }
            ring.reverse();
            ring.rotate_right(1);
            ring.push(start.clone());
            found.push(ring);
        }
        done.insert(start.clone());
    }
    found
}

fn graph(src: &Path) -> Graph {
    let files = modules(src)
        .into_iter()
        .map(|(m, p)| (m, parse(&std::fs::read_to_string(p).unwrap())))
        .collect();
    Graph { files }
}

fn show(ring: &[Module]) -> String {
    ring.iter()
        .map(|m| {
            if m.is_empty() {
                "lib.rs".to_string()
            } else {
                m.join("/")
            }
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

#[test]
fn no_file_in_src_uses_a_file_that_uses_it_back() {
    let g = graph(&crate::common::repo().join("src"));
    let edges = g.edges();
    // The check reads the code it guards: a few uses it must see.
    let sees = |from: &str, to: &str| {
        let m = |s: &str| s.split('/').map(String::from).collect::<Module>();
        edges[&m(from)].contains(&m(to))
    };
    assert!(sees("store/queue", "store/state"), "{edges:?}");
    assert!(sees("store/runs", "store/query"));
    assert!(sees("cli/status", "report/status"));
    let rings: Vec<String> = cycles(&edges).iter().map(|r| show(r)).collect();
    assert!(
        rings.is_empty(),
        "files that use each other (move what both need into a file of its own):\n{}",
        rings.join("\n")
    );
}

#[test]
fn the_check_finds_rings_through_uses_paths_and_re_exports() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    // a → b by a `use`, b → c by a path in code; a comment, a string or a test module naming
    // `crate::a::A` is no use, so there is no ring yet.
    write("a.rs", "use crate::b::B;\npub struct A(B);\n");
    write(
        "b.rs",
        "pub struct B;\nfn f() { let _ = crate::c::C; } // crate::a::A\nconst S: &str = \"crate::a::A\";\n",
    );
    write(
        "c.rs",
        "pub struct C;\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
    );
    assert!(cycles(&graph(dir.path()).edges()).is_empty());
    // Now c uses a through lib.rs's re-export: a ring of three.
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub use a::A;\n",
    );
    write("c.rs", "use super::{A as Other};\npub struct C;\n");
    let rings = cycles(&graph(dir.path()).edges());
    assert_eq!(
        rings.iter().map(|r| show(r)).collect::<Vec<_>>(),
        ["a → b → c → a"]
    );
}
