//! `weir:transform@0.2.0`'s `image` resource, on [`ImageReads`]: a plugin reads the
//! record's keys and images by JSON pointer, answered from the stream's typed JSON by the
//! core's lazy reader. Only what is read is decoded.
//!
//! A handle is the image's slot (keys, new, old) and the call it was given in: a handle a
//! plugin kept from an earlier call reads as nothing, never as another record's data.

use wasmtime::component::Resource;
use weir_core::image::{Kind, TypedImage};
use weir_core::record::{DecodeError, LazyRecord};

use crate::plugin::bindings::weir::transform::types::{self, Image, ValueKind};

self_cell::self_cell!(
    /// One image's typed JSON text, owned for the call, with its reader.
    struct OwnedImage {
        owner: String,
        #[not_covariant]
        dependent: TypedImage,
    }
);

/// Which of the record's images a handle names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Keys = 0,
    New = 1,
    Old = 2,
}

impl Slot {
    /// How a decode error names it, as the eager decoder does.
    fn path(self) -> &'static str {
        match self {
            Slot::Keys => "dynamodb.Keys",
            Slot::New => "dynamodb.NewImage",
            Slot::Old => "dynamodb.OldImage",
        }
    }
}

/// The images of the record being transformed, and the first value found undecodable.
#[derive(Default)]
pub(crate) struct ImageReads {
    images: [Option<OwnedImage>; 3],
    /// Counts calls; a handle carries the count of the call it was made for.
    call: u32,
    /// The first value a read found written wrongly: the record is dead-lettered with it.
    pub(crate) error: Option<DecodeError>,
}

impl ImageReads {
    /// Sets up a call for `record`, returning the handles to give the plugin.
    pub(crate) fn start(
        &mut self,
        record: &LazyRecord<'_>,
    ) -> (
        Resource<Image>,
        Option<Resource<Image>>,
        Option<Resource<Image>>,
    ) {
        self.call = self.call.wrapping_add(1) & (u32::MAX >> 2);
        self.error = None;
        let parsed = record.parsed();
        let texts = [
            Some(parsed.keys_text()),
            parsed.new_image_text(),
            parsed.old_image_text(),
        ];
        for (image, text) in self.images.iter_mut().zip(texts) {
            *image = text.map(|t| OwnedImage::new(t.to_owned(), |t| TypedImage::new(t)));
        }
        let handle = |slot: Slot| Resource::new_own((self.call << 2) | slot as u32);
        (
            handle(Slot::Keys),
            self.images[Slot::New as usize]
                .is_some()
                .then(|| handle(Slot::New)),
            self.images[Slot::Old as usize]
                .is_some()
                .then(|| handle(Slot::Old)),
        )
    }

    /// Ends a call: the images are released; a handle kept past it reads as nothing.
    pub(crate) fn finish(&mut self) -> Option<DecodeError> {
        self.images = [None, None, None];
        self.error.take()
    }

    /// Runs one read on the image `handle` names; `None` when it names none (a stale
    /// handle) or the read found a value written wrongly (kept, to dead-letter the record).
    fn read<T>(
        &mut self,
        handle: &Resource<Image>,
        read: impl FnOnce(&TypedImage<'_>) -> Result<Option<T>, DecodeError>,
    ) -> Option<T> {
        let rep = handle.rep();
        if rep >> 2 != self.call {
            return None;
        }
        let slot = match rep & 3 {
            0 => Slot::Keys,
            1 => Slot::New,
            2 => Slot::Old,
            _ => return None,
        };
        let image = self.images[slot as usize].as_ref()?;
        match image.with_dependent(|_, typed| read(typed)) {
            Ok(v) => v,
            Err(e) => {
                self.error.get_or_insert(e.in_image(slot.path()));
                None
            }
        }
    }
}

fn value_kind(kind: Kind) -> ValueKind {
    match kind {
        Kind::String => ValueKind::String,
        Kind::Number => ValueKind::Number,
        Kind::Binary => ValueKind::Binary,
        Kind::Bool => ValueKind::Boolean,
        Kind::Null => ValueKind::Null,
        Kind::Map => ValueKind::Map,
        Kind::List => ValueKind::List,
    }
}

impl types::Host for ImageReads {}

impl types::HostImage for ImageReads {
    fn kind(&mut self, image: Resource<Image>, pointer: String) -> Option<ValueKind> {
        self.read(&image, |i| i.kind(&pointer)).map(value_kind)
    }

    fn get_string(&mut self, image: Resource<Image>, pointer: String) -> Option<String> {
        self.read(&image, |i| i.string(&pointer))
    }

    fn get_number(&mut self, image: Resource<Image>, pointer: String) -> Option<String> {
        self.read(&image, |i| i.number(&pointer))
    }

    fn get_bool(&mut self, image: Resource<Image>, pointer: String) -> Option<bool> {
        self.read(&image, |i| i.bool(&pointer))
    }

    fn is_null(&mut self, image: Resource<Image>, pointer: String) -> bool {
        self.read(&image, |i| i.is_null(&pointer).map(Some))
            .unwrap_or(false)
    }

    fn get_binary(&mut self, image: Resource<Image>, pointer: String) -> Option<Vec<u8>> {
        self.read(&image, |i| i.binary(&pointer))
    }

    fn keys(&mut self, image: Resource<Image>, pointer: String) -> Option<Vec<String>> {
        self.read(&image, |i| i.keys(&pointer))
    }

    fn length(&mut self, image: Resource<Image>, pointer: String) -> Option<u32> {
        self.read(&image, |i| i.len(&pointer))
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn to_json(&mut self, image: Resource<Image>, pointer: String) -> Option<String> {
        self.read(&image, |i| i.to_json(&pointer))
    }

    fn drop(&mut self, _image: Resource<Image>) -> wasmtime::Result<()> {
        // The images live for the call, not for the handle: nothing to free.
        Ok(())
    }
}
