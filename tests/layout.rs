//! The source layout holds: no two files of `src/` import each other,
//! directly or around a circle. A circle means neither side can be read,
//! tested or changed alone; `cargo test --test layout` names the files
//! and the paths that tie them when one appears.
//!
//! An import is any `crate::`, `super::`, `self::` or child-module path
//! in a `use` declaration or in code (comments and unit tests are
//! skipped), resolved to
//! the file of the deepest module it names. `mod` declarations are not imports: a
//! parent declares its children without depending on them. A folder's
//! `mod.rs` is its face: what it takes from its own children (re-exports,
//! the steps it is made of) is not counted, so a circle is always between
//! files that could each have been written first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["store", "table"]`) of every file under `src/`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            if relative == Path::new("main") {
                // The binary is its own crate; it imports the library by name.
                continue;
            }
            out.insert(module, path);
        }
    }
    out
}

/// The code of a file without its comments and its unit tests: a
/// `#[cfg(test)] mod tests` (at the end of a file, by this project's
/// habit) reaches into the file itself with `super::`, which is no
/// import of the parent.
fn code(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at]);
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths of a `use` tree (`crate::{a, b::{c, d}}` → `crate::a`,
/// `crate::b::c`, `crate::b::d`).
fn use_paths(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let prefix = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_paths(&inner[start..i], &prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        use_paths(&inner[start..], &prefix, out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap().trim();
        out.push(join(prefix, path));
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}::{path}"),
    }
}

/// Every path a file's code names, as written.
fn named_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    // `use` declarations, with their trees.
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(end) = after.find(';') {
            let tree = &after[..end];
            if tree.starts_with("crate") || tree.starts_with("super") || tree.starts_with("self") {
                use_paths(tree, "", &mut out);
            }
        }
    }
    // Paths in code: `crate::`, `super::`, `self::`, or a child module's
    // name (`distributors::post`).
    let mut rest = code;
    while let Some(at) = rest.find("::") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let preceded = rest[..start].ends_with(':');
        let path: String = rest[start..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        rest = &rest[start + path.len().max(at - start + 2)..];
        if !preceded && start < at {
            out.push(path.trim_end_matches(':').to_string());
        }
    }
    out
}

/// The module a path names, from module `here`; `None` for itself.
fn resolve(
    path: &str,
    here: &[String],
    known: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let mut parts = path.split("::").filter(|p| !p.is_empty()).peekable();
    let mut module: Vec<String> = match parts.next()? {
        "crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" => here[..here.len().saturating_sub(1)].to_vec(),
        child => {
            let module = [here, &[child.to_string()]].concat();
            if !known.contains_key(&module) {
                return None;
            }
            module
        }
    };
    while parts.peek() == Some(&"super") {
        module.pop();
        parts.next();
    }
    for part in parts {
        module.push(part.to_string());
        if !known.contains_key(&module) {
            module.pop();
            break;
        }
    }
    (known.contains_key(&module) && module.as_slice() != here).then_some(module)
}

/// Strongly connected files with more than one member (Tarjan).
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<Vec<String>>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[next].min(self.low[node]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.index[next].min(self.low[node]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut group = Vec::new();
                loop {
                    let top = self.stack.pop().unwrap();
                    self.on_stack.remove(top);
                    group.push(top.clone());
                    if top == node {
                        break;
                    }
                }
                if group.len() > 1 {
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    walk.found
}

#[test]
fn no_file_of_src_imports_another_in_a_circle() {
    // LAYOUT_SRC checks another tree (an older checkout, a branch).
    let src = std::env::var_os("LAYOUT_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let known = modules(&src);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut why: BTreeMap<(Vec<String>, Vec<String>), BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        let edges_here = edges.entry(module.clone()).or_default();
        for path in named_paths(&code(&text)) {
            let target = resolve(&path, module, &known);
            if let Some(target) = target.filter(|t| !t.starts_with(module)) {
                edges_here.insert(target.clone());
                why.entry((module.clone(), target))
                    .or_default()
                    .insert(path);
            }
        }
    }
    assert!(
        edges.len() > 40 && edges.values().map(BTreeSet::len).sum::<usize>() > 100,
        "the check reads the source: {} files, {} imports",
        edges.len(),
        edges.values().map(BTreeSet::len).sum::<usize>()
    );
    let found = circles(&edges);
    let mut report = String::new();
    for group in &found {
        report.push_str("circle:\n");
        for from in group {
            for to in group {
                if let Some(paths) = why.get(&(from.clone(), to.clone())) {
                    report.push_str(&format!(
                        "  {} -> {}: {}\n",
                        known[from].display(),
                        known[to].display(),
                        paths.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "import circles among src/ files:\n{report}"
    );
}

#[test]
fn the_check_sees_a_circle() {
    let module = |m: &str| m.split('/').map(str::to_string).collect::<Vec<_>>();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    edges.entry(module("a")).or_default().insert(module("b/c"));
    edges.entry(module("b/c")).or_default().insert(module("d"));
    edges.entry(module("d")).or_default().insert(module("a"));
    edges.entry(module("e")).or_default().insert(module("a"));
    let found = circles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    let mut paths = Vec::new();
    use_paths("crate::{a, b::{c, d as e}}", "", &mut paths);
    assert_eq!(paths, ["crate::a", "crate::b::c", "crate::b::d"]);
}
