//! `weir compile`: precompile plugins to `.cwasm` files and print (or write) the pins that
//! let them run.
//!
//! Each plugin is read once (a regular file, within [`MAX_FILE_BYTES`]); what is hashed is
//! what is compiled. `--manifest` never moves a pin silently: a plugin whose bytes no longer
//! match its `sha256` stops the command, unless re-pinning is asked for ([`Repin::Rewrite`]).
//! Every file it writes is a new temporary file beside the target, created exclusively and
//! never through a link, then renamed over it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sha2::Digest as _;

use weir_core::location::{
    Location, MAX_FILE_BYTES, MAX_MANIFEST_BYTES, read_regular_file, replace_file,
};
use weir_core::manifest::Manifest;
use weir_runtime::plugin::PluginEngine;

/// One plugin compiled: the two pins that let it run.
struct Compiled {
    sha256: String,
    compiled_sha256: String,
}

/// Whether `weir compile --manifest` may replace a `sha256` pin the plugin no longer matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Repin {
    /// Refuse: the plugin changed since it was pinned (reviewed), and `weir run` would
    /// refuse it too. Nothing is compiled or written; both hashes are printed.
    #[default]
    Refuse,
    /// Pin the plugin's current bytes (`--repin`): the operator has checked the new code.
    Rewrite,
}

/// Text from a manifest or a path, printable on a terminal: control characters (escape
/// sequences, newlines) are escaped, never interpreted.
fn printable(text: &str) -> String {
    weir_core::text::one_line(text).into_owned()
}

/// Compiles each plugin to a `.cwasm` beside it (or in `out_dir`), printing the pin lines
/// to paste under its `[plugins.<name>]`.
pub fn plugins(
    plugins: &[PathBuf],
    target: Option<&str>,
    out_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let triple = triple(target)?;
    for plugin in plugins {
        let name = plugin.with_extension("cwasm");
        let out = match out_dir {
            Some(d) => d.join(name.file_name().unwrap_or_default()),
            None => name,
        };
        let bytes = read_plugin(plugin)?;
        let c = compile_one(plugin, &bytes, &out, triple)?;
        println!("# pin under this plugin's [plugins.<name>] in the manifest:");
        println!("sha256 = \"{}\"", c.sha256);
        println!("compiled_sha256 = \"{}\"", c.compiled_sha256);
    }
    Ok(())
}

/// Compiles every plugin a manifest names to where the manifest looks for its `.cwasm`,
/// and writes both pins into the manifest, keeping its comments and layout; `repin` says
/// what to do with a `sha256` pin the plugin no longer matches.
pub fn manifest(manifest: &Path, target: Option<&str>, repin: Repin) -> anyhow::Result<()> {
    let triple = triple(target)?;
    let (bytes, meta) = read_regular_file(manifest, MAX_MANIFEST_BYTES)?;
    let text = String::from_utf8(bytes).with_context(|| {
        format!(
            "{}: not UTF-8 text",
            printable(&manifest.display().to_string())
        )
    })?;
    let location = Location::File(std::path::absolute(manifest)?);
    let parsed = Manifest::parse(&text, location)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{}: not TOML", printable(&manifest.display().to_string())))?;

    // Every plugin is read and checked against its pin before anything is compiled or
    // written: a refusal leaves every file as it was.
    let mut plugins = Vec::new();
    let mut changed = Vec::new();
    for (name, spec) in &parsed.plugins {
        let local = |l: Location| match l {
            Location::File(p) => Ok(p),
            other => bail!(
                "plugins.{}: {} is not a local file; download the plugins and compile them with a local manifest",
                printable(name),
                printable(&other.to_string())
            ),
        };
        let wasm = local(parsed.plugin_location(spec)?)?;
        let cwasm = local(parsed.compiled_location(spec)?)?;
        let bytes = read_plugin(&wasm)?;
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if let Some(pinned) = &spec.sha256
            && !pinned.eq_ignore_ascii_case(&actual)
        {
            changed.push(format!(
                "plugins.{}: {} has sha256 {actual}, but the manifest pins {}",
                printable(name),
                printable(&wasm.display().to_string()),
                printable(pinned)
            ));
        }
        plugins.push((name, wasm, cwasm, bytes));
    }
    if !changed.is_empty() {
        match repin {
            Repin::Refuse => bail!(
                "{}; nothing compiled and no pin written: weir run refuses a plugin that differs from its pin (review the new plugin, then re-pin it with weir compile --manifest {} --repin)",
                changed.join("; "),
                printable(&manifest.display().to_string())
            ),
            Repin::Rewrite => {
                for line in &changed {
                    println!("{line}; re-pinned (--repin)");
                }
            }
        }
    }

    for (name, wasm, cwasm, bytes) in plugins {
        let c = compile_one(&wasm, &bytes, &cwasm, triple)?;
        let entry = doc
            .get_mut("plugins")
            .and_then(|p| p.get_mut(name.as_str()))
            .and_then(|e| e.as_table_like_mut())
            .with_context(|| {
                format!(
                    "{}: plugins.{} is not a table this command can write pins into",
                    printable(&manifest.display().to_string()),
                    printable(name)
                )
            })?;
        entry.insert("sha256", toml_edit::value(c.sha256.as_str()));
        entry.insert(
            "compiled_sha256",
            toml_edit::value(c.compiled_sha256.as_str()),
        );
        println!(
            "plugins.{}: pinned sha256 = \"{}\"",
            printable(name),
            c.sha256
        );
        println!(
            "plugins.{}: pinned compiled_sha256 = \"{}\"",
            printable(name),
            c.compiled_sha256
        );
    }
    // The manifest keeps its own permissions.
    use std::os::unix::fs::PermissionsExt as _;
    write_atomically(
        manifest,
        doc.to_string().as_bytes(),
        meta.permissions().mode() & 0o777,
    )?;
    println!(
        "{}: pins written",
        printable(&manifest.display().to_string())
    );
    Ok(())
}

