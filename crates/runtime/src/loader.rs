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
//! rebuilds the pipeline only when something did. A manifest that cannot be read or
//! parsed keeps the whole old one serving. Otherwise the new manifest applies, and a
//! plugin affects only its own slot: a new version of a plugin in use that cannot be
//! read, fails its pin, fails to compile or fails the checks of `weir check` leaves that
//! plugin's old version serving while the manifest's entry for it is unchanged; when the
//! manifest changed that entry (path, pins, `require_precompiled`), the new entry is what
//! a cold start would run, so its records are dead-lettered with the reason (or retried,
//! if it cannot be read) until it is fixed. Each refusal is logged with the plugin's name
//! and counted; a version refused once is not fetched or checked again while it stays.
//!
//! The engine's instance pool is sized when the manifest is first read
//! ([`PoolSize::for_manifest`]): from the instances the engine keeps warm ([`weir_core::pipeline::WarmBudget`])
//! (the function's memory) and the manifest's largest memory limit, never its tenant
//! count. A reload whose manifest needs more (a larger memory limit) moves to a new engine
//! sized for it: the plugins in use
//! are loaded into it (from the compiled-code cache) before it replaces the old one; one
//! whose new version is refused keeps serving from the old engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use weir_core::location::{Fetch, Fetched, Location};
use weir_core::manifest::Manifest;
use weir_core::transform::{LoadProblem, LoadProblems, SlotError};

use crate::Pipeline;
use crate::plugin::pool::PoolSize;
use crate::plugin::{Compile, PluginEngine};
use crate::slot::{PluginSlot, PluginSource, SlotSpec};

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
    /// Per plugin whose old version serves on, the newer version a reload refused.
    refused: HashMap<String, RefusedVersion>,
    next_check: Instant,
    reloads: usize,
    reload_failures: usize,
}

/// A version of a plugin's bytes a reload refused while the plugin's old version kept
/// serving: not read or checked again while the manifest's entry and the bytes stay so.
#[derive(Clone)]
struct RefusedVersion {
    spec: SlotSpec,
    version: String,
    why: String,
}

impl Loader {
    /// Reads and checks the manifest through `fetch` (files, or S3 through the AWS crate's
    /// store) and loads every plugin its tenants use; any problem is an error, and all of
    /// them are listed.
    pub async fn load(
        fetch: impl Fetch + 'static,
        engine: Arc<PluginEngine>,
        location: Location,
        interval: Duration,
    ) -> Result<Self, LoadProblems> {
        let loader = Self::load_lazy(fetch, engine, location, interval).await?;
        loader.current.load_all().await?;
        Ok(loader)
    }

    /// Reads and checks the manifest through `fetch`; each plugin is loaded when a record
    /// first needs it.
    pub async fn load_lazy(
        fetch: impl Fetch + 'static,
        engine: Arc<PluginEngine>,
        location: Location,
        interval: Duration,
    ) -> Result<Self, LoadProblems> {
        Self::load_lazy_from(Arc::new(fetch), engine, location, interval).await
    }

    /// [`Self::load_lazy`] reading through a [`Fetch`] the caller shares (a test keeps one
    /// to watch what is read).
    pub async fn load_lazy_from(
        fetch: Arc<dyn Fetch>,
        engine: Arc<PluginEngine>,
        location: Location,
        interval: Duration,
    ) -> Result<Self, LoadProblems> {
        let (text, version) = fetch.read(&location).await.map_err(one)?;
        let text = String::from_utf8(text)
            .map_err(|_| one(format_args!("{}: not UTF-8 text", shown(&location))))?;
        let manifest = parse(&text, &location)?;
        // The pool is reserved when the engine starts: sized for this manifest, before any
        // plugin loads (an engine that has started already keeps its pool).
        let warm = engine.warm_budget();
        let pool = engine
            .start_with(PoolSize::for_manifest(&manifest, warm))
            .map_err(one)?;
        tracing::info!(
            pool = %pool,
            warm = %warm,
            "plugin instances sized from the function's memory"
        );
        let source = Arc::new(PluginSource::new(fetch, engine));
        let slots = slots(&manifest, &source, &HashMap::new(), &HashMap::new(), false).await?;
        Ok(Loader {
            source,
            location,
            interval,
            manifest_version: version,
            manifest_text: text,
            current: Arc::new(Pipeline::new(manifest, slots.slots).with_warm_budget(warm)),
            refused: HashMap::new(),
            next_check: Instant::now() + interval,
            reloads: 0,
            reload_failures: 0,
        })
    }

