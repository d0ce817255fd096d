//! Write a weir plugin as one plain function.
//!
//! A plugin is `fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error>`
//! plus the line `weir_plugin_sdk::plugin!(transform);`. weir calls it once per DynamoDB
//! stream record, with the tenant's `config` from the manifest. It returns the events to
//! publish (each becomes one PutEvents entry), none to filter the record, or an [`Error`]
//! to dead-letter it with the reason.
//!
//! The plugin is built against `weir:transform@0.2.0`: the record's images are read through
//! the host, value by value, so attributes a plugin never reads are never decoded or copied
//! into it. Values read the same as plain JSON (`{"S": "x"}` is `"x"`). [`Record::origin`]
//! tells a backfilled item from a stream change. The `contract-0-1` feature builds the same
//! plugin against `weir:transform@0.1.0` (images handed over as JSON text) for older hosts.
//!
//! Read values from an [`Image`] by RFC 6901 JSON Pointer (`/address/city`, `/tags/0`):
//! [`Image::str`], [`Image::bool`], [`Image::number`], [`Image::object`],
//! [`Image::array`], or any value with [`Image::get`]; the `require_*` forms turn a missing
//! value into an [`Error`] that names the pointer. Numbers keep every digit DynamoDB stored
//! (up to 38): [`ExactNumber`] converts to `i64`, `u64`, `i128` or `f64` only when no digit
//! is lost, and says so ([`WouldLoseDigits`]) otherwise. [`eventbridge_safe`] writes the
//! integers EventBridge cannot carry as strings.
//!
//! A complete plugin, with a test that runs it natively (`cargo test`), no WebAssembly
//! needed:
//!
//! ```
//! use weir_plugin_sdk::{Change, Error, Event, Image, Record, Tenant, eventbridge_safe, json};
//!
//! /// Posts "created" / "updated" / "deleted" messages about customers to a chat channel.
//! fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
//!     // Configuration is per tenant, from the manifest.
//!     if record.change == Change::Remove && !tenant.config_bool("announce_removals").unwrap_or(false) {
//!         return Ok(vec![]); // no events: the record is filtered
//!     }
//!     // The new image, or for a REMOVE the old one.
//!     let Some(item) = record.image() else { return Ok(vec![]) };
//!     let name = item.require_str("/name")?; // missing: dead-lettered, naming /name
//!     let city = item.str("/address/city").unwrap_or("somewhere");
//!     // Every digit kept; refuse a fractional head count rather than round it.
//!     let staff = match item.number("/employees") {
//!         Some(n) => Some(n.to_i64().map_err(|e| Error::new(format!("/employees: {e}")))?),
//!         None => None,
//!     };
//!     let verb = match record.change {
//!         Change::Insert => "created",
//!         Change::Modify => "updated",
//!         Change::Remove => "deleted",
//!     };
//!     let channel = tenant.config_str("channel").unwrap_or("#customers");
//!     Ok(vec![Event::new("slack", "CustomerChanged", json!({
//!         "channel": channel,
//!         "text": format!("{name} ({city}) was {verb}"),
//!         "staff": staff,
//!         "revenue": item.get("/revenue").map(eventbridge_safe),
//!     }))])
//! }
//!
//! weir_plugin_sdk::plugin!(transform);
//!
//! // What the plugin makes of one record, checked without building a component.
//! let item = Image::parse(r#"{"id": "c-1", "name": "Ada", "address": {"city": "London"},
//!     "employees": 12, "revenue": 12345678901234567890123456789012345678}"#)?;
//! let record = Record::new(Change::Insert, Image::parse(r#"{"id": "c-1"}"#)?).with_new_image(item);
//! let tenant = Tenant::new("acme", json!({"channel": "#sales"}));
//! let events = transform(&record, &tenant)?;
//! assert_eq!(events[0].detail, json!({
//!     "channel": "#sales",
//!     "text": "Ada (London) was created",
//!     "staff": 12,
//!     "revenue": "12345678901234567890123456789012345678",
//! }));
//! // Without a name, the record is rejected with a reason that says why.
//! let nameless = record.clone().with_new_image(Image::parse(r#"{"id": "c-2"}"#)?);
//! assert_eq!(transform(&nameless, &tenant).unwrap_err().to_string(), "the item has no string at /name");
//! # Ok::<(), Error>(())
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` from a crate with
//! `crate-type = ["cdylib"]`; the `.wasm` in `target/wasm32-wasip2/release/` is the plugin.
//! `weir new plugin NAME --lang rust` writes such a crate, with a golden case for
//! `weir test`; `plugins/README.md` is the whole guide.

#![deny(missing_docs)]

pub use serde_json::{self, Map, Number, Value, json};

// The plain types a plugin works with: no WebAssembly in them, so a plugin's logic (and
// these modules' own tests) run natively under `cargo test`.
mod error;
mod event;
mod image;
mod number;
mod record;
mod tenant;

pub use error::Error;
pub use event::Event;
pub use image::Image;
pub use number::{ExactNumber, WouldLoseDigits, eventbridge_safe};
pub use record::{Change, Origin, Record};
pub use tenant::Tenant;

pub mod log;

// The ABI: the WIT bindings, and the glue `plugin!` calls to convert between their types
// and the ones above.
#[doc(hidden)]
pub mod bindings;
mod glue;
mod host_image;

#[doc(hidden)]
pub use glue::__run;

/// Exports `f` as the plugin's `transform`.
#[macro_export]
macro_rules! plugin {
    ($f:path) => {
        struct __WeirPlugin;
        impl $crate::bindings::exports::weir::transform::transformer::Guest for __WeirPlugin {
            fn transform(
                record: $crate::bindings::exports::weir::transform::transformer::StreamRecord,
                tenant: $crate::bindings::exports::weir::transform::transformer::Tenant,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::bindings::exports::weir::transform::transformer::Event>,
                ::std::string::String,
            > {
                $crate::__run(record, tenant, $f)
            }
        }
        $crate::bindings::__export_plugin!(__WeirPlugin with_types_in $crate::bindings);
    };
}
