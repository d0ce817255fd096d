//! The edge between the pipeline and whatever runs plugins: a [`Slot`] (a plugin the
//! manifest names, loaded on first use), the [`Plugin`] it holds, and an [`Instance`]
//! that maps one tenant's records. The runtime crate implements these with wasmtime; the
//! benchmark implements them with a mapping written in Rust; tests can fake them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::manifest::Limits;
use crate::model::{Blame, DeadLetterKind, PluginRef};
use crate::record::{DecodeError, LazyRecord};

/// A plugin the manifest names, as the pipeline needs it: loaded on first use, then kept.
pub trait Slot: Send + Sync + 'static {
    /// The loaded plugin.
    type Plugin: Plugin;

    /// The plugin, if it has been loaded.
    fn loaded(&self) -> Option<&Arc<Self::Plugin>>;

    /// Whether its plugin was read but cannot be used (so loading it again is pointless).
    fn is_broken(&self) -> bool;

    /// The plugin, loaded now if this is its first use. It may block: the pipeline calls
    /// it from a thread that may.
    fn get(&self) -> Result<Arc<Self::Plugin>, SlotError>;

    /// The plugin, loaded now if this is its first use.
    fn load(&self) -> impl Future<Output = Result<Arc<Self::Plugin>, SlotError>> + Send;
}

/// A transformer that needs no loading (written in Rust: the benchmark's native mapping, a
/// test's fake): always there, never broken.
pub struct Loaded<T>(pub Arc<T>);

impl<T: Plugin + 'static> Slot for Loaded<T> {
    type Plugin = T;

    fn loaded(&self) -> Option<&Arc<T>> {
        Some(&self.0)
    }

    fn is_broken(&self) -> bool {
        false
    }

    fn get(&self) -> Result<Arc<T>, SlotError> {
        Ok(self.0.clone())
    }

    async fn load(&self) -> Result<Arc<T>, SlotError> {
        Ok(self.0.clone())
    }
}

/// A loaded plugin: it makes instances, one per tenant, never shared across tenants.
pub trait Plugin: Send + Sync {
    /// One tenant's instance.
    type Instance: Instance;

    /// Its name and hash, as entries and dead letters carry them.
    fn reference(&self) -> &Arc<PluginRef>;

    /// A fresh instance for `tenant`, under `limits`.
    fn instantiate(&self, tenant: &str, limits: Limits) -> Result<Self::Instance, CallError>;
}

/// One tenant's live instance of a plugin. It is `Send`: instances are kept warm between
/// batches, and a batch runs on whichever thread is free.
pub trait Instance: Send {
    /// Maps one record, with the tenant's config as JSON text.
    fn transform(&mut self, record: &LazyRecord<'_>, config_json: &str) -> CallReport;
}

/// One event a plugin returned, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEvent {
    /// The destination it is for (an API destination's name in the manifest).
    pub destination: String,
    /// EventBridge's `DetailType`.
    pub detail_type: String,
    /// The payload, as JSON text.
    pub detail: String,
    /// EventBridge's `Resources`.
    pub resources: Vec<String>,
}

/// Why a call did not return events. `blame()` says whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned `err(reason)`: it judged the record bad.
    #[error("plugin rejected the record: {0}")]
    Rejected(String),
    /// It ran past its wall-time limit and was interrupted.
    #[error("plugin exceeded its time limit of {limit_ms} ms")]
    TimeLimit {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// It executed more instructions than its fuel limit.
    #[error("plugin exceeded its fuel limit of {limit} instructions")]
    FuelLimit {
        /// The limit, in instructions.
        limit: u64,
    },
    /// It tried to grow its memory past the limit.
    #[error("plugin exceeded its memory limit of {limit_mib} MiB{detail}")]
    MemoryLimit {
        /// The limit, in MiB.
        limit_mib: u64,
        /// What it wrote to stderr last, if anything.
        detail: String,
    },
    /// It recursed past the stack limit (the text: what it wrote to stderr last).
    #[error("plugin overflowed its stack{0}")]
    StackOverflow(String),
    /// Any other trap (a panic, `unreachable`, a bad memory access).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The host failed to set up or run the call; the record is not at fault.
    #[error("host error running the plugin: {0}")]
    Host(String),
    /// The host has no room for another instance now (its pool is full): the record is
    /// retried, not dead-lettered.
    #[error("no room for another plugin instance on this host")]
    NoRoom,
    /// The record holds a value the stream wrote wrongly, found when the plugin's
    /// contract (or its read) needed it decoded: the record is at fault.
    #[error("{0}")]
    Decode(DecodeError),
}