    /// The pipeline to use now, reloaded first if the interval has passed and anything
    /// changed. Never fails: a bad new manifest keeps the old one, and a bad new plugin
    /// version affects only its own plugin.
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

    /// Reloads that failed in whole (the old manifest kept serving) or in part (a plugin's
    /// new version was refused).
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

    /// Applies a changed manifest or plugin. An error means nothing was applied: the
    /// manifest could not be read or parsed, or the engine it needs cannot start. A
    /// plugin refused is not an error: it is logged and counted here, and the rest applies.
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
                    .map_err(|_| one(format_args!("{}: not UTF-8 text", shown(&self.location))))?,
                version,
            ),
        };
        let manifest_changed = version != self.manifest_version;
        let manifest = parse(&text, &self.location)?;
        let warm = self.source.engine().warm_budget();
        let needed = PoolSize::for_manifest(&manifest, warm);
        // A manifest whose memory limit outgrew the pool's memories moves to a new engine
        // sized for it: every plugin in use is loaded into it (one that no longer loads
        // keeps the old engine). More tenants never resize it: the pool follows the
        // instances alive at once.
        let (source, moving) = match self.source.engine().pool() {
            Some(pool) if pool.max_memory_bytes < needed.max_memory_bytes => {
                let engine = Arc::new(self.source.engine().resized(needed).map_err(one)?);
                tracing::info!(
                    manifest = %self.location,
                    from = %pool,
                    to = %needed,
                    "plugin instance pool grown for the new manifest"
                );
                let fetch = self.source.fetch.clone();
                (Arc::new(PluginSource::new(fetch, engine)), true)
            }
            _ => (self.source.clone(), false),
        };
        let rebuilt = slots(
            &manifest,
            &source,
            self.current.slots(),
            &self.refused,
            moving,
        )
        .await?;
        for refusal in &rebuilt.refusals {
            tracing::error!(
                plugin = refusal.name.as_str(),
                location = %refusal.location,
                "reload refused the plugin's new version; {}: {}",
                refusal.outcome.says(),
                refusal.error
            );
        }
        if !rebuilt.refusals.is_empty() {
            self.reload_failures += 1;
        }
        if manifest_changed || rebuilt.changed {
            tracing::info!(manifest = %self.location, "reloaded manifest and plugins");
            self.reloads += 1;
            self.current = Arc::new(Pipeline::new(manifest, rebuilt.slots).with_warm_budget(warm));
        }
        self.source = source;
        self.refused = rebuilt.refused;
        self.manifest_text = text;
        self.manifest_version = version;
        Ok(())
    }
}

fn parse(text: &str, location: &Location) -> Result<Manifest, LoadProblems> {
    Manifest::parse(text, location.clone()).map_err(LoadProblems::manifest)
}

/// The slots of a manifest, whether any differs from the ones serving, and what a reload
/// refused.
struct Slots {
    slots: HashMap<String, Arc<PluginSlot>>,
    changed: bool,
    /// The plugin versions this reload refused, each with what serves instead.
    refusals: Vec<Refusal>,
    /// The refused versions still there, whose plugins' old versions serve on.
    refused: HashMap<String, RefusedVersion>,
}

/// A plugin's new version (or new manifest entry) that a reload could not use.
struct Refusal {
    name: String,
    location: Location,
    error: SlotError,
    outcome: Instead,
}

/// What serves a plugin's records when its new version is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instead {
    /// Its old version (the manifest's entry for it is unchanged).
    OldVersion,
    /// Nothing: its records are dead-lettered with the reason until it is fixed.
    DeadLetters,
    /// It is read again when a record needs it; meanwhile its records are retried.
    Retries,
}

