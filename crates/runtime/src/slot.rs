//! One plugin the manifest names, loaded on first use and then kept: where its bytes and
//! native code come from, what the manifest pins, and why it may be missing.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use crate::native::Precompiled;
use crate::plugin::{Compile, LoadError, LoadOptions, Plugin, PluginEngine};
use weir_core::location::{Fetch, Location};
use weir_core::transform::{SlotError, SlotFailure};

/// Where plugins come from: shared by every slot of a loader.
pub struct PluginSource {
    /// Reads plugins and their native code (files, or S3 through the AWS crate).
    pub fetch: Arc<dyn Fetch>,
    engine: Arc<PluginEngine>,
    /// Slots load from blocking threads; S3 reads run on this runtime.
    runtime: tokio::runtime::Handle,
    /// Reads overlap freely, but only one plugin per core is deserialized or compiled at a
    /// time: more would not finish sooner, and each compile holds tens of MB.
    cpu: tokio::sync::Semaphore,
}

impl PluginSource {
    /// Plugins read by `fetch` and loaded by `engine`, reads run on the current runtime.
    /// Call it from within a tokio runtime.
    pub fn new(fetch: Arc<dyn Fetch>, engine: Arc<PluginEngine>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PluginSource {
            fetch,
            engine,
            runtime: tokio::runtime::Handle::current(),
            cpu: tokio::sync::Semaphore::new(cores),
        }
    }

    /// The engine its plugins load into.
    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }
}

/// What the manifest says about one plugin. A reload keeps a slot whose spec is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    /// Where its `.wasm` is.
    pub location: Location,
    /// The sha256 the `.wasm` must have.
    pub pin: Option<String>,
    /// Where its `.cwasm` is (or would be).
    pub compiled: Location,
    /// The manifest names the `.cwasm` (so a missing one is worth a warning).
    pub compiled_named: bool,
    /// The sha256 the `.cwasm` must have to be run.
    pub compiled_pin: Option<String>,
    /// Whether it may be compiled when no pinned native code can be used.
    pub compile: Compile,
}

/// A plugin the manifest names, loaded on first use and then kept.
pub struct PluginSlot {
    name: String,
    spec: SlotSpec,
    source: Arc<PluginSource>,
    loaded: OnceLock<LoadedPlugin>,
    /// Held while loading; holds why the plugin cannot be used, once found.
    loading: tokio::sync::Mutex<Option<Broken>>,
}

/// Why a plugin that was read cannot be used, and the version of the bytes that were read.
#[derive(Clone)]
struct Broken {
    why: SlotFailure,
    version: String,
}

/// A loaded plugin and the version of the bytes it came from.
#[derive(Clone)]
struct LoadedPlugin {
    plugin: Arc<Plugin>,
    version: String,
}

impl PluginSlot {
    /// A slot for plugin `name`, not loaded yet.
    pub fn new(name: &str, spec: SlotSpec, source: Arc<PluginSource>) -> Self {
        PluginSlot {
            name: name.to_owned(),
            spec,
            source,
            loaded: OnceLock::new(),
            loading: tokio::sync::Mutex::new(None),
        }
    }

    /// What the manifest said about it.
    pub fn spec(&self) -> &SlotSpec {
        &self.spec
    }

    /// The version of the bytes its plugin was loaded from, once loaded.
    pub fn loaded_version(&self) -> Option<&str> {
        self.loaded.get().map(|l| l.version.as_str())
    }

    /// The plugin's name in the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A slot for plugin `name` whose bytes of `version` were read and cannot be used
    /// (`why`): its records are dead-lettered with that reason, as if a load had just
    /// failed. A reload makes one when a manifest's new entry for a plugin in use fails.
    pub fn refused(
        name: &str,
        spec: SlotSpec,
        source: Arc<PluginSource>,
        why: SlotFailure,
        version: String,
    ) -> Self {
        PluginSlot {
            loading: tokio::sync::Mutex::new(Some(Broken { why, version })),
            ..PluginSlot::new(name, spec, source)
        }
    }

    /// Whether its plugin was read but could not be used.
    pub fn is_broken(&self) -> bool {
        self.broken().is_some()
    }

