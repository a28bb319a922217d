//! Integers as JSON means them. JSON has one number type: `-0` and `5.0` are the integers
//! 0 and 5 (JSON Schema's `integer` agrees), but serde reads `-0` and `5.0` as floats and
//! refuses them for an integer field. Request fields that are integers read through
//! [`opt`] instead, which takes any number with no fractional part.

use serde::Deserializer;
use serde::de::{self, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// Reads an optional integer field, accepting integral floats such as `-0` and `5.0`.
pub fn opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    struct Int<T>(PhantomData<T>);

    impl<T: TryFrom<i64>> Visitor<'_> for Int<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            T::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &"an integer in range"))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            let out_of_range =
                || E::invalid_value(de::Unexpected::Unsigned(v), &"an integer in range");
            let v = i64::try_from(v).map_err(|_| out_of_range())?;
            T::try_from(v).map(Some).map_err(|_| out_of_range())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // i64::MIN is -2^63, exactly a float; 2^63 is the first float above i64::MAX.
            let range = (i64::MIN as f64)..-(i64::MIN as f64);
            if v.fract() != 0.0 || !range.contains(&v) {
                return Err(E::invalid_type(de::Unexpected::Float(v), &self));
            }
            self.visit_i64(v as i64)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    d.deserialize_any(Int(PhantomData))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "super::opt")]
        n: Option<i32>,
        #[serde(default, deserialize_with = "super::opt")]
        u: Option<u32>,
    }

    fn read(s: &str) -> Result<T, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_numbers_are_integers() {
        assert_eq!(read(r#"{"n": -0}"#).unwrap().n, Some(0));
        assert_eq!(read(r#"{"n": 5.0}"#).unwrap().n, Some(5));
        assert_eq!(read(r#"{"n": -7}"#).unwrap().n, Some(-7));
        assert_eq!(read(r#"{"n": 1e2}"#).unwrap().n, Some(100));
        assert_eq!(read(r#"{"n": null}"#).unwrap().n, None);
        assert_eq!(read(r#"{}"#).unwrap().n, None);
        assert_eq!(read(r#"{"u": 4294967295}"#).unwrap().u, Some(u32::MAX));
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": "1"}"#,
            r#"{"n": true}"#,
            r#"{"n": 3000000000}"#,
            r#"{"u": -1}"#,
            r#"{"u": 4294967296}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": [1]}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