impl Instead {
    /// The consequence, for the log line.
    fn says(self) -> &'static str {
        match self {
            Instead::OldVersion => "its previous version keeps serving",
            Instead::DeadLetters => {
                "its records are dead-lettered with the reason until a version that loads is there"
            }
            Instead::Retries => "its records are retried until it can be read",
        }
    }
}

/// One slot per plugin the tenants use. A slot not in use yet (neither loaded nor found
/// broken) with the same spec in `known` is kept as it is; a new or changed one is made
/// lazy. A plugin in use is looked at again ([`refresh`]). Only a problem of the manifest
/// itself (a plugin path that cannot be resolved) is an error; all of those are gathered.
/// `moving`: `source` is a new engine, into which every plugin in use must load.
async fn slots(
    manifest: &Manifest,
    source: &Arc<PluginSource>,
    known: &HashMap<String, Arc<PluginSlot>>,
    refused: &HashMap<String, RefusedVersion>,
    moving: bool,
) -> Result<Slots, LoadProblems> {
    let mut problems = Vec::new();
    let mut out = Slots {
        slots: HashMap::new(),
        changed: false,
        refusals: Vec::new(),
        refused: HashMap::new(),
    };
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
                    error: SlotError::Broken(weir_core::transform::SlotFailure::new(name, e)),
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
        let slot = match known.get(name) {
            Some(old) if old.loaded_version().is_some() || old.is_broken() => {
                refresh(name, spec, old, source, refused.get(name), moving, &mut out).await
            }
            // Not used yet, and named the same way: it stays lazy.
            Some(old) if !moving && old.spec() == &spec => old.clone(),
            // New, or changed before first use.
            _ => Arc::new(PluginSlot::new(name, spec, source.clone())),
        };
        out.slots.insert(name.clone(), slot);
    }
    if !problems.is_empty() {
        return Err(LoadProblems { problems });
    }
    out.changed = out.slots.len() != known.len()
        || out
            .slots
            .iter()
            .any(|(name, slot)| !known.get(name).is_some_and(|k| Arc::ptr_eq(k, slot)));
    Ok(out)
}