impl CallError {
    /// The dead-letter reason kind for this error.
    pub fn kind(&self) -> DeadLetterKind {
        match self {
            CallError::Rejected(_) => DeadLetterKind::PluginError,
            CallError::TimeLimit { .. } => DeadLetterKind::TimeLimit,
            CallError::FuelLimit { .. } => DeadLetterKind::FuelLimit,
            CallError::MemoryLimit { .. } => DeadLetterKind::MemoryLimit,
            CallError::StackOverflow(_) => DeadLetterKind::StackOverflow,
            CallError::Trap(_) => DeadLetterKind::Trap,
            CallError::Host(_) | CallError::NoRoom => DeadLetterKind::HostError,
            CallError::Decode(_) => DeadLetterKind::Decode,
        }
    }

    /// Whether the guest (the plugin) or the host is to blame.
    pub fn blame(&self) -> Blame {
        match self {
            CallError::Host(_) | CallError::NoRoom => Blame::Host,
            CallError::Decode(_) => Blame::Record,
            _ => Blame::Plugin,
        }
    }

    /// After a trap the instance's state is undefined: it must not serve another record.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, CallError::Rejected(_) | CallError::Decode(_))
    }
}

/// What one call produced, and what it cost.
#[derive(Debug)]
pub struct CallReport {
    /// Its events, or why there are none.
    pub result: Result<Vec<PluginEvent>, CallError>,
    /// What it used.
    pub cost: CallCost,
}

/// What one call cost, beside the limits it ran under: the per-record report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CallCost {
    /// Wall time of the call.
    pub elapsed: Duration,
    /// Instructions executed (wasmtime fuel), when the engine counts them.
    pub fuel: Option<u64>,
    /// All the instance's linear memories and tables after the call, together (none
    /// shrinks, so this is their peak): what the memory limit counts.
    pub memory_bytes: usize,
    /// The limits it ran under.
    pub limits: Limits,
}

/// Why a plugin is not there for a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlotError {
    /// It could not be read (an S3 or file error, perhaps passing): retry the record.
    #[error(transparent)]
    Unavailable(SlotFailure),
    /// It was read but cannot be used (pin, compile, imports, contract): the records
    /// that need it are dead-lettered until a fixed version is uploaded.
    #[error(transparent)]
    Broken(SlotFailure),
}

impl SlotError {
    /// What failed, for whichever kind.
    pub fn failure(&self) -> &SlotFailure {
        match self {
            SlotError::Unavailable(f) | SlotError::Broken(f) => f,
        }
    }
}

/// What failed for one plugin: its name in the manifest and the error, kept whole (a
/// caller may downcast it, e.g. to the runtime's load error). Displayed as
/// `plugins.<name>: <error>`: the error's text is part of the message, so it is not
/// also given as [`std::error::Error::source`], and a chain printer says it once.
#[derive(Debug, Clone)]
pub struct SlotFailure {
    /// The plugin's name in the manifest.
    pub plugin: String,
    /// What failed: a read, a pin, a compile, the contract.
    pub error: Arc<dyn std::error::Error + Send + Sync>,
}

impl SlotFailure {
    /// `plugin` failed with `error`.
    pub fn new(
        plugin: impl Into<String>,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SlotFailure {
            plugin: plugin.into(),
            error: Arc::from(error.into()),
        }
    }

    /// `plugin` failed for a reason known only as text (an error with its causes
    /// already joined, as `anyhow` writes them with `{:#}`).
    pub fn message(plugin: impl Into<String>, message: impl Into<String>) -> Self {
        SlotFailure::new(plugin, message.into())
    }
}

impl std::fmt::Display for SlotFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugins.{}: {}", self.plugin, self.error)
    }
}

impl std::error::Error for SlotFailure {}

/// What a load found wrong, all of it.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LoadProblems {
    /// Every problem, in the order found.
    pub problems: Vec<LoadProblem>,
}

/// One thing a load found wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoadProblem {
    /// The manifest could not be read, or is not valid: every problem, with its key.
    #[error("{0}")]
    Manifest(#[source] crate::manifest::ManifestError),
    /// A plugin could not be located, read or loaded. The error names the plugin.
    #[error("{error}")]
    Plugin {
        /// The plugin's name in the manifest.
        name: String,
        /// Why, and whether it may pass (`Unavailable`) or needs a fix (`Broken`).
        error: SlotError,
    },
}

impl LoadProblems {
    /// A load that failed because the manifest cannot be used.
    pub fn manifest(error: crate::manifest::ManifestError) -> Self {
        LoadProblems {
            problems: vec![LoadProblem::Manifest(error)],
        }
    }

    /// A load that failed for one reason before the manifest could be checked.
    pub fn unavailable(message: impl Into<String>) -> Self {
        LoadProblems {
            problems: vec![LoadProblem::Manifest(
                crate::manifest::ManifestError::Unavailable {
                    message: message.into(),
                },
            )],
        }
    }
}
