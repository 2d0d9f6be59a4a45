//! Checks on the shape of the code itself: each folder of `src/` uses only the folders below it
//! (the table in `lib.rs`), so there is no import cycle between them either; and no file is over
//! 400 lines unless its module doc says why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every file below `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Folder (or top-level file) -> the folders its (non-test) code names as `crate::...`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files_under(&src) {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        // A module's unit tests in a file of their own (`work_queue/tests.rs`) are tests too.
        if ["lib", "main", "bin", "fixtures", "architecture"].contains(&module.as_str())
            || path.file_name().is_some_and(|name| name == "tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests sit at the end of each file; what they use is not a dependency, and
        // neither is a link in a comment.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let edges = graph.entry(module.clone()).or_default();
        for target in named_modules(&code) {
            if target != module {
                edges.insert(target);
            }
        }
    }
    graph
}

/// `x` of every `crate::x` and of every `crate::{x, y::z}`.
fn named_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(inner.split(',').map(|part| head(part.trim())).filter(|m| !m.is_empty()));
        } else {
            found.push(head(rest));
        }
    }
    found
}

fn head(path: &str) -> String {
    path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// A cycle in `graph`, if any, as the list of modules on it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            return Some(path[start..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The folders from the bottom up, as `lib.rs` lists them: each may use those before it.
const LAYERS: [&str; 11] = [
    "basics",
    "api",
    "error",
    "observability",
    "scheduling",
    "config",
    "provider",
    "cache",
    "reconcile",
    "runtime",
    "plugin",
];

/// Uses a folder may make although it is not below: none today. Each would need a reason here.
const EXCEPTIONS: [(&str, &str); 0] = [];

/// The edges of `graph` that point up (or sideways), other than [`EXCEPTIONS`].
fn upward_edges(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let rank = |name: &str| LAYERS.iter().position(|layer| *layer == name);
    graph
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| match (rank(from), rank(to)) {
            (Some(from), Some(to)) => to >= from,
            _ => true,
        })
        .filter(|(from, to)| !EXCEPTIONS.contains(&(from.as_str(), to.as_str())))
        .collect()
}

#[test]
fn folders_depend_only_downwards() {
    let graph = module_graph();
    let found: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    assert_eq!(found, LAYERS.into_iter().collect(), "every folder of src/ has its place in LAYERS (and lib.rs)");
    assert!(graph["reconcile"].contains("provider"), "the scan sees dependencies: {graph:?}");
    assert_eq!(upward_edges(&graph), Vec::<(String, String)>::new(), "(user, used) pairs against the layering");
    assert_eq!(find_cycle(&graph), None, "folders that import each other (in a circle)");
}

#[test]
fn an_upward_use_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("cache", vec!["api", "reconcile"]), ("api", vec!["basics"])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(upward_edges(&graph), [("cache".to_owned(), "reconcile".to_owned())]);
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("error", vec!["rate_limit"]),
        ("provider", vec!["error", "token"]),
        ("token", vec!["error"]),
        ("rate_limit", vec!["provider"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let cycle = find_cycle(&graph).unwrap();
    assert_eq!(cycle.len(), 3, "{cycle:?}");
    assert_eq!(named_modules("use crate::{a, b::c};\nlet x = crate::d::e();"), ["a", "b", "d"]);
}

/// The longest a file of `src/` may be before it has to say why it is longer.
const LONGEST: usize = 400;

/// Files of `src/` over [`LONGEST`] lines whose module doc does not say why ("Over 400 lines
/// because ...").
fn long_files_without_a_reason(src: &Path) -> Vec<String> {
    let mut long = Vec::new();
    for path in files_under(src) {
        let text = std::fs::read_to_string(&path).unwrap();
        let says_why = text.lines().take_while(|l| l.starts_with("//!")).any(|l| l.contains("Over 400 lines because"));
        if text.lines().count() > LONGEST && !says_why {
            long.push(format!("{} ({} lines)", path.strip_prefix(src).unwrap().display(), text.lines().count()));
        }
    }
    long
}

#[test]
fn no_file_is_over_400_lines_unless_it_says_why() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_eq!(long_files_without_a_reason(&src), Vec::<String>::new());
}

#[test]
fn a_long_file_is_found_unless_it_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let body = "fn f() {}\n".repeat(LONGEST);
    std::fs::write(dir.path().join("long.rs"), format!("//! A module.\n{body}")).unwrap();
    std::fs::write(dir.path().join("why.rs"), format!("//! Over 400 lines because of its tables.\n{body}")).unwrap();
    std::fs::write(dir.path().join("short.rs"), "//! A module.\n").unwrap();
    assert_eq!(long_files_without_a_reason(dir.path()), ["long.rs (401 lines)"]);
}
