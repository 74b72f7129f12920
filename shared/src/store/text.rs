//! Text made storable. PostgreSQL refuses a NUL character in a TEXT column
//! (`invalid byte sequence for encoding "UTF8": 0x00`) and `\u0000` in a
//! JSONB one, and SQLite keeps it only to trip up whatever reads it later.
//! User input with control characters is refused at the API; what reaches
//! the store from elsewhere (error messages of the backend database or a
//! library, texts read from the backend) has each NUL replaced by U+FFFD
//! here, so a stray byte never turns a write into an error.

use std::borrow::Cow;

use serde_json::Value;

const REPLACEMENT: &str = "\u{FFFD}";

/// `s` without NUL characters (borrowed when it has none, the usual case).
pub(crate) fn storable(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', REPLACEMENT))
    } else {
        Cow::Borrowed(s)
    }
}

/// [`storable`] of an optional text, as a bind value.
pub(crate) fn storable_opt(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(storable)
}

/// `v` with every string and object key made [`storable`] (borrowed when
/// none has a NUL).
pub(crate) fn storable_json(v: &Value) -> Cow<'_, Value> {
    if has_nul(v) {
        Cow::Owned(clean(v.clone()))
    } else {
        Cow::Borrowed(v)
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn clean(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(storable(&s).into_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(clean).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (storable(&k).into_owned(), clean(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_characters_are_replaced_and_clean_text_is_borrowed() {
        assert!(matches!(storable("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(storable("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        let clean_doc = json!({"a": [1, "x"], "b": null});
        assert!(matches!(storable_json(&clean_doc), Cow::Borrowed(_)));
        let dirty = json!({"k\0": ["ok", {"deep": "x\0y"}], "n": 1});
        assert_eq!(
            storable_json(&dirty).into_owned(),
            json!({"k\u{FFFD}": ["ok", {"deep": "x\u{FFFD}y"}], "n": 1})
        );
    }
}
