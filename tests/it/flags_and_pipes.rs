//! The command line's edges: a stdout closed by its reader (`| head -1`) ends each printing
//! command quietly, and flags and files whose values are out of range are refused in one
//! line naming them, exit 2, never a panic.

use crate::foreign_events::any_table_manifest;
use crate::support::*;

/// Runs weir with stdout a real pipe whose reader is already closed (what `| head -1` does
/// once it has its line): every write to stdout fails with EPIPE.
fn weir_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("weir runs")
}

/// `weir compile x.wasm | head -1`, `weir run ... | head -1` and the other printing
/// commands end quietly when their reader closes stdout: no panic, one status.
#[test]
fn a_closed_stdout_ends_each_printing_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().to_str().expect("utf-8");
    let mapping = plugin("mapping");
    let mapping = mapping.to_str().expect("utf-8");
    let dead_letters = dir.path().join("dl");
    let dead_letters = dead_letters.to_str().expect("utf-8");
    let scaffold = dir.path().join("new");
    let scaffold = scaffold.to_str().expect("utf-8");
    let commands: [(&[&str], i32); 5] = [
        // compile's own printing (println!) is caught at the top, in the weir binary.
        (&["compile", mapping, "--out-dir", out_dir], 0),
        // run finishes: its summary and status stand, only the entries stop.
        (
            &[
                "run",
                "--manifest",
                "examples/weir.toml",
                "--event",
                "examples/events/customers.json",
                "--dead-letter-dir",
                dead_letters,
            ],
            0,
        ),
        (&["decode", "--event", "examples/events/customers.json"], 0),
        (&["infra", "--manifest", "examples/weir.toml"], 0),
        (
            &[
                "new", "plugin", "piped", "--lang", "rust", "--dir", scaffold,
            ],
            0,
        ),
    ];
    for (args, status) in commands {
        let out = weir_into_closed_pipe(args);
        let err = stderr_text(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(status), "{args:?}: {err}");
        if args[0] == "run" {
            assert!(
                err.contains("records: 8, entries: 6, published: 6, filtered: 2"),
                "{err}"
            );
        }
    }
    // compile did its work before its output was cut short.
    assert!(dir.path().join("mapping.cwasm").is_file());
}

/// Flags and files whose values once overflowed, divided, made a `Duration` panic or
/// allocated without bound: each is refused in one line naming it, exit 2.
#[test]
fn flags_and_files_out_of_range_are_refused_naming_them_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = any_table_manifest(dir.path());
    let manifest = manifest.to_str().expect("utf-8");
    let event = "examples/events/customers.json";
    let backfill = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["backfill", "--manifest", manifest, "--table", "T"]
            .map(str::to_owned)
            .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["run", "--manifest", manifest, "--event", event]
            .map(str::to_owned)
            .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (backfill(&["--rate", "1e-300"]), "--rate"),
        (backfill(&["--rate", "0"]), "--rate"),
        (backfill(&["--rate=-5"]), "--rate"),
        (backfill(&["--rate", "NaN"]), "--rate"),
        (backfill(&["--rate", "inf"]), "--rate"),
        (backfill(&["--rate", "1e400"]), "--rate"),
        (backfill(&["--segments", "0"]), "--segments"),
        (backfill(&["--segments", "4294967295"]), "--segments"),
        (backfill(&["--page-size", "0"]), "--page-size"),
        (backfill(&["--page-size=-1"]), "--page-size"),
        (backfill(&["--page-size", "2147483647"]), "--page-size"),
        (
            backfill(&["--timeout-secs", "18446744073709551615"]),
            "--timeout-secs",
        ),
        (
            run(&["--publish", "--timeout-secs", "18446744073709551615"]),
            "--timeout-secs",
        ),
        (run(&["--publish", "--timeout-secs", "0"]), "--timeout-secs"),
        (run(&["--memory-mb", "0"]), "--memory-mb"),
        (run(&["--memory-mb", "18446744073709551616"]), "--memory-mb"),
        (backfill(&["--memory-mb", "10241"]), "--memory-mb"),
    ];
    for (args, flag) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = weir_output(&args);
        let err = stderr_text(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    // An event file past any batch's size is refused, not read until memory runs out.
    let out = weir_output(&["decode", "--event", "/dev/zero"]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/dev/zero: larger than"), "{err}");
}

/// `--repin` re-pins a manifest's plugins; beside plugins named on the command line it would
/// do nothing, so it is refused rather than ignored. A missing file is named once.
#[test]
fn repin_without_a_manifest_is_refused_and_a_missing_file_is_named_once() {
    let plugin = plugin("mapping");
    let out = weir_output(&["compile", "--repin", plugin.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_text(&out));
    assert!(
        stderr_text(&out).contains("--repin"),
        "{}",
        stderr_text(&out)
    );

    let out = weir_output(&["compile", "no-such-plugin.wasm"]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
