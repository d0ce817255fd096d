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

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::manifest::Manifest;
use crate::pipeline::Pipeline;
use crate::plugin::{Compile, LoadError, LoadOptions, Plugin, PluginEngine, Precompiled};
use crate::store::{Fetched, Location, Store};

/// The default time between checks for a changed manifest or plugin.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// What a load found wrong, all of it.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct LoadProblems {
    pub problems: Vec<String>,
}

/// Where plugins come from: shared by every slot of a loader.
pub struct PluginSource {
    store: Store,
    engine: Arc<PluginEngine>,
    /// Slots load from blocking threads; S3 reads run on this runtime.
    runtime: tokio::runtime::Handle,
    /// Reads overlap freely, but only one plugin per core is deserialized or compiled at a
    /// time: more would not finish sooner, and each compile holds tens of MB.
    cpu: tokio::sync::Semaphore,
}

/// What the manifest says about one plugin. A reload keeps a slot whose spec is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotSpec {
    location: Location,
    pin: Option<String>,
    compiled: Location,
    /// The manifest names the `.cwasm` (so a missing one is worth a warning).
    compiled_named: bool,
    /// The sha256 the `.cwasm` must have to be run.
    compiled_pin: Option<String>,
    compile: Compile,
}

/// Why a plugin is not there for a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// It could not be read (an S3 or file error, perhaps passing): retry the record.
    #[error("{0}")]
    Unavailable(String),
    /// It was read but cannot be used (pin, compile, imports, contract): the records
    /// that need it are dead-lettered until a fixed version is uploaded.
    #[error("{0}")]
    Broken(String),
}

/// A plugin the manifest names, loaded on first use and then kept.
pub struct PluginSlot {
    name: String,
    spec: SlotSpec,
    source: Arc<PluginSource>,
    loaded: OnceLock<LoadedPlugin>,
    /// Held while loading; holds the error of a plugin that cannot be used.
    loading: tokio::sync::Mutex<Option<String>>,
}

/// A loaded plugin and the version of the bytes it came from.
#[derive(Clone)]
struct LoadedPlugin {
    plugin: Arc<Plugin>,
    version: String,
}

