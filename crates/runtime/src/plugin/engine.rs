//! The engine: its settings, the compiled-code caches, and loading a component into a
//! [`Plugin`] (pins, trusted native code, imports, the contract's export).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::Digest as _;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker, types::ComponentItem};
use weir_core::model::PluginRef;
use weir_core::pipeline::WarmBudget;

use super::imports::forbidden;
use super::instance::Plugin;
use super::instance::Pre;
use super::interfaces::PluginState;
use super::pool::{MEMORY_GUARD, MEMORY_RESERVATION, PoolSize};
use super::{Contract, EPOCH_TICK, bindings, bindings_v01};
use crate::native::{CompiledCache, Precompiled, Refused, VerifiedArtifact};

/// A plugin that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its bytes could not be read (perhaps a passing S3 error).
    #[error("{path}: cannot read plugin: {message}")]
    Read {
        /// Where it is.
        path: String,
        /// Why not.
        message: String,
    },
    /// Its bytes are not the ones the manifest pins.
    #[error("{path}: sha256 is {actual}, but the manifest pins {pinned}; refusing to load")]
    PinMismatch {
        /// Where it is.
        path: String,
        /// The manifest's `sha256`.
        pinned: String,
        /// The bytes' sha256.
        actual: String,
    },
    /// It is not a component wasmtime can compile.
    #[error("{path}: not a valid WebAssembly component: {message}")]
    Compile {
        /// Where it is.
        path: String,
        /// wasmtime's message.
        message: String,
    },
    /// It imports something plugins may not have (network, an unknown interface).
    #[error("{path}: imports {import}, which plugins may not use ({why})")]
    ForbiddenImport {
        /// Where it is.
        path: String,
        /// The import's name.
        import: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// It does not export the contract's `transform`.
    #[error("{path}: does not implement weir:transform (0.2.0 or 0.1.0): {message}")]
    Contract {
        /// Where it is.
        path: String,
        /// What is missing or wrong.
        message: String,
    },
    /// The engine could not start (its instance pool could not be reserved): nothing can
    /// load, and the records that need a plugin are retried.
    #[error("{path}: not loaded, because the plugin engine cannot start: {message}")]
    Engine {
        /// Where it is.
        path: String,
        /// Why the engine cannot start.
        message: String,
    },
    /// The manifest forbids compiling (`require_precompiled`), and no trusted native code
    /// was there.
    #[error(
        "{path}: not compiled here, because the manifest sets require_precompiled = true, and {why}"
    )]
    NotPrecompiled {
        /// Where it is.
        path: String,
        /// Why no precompiled code could be used.
        why: String,
    },
}

/// Whether a plugin may be compiled when no trusted precompiled code is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compile {
    /// Compile it (and keep the result in the private cache).
    #[default]
    Allowed,
    /// Never: the function must not compile at cold start (`require_precompiled`). The
    /// plugin cannot be loaded, and its records are dead-lettered as `plugin-load`.
    Never,
}

/// How loudly a plugin compiled at load time is logged: the program that loads it decides
/// ([`CompileNotice::set_process_default`] in its `main`, or
/// [`PluginEngine::with_compile_notice`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CompileNotice {
    /// A warning: in the Lambda function a compile costs its cold start hundreds of
    /// milliseconds per plugin, which `weir compile` (a pinned `.cwasm`) avoids.
    #[default]
    Warn,
    /// An info line: on the command line, compiling a plugin just built is expected (its
    /// result is cached for the next run), and nothing is wrong.
    Info,
}

/// The process's [`CompileNotice`], as a number (0: warn, 1: info).
static PROCESS_NOTICE: AtomicU8 = AtomicU8::new(0);

impl CompileNotice {
    /// Makes this the notice of every engine this process builds from now on: the
    /// function's `main` keeps [`CompileNotice::Warn`], the command line's chooses
    /// [`CompileNotice::Info`].
    pub fn set_process_default(self) {
        PROCESS_NOTICE.store(self as u8, Ordering::Relaxed);
    }

    /// The notice engines built now get.
    pub fn process_default() -> Self {
        match PROCESS_NOTICE.load(Ordering::Relaxed) {
            0 => CompileNotice::Warn,
            _ => CompileNotice::Info,
        }
    }
}

