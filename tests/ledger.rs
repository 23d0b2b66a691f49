//! Keeps the formula ledger (`reference/ledger.toml`) honest: every entry is well formed, every
//! test it names exists, every entry that is not out of scope (or planned) names at least one
//! test, and every book section it names exists.

use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ledger {
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    doc: String,
    loc: String,
    statement: String,
    status: String,
    #[serde(default)]
    tests: Vec<String>,
    #[serde(default)]
    book: Option<String>,
    #[serde(default)]
    printed: Option<String>,
    #[serde(default)]
    correct: Option<String>,
    #[serde(default)]
    issue: Option<u32>,
    #[serde(default)]
    reason: Option<String>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> Ledger {
    let text = std::fs::read_to_string(root().join("reference/ledger.toml"))
        .expect("reference/ledger.toml is readable");
    toml::from_str(&text).expect("reference/ledger.toml parses")
}

/// Does `file` define a function called `name`?
fn defines_fn(file: &str, name: &str) -> bool {
    let Ok(src) = std::fs::read_to_string(root().join(file)) else {
        return false;
    };
    let needle = format!("fn {name}");
    src.match_indices(&needle).any(|(i, _)| {
        let after = &src[i + needle.len()..];
        after.starts_with('(') || after.starts_with('<')
    })
}

/// GitHub/mdBook-style anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    let mut out = String::new();
    for c in heading.trim().to_lowercase().chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else if c == ' ' {
            out.push('-');
        }
    }
    out
}

fn book_section_exists(spec: &str) -> bool {
    let (file, frag) = match spec.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (spec, None),
    };
    let Ok(text) = std::fs::read_to_string(root().join("book/src").join(file)) else {
        return false;
    };
    match frag {
        None => true,
        Some(a) => text
            .lines()
            .filter(|l| l.starts_with('#'))
            .any(|l| anchor(l.trim_start_matches('#')) == a),
    }
}

#[test]
fn every_entry_is_well_formed_and_its_tests_exist() {
    let ledger = load();
    assert!(!ledger.entry.is_empty(), "the ledger has entries");
    let docs = ["000", "001", "002", "003", "004"];
    let mut ids = HashSet::new();
    let mut problems = Vec::new();
    for e in &ledger.entry {
        let who = &e.id;
        if !ids.insert(e.id.clone()) {
            problems.push(format!("{who}: duplicate id"));
        }
        if !docs.contains(&e.doc.as_str()) {
            problems.push(format!("{who}: unknown document {}", e.doc));
        }
        if e.loc.trim().is_empty() || e.statement.trim().is_empty() {
            problems.push(format!("{who}: empty loc or statement"));
        }
        match e.status.as_str() {
            "verified" | "implemented" | "erratum" => {
                if e.tests.is_empty() {
                    problems.push(format!("{who}: status {} names no test", e.status));
                }
            }
            "planned" => {
                if e.issue.is_none() {
                    problems.push(format!("{who}: planned without an issue"));
                }
            }
            "out-of-scope" => {
                if e.reason.as_deref().unwrap_or("").trim().is_empty() {
                    problems.push(format!("{who}: out-of-scope without a reason"));
                }
            }
            other => problems.push(format!("{who}: unknown status {other}")),
        }
        if e.status == "erratum" && (e.printed.is_none() || e.correct.is_none()) {
            problems.push(format!("{who}: erratum needs `printed` and `correct`"));
        }
        for t in &e.tests {
            match t.split_once("::") {
                Some((file, name)) if defines_fn(file, name) => {}
                _ => problems.push(format!("{who}: test {t} does not exist")),
            }
        }
        if let Some(b) = &e.book {
            if !book_section_exists(b) {
                problems.push(format!("{who}: book section {b} does not exist"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "ledger problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn ledger_checker_rejects_a_missing_test_and_a_missing_section() {
    // The twin of the check above: the helpers must be able to say no.
    assert!(!defines_fn("tests/ledger.rs", "no_such_function_anywhere"));
    assert!(defines_fn(
        "tests/ledger.rs",
        "ledger_checker_rejects_a_missing_test_and_a_missing_section"
    ));
    assert!(!book_section_exists("introduction.md#no-such-heading"));
    assert!(book_section_exists("introduction.md#introduction"));
    assert!(!book_section_exists("no-such-chapter.md"));
}

#[test]
fn every_document_has_entries() {
    let ledger = load();
    for doc in ["000", "001", "002", "003", "004"] {
        assert!(
            ledger.entry.iter().any(|e| e.doc == doc),
            "document {doc} has no ledger entry"
        );
    }
}
