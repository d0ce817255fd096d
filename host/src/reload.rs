//! Loading a manifest and its plugins from files or S3, and reloading them while warm.
//!
//! A reload asks each location whether it changed (S3: conditional GET on the ETag), and
//! rebuilds the pipeline only when something did. A new version that cannot be read,
//! fails its pin, fails to compile or fails the manifest's checks leaves the old one
//! serving; the failure is logged and counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::manifest::Manifest;
use crate::pipeline::Pipeline;
use crate::plugin::{Plugin, PluginEngine};
use crate::store::{Fetched, Location, Store};

/// The default time between checks for a changed manifest or plugin.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// One plugin as last loaded: the version it was read at, and the result.
struct LoadedPlugin {
    version: String,
    sha256_pin: Option<String>,
    plugin: Arc<Plugin>,
}

/// What a load found wrong, all of it.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct LoadProblems {
    pub problems: Vec<String>,
}

/// Reads a manifest and its plugins, and keeps them fresh.
pub struct Loader {
    store: Store,
    engine: Arc<PluginEngine>,
    location: Location,
    interval: Duration,
    manifest_version: String,
    manifest_text: String,
    plugins: HashMap<(String, Location), LoadedPlugin>,
    current: Arc<Pipeline>,
    next_check: Instant,
    reloads: usize,
    reload_failures: usize,
}

impl Loader {
    /// Loads everything once; any problem is an error (a function must not start broken).
    pub async fn load(
        store: Store,
        engine: Arc<PluginEngine>,
        location: Location,
        interval: Duration,
    ) -> Result<Self, LoadProblems> {
        let (text, version) = store.read(&location).await.map_err(|e| LoadProblems {
            problems: vec![format!("{e:#}")],
        })?;
        let text = String::from_utf8(text).map_err(|_| LoadProblems {
            problems: vec![format!("{location}: not UTF-8 text")],
        })?;
        let (pipeline, plugins) = build(&store, &engine, &location, &HashMap::new(), &text).await?;
        Ok(Loader {
            store,
            engine,
            location,
            interval,
            manifest_version: version,
            manifest_text: text,
            plugins,
            current: Arc::new(pipeline),
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
        let (pipeline, plugins) = build(
            &self.store,
            &self.engine,
            &self.location,
            &self.plugins,
            &text,
        )
        .await?;
        let plugins_changed = versions(&plugins) != versions(&self.plugins);
        self.plugins = plugins;
        if manifest_changed || plugins_changed {
            tracing::info!(manifest = %self.location, "reloaded manifest and plugins");
            self.reloads += 1;
            self.current = Arc::new(pipeline);
        }
        self.manifest_text = text;
        self.manifest_version = version;
        Ok(())
    }
}

fn versions(plugins: &HashMap<(String, Location), LoadedPlugin>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = plugins
        .iter()
        .map(|((name, loc), p)| (format!("{name}@{loc}"), p.version.clone()))
        .collect();
    v.sort();
    v
}

type Plugins = HashMap<(String, Location), LoadedPlugin>;

/// Parses `text` and loads every plugin its tenants use, reading again only plugins that
/// changed since `known`. All problems are gathered; on any, nothing is returned.
async fn build(
    store: &Store,
    engine: &PluginEngine,
    manifest_location: &Location,
    known: &Plugins,
    text: &str,
) -> Result<(Pipeline, Plugins), LoadProblems> {
    let manifest = Manifest::parse(text, manifest_location.clone()).map_err(|e| LoadProblems {
        problems: vec![e.to_string()],
    })?;
    let mut problems = Vec::new();
    let mut loaded: Plugins = HashMap::new();
    let mut plugins = HashMap::new();
    for (name, spec) in &manifest.plugins {
        if !manifest
            .tenants
            .values()
            .any(|t| t.plugin_names().any(|p| p == name))
        {
            continue;
        }
        let location = match manifest.plugin_location(spec) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("plugins.{name}: {e:#}"));
                continue;
            }
        };
        let key = (name.clone(), location.clone());
        let previous = known.get(&key).filter(|p| p.sha256_pin == spec.sha256);
        let fetched = match store
            .fetch(&location, previous.map(|p| p.version.as_str()))
            .await
        {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("plugins.{name}: {e:#}"));
                continue;
            }
        };
        let entry = match (fetched, previous) {
            (Fetched::NotModified, Some(p)) => LoadedPlugin {
                version: p.version.clone(),
                sha256_pin: p.sha256_pin.clone(),
                plugin: p.plugin.clone(),
            },
            (Fetched::NotModified, None) => {
                problems.push(format!(
                    "plugins.{name}: {location} answered 304 to a first read"
                ));
                continue;
            }
            (Fetched::Content { bytes, version }, _) => {
                let precompiled = precompiled(store, &manifest, spec).await;
                match engine.load(
                    name,
                    &location.to_string(),
                    &bytes,
                    spec.sha256.as_deref(),
                    precompiled.as_deref(),
                ) {
                    Ok(plugin) => LoadedPlugin {
                        version,
                        sha256_pin: spec.sha256.clone(),
                        plugin: Arc::new(plugin),
                    },
                    Err(e) => {
                        problems.push(format!("plugins.{name}: {e}"));
                        continue;
                    }
                }
            }
        };
        plugins.insert(name.clone(), entry.plugin.clone());
        loaded.insert(key, entry);
    }
    if !problems.is_empty() {
        return Err(LoadProblems { problems });
    }
    Ok((Pipeline::new(manifest, plugins), loaded))
}

/// The plugin's `.cwasm`, if there is one where the manifest says (or next to it).
async fn precompiled(
    store: &Store,
    manifest: &Manifest,
    spec: &crate::manifest::PluginSpec,
) -> Option<Vec<u8>> {
    let location = manifest.compiled_location(spec).ok()?;
    match store.read(&location).await {
        Ok((bytes, _)) => Some(bytes),
        Err(e) => {
            if spec.compiled.is_some() {
                tracing::warn!(compiled = %location, "named .cwasm not readable: {e:#}");
            }
            None
        }
    }
}

fn one(e: anyhow::Error) -> LoadProblems {
    LoadProblems {
        problems: vec![format!("{e:#}")],
    }
}
