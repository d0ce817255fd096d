//! Loading a manifest and its plugins from files or S3, and reloading them while warm.
//!
//! Plugins are loaded lazily: the manifest is read and checked at start, and each plugin
//! is fetched, checked and compiled (or taken precompiled) the first time a record needs
//! it. A function serving forty tenants does not pay for forty plugins before its first
//! record, and one tenant's broken plugin dead-letters that tenant's records instead of
//! stopping the function. [`Loader::load`] loads everything up front instead (for
//! `weir check` and `weir run`, which must report a broken plugin at once).
//!
//! A reload asks each location whether it changed (S3: conditional GET on the ETag), and
//! rebuilds the pipeline only when something did. A new version that cannot be read,
//! fails its pin, fails to compile or fails the manifest's checks leaves the old one
//! serving; the failure is logged and counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use weir_aws::store::{Fetched, Location, Store};
use weir_core::manifest::Manifest;
use weir_runtime::Pipeline;
use weir_runtime::plugin::{Compile, PluginEngine};
pub use weir_runtime::slot::{LoadProblem, LoadProblems, PluginSlot, SlotError};
use weir_runtime::slot::{PluginSource, SlotSpec};

/// The default time between checks for a changed manifest or plugin.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Reads a manifest and its plugins, and keeps them fresh.
pub struct Loader {
    source: Arc<PluginSource>,
    location: Location,
    interval: Duration,
    manifest_version: String,
    manifest_text: String,
    current: Arc<Pipeline>,
    next_check: Instant,
    reloads: usize,
    reload_failures: usize,
}

impl Loader {
    /// Reads and checks the manifest and loads every plugin its tenants use; any problem
    /// is an error, and all of them are listed.
    pub async fn load(
        store: Store,
        engine: Arc<PluginEngine>,
        location: Location,
        interval: Duration,
    ) -> Result<Self, LoadProblems> {
        let loader = Self::load_lazy(store, engine, location, interval).await?;
        loader.current.load_all().await?;
        Ok(loader)
    }

    /// Reads and checks the manifest; each plugin is loaded when a record first needs it.
    pub async fn load_lazy(
        store: Store,
        engine: Arc<PluginEngine>,
        location: Location,
        interval: Duration,
    ) -> Result<Self, LoadProblems> {
        let (text, version) = store.read(&location).await.map_err(one)?;
        let text = String::from_utf8(text)
            .map_err(|_| one(anyhow::anyhow!("{location}: not UTF-8 text")))?;
        let source = Arc::new(PluginSource::new(Arc::new(store), engine));
        let manifest = parse(&text, &location)?;
        let slots = slots(&manifest, &source, &HashMap::new()).await?;
        Ok(Loader {
            source,
            location,
            interval,
            manifest_version: version,
            manifest_text: text,
            current: Arc::new(Pipeline::new(manifest, slots.slots)),
            next_check: Instant::now() + interval,
            reloads: 0,
            reload_failures: 0,
        })
    }

    /// The pipeline to use now, reloaded first if the interval has passed and anything
    /// changed. Never fails: a bad new version keeps the old one.
    pub async fn current(&mut self) -> Arc<Pipeline> {
        if Instant::now() >= self.next_check {
            self.next_check = Instant::now() + self.interval;
            if let Err(e) = self.reload().await {
                self.reload_failures += 1;
                tracing::error!(
                    manifest = %self.location,
                    "reload failed; the previous manifest and plugins stay in use: {e}"
                );
            }
        }
        self.current.clone()
    }

    /// Forces the next `current()` to check for changes.
    pub fn check_now(&mut self) {
        self.next_check = Instant::now();
    }

    /// Successful reloads that changed something.
    pub fn reloads(&self) -> usize {
        self.reloads
    }

    /// Reloads that failed and left the old version serving.
    pub fn reload_failures(&self) -> usize {
        self.reload_failures
    }

    /// The pipeline now serving, without checking for changes.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.current.clone()
    }

    /// The manifest now serving.
    pub fn manifest(&self) -> &Manifest {
        self.current.manifest()
    }

    async fn reload(&mut self) -> Result<(), LoadProblems> {
        let fetched = self
            .source
            .fetch
            .fetch(&self.location, Some(&self.manifest_version))
            .await
            .map_err(one)?;
        let (text, version) = match fetched {
            Fetched::NotModified => (self.manifest_text.clone(), self.manifest_version.clone()),
            Fetched::Content { bytes, version } => (
                String::from_utf8(bytes)
                    .map_err(|_| one(anyhow::anyhow!("{}: not UTF-8 text", self.location)))?,
                version,
            ),
        };
        let manifest_changed = version != self.manifest_version;
        let manifest = parse(&text, &self.location)?;
        let rebuilt = slots(&manifest, &self.source, self.current.slots()).await?;
        if manifest_changed || rebuilt.changed {
            tracing::info!(manifest = %self.location, "reloaded manifest and plugins");
            self.reloads += 1;
            self.current = Arc::new(Pipeline::new(manifest, rebuilt.slots));
        }
        self.manifest_text = text;
        self.manifest_version = version;
        Ok(())
    }
}

