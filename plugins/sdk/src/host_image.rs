//! An image read through the host (`weir:transform@0.2.0`'s `image` resource): each read
//! is one host call for one value. What a read returns by reference is kept in an arena
//! for as long as the image lives (the call), so the SDK's `&str` and `&Value` answers stay.

use serde_json::{Number, Value};

#[cfg(not(feature = "contract-0-1"))]
pub(crate) use reads::HostImage;

/// Built against 0.1.0 there is no image resource: no image is read through the host.
#[cfg(feature = "contract-0-1")]
pub(crate) enum HostImage {}

#[cfg(feature = "contract-0-1")]
impl HostImage {
    pub(crate) fn get(&self, _: &str) -> Option<&Value> {
        match *self {}
    }
    pub(crate) fn str(&self, _: &str) -> Option<&str> {
        match *self {}
    }
    pub(crate) fn bool(&self, _: &str) -> Option<bool> {
        match *self {}
    }
    pub(crate) fn number(&self, _: &str) -> Option<&Number> {
        match *self {}
    }
    pub(crate) fn is_null(&self, _: &str) -> bool {
        match *self {}
    }
    pub(crate) fn len(&self, _: &str) -> Option<usize> {
        match *self {}
    }
    pub(crate) fn keys(&self, _: &str) -> Option<&Vec<String>> {
        match *self {}
    }
    pub(crate) fn binary(&self, _: &str) -> Option<Vec<u8>> {
        match *self {}
    }
}

#[cfg(not(feature = "contract-0-1"))]
mod reads {
    use super::{Number, Value};
    use typed_arena::Arena;

    use crate::bindings::weir::transform::types::Image as Handle;

    /// One of the record's images, owned for the call.
    pub(crate) struct HostImage {
        handle: Handle,
        /// What reads returned by reference; made on the first such read (most calls read
        /// one image, and never the others).
        kept: std::cell::OnceCell<Arena<Kept>>,
    }

    /// One answer kept for the call.
    enum Kept {
        Value(Value),
        String(String),
        Number(Number),
        Names(Vec<String>),
    }

    impl HostImage {
        pub(crate) fn new(handle: Handle) -> Self {
            HostImage {
                handle,
                kept: std::cell::OnceCell::new(),
            }
        }

        fn keep(&self, answer: Kept) -> &Kept {
            self.kept
                .get_or_init(|| Arena::with_capacity(16))
                .alloc(answer)
        }

        /// Any value, as the host writes it in plain JSON (every digit of a number kept).
        pub(crate) fn get(&self, pointer: &str) -> Option<&Value> {
            let text = self.handle.to_json(pointer)?;
            match self.keep(Kept::Value(serde_json::from_str(&text).ok()?)) {
                Kept::Value(v) => Some(v),
                _ => None,
            }
        }

        pub(crate) fn str(&self, pointer: &str) -> Option<&str> {
            match self.keep(Kept::String(self.handle.get_string(pointer)?)) {
                Kept::String(s) => Some(s),
                _ => None,
            }
        }

        pub(crate) fn bool(&self, pointer: &str) -> Option<bool> {
            self.handle.get_bool(pointer)
        }

        pub(crate) fn number(&self, pointer: &str) -> Option<&Number> {
            let text = self.handle.get_number(pointer)?;
            match self.keep(Kept::Number(text.parse().ok()?)) {
                Kept::Number(n) => Some(n),
                _ => None,
            }
        }

        pub(crate) fn is_null(&self, pointer: &str) -> bool {
            self.handle.is_null(pointer)
        }

        pub(crate) fn len(&self, pointer: &str) -> Option<usize> {
            self.handle.length(pointer).map(|n| n as usize)
        }

        pub(crate) fn keys(&self, pointer: &str) -> Option<&Vec<String>> {
            match self.keep(Kept::Names(self.handle.keys(pointer)?)) {
                Kept::Names(n) => Some(n),
                _ => None,
            }
        }

        pub(crate) fn binary(&self, pointer: &str) -> Option<Vec<u8>> {
            self.handle.get_binary(pointer)
        }
    }
}
