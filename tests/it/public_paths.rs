//! Every item has one public path, its definition's: no crate re-exports another workspace
//! crate's items, and no module re-exports items of a public module of its own crate (a
//! `pub use` of a private submodule's items is that one path and is fine).

use std::path::{Path, PathBuf};

use crate::support::root;

/// The workspace's library crates, by the name code uses for them.
const CRATES: [&str; 5] = [
    "weir_core",
    "weir_runtime",
    "weir_aws",
    "weir_bench",
    "weir",
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a crate's root declares `pub mod`.
fn public_modules(lib: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches([';', ' ', '{']).to_owned())
        .collect()
}

/// The `pub use` lines that give an item a second public path, as `file:line: text`.
fn second_paths(src: &Path) -> Vec<String> {
    let public = public_modules(&src.join("lib.rs"));
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            let Some(path) = line.trim().strip_prefix("pub use ") else {
                continue;
            };
            let head = path.split("::").next().unwrap_or("");
            let other_crate = CRATES.contains(&head);
            let own_public_module = head == "crate"
                && path
                    .split("::")
                    .nth(1)
                    .is_some_and(|m| public.iter().any(|p| p == m.trim_matches(['{', '}'])));
            if other_crate || own_public_module {
                let shown = file.strip_prefix(root()).unwrap_or(&file).display();
                found.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_crate_re_exports_another_workspace_crates_items_or_its_own_public_modules() {
    let mut sources = vec![root().join("host/src")];
    let crates = std::fs::read_dir(root().join("crates")).expect("crates/");
    for entry in crates {
        let src = entry.expect("an entry").path().join("src");
        if src.join("lib.rs").is_file() {
            sources.push(src);
        }
    }
    assert!(sources.len() >= 4, "found only {sources:?}");
    let found: Vec<String> = sources.iter().flat_map(|s| second_paths(s)).collect();
    assert!(
        found.is_empty(),
        "second public paths (import from the defining module instead):\n{}",
        found.join("\n")
    );
}