/// The slot for plugin `name`, in use under `old` (loaded, or found broken), now that the
/// manifest says `spec`: a new version is loaded before it replaces the old one. If it
/// cannot be used, only this plugin is affected (see [`Instead`]), and the refusal is
/// added to `out` unless it is one already known.
async fn refresh(
    name: &str,
    spec: SlotSpec,
    old: &Arc<PluginSlot>,
    source: &Arc<PluginSource>,
    refused: Option<&RefusedVersion>,
    moving: bool,
    out: &mut Slots,
) -> Arc<PluginSlot> {
    let same_spec = old.spec() == &spec;
    let loaded_version = old.loaded_version().map(str::to_owned);
    // The old version serves on when the manifest's entry for the plugin is unchanged.
    let old_serves = same_spec && loaded_version.is_some();
    let broken = old.broken().filter(|_| same_spec);
    let refused = refused.filter(|r| r.spec == spec && old_serves).cloned();
    // A version already refused under this entry is asked for conditionally: while it
    // stays, nothing is read or checked again. Not under `require_precompiled`, where the
    // outcome also depends on the `.cwasm`.
    let known_refused = match (&refused, &broken) {
        _ if spec.compile == Compile::Never => None,
        (Some(r), _) => Some(r.version.clone()),
        (None, Some((_, version))) => Some(version.clone()),
        (None, None) => None,
    };
    let ask = known_refused
        .clone()
        .or_else(|| loaded_version.clone().filter(|_| same_spec && !moving));
    let location = spec.location.clone();
    let fetched = source.fetch.fetch(&location, ask.as_deref()).await;
    let (bytes, version) = match fetched {
        Ok(Fetched::NotModified) => {
            if let Some(r) = refused.filter(|_| known_refused.is_some()) {
                out.refused.insert(name.to_owned(), r);
            }
            return old.clone();
        }
        // The version serving is back.
        Ok(Fetched::Content { version, .. })
            if old_serves && !moving && loaded_version.as_deref() == Some(version.as_str()) =>
        {
            return old.clone();
        }
        Ok(Fetched::Content { bytes, version }) => (bytes, version),
        Err(e) => {
            let error = SlotError::Unavailable(weir_core::transform::SlotFailure::message(
                name,
                format!("{e:#}"),
            ));
            let (slot, outcome) = if old_serves {
                (old.clone(), Instead::OldVersion)
            } else if broken.is_some() {
                (old.clone(), Instead::DeadLetters)
            } else {
                let slot = Arc::new(PluginSlot::new(name, spec, source.clone()));
                (slot, Instead::Retries)
            };
            out.refusals.push(Refusal {
                name: name.to_owned(),
                location,
                error,
                outcome,
            });
            return slot;
        }
    };
    let error =
        match PluginSlot::preloaded(name, spec.clone(), source.clone(), bytes, version.clone())
            .await
        {
            Ok(slot) => return Arc::new(slot),
            Err(error) => error,
        };
    let why = error.to_string();
    // The same refusal as before (the outcome of which is known and was reported).
    let known_refusal = refused
        .as_ref()
        .is_some_and(|r| r.version == version && r.why == why)
        || broken
            .as_ref()
            .is_some_and(|(w, v)| *v == version && w.to_string() == why);
    let (slot, outcome) = match &error {
        _ if old_serves => {
            if matches!(error, SlotError::Broken(_)) {
                out.refused
                    .insert(name.to_owned(), RefusedVersion { spec, version, why });
            }
            (old.clone(), Instead::OldVersion)
        }
        _ if known_refusal => (old.clone(), Instead::DeadLetters),
        SlotError::Broken(why) => (
            Arc::new(PluginSlot::refused(
                name,
                spec,
                source.clone(),
                why.clone(),
                version,
            )),
            Instead::DeadLetters,
        ),
        SlotError::Unavailable(_) => (
            Arc::new(PluginSlot::new(name, spec, source.clone())),
            Instead::Retries,
        ),
    };
    if !known_refusal {
        out.refusals.push(Refusal {
            name: name.to_owned(),
            location,
            error,
            outcome,
        });
    }
    slot
}

/// Whether any tenant uses plugin `name`.
fn used(manifest: &Manifest, name: &str) -> bool {
    manifest
        .tenants
        .values()
        .any(|t| t.plugin_names().any(|p| p == name))
}

/// One problem that stops a load (the manifest unreadable, the engine not starting), said
/// in full.
fn one(e: impl std::fmt::Display) -> LoadProblems {
    LoadProblems::unavailable(e.to_string())
}