/// What the manifest says about one plugin, beside its bytes.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions<'a> {
    /// The sha256 its `.wasm` must have.
    pub pin: Option<&'a str>,
    /// The sha256 its `.cwasm` must have; without it a `.cwasm` is never run.
    pub compiled_pin: Option<&'a str>,
    /// A `.cwasm` found for it, to be checked against `compiled_pin`.
    pub precompiled: Option<Precompiled>,
    /// Whether to compile when no trusted native code is there.
    pub compile: Compile,
}

/// The shared wasmtime engine, the linker every plugin is instantiated against, and the
/// cache of compiled plugins.
///
/// Compiled components are cached by the sha256 of the plugin's bytes: in memory, and as
/// `.cwasm` files under a cache directory whose names also carry the engine's settings
/// and version. An identical plugin uploaded under another name is never compiled twice.
///
/// The wasmtime engine itself starts when a manifest sizes its instance pool
/// ([`Self::start_with`], which weir's loader calls once it has read the manifest), or
/// else on first use with [`PoolSize::without_manifest`]: the pool's address space is
/// reserved when it starts, so it is sized before it is reserved.
pub struct PluginEngine {
    settings: Settings,
    started: OnceLock<Result<Started, String>>,
    compiled: Mutex<HashMap<String, Component>>,
    /// One lock per content being loaded: plugins load side by side, but two with the
    /// same bytes are compiled once (the second waits and finds the first's result).
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    cache: Option<CompiledCache>,
    compiles: AtomicUsize,
}

/// What an engine was built with, kept to build another like it ([`PluginEngine::resized`]).
#[derive(Debug, Clone)]
struct Settings {
    cache_dir: Option<PathBuf>,
    fuel: bool,
    notice: CompileNotice,
    /// The instances kept warm, from the function's memory: they size the pool.
    warm: WarmBudget,
}

/// A running wasmtime engine and what depends on it.
struct Started {
    engine: Engine,
    linker: Linker<PluginState>,
    /// The engine's compatibility, in the names of disk cache entries.
    tag: String,
    pool: PoolSize,
}

impl Started {
    /// Starts an engine with a pool of `pool`, and the epoch ticker that enforces time
    /// limits (it stops when the engine is dropped).
    fn new(pool: PoolSize, fuel: bool) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(None, fuel, pool)?)?;
        let linker = super::imports::linker(&engine)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        tracing::info!(pool = %pool, "plugin engine started");
        Ok(Started {
            tag: engine_tag(&engine),
            engine,
            linker,
            pool,
        })
    }
}

/// The Lambda architectures `weir compile --target` can precompile for.
pub fn target_triple(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" => Some("x86_64-unknown-linux-gnu"),
        "aarch64" | "arm64" => Some("aarch64-unknown-linux-gnu"),
        _ => None,
    }
}

/// Engine settings shared by the runtime and `weir compile` (a `.cwasm` only loads into an
/// engine with the same settings; the pool's size is not among them).
///
/// - Pooling allocator, sized by `pool` ([`PoolSize`]): instance slots are reserved once
///   and reused, and linear memories are mapped copy-on-write from the compiled image, so
///   instantiating is mostly mapping, not copying.
/// - Each memory reserves [`MEMORY_RESERVATION`] (4 GiB) followed by a [`MEMORY_GUARD`]
///   (32 MiB), wasmtime's defaults on 64-bit hosts, set here so they cannot drift: with
///   them the MMU bounds-checks every access and compiled code checks nothing. They are
///   part of a `.cwasm`'s compatibility, so they are constants, never derived from a
///   manifest.
/// - Component-model concurrency off: weir's calls are synchronous, and the support costs
///   every call a fixed overhead.
/// - An epoch deadline, not fuel, bounds time: a counter check per loop back-edge instead
///   of fuel accounting on every block.
fn engine_config(
    target: Option<&str>,
    fuel: bool,
    pool: PoolSize,
) -> anyhow::Result<wasmtime::Config> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.concurrency_support(false);
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    config.max_wasm_stack(1 << 20);
    config.memory_reservation(MEMORY_RESERVATION);
    config.memory_guard_size(MEMORY_GUARD);
    config.guard_before_linear_memory(true);
    config.memory_init_cow(true);
    // For profiling plugins: `perf` names their functions from /tmp/perf-<pid>.map.
    if std::env::var_os("WEIR_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
        pool.pooling_config(),
    ));
    if let Some(t) = target {
        config.target(t)?;
    }
    Ok(config)
}

