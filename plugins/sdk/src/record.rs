//! What the stream gives a plugin: a [`Record`] of one change, its images read lazily.

use crate::image::{Image, parse_image};
use crate::log;

/// What happened to the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The item was created.
    Insert,
    /// The item was changed.
    Modify,
    /// The item was deleted (by a user, or by TTL: see `removed_by_ttl`).
    Remove,
}

impl Change {
    /// `INSERT`, `MODIFY` or `REMOVE`, as the stream spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Insert => "INSERT",
            Change::Modify => "MODIFY",
            Change::Remove => "REMOVE",
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A change read from the table's stream.
    Stream,
    /// An item already in the table, read by `weir backfill`: an `Insert` with a new
    /// image only. (Plugins built against `weir:transform@0.1.0` see it as a stream insert.)
    Backfill,
}

/// One change from the table's stream, with its images as plain JSON.
#[derive(Debug, Clone)]
pub struct Record {
    /// The table's name.
    pub table: String,
    /// The stream's `eventID`: the same on every redelivery of this change.
    pub event_id: String,
    /// What happened to the item.
    pub change: Change,
    /// A stream change, or an item read by a backfill.
    pub origin: Origin,
    /// Its position in the shard (up to 40 digits, exact): later changes of an item have
    /// larger ones.
    pub sequence_number: String,
    /// When the change was made, in milliseconds since the epoch, if the stream says.
    pub approximate_creation_time_ms: Option<u64>,
    /// The item's key attributes.
    pub keys: Image,
    /// Read with [`Record::new_image`]; parsed on first read.
    pub(crate) new_image: LazyImage,
    /// Read with [`Record::old_image`]; parsed on first read.
    pub(crate) old_image: LazyImage,
    /// True when DynamoDB's TTL process removed the item.
    pub removed_by_ttl: bool,
}

/// An image kept as JSON text until first read. Parsing a 1 KB image is most of a
/// plugin's work, so a plugin pays only for the images it reads (a MODIFY carries two;
/// most mappings read only the new one).
#[derive(Debug, Clone, Default)]
pub(crate) struct LazyImage {
    /// Taken (not copied) by the first read.
    text: std::cell::RefCell<Option<String>>,
    parsed: std::cell::OnceCell<Option<Image>>,
}

impl LazyImage {
    #[cfg_attr(not(feature = "contract-0-1"), allow(dead_code))]
    pub(crate) fn text(text: Option<String>) -> Self {
        LazyImage {
            text: std::cell::RefCell::new(text),
            parsed: std::cell::OnceCell::new(),
        }
    }

    pub(crate) fn parsed(image: Image) -> Self {
        LazyImage {
            text: std::cell::RefCell::new(None),
            parsed: std::cell::OnceCell::from(Some(image)),
        }
    }

    fn get(&self, what: &str) -> Option<&Image> {
        self.parsed
            .get_or_init(|| {
                let text = self.text.borrow_mut().take()?;
                // weir always sends a JSON object; anything else reads as no image.
                parse_image(text, what).map_err(|why| log::warn(&why)).ok()
            })
            .as_ref()
    }
}

impl Record {
    /// A record for tests: table `Table`, event id `test`, sequence number `1`, no images.
    /// Add images with [`Record::with_new_image`] and [`Record::with_old_image`].
    pub fn new(change: Change, keys: Image) -> Self {
        Record {
            table: "Table".to_owned(),
            event_id: "test".to_owned(),
            change,
            origin: Origin::Stream,
            sequence_number: "1".to_owned(),
            approximate_creation_time_ms: None,
            keys,
            new_image: LazyImage::default(),
            old_image: LazyImage::default(),
            removed_by_ttl: false,
        }
    }

    /// The record with this origin.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// The record with this new image.
    pub fn with_new_image(mut self, image: Image) -> Self {
        self.new_image = LazyImage::parsed(image);
        self
    }

    /// The record with this old image.
    pub fn with_old_image(mut self, image: Image) -> Self {
        self.old_image = LazyImage::parsed(image);
        self
    }

    /// The item as it now is: the new image, or for a REMOVE the old one; `None` when the
    /// stream carries neither (a KEYS_ONLY stream).
    pub fn image(&self) -> Option<&Image> {
        match self.change {
            Change::Remove => self.old_image(),
            _ => self.new_image(),
        }
    }

    /// The change's position among its item's changes, as weir's metadata carries it
    /// (`metadata.position`): the sequence number zero-padded to 40 digits, so a receiver
    /// that keeps the last position it applied drops a stale update by comparing text.
    /// `None` for a backfill, which reads items rather than changes them. Put it in a
    /// payload field to let the destination itself refuse updates older than what it holds.
    pub fn position(&self) -> Option<String> {
        (self.origin == Origin::Stream).then(|| format!("{:0>40}", self.sequence_number))
    }

    /// The item after the change (absent for a REMOVE, or a KEYS_ONLY/OLD_IMAGE stream).
    pub fn new_image(&self) -> Option<&Image> {
        self.new_image.get("new image")
    }

    /// The item before the change (absent for an INSERT, or a KEYS_ONLY/NEW_IMAGE stream).
    pub fn old_image(&self) -> Option<&Image> {
        self.old_image.get("old image")
    }
}
