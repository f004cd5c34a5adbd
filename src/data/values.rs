//! Values a request sends for an adopted table's columns, checked against the column's type
//! before anything reaches the database, so a wrong value is a 422 that names the column (the
//! database's own refusal would not). Checked values are bound, never rendered into SQL.
//!
//! JSON ↔ PostgreSQL: integers and floats are JSON numbers; `numeric` is a decimal string (a
//! JSON number would pass through a float in most clients); booleans are booleans; uuid, date,
//! timestamps, enums and every other type are strings in the type's text form; json/jsonb are
//! any JSON; arrays are JSON arrays of those.

use serde_json::Value;

use super::schema::{Column, Scalar};

/// Why a value does not fit its column, as the 422's detail says it.
pub type Refusal = String;

/// Check one body value for `column`.
pub fn check(column: &Column, value: &Value) -> Result<(), Refusal> {
    let name = &column.name;
    if value.is_null() {
        return if column.not_null { Err(format!("{name} must not be null")) } else { Ok(()) };
    }
    if column.array {
        let Value::Array(items) = value else {
            return Err(format!("{name} must be an array of {}", describe(&column.scalar)));
        };
        for (i, item) in items.iter().enumerate() {
            if !item.is_null() {
                check_scalar(&column.scalar, item).map_err(|why| format!("{name}[{i}] {why}"))?;
            }
        }
        return Ok(());
    }
    check_scalar(&column.scalar, value).map_err(|why| format!("{name} {why}"))
}

/// Check a json/jsonb column's value as the client wrote it: null only where allowed, and no
/// NUL character (`\u0000`, which PostgreSQL refuses in jsonb), whatever the numbers' size.
pub fn check_raw_json(column: &Column, raw: &str) -> Result<(), Refusal> {
    let name = &column.name;
    if raw.trim() == "null" {
        return if column.not_null { Err(format!("{name} must not be null")) } else { Ok(()) };
    }
    if raw.to_ascii_lowercase().contains("\\u0000") {
        return Err(format!("{name} must not contain NUL characters (\\u0000)"));
    }
    Ok(())
}

/// Check text from a path or a query string (a key, a filter, a cursor) for `column`.
pub fn check_text(column: &Column, text: &str) -> Result<(), Refusal> {
    let name = &column.name;
    let value = match &column.scalar {
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => {
            let n: i64 = text.parse().map_err(|_| format!("{name} must be an integer"))?;
            Value::from(n)
        }
        Scalar::Float4 | Scalar::Float8 => {
            let n: f64 = text.parse().map_err(|_| format!("{name} must be a number"))?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| format!("{name} must be a finite number"))?
        }
        Scalar::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("{name} must be true or false")),
        },
        Scalar::Jsonb | Scalar::Json => serde_json::from_str(text).map_err(|_| format!("{name} must be JSON"))?,
        _ => Value::String(text.to_string()),
    };
    check_scalar(&column.scalar, &value).map_err(|why| format!("{name} {why}"))
}

fn check_scalar(scalar: &Scalar, value: &Value) -> Result<(), Refusal> {
    let wrong = || Err(format!("must be {}", describe(scalar)));
    match scalar {
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => {
            let Some(n) = value.as_i64() else { return wrong() };
            let (min, max) = match scalar {
                Scalar::Int2 => (i64::from(i16::MIN), i64::from(i16::MAX)),
                Scalar::Int4 => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            if n < min || n > max {
                return Err(format!("must be between {min} and {max}"));
            }
        }
        Scalar::Float4 | Scalar::Float8 => {
            if !value.is_number() {
                return wrong();
            }
        }
        Scalar::Numeric { integer_digits, scale } => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => return wrong(),
            };
            let (digits, fraction) = decimal_digits(&text).ok_or_else(|| format!("must be {}", describe(scalar)))?;
            if let Some(max) = integer_digits
                && digits > *max
            {
                return Err(format!("has {digits} digits before the decimal point; at most {max} fit"));
            }
            if let Some(max) = scale
                && fraction > *max
            {
                return Err(format!("has {fraction} digits after the decimal point; the column keeps {max}"));
            }
        }
        Scalar::Bool => {
            if !value.is_boolean() {
                return wrong();
            }
        }
        Scalar::Text { max } => {
            let Some(s) = value.as_str() else { return wrong() };
            no_nul(s)?;
            if let Some(max) = max
                && s.chars().count() > *max
            {
                return Err(format!("must be at most {max} characters"));
            }
        }
        Scalar::Uuid => {
            let Some(s) = value.as_str() else { return wrong() };
            if uuid::Uuid::try_parse(s).is_err() {
                return wrong();
            }
        }
        Scalar::Date => {
            let Some(s) = value.as_str() else { return wrong() };
            if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() {
                return wrong();
            }
        }
        Scalar::Timestamptz => {
            let Some(s) = value.as_str() else { return wrong() };
            if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                return wrong();
            }
        }
        Scalar::Timestamp => {
            let Some(s) = value.as_str() else { return wrong() };
            let plain = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];
            if !plain.iter().any(|f| chrono::NaiveDateTime::parse_from_str(s, f).is_ok()) {
                return wrong();
            }
        }
        Scalar::Jsonb | Scalar::Json => {
            // jsonb cannot hold a NUL character anywhere (PostgreSQL refuses `\u0000`).
            if has_nul(value) {
                return Err("must not contain NUL characters (\\u0000)".into());
            }
        }
        Scalar::Enum(labels) => {
            let Some(s) = value.as_str() else { return wrong() };
            if !labels.iter().any(|l| l == s) {
                return wrong();
            }
        }
        Scalar::Other => {
            let Some(s) = value.as_str() else { return wrong() };
            no_nul(s)?;
        }
    }
    Ok(())
}