impl PluginEngine {
    /// Builds the engine; it starts (with the epoch ticker that enforces time limits) when a
    /// manifest sizes its pool or a plugin first loads. Compiled plugins are also cached on
    /// disk, in a directory only this user can write:
    /// `WEIR_CACHE_DIR` if set, else `/tmp/weir-cache` in Lambda, else the user's cache
    /// directory ([`CompiledCache::default_dir`]).
    pub fn new() -> anyhow::Result<Self> {
        Self::with_default_cache(false)
    }

    /// [`Self::new`], or with `fuel` an engine that counts it ([`Self::counting_fuel`]),
    /// either way with the default disk cache.
    pub fn with_default_cache(fuel: bool) -> anyhow::Result<Self> {
        Self::with_options(CompiledCache::default_dir(), fuel)
    }

    /// The engine with a given disk cache (or none). A directory that another user could
    /// write is not used (with a warning).
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::with_options(cache_dir, false)
    }

    /// An engine that also counts fuel (instructions) per call, for reports and fuel
    /// limits. Counting costs every call a little, and its compiled code differs, so
    /// `.cwasm` files from `weir compile` are not used by it.
    pub fn counting_fuel(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::with_options(cache_dir, true)
    }

    fn with_options(cache_dir: Option<PathBuf>, fuel: bool) -> anyhow::Result<Self> {
        Ok(Self::from_settings(Settings {
            cache_dir,
            fuel,
            notice: CompileNotice::process_default(),
            warm: WarmBudget::default(),
        }))
    }

    fn from_settings(settings: Settings) -> Self {
        PluginEngine {
            cache: settings.cache_dir.clone().and_then(CompiledCache::open),
            settings,
            started: OnceLock::new(),
            compiled: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            compiles: AtomicUsize::new(0),
        }
    }

    /// This engine, logging a plugin compiled at load time as `notice` says (instead of
    /// the process's [`CompileNotice`]).
    pub fn with_compile_notice(mut self, notice: CompileNotice) -> Self {
        self.settings.notice = notice;
        self
    }

    /// This engine, keeping `warm`'s instances warm (the loader sizes the pool and the
    /// pipeline from it): [`WarmBudget::for_memory_mb`] of the function's memory.
    pub fn with_warm_budget(mut self, warm: WarmBudget) -> Self {
        self.settings.warm = warm;
        self
    }

    /// How many instances pipelines on this engine keep warm.
    pub fn warm_budget(&self) -> WarmBudget {
        self.settings.warm
    }

    /// Starts the engine with an instance pool of `pool`, unless it has started already
    /// (then it keeps the pool it has). Returns the pool it runs with. Fails when the pool
    /// cannot be reserved.
    pub fn start_with(&self, pool: PoolSize) -> anyhow::Result<PoolSize> {
        self.start(pool)
            .map(|started| started.pool)
            .map_err(|e| anyhow::anyhow!("the plugin engine cannot start ({e})"))
    }

    /// The running engine, started now with `pool` if it had not started.
    fn start(&self, pool: PoolSize) -> Result<&Started, &str> {
        self.started
            .get_or_init(|| {
                Started::new(pool, self.settings.fuel).map_err(|e| format!("{pool}: {e:#}"))
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The pool the engine runs with, once it has started.
    pub fn pool(&self) -> Option<PoolSize> {
        match self.started.get() {
            Some(Ok(started)) => Some(started.pool),
            _ => None,
        }
    }

    /// A new engine with this one's settings (disk cache, fuel, notice), started with a
    /// pool of `pool`: for a manifest that outgrew this one's pool. It shares nothing with
    /// this one but the disk cache: its plugins load again (from that cache).
    pub fn resized(&self, pool: PoolSize) -> anyhow::Result<Self> {
        let engine = Self::from_settings(self.settings.clone());
        engine.start_with(pool)?;
        Ok(engine)
    }

    /// The running engine, started now (with [`PoolSize::without_manifest`]) if no
    /// manifest started it.
    fn started(&self, path: &str) -> Result<&Started, LoadError> {
        self.start(PoolSize::without_manifest())
            .map_err(|message| LoadError::Engine {
                path: path.to_owned(),
                message: message.to_owned(),
            })
    }

    /// How many plugins this engine has compiled (not taken from a cache).
    pub fn compiles(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Precompiles a plugin into a `.cwasm` for `target` (`None`: this machine), with the
    /// same settings the runtime uses.
    pub fn precompile(bytes: &[u8], target: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let engine = Engine::new(&engine_config(target, false, PoolSize::compile_only())?)?;
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        let mut out = engine.precompile_component(bytes)?;
        out.extend_from_slice(crate::native::cwasm_trailer(&sha256).as_bytes());
        Ok(out)
    }

    /// The plugin's sha256 and its compiled component: from a precompiled `.cwasm` the
    /// manifest pins, from memory, from the private disk cache, or compiled now (unless the
    /// manifest forbids it).
    ///
    /// When the manifest pins both the `.wasm` and the `.cwasm`, and the `.cwasm`'s trailer
    /// (covered by its pin) names the pinned `.wasm`, only that native code runs: the `.wasm`
    /// is not even hashed. Otherwise the `.wasm` is hashed and must match its pin.
    fn component<'b>(
        &self,
        name: &str,
        path: &str,
        wasm: impl FnOnce() -> Result<Cow<'b, [u8]>, LoadError>,
        options: LoadOptions<'_>,
    ) -> Result<(String, Component), LoadError> {
        let started = self.started(path)?;
        let LoadOptions {
            pin,
            compiled_pin,
            precompiled,
            compile,
        } = options;
        let mut refused = None;
        let precompiled = match (pin, precompiled) {
            (Some(pin), Some(p)) => {
                let sha256 = pin.to_ascii_lowercase();
                match self.deserialize_pinned(started, p, compiled_pin, &sha256) {
                    Ok(c) => {
                        self.remember(&sha256, &c);
                        return Ok((sha256, c));
                    }
                    Err(why) => refused = Some(why),
                }
                None
            }
            (_, p) => p,
        };
        let bytes = wasm()?;
        let bytes = bytes.as_ref();
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        if let Some(pin) = pin
            && !pin.eq_ignore_ascii_case(&sha256)
        {
            return Err(LoadError::PinMismatch {
                path: path.to_owned(),
                pinned: pin.to_owned(),
                actual: sha256,
            });
        }
        let gate = self
            .loading
            .lock()
            .map(|mut m| m.entry(sha256.clone()).or_default().clone())
            .unwrap_or_default();
        let _same_bytes = gate.lock();
        if let Some(c) = self
            .compiled
            .lock()
            .ok()
            .and_then(|m| m.get(&sha256).cloned())
        {
            return Ok((sha256, c));
        }
        let from_precompiled = match precompiled {
            Some(p) => match self.deserialize_pinned(started, p, compiled_pin, &sha256) {
                Ok(c) => Some(c),
                Err(why) => {
                    refused = Some(why);
                    None
                }
            },
            None => None,
        };
        // Where the code comes from is settled before anything is said about it: a refused
        // `.cwasm` is reported with what was done instead, a cache hit or a compile.
        let component = match from_precompiled
            .or_else(|| self.read_disk_cache(started, name, &sha256))
        {
            Some(c) => {
                if let Some(why) = &refused {
                    tracing::warn!(
                        plugin = name,
                        location = %path,
                        "{why}; loaded from weir's own compiled-code cache instead (nothing compiled)"
                    );
                }
                c
            }
            None if compile == Compile::Never => {
                return Err(LoadError::NotPrecompiled {
                    path: path.to_owned(),
                    why: match refused {
                        Some(why) => why.to_string(),
                        None => "no precompiled .cwasm was found for it".to_owned(),
                    },
                });
            }
            None => {
                const NOTHING_PRECOMPILED: &str =
                    "compiling plugin: no precompiled .cwasm next to it (weir compile makes one)";
                match (&refused, self.settings.notice) {
                    // A `.cwasm` that is there but cannot be used is worth a warning anywhere.
                    (Some(why), _) => tracing::warn!(
                        plugin = name,
                        location = %path,
                        "{why}; compiling the plugin instead"
                    ),
                    (None, CompileNotice::Warn) => {
                        tracing::warn!(plugin = name, location = %path, "{NOTHING_PRECOMPILED}")
                    }
                    (None, CompileNotice::Info) => {
                        tracing::info!(plugin = name, location = %path, "{NOTHING_PRECOMPILED}")
                    }
                }
                self.compiles.fetch_add(1, Ordering::Relaxed);
                let c = Component::new(&started.engine, bytes).map_err(|e| LoadError::Compile {
                    path: path.to_owned(),
                    message: format!("{e:#}"),
                })?;
                self.write_disk_cache(started, name, &sha256, &c);
                c
            }
        };
        self.remember(&sha256, &component);
        Ok((sha256, component))
    }

    /// Keeps a component in memory under its plugin's sha256.
    fn remember(&self, sha256: &str, component: &Component) {
        if let Ok(mut m) = self.compiled.lock() {
            m.insert(sha256.to_owned(), component.clone());
        }
    }

    /// A `.cwasm` as a component, if the manifest pins its bytes and it was made from
    /// this plugin (`sha256`) for this engine.
    fn deserialize_pinned(
        &self,
        started: &Started,
        precompiled: Precompiled,
        pin: Option<&str>,
        sha256: &str,
    ) -> Result<Component, Refused> {
        let file = precompiled.location();
        let unusable = |e: wasmtime::Error| Refused::Unusable {
            file: file.clone(),
            message: format!("{e:#}"),
        };
        // SAFETY (both arms): what wasmtime gets is exactly what was hashed and found equal to
        // the operator's pin in the manifest (see `VerifiedArtifact`), and wasmtime checks it
        // was made by a compatible engine (version, settings, target) before using it. It
        // accepts the trailer after the artifact.
        match crate::native::verify(precompiled, pin, sha256)? {
            VerifiedArtifact::Bytes { bytes, end } => {
                unsafe { Component::deserialize(&started.engine, &bytes[..end]) }.map_err(unusable)
            }
            VerifiedArtifact::OwnFile(open) => {
                unsafe { deserialize_open_file(&started.engine, &open) }.map_err(unusable)
            }
        }
    }

    fn cache_entry(started: &Started, sha256: &str) -> String {
        format!("{sha256}-{}.cwasm", started.tag)
    }

    fn read_disk_cache(&self, started: &Started, name: &str, sha256: &str) -> Option<Component> {
        let cache = self.cache.as_ref()?;
        let entry = Self::cache_entry(started, sha256);
        let open = cache.open_entry(&entry)?;
        // SAFETY: the entry was opened through the handle of a directory only this user can
        // write (and that nobody else can swap), and checked on its own handle just now by
        // `open_entry`: a regular file owned by this user and writable by nobody else. weir
        // wrote it, from `Component::serialize`, under a name that carries this engine's
        // compatibility hash. What is deserialized is that open file, never its name.
        match unsafe { deserialize_open_file(&started.engine, &open) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    plugin = name,
                    file = %cache.dir().join(&entry).display(),
                    "ignoring unreadable compiled cache entry: {e:#}"
                );
                None
            }
        }
    }

    fn write_disk_cache(&self, started: &Started, name: &str, sha256: &str, component: &Component) {
        let Some(cache) = &self.cache else {
            return;
        };
        let entry = Self::cache_entry(started, sha256);
        let written = component
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| cache.write(&entry, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(
                plugin = name,
                file = %cache.dir().join(&entry).display(),
                "cannot write compiled cache entry: {e}"
            );
        }
    }

    /// Loads a component from bytes: checks its pin, its imports and its exports. A
    /// precompiled `.cwasm` in `options` runs only if the manifest pins its bytes.
    pub fn load(
        &self,
        name: &str,
        path: &str,
        bytes: &[u8],
        options: LoadOptions<'_>,
    ) -> Result<Plugin, LoadError> {
        self.load_with(name, path, options, || Ok(Cow::Borrowed(bytes)))
    }

    /// [`Self::load`], reading the `.wasm` through `wasm` only if it is needed: when the
    /// manifest pins both the `.wasm` and a usable `.cwasm`, it is not (at cold start in
    /// Lambda, one S3 read per plugin saved).
    pub fn load_with<'b>(
        &self,
        name: &str,
        path: &str,
        options: LoadOptions<'_>,
        wasm: impl FnOnce() -> Result<Cow<'b, [u8]>, LoadError>,
    ) -> Result<Plugin, LoadError> {
        let (sha256, component) = self.component(name, path, wasm, options)?;
        let started = self.started(path)?;
        for (import, _) in component.component_type().imports(&started.engine) {
            if let Some(why) = forbidden(import) {
                return Err(LoadError::ForbiddenImport {
                    path: path.to_owned(),
                    import: import.to_owned(),
                    why,
                });
            }
        }
        let exports = |contract: Contract| {
            component
                .component_type()
                .exports(&started.engine)
                .any(|(n, item)| {
                    n == contract.export() && matches!(item.ty, ComponentItem::ComponentInstance(_))
                })
        };
        let Some(contract) = [Contract::V0_2, Contract::V0_1]
            .into_iter()
            .find(|c| exports(*c))
        else {
            return Err(LoadError::Contract {
                path: path.to_owned(),
                message: format!(
                    "it exports neither {} nor {}",
                    Contract::V0_2.export(),
                    Contract::V0_1.export()
                ),
            });
        };
        let contract_error = |e: wasmtime::Error| LoadError::Contract {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let pre = started
            .linker
            .instantiate_pre(&component)
            .map_err(contract_error)?;
        let pre = match contract {
            Contract::V0_2 => bindings::PluginPre::new(pre).map(Pre::V0_2),
            Contract::V0_1 => bindings_v01::PluginPre::new(pre).map(Pre::V0_1),
        }
        .map_err(contract_error)?;
        Ok(Plugin {
            fuel: self.settings.fuel,
            name: name.to_owned(),
            reference: Arc::new(PluginRef {
                name: name.to_owned(),
                sha256: sha256.clone(),
            }),
            sha256,
            pre,
        })
    }
}

