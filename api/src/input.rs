//! Field rules shared by the request bodies, so the code accepts exactly
//! what the OpenAPI document promises: JSON Schema's `integer` admits
//! `45549.0` (a number with no fraction), a field is never `null`, and
//! free text never carries control characters (the document says so with
//! [`PLAIN_TEXT_PATTERN`]).

use std::fmt;

use serde::Deserializer;
use serde::de::{Error, Unexpected, Visitor};

use crate::error::ApiError;

/// The pattern of free text in the document: no C0 or C1 control
/// characters (what `char::is_control` names), NUL included.
pub const PLAIN_TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// Longest free text (a promote `reason`) kept, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// A whole number within int64, sent as an integer or as a float without a
/// fraction.
struct WholeVisitor;

impl Visitor<'_> for WholeVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &"an int64"))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
        // 2^63 is exactly representable; every whole float below it fits.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
            Ok(v as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

struct Whole(i64);

impl<'de> serde::Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WholeVisitor).map(Whole)
    }
}

/// `project_ids`: a list of whole numbers (`null` is refused, not taken
/// for an absent field).
pub fn whole_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    let ids: Vec<Whole> = serde::Deserialize::deserialize(d)?;
    Ok(Some(ids.into_iter().map(|w| w.0).collect()))
}

/// A whole number within int32 (a model version).
pub fn whole_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let n = d.deserialize_any(WholeVisitor)?;
    i32::try_from(n).map_err(|_| D::Error::invalid_value(Unexpected::Signed(n), &"an int32"))
}

/// An optional field that, when present, holds a `T`, never `null`
/// (serde's `Option` would take `null` for absent).
pub fn present<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Free text from a client, refused (400 naming `field`) when it is longer
/// than [`MAX_TEXT_CHARS`] or holds a control character: it is stored,
/// logged and shown, and PostgreSQL refuses NUL outright.
pub fn plain_text(field: &str, text: &str) -> Result<(), ApiError> {
    if let Some((at, c)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(ApiError::validation(format!(
            "`{field}` must not contain control characters; found U+{:04X} at character {at}",
            c as u32
        )));
    }
    let n = text.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(ApiError::validation(format!(
            "`{field}` is {n} characters long; the limit is {MAX_TEXT_CHARS}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "whole_ids")]
        ids: Option<Vec<i64>>,
        #[serde(default, deserialize_with = "present")]
        flag: Option<bool>,
    }

    #[derive(Debug, Deserialize)]
    struct Version {
        #[serde(deserialize_with = "whole_i32")]
        v: i32,
    }

    fn body(s: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn whole_floats_count_as_integers_and_nothing_else_does() {
        let b = body(r#"{"ids": [1, 45549.0, 9223372036854775807]}"#).expect("valid");
        assert_eq!(b.ids, Some(vec![1, 45549, i64::MAX]));
        for bad in [
            r#"{"ids": [1.5]}"#,
            r#"{"ids": [9223372036854775808]}"#,
            r#"{"ids": [1e300]}"#,
            r#"{"ids": ["1"]}"#,
            r#"{"ids": null}"#,
        ] {
            assert!(body(bad).is_err(), "{bad}");
        }
        assert_eq!(body("{}").expect("empty").ids, None);
        let v: Version = serde_json::from_str(r#"{"v": 3.0}"#).expect("whole");
        assert_eq!(v.v, 3);
        assert!(serde_json::from_str::<Version>(r#"{"v": 2147483648}"#).is_err());
    }

    #[test]
    fn a_present_boolean_is_never_null() {
        assert_eq!(body(r#"{"flag": true}"#).expect("bool").flag, Some(true));
        assert_eq!(body("{}").expect("absent").flag, None);
        assert!(body(r#"{"flag": null}"#).is_err());
    }

    #[test]
    fn free_text_refuses_control_characters_and_length() {
        assert!(plain_text("reason", "accepted for now, ünïcode ok").is_ok());
        for bad in ["a\0b", "tab\there", "line\n", "\u{85}"] {
            let e = plain_text("reason", bad).expect_err(bad);
            assert!(e.message.contains("`reason`"), "{}", e.message);
        }
        assert!(plain_text("reason", &"x".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(plain_text("reason", &"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }
}