/// What a value of this type looks like, for refusals and the OpenAPI document.
pub fn describe(scalar: &Scalar) -> String {
    match scalar {
        Scalar::Int2 => "an integer (smallint)".into(),
        Scalar::Int4 => "an integer".into(),
        Scalar::Int8 => "an integer (bigint)".into(),
        Scalar::Numeric { .. } => "a decimal string such as \"1250.00\"".into(),
        Scalar::Float4 | Scalar::Float8 => "a number".into(),
        Scalar::Bool => "true or false".into(),
        Scalar::Text { max: Some(n) } => format!("a string of at most {n} characters"),
        Scalar::Text { max: None } => "a string".into(),
        Scalar::Uuid => "a uuid string".into(),
        Scalar::Date => "a date string YYYY-MM-DD".into(),
        Scalar::Timestamptz => "an RFC 3339 timestamp with an offset, such as \"2026-01-31T09:30:00Z\"".into(),
        Scalar::Timestamp => "a timestamp string YYYY-MM-DDTHH:MM:SS without an offset".into(),
        Scalar::Jsonb | Scalar::Json => "any JSON".into(),
        Scalar::Enum(labels) => format!("one of {}", labels.join(", ")),
        Scalar::Other => "a string in the type's text form".into(),
    }
}

fn no_nul(s: &str) -> Result<(), Refusal> {
    if s.contains('\0') { Err("must not contain NUL characters".into()) } else { Ok(()) }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The significant digits before the point and the digits after it (trailing zeros do not
/// count: `1.50` fits a scale of 1) of a plain decimal (`-12.50`, `0.5`, `7`), or None when
/// it is not one (exponents, NaN and infinities are refused: they are rarely meant, and a
/// column of money should not take them).
fn decimal_digits(text: &str) -> Option<(u32, u32)> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) || unsigned.len() > 1000 {
        return None;
    }
    Some((
        u32::try_from(whole.trim_start_matches('0').len()).ok()?,
        u32::try_from(fraction.trim_end_matches('0').len()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column(scalar: Scalar, array: bool, not_null: bool) -> Column {
        Column {
            name: "c".into(),
            scalar,
            array,
            cast: String::new(),
            not_null,
            has_default: false,
            always_generated: false,
            sequence: false,
        }
    }

    #[test]
    fn each_type_takes_its_json_form_and_refuses_others_naming_the_column() {
        let int4 = column(Scalar::Int4, false, true);
        assert!(check(&int4, &json!(7)).is_ok());
        assert_eq!(check(&int4, &json!("7")).unwrap_err(), "c must be an integer");
        assert_eq!(check(&int4, &json!(3_000_000_000i64)).unwrap_err(), "c must be between -2147483648 and 2147483647");
        assert_eq!(check(&int4, &json!(null)).unwrap_err(), "c must not be null");
        let money = column(Scalar::Numeric { integer_digits: Some(3), scale: Some(3) }, false, false);
        assert!(check(&money, &json!("123.456")).is_ok());
        assert!(check(&money, &json!("1.45600")).is_ok(), "trailing zeros are no precision");
        assert!(check(&money, &json!("1.4567")).unwrap_err().contains("the column keeps 3"));
        assert!(check(&money, &json!(12)).is_ok());
        assert!(check(&money, &json!(1.5)).is_err(), "a float is refused");
        assert!(check(&money, &json!("1e3")).is_err());
        assert!(check(&money, &json!("NaN")).is_err());
        assert!(check(&money, &json!("1234")).unwrap_err().contains("at most 3"));
        assert!(check(&money, &json!(null)).is_ok());
        let short = column(Scalar::Text { max: Some(3) }, false, false);
        assert!(check(&short, &json!("abc")).is_ok());
        assert!(check(&short, &json!("abcd")).is_err());
        assert!(check(&short, &json!("a\u{0}")).is_err());
        let tags = column(Scalar::Text { max: None }, true, false);
        assert!(check(&tags, &json!(["a", null, "b"])).is_ok());
        assert_eq!(check(&tags, &json!(["a", 2])).unwrap_err(), "c[1] must be a string");
        assert!(check(&tags, &json!("a")).is_err());
        let day = column(Scalar::Date, false, false);
        assert!(check(&day, &json!("2026-02-28")).is_ok());
        assert!(check(&day, &json!("2026-02-30")).is_err());
        let at = column(Scalar::Timestamptz, false, false);
        assert!(check(&at, &json!("2026-02-28T10:00:00Z")).is_ok());
        assert!(check(&at, &json!("2026-02-28 10:00")).is_err());
        let doc = column(Scalar::Jsonb, false, false);
        assert!(check(&doc, &json!({"a": [1, {"b": true}]})).is_ok());
        assert!(check(&doc, &json!({"a": "x\u{0}"})).is_err());
        let mood = column(Scalar::Enum(vec!["ok".into(), "sad".into()]), false, false);
        assert!(check(&mood, &json!("sad")).is_ok());
        assert_eq!(check(&mood, &json!("glad")).unwrap_err(), "c must be one of ok, sad");
    }

    #[test]
    fn text_from_paths_and_queries_is_checked_the_same_way() {
        let int8 = column(Scalar::Int8, false, true);
        assert!(check_text(&int8, "42").is_ok());
        assert!(check_text(&int8, "4x").is_err());
        let flag = column(Scalar::Bool, false, true);
        assert!(check_text(&flag, "true").is_ok());
        assert!(check_text(&flag, "yes").is_err());
        let id = column(Scalar::Uuid, false, true);
        assert!(check_text(&id, "not-a-uuid").is_err());
    }
}
