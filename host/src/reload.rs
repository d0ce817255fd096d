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
//!
//! The engine's instance pool is sized from the manifest when it is first read
//! ([`PoolSize::for_manifest`]). A reload whose manifest needs more (more tenants or
//! plugins, a larger memory limit) moves to a new engine sized for it: the plugins in use
//! are loaded into it (from the compiled-code cache) before it replaces the old one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use weir_aws::store::{Fetched, Location, Store};
use weir_core::manifest::Manifest;
use weir_runtime::Pipeline;
use weir_runtime::plugin::{Compile, PluginEngine, PoolSize};
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
        let manifest = parse(&text, &location)?;
        // The pool is reserved when the engine starts: sized for this manifest, before any
        // plugin loads (an engine that has started already keeps its pool).
        engine
            .start_with(PoolSize::for_manifest(&manifest))
            .map_err(one)?;
        let source = Arc::new(PluginSource::new(Arc::new(store), engine));
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
        let needed = PoolSize::for_manifest(&manifest);
        let rebuilt = match self.source.engine().pool() {
            Some(pool) if !pool.covers(needed) => {
                let (source, rebuilt) = self.grown(&manifest, needed).await?;
                tracing::info!(
                    manifest = %self.location,
                    from = %pool,
                    to = %needed,
                    "plugin instance pool grown for the new manifest"
                );
                self.source = source;
                rebuilt
            }
            _ => slots(&manifest, &self.source, self.current.slots()).await?,
        };
        if manifest_changed || rebuilt.changed {
            tracing::info!(manifest = %self.location, "reloaded manifest and plugins");
            self.reloads += 1;
            self.current = Arc::new(Pipeline::new(manifest, rebuilt.slots));
        }
        self.manifest_text = text;
        self.manifest_version = version;
        Ok(())
    }

    /// A source whose engine has a pool of `pool`, and its slots, for `manifest` which
    /// outgrew the current pool. The plugins in use now and still named are loaded into it
    /// first, so a plugin that no longer loads keeps the old engine and pipeline serving.
    async fn grown(
        &self,
        manifest: &Manifest,
        pool: PoolSize,
    ) -> Result<(Arc<PluginSource>, Slots), LoadProblems> {
        let engine = Arc::new(self.source.engine().resized(pool).map_err(one)?);
        let source = Arc::new(PluginSource::new(self.source.fetch.clone(), engine));
        let fresh = slots(manifest, &source, &HashMap::new()).await?;
        let mut problems = Vec::new();
        for (name, slot) in &fresh.slots {
            let in_use = self
                .current
                .slots()
                .get(name)
                .is_some_and(|s| s.loaded().is_some());
            if in_use && let Err(error) = slot.load().await {
                problems.push(LoadProblem::Plugin {
                    name: name.clone(),
                    error,
                });
            }
        }
        if !problems.is_empty() {
            return Err(LoadProblems { problems });
        }
        Ok((
            source,
            Slots {
                slots: fresh.slots,
                changed: true,
            },
        ))
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use serde_json::value::RawValue;
    use tracing::Instrument as _;
    use weir_aws::dead_letter::DeadLetterSink;
    use weir_core::batch;
    use weir_runtime::plugin::CompileNotice;

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ has a parent")
            .to_path_buf()
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
        #[derive(serde::Deserialize)]
        struct Event {
            #[serde(rename = "Records")]
            records: Vec<Box<RawValue>>,
        }
        let text = std::fs::read_to_string(root().join("examples/events/customers.json"))
            .expect("example event");
        serde_json::from_str::<Event>(&text)
            .expect("a stream event")
            .records
    }

    async fn dry_run(pipeline: Arc<Pipeline>) -> batch::BatchReport {
        let mut letters = Vec::new();
        batch::run(
            pipeline,
            records(),
            batch::DryRun,
            DeadLetterSink::Collect(&mut letters),
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
        let rt = runtime();
        rt.block_on(async {
            let mut loader = Loader::load_lazy(
                Store::default(),
                engine.clone(),
                location.clone(),
                Duration::from_secs(3600),
            )
            .await
            .expect("loads");
            // Sized for the one tenant, before any plugin loaded.
            assert_eq!(engine.pool().map(|p| p.instances), Some(1));
            let first = dry_run(loader.current().await).await;
            assert_eq!((first.entries.len(), first.counts().retried), (3, 0));

            write_manifest(dir.path(), &["globex", "acme", "initech", "umbrella"]);
            loader.check_now();
            let pipeline = loader.current().await;
            assert_eq!((loader.reloads(), loader.reload_failures()), (1, 0));
            assert_eq!(
                loader.source.engine().pool().map(|p| p.instances),
                Some(4),
                "a new engine, sized for the new manifest"
            );
            // The plugin in use was loaded into it before it replaced the old one.
            assert!(
                pipeline
                    .slots()
                    .get("mapping")
                    .is_some_and(|s| s.loaded().is_some())
            );
            // Three tenants in one batch: each has an instance (in the old pool of one,
            // two of them would find no room and be retried).
            let grown = dry_run(pipeline).await;
            assert_eq!((grown.entries.len(), grown.counts().retried), (7, 0));
            // A manifest the pool covers keeps the engine.
            write_manifest(dir.path(), &["globex", "acme"]);
            loader.check_now();
            let _ = loader.current().await;
            assert_eq!(loader.reloads(), 2);
            assert_eq!(loader.source.engine().pool().map(|p| p.instances), Some(4));
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
            let mut loader = Loader::load_lazy(
                Store::default(),
                Arc::new(engine),
                location,
                Duration::from_secs(3600),
            )
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
