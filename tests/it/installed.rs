//! `weir` as an author has it: the binary alone, copied into an empty folder outside any
//! checkout, with an empty home. `weir new plugin` there, then the commands it prints under
//! "next:" (build, then `weir test` on the plugin's own case), run as printed, must work for
//! Rust, JavaScript and Python. The Rust half never skips; the JS and Python halves skip,
//! saying why, only where their build tools cannot be installed (no npm or python3, or no
//! network and no cached package).
//!
//! The environment: HOME is an empty temporary folder, so nothing the author's home holds
//! is found through it; the tool chains' own homes stay the real ones, as an installed tool
//! chain has them: CARGO_HOME and RUSTUP_HOME (cargo, rustc and the wasm32-wasip2 target),
//! PYENV_ROOT (python3), and the npm and pip caches. The Rust build runs offline
//! (CARGO_NET_OFFLINE) against cargo's registry cache, as the rest of the tests do, in the
//! plugin's own target/ as printed. `weir` is found on PATH, in the folder it was copied to.
//!
//! Self-contained (std, serde_json, tempfile): the test depends on nothing in the checkout
//! but the built `weir` binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where `weir` is installed, an empty home, and a folder to scaffold in, all temporary and
/// outside any checkout.
struct Installed {
    bin: tempfile::TempDir,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
}

/// The real home, for the tool chains' own homes when they are not set explicitly.
fn real_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .expect("HOME is set for the test run")
}

/// A tool chain home: its variable if set, else its default under the real home.
fn tool_home(var: &str, default_under_home: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home().join(default_under_home))
}

impl Installed {
    fn new() -> Installed {
        let installed = Installed {
            bin: tempfile::tempdir().expect("tempdir"),
            home: tempfile::tempdir().expect("tempdir"),
            work: tempfile::tempdir().expect("tempdir"),
        };
        let weir = installed.bin.path().join("weir");
        std::fs::copy(env!("CARGO_BIN_EXE_weir"), &weir).expect("copy weir");
        for dir in [installed.bin.path(), installed.work.path()] {
            assert!(
                dir.ancestors()
                    .all(|a| !a.join("Cargo.toml").exists() && !a.join("plugins/sdk").exists()),
                "{}: inside a checkout",
                dir.display()
            );
        }
        installed
    }

