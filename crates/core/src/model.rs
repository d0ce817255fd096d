//! What a record becomes, as every stage names it: the PutEvents [`Entry`] it publishes as,
//! or the [`DeadLetter`] that keeps it with its [`Reason`], and who is to [`Blame`]. Plain
//! data, depended on by every stage and depending on none.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Digest as _;

/// The version written into every dead letter, so a redrive knows what produced it.
pub const WEIR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a record was dead-lettered: a stable name to filter on, in the dead letter's JSON,
/// the SQS message attribute `kind`, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterKind {
    /// The stream record could not be decoded.
    Decode,
    /// Its plugin could not be used (pin, contract, imports, no precompiled code).
    PluginLoad,
    /// Its plugin returned an error: it judged the record bad.
    PluginError,
    /// Its plugin ran past its time limit.
    TimeLimit,
    /// Its plugin ran past its fuel (instruction) limit.
    FuelLimit,
    /// Its plugin grew past its memory limit.
    MemoryLimit,
    /// Its plugin overflowed its stack.
    StackOverflow,
    /// Its plugin trapped (a panic, `unreachable`, a bad access).
    Trap,
    /// weir could not run the plugin; the record is not at fault.
    HostError,
    /// Its plugin's events are not what EventBridge accepts.
    InvalidOutput,
    /// Its plugin returned more events than `max_events`.
    TooManyEvents,
    /// An event, or all of them, larger than the limits.
    TooLarge,
    /// EventBridge refused its entries for good.
    PutEvents,
}

impl DeadLetterKind {
    /// The name, as the dead letter's JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Decode => "decode",
            DeadLetterKind::PluginLoad => "plugin-load",
            DeadLetterKind::PluginError => "plugin-error",
            DeadLetterKind::TimeLimit => "time-limit",
            DeadLetterKind::FuelLimit => "fuel-limit",
            DeadLetterKind::MemoryLimit => "memory-limit",
            DeadLetterKind::StackOverflow => "stack-overflow",
            DeadLetterKind::Trap => "trap",
            DeadLetterKind::HostError => "host-error",
            DeadLetterKind::InvalidOutput => "invalid-output",
            DeadLetterKind::TooManyEvents => "too-many-events",
            DeadLetterKind::TooLarge => "too-large",
            DeadLetterKind::PutEvents => "put-events",
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was rejected: a stable `kind` to filter on, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Which kind of rejection.
    pub kind: DeadLetterKind,
    /// What went wrong, for people.
    pub message: String,
    /// Whose fault it is.
    pub blame: Blame,
}

/// The plugin that handled the record, by name and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginRef {
    /// Its name in the manifest.
    pub name: String,
    /// The sha256 of its `.wasm`.
    pub sha256: String,
}

/// One rejected record: the original exactly as received, and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The weir that wrote it ([`WEIR_VERSION`]).
    pub weir_version: &'static str,
    /// Why it was rejected.
    pub reason: Reason,
    /// The record's tenant, if it got that far.
    pub tenant: Option<String>,
    /// The plugin that handled it, if one did.
    pub plugin: Option<PluginRef>,
    /// The stream record, byte for byte as it arrived.
    pub record: Box<RawValue>,
}

impl DeadLetter {
    /// A dead letter for `raw`, the record's exact text.
    pub fn new(raw: &RawValue, reason: Reason) -> Self {
        DeadLetter {
            weir_version: WEIR_VERSION,
            reason,
            tenant: None,
            plugin: None,
            record: raw.to_owned(),
        }
    }

    /// The message body: the same JSON in files and in the queue.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and a RawValue cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// A stable name for this record: the same record always gets the same file.
    pub fn file_name(&self) -> String {
        let digest = sha2::Sha256::digest(self.record.get().as_bytes());
        format!("dead-letter-{}.json", &hex::encode(digest)[..16])
    }
}

/// Who is at fault when a record does not publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blame {
    /// The stream record itself is malformed.
    Record,
    /// The plugin misbehaved or refused the record.
    Plugin,
    /// weir or AWS failed; the record may succeed on retry.
    Host,
}

/// One PutEvents entry, with AWS's field names, as `aws events put-events --entries` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    /// The route's `source`.
    pub source: String,
    /// The plugin's detail type.
    pub detail_type: String,
    /// `{"metadata": {...}, "payload": <the plugin's detail>}` as text.
    pub detail: String,
    /// The manifest's bus.
    pub event_bus_name: String,
    /// The plugin's resource ARNs.
    pub resources: Vec<String>,
    /// The plugin that produced it, for the dead letter if EventBridge refuses it.
    #[serde(skip)]
    pub plugin: Arc<PluginRef>,
    /// Set when its tenant coalesces its destination: the table, item and destination it
    /// stands for. Within a batch, a later record's entry with the same key supersedes it.
    #[serde(skip)]
    pub coalesce: Option<String>,
}

impl Entry {
    /// The size EventBridge counts against its entry limit.
    pub fn size(&self) -> usize {
        crate::validate::entry_size(
            &self.source,
            &self.detail_type,
            &self.detail,
            &self.resources,
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_kept_byte_for_byte() {
        let raw =
            RawValue::from_string(r#"{ "eventID" : "x",  "n": 1.000 }"#.to_owned()).expect("raw");
        let letter = DeadLetter::new(
            &raw,
            Reason {
                kind: DeadLetterKind::Decode,
                message: "eventName: missing".into(),
                blame: Blame::Record,
            },
        );
        let json = letter.to_json();
        assert!(
            json.contains(r#""record":{ "eventID" : "x",  "n": 1.000 }"#),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["reason"]["kind"], "decode");
        assert_eq!(v["reason"]["blame"], "record");
        assert_eq!(v["weirVersion"], WEIR_VERSION);
        assert_eq!(
            letter.file_name(),
            DeadLetter::new(&raw, letter.reason.clone()).file_name()
        );
    }
}
