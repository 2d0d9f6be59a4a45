//! The documentation's promises that a machine can check, offline: every link in the README,
//! CONTRIBUTING.md, docs/ and the chart's README points at a file of the repository and, with a
//! `#fragment`, at an anchor in it (a heading or an `<a id>`); so does every alert's
//! `runbook_url`; every page of docs/ is reachable from docs/README.md; the README stays a front
//! page (at most 10 KB); and the supported Kubernetes version the README states is the one the
//! tests run against and the chart's `kubeVersion` allows; every test a page names as its
//! evidence (`module::tests::name` or `test_file::name`) exists. Links to other sites are not
//! followed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

/// Where this repository is published; links under it are checked against the working tree.
const PUBLISHED: &str = "https://github.com/consent-dev/consent-token-operator/blob/main/";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown pages users read.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md"), root.join("CONTRIBUTING.md"), root.join("CHANGELOG.md")];
    pages.push(root.join("SECURITY.md"));
    pages.push(root.join("charts/consent-token-operator/README.md"));
    pages.extend(markdown_under(&root.join("docs")));
    pages.retain(|p| p.exists());
    pages
}

fn markdown_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The lines of a page outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// Link targets of a page: `[text](target)`, outside code.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        // Inline code spans may hold `](`: drop them first.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].split_whitespace().next().unwrap_or_default().to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    // Links keep their text; HTML tags go.
    let mut chars = heading.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => {
                for c in chars.by_ref() {
                    if c == '>' {
                        break;
                    }
                }
            }
            '(' if text.ends_with(']') => {
                for c in chars.by_ref() {
                    if c == ')' {
                        break;
                    }
                }
            }
            _ => text.push(c),
        }
    }
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a page offers: its headings (numbered as GitHub numbers repeats) and `<a id>`s.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in prose(text) {
        if let Some(heading) = line.strip_prefix('#') {
            let heading = heading.trim_start_matches('#');
            if heading.starts_with(' ') {
                let base = slug(heading);
                let count = seen.entry(base.clone()).or_insert(0);
                found.insert(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
                *count += 1;
            }
        }
        let mut rest = line;
        while let Some(start) = rest.find("<a id=\"").or_else(|| rest.find("<a name=\"")) {
            let after = &rest[start..];
            let after = &after[after.find('"').unwrap() + 1..];
            let end = after.find('"').unwrap_or(after.len());
            found.insert(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

/// `path` with `.` and `..` resolved, without touching the file system.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with one link from `page`, if anything; also the page it leads to.
fn check_link(root: &Path, page: &Path, target: &str) -> Result<Option<PathBuf>, String> {
    let local = if let Some(path) = target.strip_prefix(PUBLISHED) {
        format!("/{path}")
    } else if target.contains("://") || target.starts_with("mailto:") {
        return Ok(None);
    } else {
        target.to_owned()
    };
    let (path, fragment) = match local.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (local.as_str(), None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        normal(&root.join(from_root))
    } else {
        normal(&page.parent().unwrap().join(path))
    };
    if !file.starts_with(root) || !file.exists() {
        return Err(format!("{target}: no such file"));
    }
    if let Some(fragment) = fragment {
        if file.extension().is_none_or(|e| e != "md") {
            return Err(format!("{target}: an anchor in a file that is not Markdown"));
        }
        if !anchors(&std::fs::read_to_string(&file).unwrap()).contains(fragment) {
            return Err(format!("{target}: no anchor #{fragment} in {}", file.display()));
        }
    }
    Ok(file.extension().is_some_and(|e| e == "md").then_some(file))
}

/// Every broken link of the pages under `root`, as `page: problem`.
fn broken_links(root: &Path, pages: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in links(&text) {
            if let Err(problem) = check_link(root, page, &target) {
                broken.push(format!("{}: {problem}", page.strip_prefix(root).unwrap_or(page).display()));
            }
        }
    }
    broken
}

/// The value after `prefix` on the first line of `file` that starts with it (leading blanks aside).
fn setting(root: &Path, file: &str, prefix: &str) -> String {
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let value = text.lines().find_map(|l| l.trim().strip_prefix(prefix));
    value.unwrap_or_else(|| panic!("{file} has a line {prefix}...")).trim().to_owned()
}

#[test]
fn every_link_in_the_readme_contributing_and_docs_leads_somewhere() {
    let root = root();
    let pages = pages(&root);
    assert!(pages.len() > 20, "the pages were found: {pages:?}");
    let broken = broken_links(&root, &pages);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_reports_a_missing_file_and_a_missing_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/a.md"), "# Title\n## Some `code` heading\n<a id=\"x\"></a>\n").unwrap();
    let page = root.join("README.md");
    std::fs::write(
        &page,
        "[ok](docs/a.md#title) [ok](docs/a.md#some-code-heading) [ok](docs/a.md#x) [ok](https://example.com/y)\n\
         [gone](docs/b.md) [no anchor](docs/a.md#nowhere) `[in code](docs/c.md)`\n\
         ```\n[in a block](docs/d.md)\n```\n",
    )
    .unwrap();
    let broken = broken_links(&root, &[page]);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("docs/b.md: no such file"), "{broken:?}");
    assert!(broken[1].contains("no anchor #nowhere"), "{broken:?}");
}

#[test]
fn every_alerts_runbook_url_leads_to_its_runbook() {
    let root = root();
    let base = setting(&root, "charts/consent-token-operator/values.yaml", "runbookUrl:");
    let rules =
        std::fs::read_to_string(root.join("charts/consent-token-operator/templates/prometheusrule.yaml")).unwrap();
    let mut urls: Vec<String> = rules
        .split("printf \"%s#")
        .skip(1)
        .map(|rest| format!("{base}#{}", &rest[..rest.find('"').unwrap()]))
        .collect();
    assert_eq!(urls.len(), rules.matches("- alert: ").count(), "one runbook_url per alert: {urls:?}");
    // The promtool tests expect the same URLs.
    let promtool = std::fs::read_to_string(root.join("tests/alerts/consent-token-operator.test.yaml")).unwrap();
    urls.extend(
        promtool.lines().filter_map(|l| l.trim().strip_prefix("runbook_url: ")).map(|u| u.trim_matches('"').to_owned()),
    );
    let readme = root.join("README.md");
    for url in urls {
        assert!(url.starts_with(PUBLISHED), "{url} is this repository's");
        check_link(&root, &readme, &url).unwrap_or_else(|problem| panic!("runbook_url {problem}"));
    }
}

#[test]
fn every_docs_page_is_reachable_from_the_docs_index() {
    let root = root();
    let index = root.join("docs/README.md");
    let mut reached = BTreeSet::from([index.clone()]);
    let mut queue = VecDeque::from([index]);
    while let Some(page) = queue.pop_front() {
        for target in links(&std::fs::read_to_string(&page).unwrap()) {
            if let Ok(Some(next)) = check_link(&root, &page, &target)
                && next.starts_with(root.join("docs"))
                && reached.insert(next.clone())
            {
                queue.push_back(next);
            }
        }
    }
    let unreached: Vec<_> = markdown_under(&root.join("docs")).into_iter().filter(|p| !reached.contains(p)).collect();
    assert!(unreached.is_empty(), "pages no link from docs/README.md leads to: {unreached:?}");
}

#[test]
fn the_readme_is_a_front_page_that_links_into_the_docs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.len() <= 10 * 1024, "README.md is {} bytes: move detail into docs/", readme.len());
    for must in ["## Quick start", "docs/README.md", "CONTRIBUTING.md", "docs/operations/troubleshooting.md"] {
        assert!(readme.contains(must), "README.md mentions {must}");
    }
}

