//! The plugin author's path, end to end with the real `weir` binary: every example
//! plugin passes its golden cases (`weir test`), a broken expectation fails with a diff
//! naming the case and `--update` repairs it, and `weir new plugin` gives a plugin that
//! builds and passes its own case.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn weir(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn built_plugin(name: &str) -> PathBuf {
    let p = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: build the plugins with ./dev plugins (./dev test does it)",
        p.display()
    );
    p
}

/// Case folders (those with an event.json) under `cases`.
fn case_count(cases: &Path) -> usize {
    std::fs::read_dir(cases)
        .expect("cases folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("event.json").is_file())
        .count()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn every_example_plugin_passes_its_cases() {
    let mut tested = Vec::new();
    for entry in std::fs::read_dir(root().join("plugins")).expect("plugins/") {
        let dir = entry.expect("entry").path();
        let cases = dir.join("cases");
        if !cases.is_dir() {
            continue;
        }
        let name = dir
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let plugin = built_plugin(&name);
        let out = weir(
            &[
                "test",
                "--plugin",
                plugin.to_str().expect("utf-8"),
                cases.to_str().expect("utf-8"),
            ],
            &root(),
        );
        let n = case_count(&cases);
        assert!(n >= 1, "{}: no cases", cases.display());
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        assert!(
            stdout(&out).contains(&format!("cases: {n}, passed: {n}, failed: 0")),
            "{name}: {}",
            text(&out)
        );
        tested.push(name);
    }
    tested.sort();
    for required in ["mapping", "salesforce-account"] {
        assert!(
            tested.iter().any(|t| t == required),
            "{required} has no cases: tested {tested:?}"
        );
    }
}

#[test]
fn the_example_cases_cover_every_outcome() {
    // Between them, each example plugin's cases publish inserts, modifies and removes,
    // filter a record and dead-letter one: check the expectations say so.
    for name in ["mapping", "salesforce-account"] {
        let cases = root().join("plugins").join(name).join("cases");
        let mut entries = String::new();
        let mut letters = String::new();
        let mut events = String::new();
        for entry in std::fs::read_dir(&cases).expect("cases") {
            let dir = entry.expect("entry").path();
            if !dir.is_dir() {
                continue;
            }
            entries += &std::fs::read_to_string(dir.join("entries.jsonl")).unwrap_or_default();
            letters += &std::fs::read_to_string(dir.join("dead-letters.jsonl")).unwrap_or_default();
            events += &std::fs::read_to_string(dir.join("event.json")).expect("event.json");
        }
        for change in ["INSERT", "MODIFY", "REMOVE"] {
            assert!(
                entries.contains(&format!("\\\"eventName\\\":\\\"{change}\\\"")),
                "{name}: no published {change}"
            );
        }
        assert!(!letters.trim().is_empty(), "{name}: nothing dead-lettered");
        let records = events.matches("\"eventID\"").count();
        let published = entries.lines().count();
        let dead = letters.lines().count();
        assert!(
            records > published + dead,
            "{name}: no filtered record ({records} records, {published} entries, {dead} dead letters)"
        );
    }
}

#[test]
fn a_broken_expectation_fails_with_a_diff_and_update_repairs_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Same folder name as the plugin, so the default plugin name matches the expectations.
    let cases = tmp.path().join("salesforce-account/cases");
    copy_dir(&root().join("plugins/salesforce-account/cases"), &cases);
    let expected = cases.join("rejected/entries.jsonl");
    let original = std::fs::read_to_string(&expected).expect("entries");
    assert!(original.contains("Good One"), "{original}");
    std::fs::write(&expected, original.replace("Good One", "Good Two")).expect("write");
    // A new case with only an event: it expects nothing, so it fails until updated.
    std::fs::create_dir(cases.join("new-case")).expect("mkdir");
    std::fs::copy(
        cases.join("insert-upsert/event.json"),
        cases.join("new-case/event.json"),
    )
    .expect("copy");

    let plugin = built_plugin("salesforce-account");
    let args = [
        "test",
        "--plugin",
        plugin.to_str().expect("utf-8"),
        cases.to_str().expect("utf-8"),
    ];
    let out = weir(&args, tmp.path());
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(report.contains("case rejected: FAILED"), "{report}");
    assert!(
        report.contains(
            "line 1 changed: at /Detail/payload/body/Name: expected \"Good Two\", found \"Good One\""
        ),
        "{report}"
    );
    assert!(report.contains("case new-case: FAILED"), "{report}");
    assert!(report.contains("produced line 1, not expected"), "{report}");
    assert!(report.contains("case remove-delete: ok"), "{report}");
    assert!(
        report.contains("cases: 6, passed: 4, failed: 2"),
        "{report}"
    );

    let mut update = args.to_vec();
    update.insert(1, "--update");
    let out = weir(&update, tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("cases: 6, passed: 6, failed: 0, updated: 2"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&expected).expect("entries"),
        original
    );
    assert_eq!(
        std::fs::read_to_string(cases.join("new-case/entries.jsonl")).expect("written"),
        std::fs::read_to_string(cases.join("insert-upsert/entries.jsonl")).expect("entries")
    );
    assert!(cases.join("new-case/dead-letters.jsonl").is_file());

    let out = weir(&args, tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn bad_cases_and_plugins_are_setup_errors_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugin = built_plugin("mapping");
    let plugin = plugin.to_str().expect("utf-8");
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(cases.join("typo")).expect("mkdir");
    std::fs::write(cases.join("typo/events.json"), "{}").expect("write");
    let out = weir(&["test", "--plugin", plugin, "cases"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("typo: a case folder needs event.json"),
        "{}",
        text(&out)
    );

    std::fs::rename(
        cases.join("typo/events.json"),
        cases.join("typo/event.json"),
    )
    .expect("mv");
    let out = weir(&["test", "--plugin", "missing.wasm", "cases"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("missing.wasm"), "{}", text(&out));

    std::fs::write(cases.join("config.toml"), "detail_type = [").expect("write");
    let out = weir(&["test", "--plugin", plugin, "cases"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("config.toml: not TOML"),
        "{}",
        text(&out)
    );
}

// `weir new plugin` for Rust, JavaScript and Python is tested from a `weir` installed outside
// any checkout, in `installed.rs`.