    /// A command with the installed environment: `weir` first on PATH, an empty HOME, the
    /// real tool chain homes and caches, nothing of weir's build or of the checkout.
    fn command(&self, program: &str, dir: &Path) -> Command {
        let mut path = OsString::from(self.bin.path());
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        let mut cmd = Command::new(program);
        cmd.current_dir(dir)
            .env("PATH", path)
            .env("HOME", self.home.path())
            .env("CARGO_HOME", tool_home("CARGO_HOME", ".cargo"))
            .env("RUSTUP_HOME", tool_home("RUSTUP_HOME", ".rustup"))
            .env("PYENV_ROOT", tool_home("PYENV_ROOT", ".pyenv"))
            .env("npm_config_cache", tool_home("npm_config_cache", ".npm"))
            .env("PIP_CACHE_DIR", tool_home("PIP_CACHE_DIR", ".cache/pip"))
            .env("npm_config_prefer_offline", "true")
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false")
            .env("CARGO_NET_OFFLINE", "true");
        for var in [
            "RUST_LOG",
            "WEIR_SDK",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "VIRTUAL_ENV",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// `weir new plugin NAME --lang LANG` in the work folder: the plugin's folder and the
    /// commands printed under "next:", after the `cd` into that folder.
    fn scaffold(&self, name: &str, lang: &str) -> (PathBuf, Vec<String>) {
        let out = self
            .command("weir", self.work.path())
            .args(["new", "plugin", name, "--lang", lang])
            .output()
            .expect("weir runs from PATH");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = stdout
            .lines()
            .skip_while(|l| l.trim() != "next:")
            .skip(1)
            .map(|l| l.trim().to_owned());
        let dir = self.work.path().join(name);
        let cd = lines.next().unwrap_or_default();
        let entered = cd.strip_prefix("cd ").map(|d| self.work.path().join(d));
        assert_eq!(
            entered.and_then(|d| d.canonicalize().ok()),
            dir.canonicalize().ok(),
            "the first next: command enters the plugin's folder\n{stdout}"
        );
        let next: Vec<String> = lines.take_while(|l| !l.is_empty()).collect();
        assert!(
            next.last()
                .is_some_and(|l| l.starts_with("weir test --plugin ")),
            "the last next: command tests the plugin\n{stdout}"
        );
        (dir, next)
    }

    /// Runs one printed command in the plugin's folder with `sh -c`, as the author would.
    fn run(&self, dir: &Path, line: &str) -> Output {
        self.command("sh", dir)
            .args(["-c", line])
            .output()
            .expect("sh runs")
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks the last printed command, `weir test ... cases`, passed the scaffold's one case.
fn passed_its_case(line: &str, out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{line}: {}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cases: 1, passed: 1, failed: 0"),
        "{line}: {}",
        text(out)
    );
}

/// Why an install step could not get its tools, if its output says it was the network or
/// the package index (not the plugin); `None` for any other failure, which fails the test.
fn cannot_install(out: &Output) -> Option<String> {
    let all = text(out);
    [
        "ENOTFOUND",
        "EAI_AGAIN",
        "ECONNREFUSED",
        "ECONNRESET",
        "ETIMEDOUT",
        "ENETUNREACH",
        "ENOTCACHED",
        "Temporary failure in name resolution",
        "NewConnectionError",
        "No matching distribution found",
        "Could not find a version that satisfies",
    ]
    .iter()
    .find(|sign| all.contains(*sign))
    .map(|sign| format!("its tools cannot be installed here ({sign}):\n{all}"))
}

/// Whether `program --version` runs in the installed environment.
fn has_tool(installed: &Installed, program: &str) -> bool {
    installed
        .command(program, installed.work.path())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn an_installed_weir_scaffolds_a_rust_plugin_that_builds_and_passes_its_case() {
    let installed = Installed::new();
    let (dir, next) = installed.scaffold("installed-rust", "rust");

    // Everything the plugin builds from is in its folder or cargo's registry: no path
    // dependency reaches outside it (a checkout's plugins/sdk, say).
    let out = installed
        .command("cargo", &dir)
        .args(["metadata", "--format-version", "1", "--offline"])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo metadata: {}", text(&out));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let local: Vec<&str> = packages
        .iter()
        .filter(|p| p["source"].is_null())
        .filter_map(|p| p["manifest_path"].as_str())
        .collect();
    let dir_text = dir.to_str().expect("utf-8");
    assert!(
        local.len() == 2 && local.iter().all(|m| m.starts_with(dir_text)),
        "path packages outside {dir_text}: {local:?}"
    );
    let sdk = packages
        .iter()
        .find(|p| p["name"] == "weir-plugin-sdk")
        .expect("the plugin depends on weir-plugin-sdk");
    assert_eq!(sdk["version"], env!("CARGO_PKG_VERSION"), "weir's own SDK");

    // The printed commands, as printed: the build, then `weir test` on the case.
    let (test_line, build) = next.split_last().expect("commands");
    assert_eq!(build, ["cargo build --release --target wasm32-wasip2"]);
    for line in build {
        let out = installed.run(&dir, line);
        assert!(out.status.success(), "{line}: {}", text(&out));
    }
    passed_its_case(test_line, &installed.run(&dir, test_line));
}

#[test]
fn an_installed_weir_scaffolds_a_js_plugin_that_builds_and_passes_its_case() {
    let installed = Installed::new();
    if !has_tool(&installed, "npm") {
        eprintln!("SKIPPED: the JavaScript half needs npm (Node.js), which is not installed");
        return;
    }
    let (dir, next) = installed.scaffold("installed-js", "js");
    let (test_line, build) = next.split_last().expect("commands");
    for line in build {
        let out = installed.run(&dir, line);
        if !out.status.success()
            && line.starts_with("npm install")
            && let Some(why) = cannot_install(&out)
        {
            eprintln!("SKIPPED: the JavaScript half: {line}: {why}");
            return;
        }
        assert!(out.status.success(), "{line}: {}", text(&out));
    }
    passed_its_case(test_line, &installed.run(&dir, test_line));
}

#[test]
fn an_installed_weir_scaffolds_a_python_plugin_that_builds_and_passes_its_case() {
    let installed = Installed::new();
    if !has_tool(&installed, "python3") {
        eprintln!("SKIPPED: the Python half needs python3, which is not installed");
        return;
    }
    let (dir, next) = installed.scaffold("installed-py", "python");
    let (test_line, build) = next.split_last().expect("commands");
    for line in build {
        let out = installed.run(&dir, line);
        if !out.status.success()
            && line.starts_with("python3 -m venv")
            && let Some(why) = cannot_install(&out)
        {
            eprintln!("SKIPPED: the Python half: {line}: {why}");
            return;
        }
        assert!(out.status.success(), "{line}: {}", text(&out));
    }
    passed_its_case(test_line, &installed.run(&dir, test_line));
}
