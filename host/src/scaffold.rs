//! `weir new plugin NAME --lang rust|js|python`: a new plugin with one golden case, ready
//! to build and to test with `weir test`, so an author starts from something that works.
//!
//! The templates are files under `host/templates/`, compiled into weir. Every language
//! gets the same case (`cases/example/`): the three templates map records alike, byte
//! for byte.
//!
//! A Rust plugin also gets the SDK, `weir-plugin-sdk/`, as a crate of its own in its
//! folder: weir carries the SDK's files (`plugins/sdk`, compiled in), so the plugin builds
//! against the SDK of the very contract this weir loads, with nothing but the Rust
//! toolchain and the `wasm32-wasip2` target, wherever weir is installed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// What `weir new` can make.
#[derive(Debug, clap::Subcommand)]
pub enum NewCommand {
    /// A plugin with one test case, in its own folder DIR/NAME.
    Plugin {
        /// The plugin's name: lowercase letters, digits and hyphens, starting with a letter.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The folder to create the plugin's folder in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

/// A language a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, built for wasm32-wasip2 with cargo and the weir-plugin-sdk crate.
    Rust,
    /// JavaScript, built with componentize-qjs.
    Js,
    /// Python, built with componentize-py.
    Python,
}

/// One file to write: its path inside the plugin's folder, and its template.
struct Template {
    path: &'static str,
    text: &'static str,
}

const RUST: &[Template] = &[
    Template {
        path: "Cargo.toml",
        text: include_str!("../templates/rust/Cargo.toml"),
    },
    Template {
        path: "src/lib.rs",
        text: include_str!("../templates/rust/src/lib.rs"),
    },
    Template {
        path: ".gitignore",
        text: "/target\n",
    },
];

/// The folder, inside a Rust plugin's, that the SDK is written to; the plugin's
/// Cargo.toml depends on it by this relative path.
pub const SDK_DIR: &str = "weir-plugin-sdk";

/// The SDK's files, each under `weir-plugin-sdk/`, exactly as in `plugins/sdk/` (never
/// templated). `plugins/sdk/wit` is the repository's `wit/`; the unit tests check that
/// this list names every file of the SDK's `src/` and `wit/`.
macro_rules! sdk_files {
    ($($file:literal),* $(,)?) => {
        &[$(Template {
            path: concat!("weir-plugin-sdk/", $file),
            text: include_str!(concat!("../../plugins/sdk/", $file)),
        }),*]
    };
}

const SDK: &[Template] = sdk_files![
    "Cargo.toml",
    "src/bindings.rs",
    "src/error.rs",
    "src/event.rs",
    "src/glue.rs",
    "src/host_image.rs",
    "src/image.rs",
    "src/lib.rs",
    "src/log.rs",
    "src/number.rs",
    "src/record.rs",
    "src/tenant.rs",
    "wit/transform.wit",
    "wit/0.1.0/transform.wit",
];

/// The contract, for the JavaScript and Python build tools to read.
const WIT: &str = include_str!("../../wit/transform.wit");

const JS: &[Template] = &[
    Template {
        path: "package.json",
        text: include_str!("../templates/js/package.json"),
    },
    Template {
        path: "src/plugin.js",
        text: include_str!("../templates/js/src/plugin.js"),
    },
    Template {
        path: "wit/transform.wit",
        text: WIT,
    },
    Template {
        path: ".gitignore",
        text: "/node_modules\n/*.wasm\n/*.cwasm\n",
    },
];

const PYTHON: &[Template] = &[
    Template {
        path: "app.py",
        text: include_str!("../templates/python/app.py"),
    },
    Template {
        path: "requirements.txt",
        text: include_str!("../templates/python/requirements.txt"),
    },
    Template {
        path: "wit/transform.wit",
        text: WIT,
    },
    Template {
        path: ".gitignore",
        text: "/.venv\n__pycache__/\n/*.wasm\n/*.cwasm\n",
    },
];

/// The case every language gets: one event with a published, a filtered and a
/// dead-lettered record, and what the template plugin makes of it.
const CASES: &[Template] = &[
    Template {
        path: "cases/config.toml",
        text: include_str!("../templates/cases/config.toml"),
    },
    Template {
        path: "cases/example/event.json",
        text: include_str!("../templates/cases/example/event.json"),
    },
    Template {
        path: "cases/example/entries.jsonl",
        text: include_str!("../templates/cases/example/entries.jsonl"),
    },
    Template {
        path: "cases/example/dead-letters.jsonl",
        text: include_str!("../templates/cases/example/dead-letters.jsonl"),
    },
];

/// The componentize-py command that builds a Python plugin (add `-o NAME.wasm`): the
/// contract from `wit/`, the app in `app.py`, WASI stubbed out (a plugin needs none).
pub const PYTHON_BUILD: &str =
    ".venv/bin/componentize-py -d wit -w plugin componentize -p . --stub-wasi app";

/// What was made, and the commands to run next.
#[derive(Debug)]
pub struct Scaffolded {
    /// The plugin's folder.
    pub dir: PathBuf,
    /// Every file written, inside `dir`.
    pub files: Vec<PathBuf>,
    /// The commands that build and test it, to run in `dir`.
    pub next: Vec<String>,
}

/// Checks a plugin name: it becomes a crate, package and file name, and a manifest key.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_with_letter
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.ends_with('-')
        || name.len() > 64
    {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits and hyphens, starting with a letter (at most 64), e.g. \"crm-contact\""
        );
    }
    Ok(())
}

