//! One top-level attribute of an image, read for routing without decoding the rest.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::DecodeError;
use super::number::number_as_json;
use super::transcode::Key;

/// The `S` text, or the `N` as a JSON number, of a top-level attribute of an image, without
/// decoding the rest; `path` names the image in an error. The whole image is scanned, so an
/// attribute named twice is found wherever the second one stands.
pub(super) fn top_level_string(
    image: &RawValue,
    name: &str,
    path: &str,
) -> Result<Option<String>, DecodeError> {
    #[derive(Deserialize)]
    struct Scalar {
        #[serde(rename = "S")]
        s: Option<String>,
        #[serde(rename = "N")]
        n: Option<String>,
    }
    struct Find<'n> {
        name: &'n str,
        path: &'n str,
        error: &'n std::cell::RefCell<Option<DecodeError>>,
    }
    impl<'de> serde::de::Visitor<'de> for Find<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Option<String>, A::Error> {
            let mut found: Option<Option<String>> = None;
            while let Some(key) = map.next_key_seed(Key)? {
                if key != self.name {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                let at = format!("{}.{}", self.path, self.name);
                if found.is_some() {
                    *self.error.borrow_mut() = Some(DecodeError::at(
                        &at,
                        "the attribute is named twice in one image, which DynamoDB never writes",
                    ));
                    return Err(serde::de::Error::custom("duplicate attribute"));
                }
                let v: Option<Scalar> = map.next_value().map_err(|e: A::Error| {
                    // serde_json refuses a string that is not Unicode (a lone
                    // surrogate), which DynamoDB cannot hold.
                    *self.error.borrow_mut() = Some(DecodeError::at(
                        &at,
                        format!("not a value DynamoDB could have written: {e}"),
                    ));
                    e
                })?;
                let value = match v {
                    Some(Scalar { s: Some(s), .. }) => Some(s),
                    Some(Scalar { n: Some(n), .. }) => match number_as_json(&n) {
                        Ok(n) => Some(n),
                        Err(why) => {
                            *self.error.borrow_mut() = Some(DecodeError::at(&at, why));
                            return Err(serde::de::Error::custom("bad number"));
                        }
                    },
                    _ => None,
                };
                found = Some(value);
            }
            Ok(found.flatten())
        }
    }
    let error = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(image.get());
    let find = Find {
        name,
        path,
        error: &error,
    };
    match serde::Deserializer::deserialize_map(&mut de, find) {
        Ok(value) => Ok(value),
        Err(e) => Err(error
            .into_inner()
            .unwrap_or_else(|| DecodeError::at(path, format!("not valid: {e}")))),
    }
}
