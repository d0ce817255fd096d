//! `weir new plugin NAME --lang rust|js|python`: a new plugin with one golden case, ready
//! to build and to test with `weir test`, so an author starts from something that works.
//!
//! The templates are files under `host/templates/`, compiled into weir. Every language
//! gets the same case (`cases/example/`): the three templates map records alike, byte
//! for byte.

use std::path::{Component, Path, PathBuf};

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
        /// Rust: the weir-plugin-sdk crate's folder (default: found from the current
        /// folder, the weir executable, or the checkout weir was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
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

/// Writes a new plugin in `parent/name`. Refuses to write into a folder that exists.
pub fn new_plugin(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<Scaffolded> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{}: already exists; choose another name or --dir",
            dir.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let (templates, sdk_path, next): (&[Template], String, Vec<String>) = match lang {
        Lang::Rust => {
            let sdk = find_sdk(sdk)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            let sdk_path = relative_to(&sdk, &dir).display().to_string();
            (
                RUST,
                sdk_path,
                vec![
                    format!("cd {}", dir.display()),
                    "cargo build --release --target wasm32-wasip2".to_owned(),
                    format!(
                        "weir test --plugin target/wasm32-wasip2/release/{crate_name}.wasm cases"
                    ),
                ],
            )
        }
        Lang::Js => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            (
                JS,
                String::new(),
                vec![
                    format!("cd {}", dir.display()),
                    "npm install      # componentize-qjs, once".to_owned(),
                    "npm run build".to_owned(),
                    format!("weir test --plugin {name}.wasm cases"),
                ],
            )
        }
        Lang::Python => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            (
                PYTHON,
                String::new(),
                vec![
                    format!("cd {}", dir.display()),
                    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt   # componentize-py, once".to_owned(),
                    format!("{PYTHON_BUILD} -o {name}.wasm"),
                    format!("weir test --plugin {name}.wasm cases"),
                ],
            )
        }
    };
    let mut files = Vec::new();
    for t in templates.iter().chain(CASES) {
        let path = dir.join(t.path);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("{}: cannot create", folder.display()))?;
        }
        let text = t
            .text
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{sdk_path}}", &toml_escape(&sdk_path));
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
        files.push(path);
    }
    Ok(Scaffolded { dir, files, next })
}

/// The text for inside a TOML basic string.
fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The SDK's folder: `explicit`, else `WEIR_SDK`, else `plugins/sdk` in an ancestor of
/// the current folder or of the weir executable, else the checkout weir was built from.
pub fn find_sdk(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let is_sdk = |p: &Path| {
        std::fs::read_to_string(p.join("Cargo.toml"))
            .is_ok_and(|t| t.contains("name = \"weir-plugin-sdk\""))
    };
    if let Some(p) = explicit {
        if !is_sdk(p) {
            bail!(
                "--sdk {}: not the weir-plugin-sdk crate (no Cargo.toml naming weir-plugin-sdk)",
                p.display()
            );
        }
        return std::fs::canonicalize(p).with_context(|| format!("{}", p.display()));
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("WEIR_SDK") {
        candidates.push(PathBuf::from(p));
    }
    for start in [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf)),
    ]
    .into_iter()
    .flatten()
    {
        candidates.extend(start.ancestors().map(|a| a.join("plugins/sdk")));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk"));
    candidates
        .into_iter()
        .find(|p| is_sdk(p))
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .context(
            "cannot find the weir-plugin-sdk crate: pass --sdk PATH (plugins/sdk in a weir checkout) or set WEIR_SDK",
        )
}

/// `target` as a path relative to `from` (both absolute, or made so); `target` itself when
/// they share no root.
fn relative_to(target: &Path, from: &Path) -> PathBuf {
    let (Ok(target), Ok(from)) = (std::fs::canonicalize(target), std::fs::canonicalize(from))
    else {
        return target.to_path_buf();
    };
    let t: Vec<Component> = target.components().collect();
    let f: Vec<Component> = from.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return target;
    }
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
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
    fn relative_paths_climb_to_the_common_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("repo/plugins/sdk");
        let b = dir.path().join("work/mine");
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        assert_eq!(relative_to(&a, &b), PathBuf::from("../../repo/plugins/sdk"));
    }

    #[test]
    fn an_existing_folder_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("taken")).expect("mkdir");
        let e = new_plugin("taken", Lang::Rust, dir.path(), None).expect_err("exists");
        assert!(e.to_string().contains("already exists"), "{e}");
    }
}
