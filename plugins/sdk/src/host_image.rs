//! An image read through the host (`weir:transform@0.2.0`'s `image` resource): each read
//! is one host call for one value. What a read returns by reference is kept in arenas for
//! as long as the image lives (the call), so the SDK's `&str` and `&Value` answers stay.

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
        values: Arena<Value>,
        strings: Arena<String>,
        numbers: Arena<Number>,
        names: Arena<Vec<String>>,
    }

    impl HostImage {
        pub(crate) fn new(handle: Handle) -> Self {
            HostImage {
                handle,
                values: Arena::new(),
                strings: Arena::new(),
                numbers: Arena::new(),
                names: Arena::new(),
            }
        }

        /// Any value, as the host writes it in plain JSON (every digit of a number kept).
        pub(crate) fn get(&self, pointer: &str) -> Option<&Value> {
            let text = self.handle.to_json(pointer)?;
            let value = serde_json::from_str(&text).ok()?;
            Some(self.values.alloc(value))
        }

        pub(crate) fn str(&self, pointer: &str) -> Option<&str> {
            Some(self.strings.alloc(self.handle.get_string(pointer)?))
        }

        pub(crate) fn bool(&self, pointer: &str) -> Option<bool> {
            self.handle.get_bool(pointer)
        }

        pub(crate) fn number(&self, pointer: &str) -> Option<&Number> {
            let text = self.handle.get_number(pointer)?;
            Some(self.numbers.alloc(text.parse().ok()?))
        }

        pub(crate) fn is_null(&self, pointer: &str) -> bool {
            self.handle.is_null(pointer)
        }

        pub(crate) fn len(&self, pointer: &str) -> Option<usize> {
            self.handle.length(pointer).map(|n| n as usize)
        }

        pub(crate) fn keys(&self, pointer: &str) -> Option<&Vec<String>> {
            Some(self.names.alloc(self.handle.keys(pointer)?))
        }

        pub(crate) fn binary(&self, pointer: &str) -> Option<Vec<u8>> {
            self.handle.get_binary(pointer)
        }
    }
}