/// A location as a message names it: escaped, since a manifest names it.
fn shown(location: &Location) -> String {
    weir_core::text::one_line(&location.to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use serde_json::value::RawValue;
    use tracing::Instrument as _;
    use weir_core::batch;
    use weir_core::location::{FetchFuture, MAX_FILE_BYTES};
    use weir_core::model::DeadLetter;
    use weir_core::sink::{DeadLetterStore, KeepError};

    use super::*;
    use crate::plugin::CompileNotice;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("crates/runtime is two folders down")
            .to_path_buf()
    }

    /// Reads local files as the AWS crate's store does (one handle; the version is the
    /// size and modification time), for a runtime without an AWS SDK.
    struct Files;

    impl Fetch for Files {
        fn fetch<'a>(
            &'a self,
            location: &'a Location,
            known_version: Option<&'a str>,
        ) -> FetchFuture<'a, Fetched> {
            Box::pin(async move {
                let Location::File(path) = location else {
                    panic!("{location}: the tests read files only");
                };
                let (mut file, meta) =
                    weir_core::location::open_regular_file(path, MAX_FILE_BYTES)?;
                let version = version_of(&meta);
                if known_version == Some(version.as_str()) {
                    return Ok(Fetched::NotModified);
                }
                let shown = path.display().to_string();
                let bytes = weir_core::location::read_at_most(
                    &mut file,
                    meta.len(),
                    &shown,
                    MAX_FILE_BYTES,
                )?;
                Ok(Fetched::Content { bytes, version })
            })
        }

        fn version<'a>(&'a self, location: &'a Location) -> FetchFuture<'a, String> {
            Box::pin(async move {
                let Location::File(path) = location else {
                    panic!("{location}: the tests read files only");
                };
                let (_, meta) = weir_core::location::open_regular_file(path, MAX_FILE_BYTES)?;
                Ok(version_of(&meta))
            })
        }
    }

    fn version_of(meta: &std::fs::Metadata) -> String {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!("{}-{mtime}", meta.len())
    }

    /// Keeps every dead letter in memory.
    struct Kept<'a>(&'a mut Vec<DeadLetter>);

    impl DeadLetterStore for Kept<'_> {
        fn keep(
            &mut self,
            letters: &[DeadLetter],
            _deadline: Instant,
        ) -> impl Future<Output = Vec<Result<(), KeepError>>> + Send {
            self.0.extend_from_slice(letters);
            std::future::ready(letters.iter().map(|_| Ok(())).collect())
        }
    }

    /// A manifest of `tenants`, each mapping every change of Customers with `mapping`.
    fn write_manifest(dir: &Path, tenants: &[&str]) -> Location {
        write_manifest_of(dir, "mapping", tenants)
    }

    /// [`write_manifest`], naming the plugin `name`.
    fn write_manifest_of(dir: &Path, name: &str, tenants: &[&str]) -> Location {
        let plugin = root().join("target/plugins/mapping.wasm");
        assert!(plugin.exists(), "build the plugins with ./dev plugins");
        let mut text = format!(
            "event_bus = \"b\"\n[plugins.{name}]\npath = {:?}\n\
             [[routes]]\ntable = \"Customers\"\nsource = \"s\"\ntenant = {{ attribute = \"tenantId\" }}\n",
            plugin.display().to_string()
        );
        for t in tenants {
            text.push_str(&format!(
                "[tenants.{t}]\nplugin = \"{name}\"\nconfig = {{ detail_type = \"C\", destination = \"d\", events = [\"INSERT\", \"MODIFY\", \"REMOVE\"], fields = {{ Name = \"/name\" }} }}\n"
            ));
        }
        let path = dir.join("weir.toml");
        std::fs::write(&path, text).expect("manifest");
        Location::File(path)
    }

    /// The example event: Customers records of globex, acme and initech, and one Orders
    /// record (no route).
    fn records() -> Vec<Box<RawValue>> {
        let text = std::fs::read_to_string(root().join("examples/events/customers.json"))
            .expect("example event");
        serde_json::from_str::<weir_core::record::StreamBatch>(&text)
            .expect("a stream event")
            .records
    }

    async fn dry_run(pipeline: Arc<Pipeline>) -> batch::BatchReport {
        let mut letters = Vec::new();
        batch::run(
            pipeline,
            records(),
            weir_core::sink::DryRun,
            Kept(&mut letters),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .expect("batch runs")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_reload_that_outgrows_the_pool_moves_to_a_larger_one_and_every_tenant_finds_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = write_manifest(dir.path(), &["globex"]);
        let engine =
            Arc::new(PluginEngine::with_cache_dir(Some(dir.path().join("cache"))).expect("engine"));
        // A pool of one instance: the tenants of a batch take turns in it.
        let one = PoolSize {
            instances: 1,
            max_memory_bytes: 64 << 20,
        };
        engine.start_with(one).expect("engine starts");
        let rt = runtime();
        rt.block_on(async {
            let mut loader = Loader::load_lazy(
                Files,
                engine.clone(),
                location.clone(),
                Duration::from_secs(3600),
            )
            .await
            .expect("loads");
            let first = dry_run(loader.current().await).await;
            assert_eq!((first.entries.len(), first.counts().retried), (3, 0));

            // More tenants: the pool is not resized for them (it follows the instances
            // alive at once), and each finds room, the least recently used instance
            // dropped for it.
            write_manifest(dir.path(), &["globex", "acme", "initech", "umbrella"]);
            loader.check_now();
            let pipeline = loader.current().await;
            assert_eq!((loader.reloads(), loader.reload_failures()), (1, 0));
            assert_eq!(loader.source.engine().pool(), Some(one), "the same engine");
            let more = dry_run(pipeline).await;
            assert_eq!((more.entries.len(), more.counts().retried), (7, 0));

            // A larger memory limit than the pool's memories take: a new engine.
            let Location::File(path) = &location else {
                unreachable!("a file")
            };
            let mut text = std::fs::read_to_string(path).expect("manifest");
            text.push_str("limits = { memory_mib = 128 }\n");
            std::fs::write(path, text).expect("manifest");
            loader.check_now();
            let pipeline = loader.current().await;
            assert_eq!((loader.reloads(), loader.reload_failures()), (2, 0));
            let grown = loader.source.engine().pool().expect("started");
            assert_eq!(grown.max_memory_bytes, 128 << 20);
            assert_eq!(
                grown,
                PoolSize::for_manifest(loader.manifest(), engine.warm_budget()),
                "a new engine, sized for the new manifest and the warm budget"
            );
            // The plugin in use was loaded into it before it replaced the old one.
            assert!(
                pipeline
                    .slots()
                    .get("mapping")
                    .is_some_and(|s| s.loaded().is_some())
            );
            let after = dry_run(pipeline).await;
            assert_eq!((after.entries.len(), after.counts().retried), (7, 0));
        });
    }

    /// A reload that outgrows the pool while one plugin in use was overwritten with garbage:
    /// the new manifest applies on a larger engine, and the refused plugin's old version
    /// keeps serving from the old engine.
    #[test]
    fn a_reload_that_outgrows_the_pool_applies_even_when_a_plugin_in_use_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let own = dir.path().join("own.wasm");
        std::fs::copy(root().join("target/plugins/mapping.wasm"), &own).expect("copy");
        let tenant = |t: &str, plugin: &str| {
            format!(
                "[tenants.{t}]\nplugin = \"{plugin}\"\nconfig = {{ detail_type = \"C\", destination = \"d\", events = [\"INSERT\", \"MODIFY\", \"REMOVE\"], fields = {{ Name = \"/name\" }} }}\n"
            )
        };
        let head = format!(
            "event_bus = \"b\"\n[plugins.own]\npath = {:?}\n[plugins.shared]\npath = {:?}\n\
             [[routes]]\ntable = \"Customers\"\nsource = \"s\"\ntenant = {{ attribute = \"tenantId\" }}\n",
            own.display().to_string(),
            root()
                .join("target/plugins/mapping.wasm")
                .display()
                .to_string()
        );
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, format!("{head}{}", tenant("globex", "own"))).expect("manifest");
        let engine =
            Arc::new(PluginEngine::with_cache_dir(Some(dir.path().join("cache"))).expect("engine"));
        let rt = runtime();
        rt.block_on(async {
            let mut loader = Loader::load_lazy(
                Files,
                engine.clone(),
                Location::File(path.clone()),
                Duration::from_secs(3600),
            )
            .await
            .expect("loads");
            let first = dry_run(loader.current().await).await;
            assert_eq!((first.entries.len(), first.counts().retried), (3, 0));

            std::fs::write(&own, b"\0asm garbage, and longer than before").expect("garbage");
            // The last tenant's larger memory limit outgrows the pool.
            let more: String = ["acme", "initech", "umbrella"]
                .iter()
                .map(|t| tenant(t, "shared"))
                .collect::<String>()
                + "limits = { memory_mib = 128 }\n";
            std::fs::write(&path, format!("{head}{}{more}", tenant("globex", "own")))
                .expect("manifest");
            loader.check_now();
            let pipeline = loader.current().await;
            assert_eq!((loader.reloads(), loader.reload_failures()), (1, 1));
            assert_eq!(
                loader.source.engine().pool().map(|p| p.max_memory_bytes),
                Some(128 << 20),
                "the new manifest applies, on a new engine sized for it"
            );
            let grown = dry_run(pipeline).await;
            let counts = grown.counts();
            assert_eq!(
                (grown.entries.len(), counts.dead_lettered, counts.retried),
                (7, 0, 0),
                "globex on the old version of its plugin, acme and initech on the shared one"
            );
            // The refused version is not checked again.
            loader.check_now();
            let _ = loader.current().await;
            assert_eq!((loader.reloads(), loader.reload_failures()), (1, 1));
        });
    }

    /// Log lines as the function writes them (JSON, with the current span), kept.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every log line of this test process, as the function writes them (JSON, with the
    /// current span). A global subscriber: the plugins load on blocking threads, and a
    /// subscriber set for some threads only misses events whose callsites another test's
    /// thread saw first.
    fn captured_logs() -> &'static Captured {
        static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Captured::default();
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .with_writer(move || writer.clone())
                .init();
            logs
        })
    }

    #[test]
    fn the_warm_instances_and_the_pool_are_sized_from_the_functions_memory_and_logged() {
        let logs = captured_logs();
        let rt = runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        let location = write_manifest(dir.path(), &["globex", "acme", "initech"]);
        let warm = weir_core::pipeline::WarmBudget::for_memory_mb(512);
        let engine = Arc::new(
            PluginEngine::with_cache_dir(Some(dir.path().join("cache")))
                .expect("engine")
                .with_warm_budget(warm),
        );
        let loader = rt
            .block_on(Loader::load_lazy(
                Files,
                engine.clone(),
                location,
                Duration::from_secs(3600),
            ))
            .expect("loads");
        let pool = engine.pool().expect("started");
        assert_eq!(pool, PoolSize::for_manifest(loader.manifest(), warm));
        assert_eq!(
            pool.instances as usize,
            warm.instances + crate::plugin::pool::BATCH_ROOM as usize
        );
        assert_eq!(loader.pipeline().warm_budget(), warm);
        drop(rt);
        let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("UTF-8");
        let said = format!("{warm}");
        assert!(
            text.lines().any(|l| {
                let l: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                l["message"] == "plugin instances sized from the function's memory"
                    && l["warm"] == said.as_str()
                    && l["pool"] == pool.to_string().as_str()
            }),
            "no line saying {said:?} in {text}"
        );
    }

    #[test]
    fn a_plugin_compiled_within_an_invocation_is_logged_with_its_request_id() {
        let logs = captured_logs();
        let rt = runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        let location = write_manifest_of(dir.path(), "mapping17", &["globex", "acme", "initech"]);
        // The function's engine: a fresh disk cache, so the plugin is compiled, and warned.
        let engine = PluginEngine::with_cache_dir(Some(dir.path().join("cache")))
            .expect("engine")
            .with_compile_notice(CompileNotice::Warn);
        rt.block_on(async {
            // As the function does: the manifest at cold start, the plugin lazily, in
            // the invocation that first needs it.
            let mut loader =
                Loader::load_lazy(Files, Arc::new(engine), location, Duration::from_secs(3600))
                    .await
                    .expect("loads");
            let span = tracing::info_span!("invocation", requestId = "req-17");
            let report = dry_run(loader.current().await).instrument(span).await;
            assert_eq!(report.entries.len(), 7);
        });
        drop(rt);
        let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("UTF-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        // This test's plugin, by its name (other tests log here too).
        let line = |message: &str| {
            lines
                .iter()
                .find(|l| {
                    l["plugin"] == "mapping17"
                        && l["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with(message))
                })
                .unwrap_or_else(|| panic!("no {message:?} line of mapping17 in {text}"))
        };
        let compiling = line("compiling plugin: no precompiled .cwasm");
        assert_eq!(compiling["level"], "WARN", "{compiling}");
        let loaded = line("plugin loaded");
        for l in [compiling, loaded] {
            assert_eq!(l["span"]["requestId"], "req-17", "{l}");
            // The plugin's name (the filter above), and where it was read from in a field
            // of its own.
            assert!(
                l["location"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("target/plugins/mapping.wasm")),
                "{l}"
            );
        }
    }
}