/// Writes a new plugin in `parent/name`. Refuses to write into a folder that exists, and
/// creates every file new (never through a link, never over a file).
pub fn new_plugin(name: &str, lang: Lang, parent: &Path) -> anyhow::Result<Scaffolded> {
    check_name(name)?;
    let dir = parent.join(name);
    let crate_name = name.replace('-', "_");
    let cd = format!("cd {}", shell_word(&dir.display().to_string()));
    let (templates, verbatim, next): (&[Template], &[Template], Vec<String>) = match lang {
        Lang::Rust => (
            RUST,
            SDK,
            vec![
                cd,
                "cargo build --release --target wasm32-wasip2".to_owned(),
                format!("weir test --plugin target/wasm32-wasip2/release/{crate_name}.wasm cases"),
            ],
        ),
        Lang::Js => (
            JS,
            &[],
            vec![
                cd,
                "npm install      # componentize-qjs, once".to_owned(),
                "npm run build".to_owned(),
                format!("weir test --plugin {name}.wasm cases"),
            ],
        ),
        Lang::Python => (
            PYTHON,
            &[],
            vec![
                cd,
                "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt   # componentize-py, once".to_owned(),
                format!("{PYTHON_BUILD} -o {name}.wasm"),
                format!("weir test --plugin {name}.wasm cases"),
            ],
        ),
    };
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{}: already exists; choose another name or --dir",
            dir.display()
        ),
        other => other.with_context(|| format!("{}: cannot create", dir.display()))?,
    }
    let mut files = Vec::new();
    let templated = templates.iter().chain(CASES).map(|t| {
        let text = t
            .text
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{weir_version}}", env!("CARGO_PKG_VERSION"));
        (t.path, text)
    });
    let copied = verbatim.iter().map(|t| (t.path, t.text.to_owned()));
    for (relative, text) in templated.chain(copied) {
        let path = dir.join(relative);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("{}: cannot create", folder.display()))?;
        }
        write_new(&path, text.as_bytes())?;
        files.push(path);
    }
    Ok(Scaffolded { dir, files, next })
}