/// Deserializes the component in `open`, an open file: wasmtime 48 takes a path, so it is
/// given the kernel's name for this very open file (`/proc/self/fd/N`), which no rename or
/// swap of the file's own name can redirect. Where `/proc` is not mounted, the bytes are
/// read from the handle instead.
///
/// # Safety
/// As [`Component::deserialize_file`]: `open` holds what `Component::serialize` or
/// `Engine::precompile_component` wrote, and nobody else can change it while it is used.
unsafe fn deserialize_open_file(
    engine: &Engine,
    open: &std::fs::File,
) -> wasmtime::Result<Component> {
    use std::os::fd::AsRawFd as _;
    let same_file = PathBuf::from(format!("/proc/self/fd/{}", open.as_raw_fd()));
    if same_file.exists() {
        // SAFETY: the caller's promise, for this same open file.
        return unsafe { Component::deserialize_file(engine, &same_file) };
    }
    let len = open.metadata().map(|m| m.len()).unwrap_or(0);
    let shown = "compiled code";
    let mut handle = open.try_clone()?;
    let bytes = weir_core::location::read_at_most(
        &mut handle,
        len,
        shown,
        weir_core::location::MAX_FILE_BYTES,
    )?;
    // SAFETY: the caller's promise, for the bytes read from this same open file.
    unsafe { Component::deserialize(engine, &bytes) }
}