fn parse(text: &str, location: &Location) -> Result<Manifest, LoadProblems> {
    Manifest::parse(text, location.clone()).map_err(|e| LoadProblems::manifest(e.to_string()))
}

/// The slots of a manifest, and whether any differs from `known`'s.
struct Slots {
    slots: HashMap<String, Arc<PluginSlot>>,
    changed: bool,
}

/// One slot per plugin the tenants use. A slot of `known` with the same spec is kept: a
/// loaded one only if its bytes have not changed (a changed one is loaded now, and must
/// load), an unloaded one as it is. A slot whose plugin could not be used is replaced by
/// a fresh one, so a fixed upload is tried again. All problems are gathered.
async fn slots(
    manifest: &Manifest,
    source: &Arc<PluginSource>,
    known: &HashMap<String, Arc<PluginSlot>>,
) -> Result<Slots, LoadProblems> {
    let mut problems = Vec::new();
    let mut slots = HashMap::new();
    let mut changed = known.len()
        != manifest
            .plugins
            .keys()
            .filter(|name| used(manifest, name))
            .count();
    for (name, spec) in &manifest.plugins {
        if !used(manifest, name) {
            continue;
        }
        let locations = manifest
            .plugin_location(spec)
            .and_then(|l| Ok((l, manifest.compiled_location(spec)?)));
        let (location, compiled) = match locations {
            Ok(l) => l,
            Err(e) => {
                problems.push(LoadProblem::Plugin {
                    name: name.clone(),
                    error: SlotError::Broken(format!("plugins.{name}: {e:#}")),
                });
                continue;
            }
        };
        let spec = SlotSpec {
            location,
            pin: spec.sha256.clone(),
            compiled,
            compiled_named: spec.compiled.is_some(),
            compiled_pin: spec.compiled_sha256.clone(),
            compile: if manifest.require_precompiled {
                Compile::Never
            } else {
                Compile::Allowed
            },
        };
        let old = known.get(name);
        let same_spec = old.is_some_and(|s| s.spec() == &spec);
        let slot = match (old, old.and_then(|s| s.loaded_version())) {
            // In use: a new version (changed bytes, or a new path or pin) is loaded before
            // it replaces the old one, so a bad change keeps the old one serving.
            (Some(old), Some(loaded_version)) => {
                let known_version = same_spec.then_some(loaded_version);
                match source.fetch.fetch(&spec.location, known_version).await {
                    Ok(Fetched::NotModified) => old.clone(),
                    Ok(Fetched::Content { bytes, version }) => {
                        changed = true;
                        match PluginSlot::preloaded(name, spec, source.clone(), bytes, version)
                            .await
                        {
                            Ok(s) => Arc::new(s),
                            Err(error) => {
                                problems.push(LoadProblem::Plugin {
                                    name: name.clone(),
                                    error,
                                });
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        problems.push(LoadProblem::Plugin {
                            name: name.clone(),
                            error: SlotError::Unavailable(format!("plugins.{name}: {e:#}")),
                        });
                        continue;
                    }
                }
            }
            // Not used yet, and named the same way: it stays lazy.
            (Some(old), None) if same_spec && !old.is_broken() => old.clone(),
            // New, changed before first use, or broken (a fixed upload is tried afresh).
            _ => {
                changed = true;
                Arc::new(PluginSlot::new(name, spec, source.clone()))
            }
        };
        slots.insert(name.clone(), slot);
    }
    if !problems.is_empty() {
        return Err(LoadProblems { problems });
    }
    Ok(Slots { slots, changed })
}

/// Whether any tenant uses plugin `name`.
fn used(manifest: &Manifest, name: &str) -> bool {
    manifest
        .tenants
        .values()
        .any(|t| t.plugin_names().any(|p| p == name))
}

fn one(e: anyhow::Error) -> LoadProblems {
    LoadProblems::manifest(format!("{e:#}"))
}