fn triple(target: Option<&str>) -> anyhow::Result<Option<&'static str>> {
    target
        .map(|t| {
            weir_runtime::plugin::target_triple(t)
                .with_context(|| format!("--target {t:?}: expected x86_64 or aarch64"))
        })
        .transpose()
}

/// A plugin's bytes, read once: a regular file (never a link, a FIFO or a device) of at
/// most [`MAX_FILE_BYTES`].
fn read_plugin(plugin: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(read_regular_file(plugin, MAX_FILE_BYTES)?.0)
}

/// Compiles `bytes` (read from `plugin`) to `out`; the pins are of these same bytes.
fn compile_one(
    plugin: &Path,
    bytes: &[u8],
    out: &Path,
    triple: Option<&str>,
) -> anyhow::Result<Compiled> {
    let started = std::time::Instant::now();
    let cwasm = PluginEngine::precompile(bytes, triple).with_context(|| {
        format!(
            "{}: cannot compile",
            printable(&plugin.display().to_string())
        )
    })?;
    write_atomically(out, &cwasm, 0o644)?;
    println!(
        "{} -> {} ({} bytes, {} ms, {})",
        printable(&plugin.display().to_string()),
        printable(&out.display().to_string()),
        cwasm.len(),
        started.elapsed().as_millis(),
        triple.unwrap_or("this machine")
    );
    Ok(Compiled {
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        compiled_sha256: hex::encode(sha2::Sha256::digest(&cwasm)),
    })
}

/// Written to a new file beside it (created exclusively with `mode`, never through a link
/// planted at its name) and renamed over it: a running weir may be reading the old one, and
/// must never see half of the new one.
fn write_atomically(out: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    replace_file(out, bytes, mode)
        .with_context(|| format!("{}: cannot write", printable(&out.display().to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component, and another (the same with a custom section).
    const EMPTY: &[u8] = b"\0asm\x0d\x00\x01\x00";
    const OTHER: &[u8] = b"\0asm\x0d\x00\x01\x00\x00\x04\x03abc";

    fn sha(bytes: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(bytes))
    }

    #[test]
    fn a_pin_the_plugin_no_longer_matches_stops_compile_unless_repinning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, EMPTY).expect("plugin");
        let m = dir.path().join("weir.toml");
        let text = format!(
            "event_bus = \"b\"\n[plugins.p]\npath = \"p.wasm\"\nsha256 = \"{}\"\n\
             [[routes]]\ntable = \"T\"\nsource = \"s\"\ntenant = {{ attribute = \"t\" }}\n\
             [tenants.a]\nplugin = \"p\"\n",
            sha(EMPTY)
        );
        std::fs::write(&m, &text).expect("manifest");
        std::fs::write(&wasm, OTHER).expect("replaced");

        let err = manifest(&m, None, Repin::Refuse).expect_err("refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!(
                "plugins.p: {} has sha256 {}, but the manifest pins {}",
                wasm.display(),
                sha(OTHER),
                sha(EMPTY)
            )) && msg.contains("--repin"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&m).expect("manifest"), text);
        assert!(!dir.path().join("p.cwasm").exists());

        manifest(&m, None, Repin::Rewrite).expect("re-pinned");
        let written = std::fs::read_to_string(&m).expect("manifest");
        let cwasm = std::fs::read(dir.path().join("p.cwasm")).expect("compiled");
        assert!(
            written.contains(&format!("sha256 = \"{}\"", sha(OTHER)))
                && written.contains(&format!("compiled_sha256 = \"{}\"", sha(&cwasm))),
            "{written}"
        );
        // Now pinned to what it is, a plain compile goes through.
        manifest(&m, None, Repin::Refuse).expect("matches its pin");
    }

    #[test]
    fn a_link_planted_at_a_temporary_name_redirects_no_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unrelated = dir.path().join("notes.txt");
        std::fs::write(&unrelated, b"the user's own file").expect("write");
        let out = dir.path().join("mapping.cwasm");
        // The name the old code wrote to (`<out>.tmp<pid>`), and the first names the new
        // code tries, each a link to the user's file.
        let pid = std::process::id();
        let mut planted = vec![format!("mapping.cwasm.tmp{pid}")];
        planted.extend((0..50).map(|n| format!(".mapping.cwasm.tmp{pid}-{n}")));
        for name in &planted {
            std::os::unix::fs::symlink(&unrelated, dir.path().join(name)).expect("plant");
        }
        write_atomically(&out, b"compiled", 0o644).expect("written");
        assert_eq!(
            std::fs::read(&unrelated).expect("read"),
            b"the user's own file"
        );
        let meta = std::fs::symlink_metadata(&out).expect("out");
        assert!(meta.file_type().is_file(), "{meta:?}");
        assert_eq!(std::fs::read(&out).expect("read"), b"compiled");
        // The planted links are left as they were: weir removes only what it created.
        for name in &planted {
            assert!(
                std::fs::symlink_metadata(dir.path().join(name))
                    .expect("still there")
                    .file_type()
                    .is_symlink()
            );
        }
    }
}