#[test]
fn the_supported_kubernetes_version_is_the_tested_one() {
    let root = root();
    let tested = setting(&root, "hack/versions.env", "KUBERNETES_VERSION=");
    let tested = tested.trim_matches('"').trim_start_matches('v');
    let minor: Vec<&str> = tested.split('.').take(2).collect();
    let minor = minor.join(".");
    let chart = std::fs::read_to_string(root.join("charts/consent-token-operator/Chart.yaml")).unwrap();
    assert!(
        chart.contains(&format!("kubeVersion: \">={minor}.0-0\"")),
        "Chart.yaml's kubeVersion allows {minor} and later"
    );
    for page in ["README.md", "docs/getting-started.md", "docs/operations/install.md"] {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        assert!(text.contains(&format!("Kubernetes {minor}")), "{page} states Kubernetes {minor} as supported");
    }
}

/// The install commands name the release in the tree: the chart's `--version` is Chart.yaml's
/// `version`, an image tag or plugin download is Cargo.toml's version.
#[test]
fn the_pages_install_the_version_in_the_tree() {
    let root = root();
    let chart = setting(&root, "charts/consent-token-operator/Chart.yaml", "version:");
    let app = setting(&root, "Cargo.toml", "version = ").trim_matches('"').to_owned();
    let mut wrong = Vec::new();
    for page in pages(&root).iter().filter(|p| !p.ends_with("CHANGELOG.md")) {
        let text = std::fs::read_to_string(page).unwrap();
        let name = page.strip_prefix(&root).unwrap().display().to_string();
        for (needle, want) in [
            ("--version ", chart.as_str()),
            ("ghcr.io/consent-dev/consent-token-operator:", app.as_str()),
            ("releases/download/v", app.as_str()),
        ] {
            for (at, _) in text.match_indices(needle) {
                let rest = &text[at + needle.len()..];
                let found: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
                let found = found.trim_end_matches('.');
                if !found.is_empty() && found != want {
                    wrong.push(format!("{name}: {needle}{found} (the tree's is {want})"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "install commands naming another release:\n{}", wrong.join("\n"));
}

/// The tests a page names as evidence: `a::b::tests::name` (a unit test in src/a/b.rs,
/// src/a/b/mod.rs or src/a/b/tests.rs) and `file::name` (a test in tests/file.rs), as (source files, function).
fn named_tests(root: &Path, text: &str) -> Vec<(String, Vec<PathBuf>, String)> {
    let mut found = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        let parts: Vec<&str> = span.split("::").collect();
        let identifier =
            |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if i % 2 == 0 || parts.len() < 2 || !parts.iter().all(identifier) {
            continue;
        }
        let (path, name) = (&parts[..parts.len() - 1], parts[parts.len() - 1].to_owned());
        let files = if path.last() == Some(&"tests") {
            let module = path[..path.len() - 1].join("/");
            let candidates = ["src/{}.rs", "src/{}/mod.rs", "src/{}/tests.rs"];
            candidates.iter().map(|pattern| root.join(pattern.replace("{}", &module))).collect()
        } else if path.len() == 1 && root.join(format!("tests/{}.rs", path[0])).exists() {
            vec![root.join(format!("tests/{}.rs", path[0]))]
        } else {
            continue;
        };
        found.push((span.to_owned(), files, name));
    }
    found
}

#[test]
fn every_test_a_page_names_exists() {
    let root = root();
    let mut missing = Vec::new();
    let mut checked = 0;
    for page in pages(&root) {
        let text = std::fs::read_to_string(&page).unwrap();
        for (named, files, function) in named_tests(&root, &text) {
            checked += 1;
            let defined = files.iter().any(|file| {
                std::fs::read_to_string(file).is_ok_and(|code| {
                    code.match_indices(&format!("fn {function}")).any(|(at, found)| {
                        !code[at + found.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                })
            });
            if !defined {
                missing.push(format!("{}: {named}", page.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(checked > 50, "the scan finds the tests pages name ({checked})");
    assert!(missing.is_empty(), "pages name tests that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn a_named_test_that_does_not_exist_is_found() {
    let root = root();
    let named = named_tests(&root, "`basics::time_math::tests::nothing_here` and `docs::no_such_test`, not `a::b`");
    assert_eq!(named.len(), 2, "{named:?}");
    assert_eq!(named[0].1[0], root.join("src/basics/time_math.rs"));
    assert_eq!(named[1].1, [root.join("tests/docs.rs")]);
}