/// A short tag for the engine's compatibility (wasmtime version and settings).
fn engine_tag(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::super::instance::ticks;
    use super::super::pool::MEMORIES_PER_INSTANCE;
    use super::*;

    fn load(wat: &str) -> Result<Plugin, LoadError> {
        let engine = PluginEngine::with_cache_dir(None).expect("engine");
        let bytes = wat::parse_str(wat).expect("valid component text");
        engine.load("p", "p.wasm", &bytes, LoadOptions::default())
    }

    fn wasm<'b>(bytes: &'b [u8]) -> impl FnOnce() -> Result<Cow<'b, [u8]>, LoadError> {
        move || Ok(Cow::Borrowed(bytes))
    }

    #[test]
    fn a_cwasm_runs_only_when_its_bytes_are_pinned_and_made_from_this_plugin() {
        let bytes = wat::parse_str("(component)").expect("component");
        let other = wat::parse_str("(component (core module))").expect("component");
        let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, content: &[u8]| {
            let f = dir.path().join(name);
            std::fs::write(&f, content).expect("write");
            f
        };
        let good_bytes = PluginEngine::precompile(&bytes, None).expect("pre");
        let good = write("good.cwasm", &good_bytes);
        let stale_bytes = PluginEngine::precompile(&other, None).expect("pre");
        let stale = write("stale.cwasm", &stale_bytes);
        let mut untrailed = good_bytes.clone();
        untrailed.truncate(untrailed.len() - 10);
        let untrailed_sha = sha(&untrailed);
        let untrailed = write("untrailed.cwasm", &untrailed);
        let garbage = write("garbage.cwasm", b"\nweir-cwasm-2 0000\n");
        let good_pin = sha(&good_bytes);
        for (file, pin, compiles) in [
            (&good, Some(good_pin.as_str()), 0),
            (&good, None, 1),
            (&good, Some(&*"0".repeat(64)), 1),
            (&stale, Some(&*sha(&stale_bytes)), 1),
            (&untrailed, Some(untrailed_sha.as_str()), 1),
            (&garbage, Some(good_pin.as_str()), 1),
        ] {
            let engine = PluginEngine::with_cache_dir(None).expect("engine");
            let options = |precompiled| LoadOptions {
                compiled_pin: pin,
                precompiled: Some(precompiled),
                ..LoadOptions::default()
            };
            let from_file = engine.component(
                "p",
                "p.wasm",
                wasm(&bytes),
                options(Precompiled::File(file.clone())),
            );
            assert!(from_file.is_ok(), "{file:?}");
            assert_eq!(engine.compiles(), compiles, "{file:?} pinned {pin:?}");
            // The same bytes from S3 give the same verdict.
            let engine = PluginEngine::with_cache_dir(None).expect("engine");
            let content = std::fs::read(file).expect("read");
            let from_bytes = engine.component(
                "p",
                "p.wasm",
                wasm(&bytes),
                options(Precompiled::Bytes {
                    from: "s3://b/p.cwasm".into(),
                    bytes: content,
                }),
            );
            assert!(from_bytes.is_ok(), "{file:?}");
            assert_eq!(engine.compiles(), compiles, "{file:?} as bytes");
            // Where compiling is forbidden, what would have compiled is refused.
            let engine = PluginEngine::with_cache_dir(None).expect("engine");
            let never = engine.component(
                "p",
                "p.wasm",
                wasm(&bytes),
                LoadOptions {
                    compile: Compile::Never,
                    ..options(Precompiled::File(file.clone()))
                },
            );
            assert_eq!(
                matches!(never, Err(LoadError::NotPrecompiled { .. })),
                compiles == 1,
                "{file:?} pinned {pin:?}"
            );
            assert_eq!(engine.compiles(), 0);
            // With the .wasm pinned too, the same verdicts.
            let engine = PluginEngine::with_cache_dir(None).expect("engine");
            let wasm_pin = sha(&bytes);
            let both = engine.component(
                "p",
                "p.wasm",
                wasm(&bytes),
                LoadOptions {
                    pin: Some(&wasm_pin),
                    ..options(Precompiled::File(file.clone()))
                },
            );
            assert_eq!(both.map(|(s, _)| s).ok(), Some(wasm_pin.clone()));
            assert_eq!(engine.compiles(), compiles, "{file:?} pinned {pin:?}");
        }
        // Both pins and a good .cwasm: the .wasm's bytes are never looked at, since only the
        // pinned native code (made from the pinned .wasm) runs.
        let engine = PluginEngine::with_cache_dir(None).expect("engine");
        let wasm_pin = sha(&bytes);
        let (sha256, _) = engine
            .component(
                "p",
                "p.wasm",
                || -> Result<Cow<'_, [u8]>, LoadError> { panic!("the .wasm is not read") },
                LoadOptions {
                    pin: Some(&wasm_pin),
                    compiled_pin: Some(&good_pin),
                    precompiled: Some(Precompiled::File(good.clone())),
                    compile: Compile::Never,
                },
            )
            .expect("the pinned native code");
        assert_eq!(sha256, wasm_pin);
        // Without a usable .cwasm, the .wasm is hashed and must match its pin.
        let mismatch = engine.component(
            "p",
            "p.wasm",
            wasm(b"not these bytes"),
            LoadOptions {
                pin: Some(&wasm_pin),
                ..LoadOptions::default()
            },
        );
        assert!(matches!(mismatch, Err(LoadError::PinMismatch { .. })));
    }

    #[test]
    fn the_disk_cache_read_is_the_directory_opened_even_when_its_path_is_swapped() {
        let root = tempfile::tempdir().expect("tempdir");
        let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
        let victim = wat::parse_str("(component)").expect("component");
        let evil = wat::parse_str("(component (core module $m) (export \"m\" (core module $m)))")
            .expect("component");
        let exports = |engine: &PluginEngine, c: &Component| {
            let started = engine.started("p").expect("started");
            c.component_type().exports(&started.engine).count()
        };
        // The attacker's code, compiled by weir into a cache of its own, then renamed to the
        // entry name of the victim's plugin.
        let attacker = root.path().join("attacker");
        let engine = PluginEngine::with_cache_dir(Some(attacker.clone())).expect("engine");
        engine
            .component("evil", "evil.wasm", wasm(&evil), LoadOptions::default())
            .expect("compiled");
        let tag = engine.started("p").expect("started").tag.clone();
        std::fs::rename(
            attacker.join(format!("{}-{tag}.cwasm", sha(&evil))),
            attacker.join(format!("{}-{tag}.cwasm", sha(&victim))),
        )
        .expect("rename");

        // The victim's engine opens its cache; then the path is swapped for the attacker's
        // directory (renameat2(RENAME_EXCHANGE) in the issue, two renames here).
        let dir = root.path().join("weir");
        let engine = PluginEngine::with_cache_dir(Some(dir.clone())).expect("engine");
        let own = root.path().join("victims-own");
        std::fs::rename(&dir, &own).expect("rename");
        std::fs::rename(&attacker, &dir).expect("rename");
        let (_, c) = engine
            .component("p", "p.wasm", wasm(&victim), LoadOptions::default())
            .expect("loaded");
        assert_eq!(exports(&engine, &c), 0, "the victim's own code");
        assert_eq!(engine.compiles(), 1, "nothing in the directory it opened");
        assert!(own.join(format!("{}-{tag}.cwasm", sha(&victim))).is_file());

        // Control: the planted entry is live. An engine that opens the swapped path trusts
        // that directory (it is private to this user) and loads the attacker's code.
        let engine = PluginEngine::with_cache_dir(Some(dir)).expect("engine");
        let (_, c) = engine
            .component("p", "p.wasm", wasm(&victim), LoadOptions::default())
            .expect("loaded");
        assert_eq!(exports(&engine, &c), 1, "the attacker's code");
        assert_eq!(engine.compiles(), 0);
    }

    #[test]
    fn a_plugin_with_more_memories_than_its_share_of_the_pool_is_refused_at_load() {
        let with = |memories: usize| {
            load(&format!(
                "(component (core module $m (memory 1)) {})",
                "(core instance (instantiate $m))".repeat(memories)
            ))
            .err()
            .expect("no transform export either way")
        };
        // Within its share: it fails only for what it lacks.
        let fits = with(MEMORIES_PER_INSTANCE as usize);
        assert!(matches!(fits, LoadError::Contract { .. }), "{fits}");
        let too_many = with(MEMORIES_PER_INSTANCE as usize + 1);
        assert!(
            matches!(too_many, LoadError::Compile { .. })
                && too_many.to_string().contains("Wasm linear memories"),
            "{too_many}"
        );
    }

    #[test]
    fn a_huge_time_limit_does_not_overflow_the_deadline() {
        assert_eq!(ticks(u64::MAX), u64::MAX / 1000);
        assert_eq!(ticks(0), 1);
    }

    #[test]
    fn http_and_unknown_imports_are_refused_at_load_by_name() {
        for (import, why) in [
            ("wasi:http/outgoing-handler@0.2.0", "no network"),
            ("wasi:sockets/tcp@0.2.0", "no network"),
            ("wasi:sockets/ip-name-lookup@0.2.3", "no network"),
            ("acme:evil/backdoor@1.0.0", "weir provides only"),
        ] {
            let err = load(&format!("(component (import \"{import}\" (instance)))"))
                .err()
                .expect("refused");
            let msg = err.to_string();
            assert!(matches!(err, LoadError::ForbiddenImport { .. }), "{msg}");
            assert!(
                msg.contains(&format!("imports {import}")) && msg.contains(why),
                "{msg}"
            );
        }
    }

    #[test]
    fn filesystem_imports_are_linked_not_refused() {
        // This passes the import check (linked with no preopens) and fails only because
        // the component implements nothing.
        for import in [
            "wasi:filesystem/preopens@0.2.0",
            "wasi:clocks/wall-clock@0.2.0",
        ] {
            let err = load(&format!("(component (import \"{import}\" (instance)))"))
                .err()
                .expect("no transform export");
            assert!(matches!(err, LoadError::Contract { .. }), "{import}: {err}");
        }
    }
}