/// Writes `bytes` to a file that must not exist yet: `create_new` refuses an existing file
/// and a link alike, so nothing outside the new plugin's folder is written through it.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// `text` as one word a POSIX shell reads back as `text`, for the printed commands: as it
/// is when it is plainly safe, otherwise single-quoted, with control characters (a newline,
/// an escape sequence) written as `$'\xNN'` so a terminal shows them rather than obeys them.
pub fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@,%=".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_owned();
    }
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            c if c.is_control() => {
                let mut utf8 = [0u8; 4];
                out.push('\'');
                for byte in c.encode_utf8(&mut utf8).bytes() {
                    out.push_str(&format!("$'\\x{byte:02x}'"));
                }
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_usable_as_crate_and_file_names() {
        for good in ["crm", "crm-contact", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Crm",
            "1crm",
            "crm_contact",
            "crm-",
            "crm contact",
            "../x",
        ] {
            let e = check_name(bad).expect_err(bad);
            assert!(e.to_string().contains("lowercase letters"), "{e}");
        }
    }

    #[test]
    fn an_existing_folder_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("taken")).expect("mkdir");
        let e = new_plugin("taken", Lang::Rust, dir.path()).expect_err("exists");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("taken"))
                .expect("read")
                .count(),
            0
        );
    }

    /// Every file under `dir`, as paths relative to `base` with `/` between parts.
    fn files_under(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files_under(base, &path, out);
            } else {
                let relative = path.strip_prefix(base).expect("inside");
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }

    #[test]
    fn weir_carries_every_file_of_the_sdk() {
        // A file added to the SDK's src/ or to the contract must be added to `SDK` too, or
        // every scaffolded plugin would fail to build.
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
        let mut on_disk = vec!["Cargo.toml".to_owned()];
        files_under(&sdk, &sdk.join("src"), &mut on_disk);
        files_under(&sdk, &sdk.join("wit"), &mut on_disk);
        on_disk.sort();
        let mut carried: Vec<String> = SDK
            .iter()
            .map(|t| {
                t.path
                    .strip_prefix("weir-plugin-sdk/")
                    .expect("under the SDK's folder")
                    .to_owned()
            })
            .collect();
        carried.sort();
        assert_eq!(carried, on_disk);
        assert!(carried.iter().any(|f| f == "wit/transform.wit"));
    }

    #[test]
    fn the_carried_sdk_stands_alone_at_weirs_version() {
        let manifest = SDK
            .iter()
            .find(|t| t.path == "weir-plugin-sdk/Cargo.toml")
            .expect("the SDK's Cargo.toml")
            .text;
        let table: toml::Table = manifest.parse().expect("TOML");
        let package = table["package"].as_table().expect("[package]");
        assert_eq!(
            package["version"].as_str(),
            Some(env!("CARGO_PKG_VERSION")),
            "the SDK's version is weir's"
        );
        assert!(package["edition"].is_str() && package["license"].is_str());
        // Nothing inherited from a workspace (`version.workspace = true` and the like are
        // tables): the plugin's folder has no weir workspace to inherit from.
        let inherits = |value: &toml::Value| value.get("workspace").is_some();
        assert!(!package.values().any(inherits), "{manifest}");
        let dependencies = table["dependencies"].as_table().expect("[dependencies]");
        assert!(!dependencies.values().any(inherits), "{manifest}");
        assert!(!table.contains_key("workspace"), "{manifest}");
        let bindings = SDK
            .iter()
            .find(|t| t.path == "weir-plugin-sdk/src/bindings.rs")
            .expect("bindings")
            .text;
        assert!(!bindings.contains("../"), "WIT from outside the SDK");
    }

    #[test]
    fn a_rust_plugin_gets_the_sdk_in_its_own_folder() {
        let parent = tempfile::tempdir().expect("tempdir");
        let made = new_plugin("crm-contact", Lang::Rust, parent.path()).expect("made");
        let manifest = std::fs::read_to_string(made.dir.join("Cargo.toml")).expect("Cargo.toml");
        let table: toml::Table = manifest.parse().expect("TOML");
        assert_eq!(table["package"]["name"].as_str(), Some("crm-contact"));
        assert_eq!(
            table["dependencies"]["weir-plugin-sdk"]["path"].as_str(),
            Some(SDK_DIR)
        );
        for t in SDK {
            let written = std::fs::read_to_string(made.dir.join(t.path)).expect(t.path);
            assert_eq!(written, t.text, "{}", t.path);
        }
        assert_eq!(made.files.len(), RUST.len() + CASES.len() + SDK.len());
        assert!(made.next.iter().any(|c| c.contains("crm_contact.wasm")));
    }

    #[test]
    fn printed_folders_are_one_shell_word_and_show_control_characters() {
        assert_eq!(shell_word("/tmp/crm-contact"), "/tmp/crm-contact");
        assert_eq!(shell_word("my plugins/x"), "'my plugins/x'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        let hostile = shell_word("a\n\u{1b}[2Jb");
        assert!(!hostile.chars().any(char::is_control), "{hostile}");
        assert_eq!(hostile, "'a'$'\\x0a'''$'\\x1b''[2Jb'");
    }
}