    /// Why its plugin cannot be used and the version of the bytes found so, once a load
    /// failed that way (a reload need not read and check that version again).
    pub fn broken(&self) -> Option<(SlotFailure, String)> {
        self.loading
            .try_lock()
            .ok()
            .and_then(|b| b.as_ref().map(|b| (b.why.clone(), b.version.clone())))
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
                location = %self.spec.location,
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
        if let Some(b) = broken.as_ref() {
            return Err((SlotError::Broken(b.why.clone()), false));
        }
        let started = std::time::Instant::now();
        let store = &self.source.fetch;
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
                SlotError::Unavailable(SlotFailure::message(&self.name, format!("{e:#}"))),
                true,
            )
        })?;
        match self.load_bytes(bytes).await {
            Ok(plugin) => {
                tracing::info!(
                    plugin = self.name.as_str(),
                    location = %self.spec.location,
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
                *broken = Some(Broken {
                    why: why.clone(),
                    version,
                });
                Err((SlotError::Broken(why), true))
            }
            Err(unavailable) => Err((unavailable, true)),
        }
    }

    /// Loads the plugin from `bytes`, or, when they were not read, from its pinned native
    /// code (reading the `.wasm` after all if that cannot be used).
    async fn load_bytes(&self, bytes: Option<Vec<u8>>) -> Result<Arc<Plugin>, SlotError> {
        // A local `.cwasm` is mapped by the engine (which says why an unpinned one is not
        // used); one in S3 is fetched only when the manifest pins it: native code runs only
        // when pinned, so unpinned bytes would be read (and held) for nothing.
        let precompiled = match (&self.spec.compiled, &self.spec.compiled_pin) {
            (Location::File(path), _) if path.is_file() => Some(Precompiled::File(path.clone())),
            (compiled, None) => {
                if self.spec.compiled_named {
                    tracing::warn!(
                        plugin = self.name.as_str(),
                        compiled = %compiled,
                        "named .cwasm not read: the manifest does not pin it (compiled_sha256); a .cwasm is native code and runs only when pinned (weir compile prints the pin)"
                    );
                }
                None
            }
            (compiled, Some(_)) => match self.source.fetch.read(compiled).await {
                Ok((bytes, _)) => Some(Precompiled::Bytes {
                    from: compiled.to_string(),
                    bytes,
                }),
                Err(e) => {
                    if self.spec.compiled_named {
                        tracing::warn!(
                            plugin = self.name.as_str(),
                            compiled = %compiled,
                            "named .cwasm not readable: {e:#}"
                        );
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
        let store = self.source.fetch.clone();
        let runtime = self.source.runtime.clone();
        let _core = self.source.cpu.acquire().await;
        // A blocking thread does not inherit the caller's span: carry it over, so what the
        // load logs (a compile, a refused `.cwasm`) has the invocation's request id.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _invocation = span.enter();
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
                    LoadError::Read { .. } | LoadError::Engine { .. } => {
                        SlotError::Unavailable(SlotFailure::new(name, e))
                    }
                    _ => SlotError::Broken(SlotFailure::new(name, e)),
                })
        })
        .await
        .unwrap_or_else(|e| {
            Err(SlotError::Broken(SlotFailure::message(
                &self.name,
                format!("loading failed: {e}"),
            )))
        })
    }

    /// A slot for a new version whose bytes were already fetched: loaded now, so a bad
    /// version is found before it replaces a good one.
    pub async fn preloaded(
        name: &str,
        spec: SlotSpec,
        source: Arc<PluginSource>,
        bytes: Vec<u8>,
        version: String,
    ) -> Result<Self, SlotError> {
        let slot = PluginSlot::new(name, spec, source);
        let plugin = slot.load_bytes(Some(bytes)).await?;
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

impl weir_core::transform::Slot for PluginSlot {
    type Plugin = Plugin;

    fn loaded(&self) -> Option<&Arc<Plugin>> {
        PluginSlot::loaded(self)
    }

    fn is_broken(&self) -> bool {
        PluginSlot::is_broken(self)
    }

    fn get(&self) -> Result<Arc<Plugin>, SlotError> {
        PluginSlot::get(self)
    }

    fn load(&self) -> impl Future<Output = Result<Arc<Plugin>, SlotError>> + Send {
        PluginSlot::load(self)
    }
}