impl PluginSlot {
    fn new(name: &str, spec: SlotSpec, source: Arc<PluginSource>) -> Self {
        PluginSlot {
            name: name.to_owned(),
            spec,
            source,
            loaded: OnceLock::new(),
            loading: tokio::sync::Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether its plugin was read but could not be used.
    pub fn is_broken(&self) -> bool {
        self.loading.try_lock().is_ok_and(|b| b.is_some())
    }

    /// The plugin if it has been loaded.
    pub fn loaded(&self) -> Option<&Arc<Plugin>> {
        self.loaded.get().map(|l| &l.plugin)
    }

    /// The plugin, loaded now if this is its first use. It blocks, so call it from a
    /// thread that may block (a `spawn_blocking` thread, or outside any runtime).
    pub fn get(&self) -> Result<Arc<Plugin>, SlotError> {
        if let Some(l) = self.loaded.get() {
            return Ok(l.plugin.clone());
        }
        block_on(&self.source.runtime, self.load_with(true))
    }

    /// The plugin, loaded now if this is its first use.
    pub async fn load(&self) -> Result<Arc<Plugin>, SlotError> {
        self.load_with(false).await
    }

    /// Loads the plugin; `log` says a failed attempt is logged (once per attempt, not once
    /// per record that finds the plugin broken).
    async fn load_with(&self, log: bool) -> Result<Arc<Plugin>, SlotError> {
        let result = self.attempt().await;
        if log && let Err((e, true)) = &result {
            tracing::error!(
                plugin = self.name.as_str(),
                "plugin not available; the records that need it are {}: {e}",
                match e {
                    SlotError::Broken(_) => "dead-lettered until a fixed version is uploaded",
                    SlotError::Unavailable(_) => "retried",
                }
            );
        }
        result.map_err(|(e, _)| e)
    }

    /// The plugin, or why not and whether this call tried to load it.
    async fn attempt(&self) -> Result<Arc<Plugin>, (SlotError, bool)> {
        let mut broken = self.loading.lock().await;
        if let Some(l) = self.loaded.get() {
            return Ok(l.plugin.clone());
        }
        if let Some(why) = broken.as_ref() {
            return Err((SlotError::Broken(why.clone()), false));
        }
        let started = std::time::Instant::now();
        let store = &self.source.store;
        let location = &self.spec.location;
        // With both pins only the pinned native code runs: the `.wasm` is read only if that
        // cannot be used. Its version is still taken, for the reload's change check.
        let read = if self.spec.pin.is_some() && self.spec.compiled_pin.is_some() {
            store.version(location).await.map(|v| (None, v))
        } else {
            store.read(location).await.map(|(b, v)| (Some(b), v))
        };
        let (bytes, version) = read.map_err(|e| {
            (
                SlotError::Unavailable(format!("plugins.{}: {e:#}", self.name)),
                true,
            )
        })?;
        match self.load_bytes(bytes).await {
            Ok(plugin) => {
                tracing::info!(
                    plugin = self.name.as_str(),
                    sha256 = plugin.sha256(),
                    load_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "plugin loaded"
                );
                let _ = self.loaded.set(LoadedPlugin {
                    plugin: plugin.clone(),
                    version,
                });
                Ok(plugin)
            }
            Err(SlotError::Broken(why)) => {
                *broken = Some(why.clone());
                Err((SlotError::Broken(why), true))
            }
            Err(unavailable) => Err((unavailable, true)),
        }
    }

    /// Loads the plugin from `bytes`, or, when they were not read, from its pinned native
    /// code (reading the `.wasm` after all if that cannot be used).
    async fn load_bytes(&self, bytes: Option<Vec<u8>>) -> Result<Arc<Plugin>, SlotError> {
        // A local `.cwasm` is mapped by the engine; one in S3 is fetched.
        let precompiled = match &self.spec.compiled {
            Location::File(path) if path.is_file() => Some(Precompiled::File(path.clone())),
            compiled => match self.source.store.read(compiled).await {
                Ok((bytes, _)) => Some(Precompiled::Bytes {
                    from: compiled.to_string(),
                    bytes,
                }),
                Err(e) => {
                    if self.spec.compiled_named {
                        tracing::warn!(compiled = %compiled, "named .cwasm not readable: {e:#}");
                    }
                    None
                }
            },
        };
        // Hashing, deserializing and checking is CPU work: off the async workers, so
        // several plugins load side by side (`Pipeline::load_needed`).
        let engine = self.source.engine.clone();
        let name = self.name.clone();
        let path = self.spec.location.to_string();
        let spec = self.spec.clone();
        let store = self.source.store.clone();
        let runtime = self.source.runtime.clone();
        let _core = self.source.cpu.acquire().await;
        tokio::task::spawn_blocking(move || {
            let options = LoadOptions {
                pin: spec.pin.as_deref(),
                compiled_pin: spec.compiled_pin.as_deref(),
                precompiled,
                compile: spec.compile,
            };
            let wasm = || match bytes {
                Some(b) => Ok(Cow::Owned(b)),
                // A blocking thread, not an async one: it may wait for the read.
                None => runtime
                    .block_on(store.read(&spec.location))
                    .map(|(b, _)| Cow::Owned(b))
                    .map_err(|e| LoadError::Read {
                        path: path.clone(),
                        message: format!("{e:#}"),
                    }),
            };
            engine
                .load_with(&name, &path, options, wasm)
                .map(Arc::new)
                .map_err(|e| match e {
                    LoadError::Read { .. } => {
                        SlotError::Unavailable(format!("plugins.{name}: {e}"))
                    }
                    _ => SlotError::Broken(format!("plugins.{name}: {e}")),
                })
        })
        .await
        .unwrap_or_else(|e| {
            Err(SlotError::Broken(format!(
                "plugins.{}: loading failed: {e}",
                self.name
            )))
        })
    }

    /// A slot for a new version whose bytes were already fetched: loaded now, so a bad
    /// version is found before it replaces a good one.
    async fn preloaded(
        name: &str,
        spec: SlotSpec,
        source: Arc<PluginSource>,
        bytes: Vec<u8>,
        version: String,
    ) -> Result<Self, String> {
        let slot = PluginSlot::new(name, spec, source);
        let plugin = slot
            .load_bytes(Some(bytes))
            .await
            .map_err(|e| e.to_string())?;
        let _ = slot.loaded.set(LoadedPlugin { plugin, version });
        Ok(slot)
    }
}

/// Runs `f` to completion from synchronous code on a thread that may block.
fn block_on<F: Future>(runtime: &tokio::runtime::Handle, f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(current) if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| runtime.block_on(f))
        }
        _ => runtime.block_on(f),
    }
}

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
        let source = Arc::new(PluginSource {
            store,
            engine,
            runtime: tokio::runtime::Handle::current(),
            cpu: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, usize::from),
            ),
        });
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
            .store
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
    Manifest::parse(text, location.clone()).map_err(|e| LoadProblems {
        problems: vec![e.to_string()],
    })
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
                problems.push(format!("plugins.{name}: {e:#}"));
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
        let same_spec = old.is_some_and(|s| s.spec == spec);
        let slot = match (old, old.and_then(|s| s.loaded.get())) {
            // In use: a new version (changed bytes, or a new path or pin) is loaded before
            // it replaces the old one, so a bad change keeps the old one serving.
            (Some(old), Some(loaded)) => {
                let known_version = same_spec.then_some(loaded.version.as_str());
                match source.store.fetch(&spec.location, known_version).await {
                    Ok(Fetched::NotModified) => old.clone(),
                    Ok(Fetched::Content { bytes, version }) => {
                        changed = true;
                        match PluginSlot::preloaded(name, spec, source.clone(), bytes, version)
                            .await
                        {
                            Ok(s) => Arc::new(s),
                            Err(why) => {
                                problems.push(why);
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        problems.push(format!("plugins.{name}: {e:#}"));
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
    LoadProblems {
        problems: vec![format!("{e:#}")],
    }
}
