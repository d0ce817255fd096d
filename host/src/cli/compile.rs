//! `weir compile`: precompile plugins to `.cwasm` files and print (or write) the pins that
//! let them run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sha2::Digest as _;

use weir_aws::store::Location;
use weir_core::manifest::Manifest;
use weir_runtime::plugin::PluginEngine;

/// One plugin compiled: the two pins that let it run.
struct Compiled {
    sha256: String,
    compiled_sha256: String,
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
        let c = compile_one(plugin, &out, triple)?;
        println!("# pin under this plugin's [plugins.<name>] in the manifest:");
        println!("sha256 = \"{}\"", c.sha256);
        println!("compiled_sha256 = \"{}\"", c.compiled_sha256);
    }
    Ok(())
}

/// Compiles every plugin a manifest names to where the manifest looks for its `.cwasm`,
/// and writes both pins into the manifest, keeping its comments and layout.
pub fn manifest(manifest: &Path, target: Option<&str>) -> anyhow::Result<()> {
    let triple = triple(target)?;
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("{}: cannot read", manifest.display()))?;
    let location = Location::File(std::path::absolute(manifest)?);
    let parsed = Manifest::parse(&text, location)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{}: not TOML", manifest.display()))?;
    for (name, spec) in &parsed.plugins {
        let local = |l: Location| match l {
            Location::File(p) => Ok(p),
            other => bail!(
                "plugins.{name}: {other} is not a local file; download the plugins and compile them with a local manifest"
            ),
        };
        let wasm = local(parsed.plugin_location(spec)?)?;
        let cwasm = local(parsed.compiled_location(spec)?)?;
        let c = compile_one(&wasm, &cwasm, triple)?;
        let entry = &mut doc["plugins"][name.as_str()];
        entry["sha256"] = toml_edit::value(c.sha256.as_str());
        entry["compiled_sha256"] = toml_edit::value(c.compiled_sha256.as_str());
        println!("plugins.{name}: pinned sha256 = \"{}\"", c.sha256);
        println!(
            "plugins.{name}: pinned compiled_sha256 = \"{}\"",
            c.compiled_sha256
        );
    }
    write_atomically(manifest, doc.to_string().as_bytes())?;
    println!("{}: pins written", manifest.display());
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

fn compile_one(plugin: &Path, out: &Path, triple: Option<&str>) -> anyhow::Result<Compiled> {
    let bytes =
        std::fs::read(plugin).with_context(|| format!("{}: cannot read", plugin.display()))?;
    let started = std::time::Instant::now();
    let cwasm = PluginEngine::precompile(&bytes, triple)
        .with_context(|| format!("{}: cannot compile", plugin.display()))?;
    write_atomically(out, &cwasm)?;
    println!(
        "{} -> {} ({} bytes, {} ms, {})",
        plugin.display(),
        out.display(),
        cwasm.len(),
        started.elapsed().as_millis(),
        triple.unwrap_or("this machine")
    );
    Ok(Compiled {
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        compiled_sha256: hex::encode(sha2::Sha256::digest(&cwasm)),
    })
}

/// Written beside it and renamed over it: a running weir may be reading the old one, and
/// must never see half of the new one.
fn write_atomically(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, out))
        .with_context(|| format!("{}: cannot write", out.display()))
}
