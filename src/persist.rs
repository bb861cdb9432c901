//! The persisted JSON rows' shared vocabulary: which kind of row failed to read and why
//! ([`PersistError`]), the version check every row goes through ([`read_row`]), and the serde
//! forms of values JSON has no form for (NaN and ±Inf, `u64` fingerprints, label sets).
//!
//! Every persisted JSON form (alert state, outbox notification, notification-log entry, silence)
//! is a `…Row` struct beside its domain type, with a version field `v` ([`ROW_VERSION`]). Rows
//! written before versions existed have no `v`: they are read as version 1, whose layout is
//! theirs (version 1 only added the field). A row with a `v` this build does not know is refused
//! with its version named, never guessed at.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serializer};

/// The version this build writes (and the highest it reads).
pub const ROW_VERSION: u32 = 1;

/// Which persisted form a row is, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// a rule's alert state (`alerts` table)
    AlertState,
    /// a queued notification (`outbox` and `sent` payloads)
    Notification,
    /// what the last notification of a group said (`nflog` table, outbox `log_entry`)
    LogEntry,
    /// a silence (`silences` table)
    Silence,
}

impl fmt::Display for RowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RowKind::AlertState => "alert state",
            RowKind::Notification => "notification",
            RowKind::LogEntry => "notification log entry",
            RowKind::Silence => "silence",
        })
    }
}

/// Occurs when a persisted row cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The text is not JSON of the row's layout: damaged, or a field missing or of the wrong
    /// type (serde's message names the field and the line and column).
    #[error("{kind}: {source}")]
    Malformed {
        kind: RowKind,
        #[source]
        source: serde_json::Error,
    },
    /// The row was written by a newer tocsin (a version this build does not know).
    #[error("{kind}: unsupported row version {version} (this build reads up to {ROW_VERSION})")]
    UnsupportedVersion { kind: RowKind, version: u32 },
}

/// A persisted row: its kind and its version field.
pub trait Row: DeserializeOwned {
    const KIND: RowKind;
    /// the row's `v`; None for rows written before versions existed (read as version 1)
    fn version(&self) -> Option<u32>;
}

/// Reads a row of kind `R`, refusing versions this build does not know.
pub fn read_row<R: Row>(text: &str) -> Result<R, PersistError> {
    let unsupported = |version| PersistError::UnsupportedVersion {
        kind: R::KIND,
        version,
    };
    match serde_json::from_str::<R>(text) {
        Ok(row) => match row.version() {
            None => Ok(row),
            Some(v) if (1..=ROW_VERSION).contains(&v) => Ok(row),
            Some(v) => Err(unsupported(v)),
        },
        Err(source) => {
            // a newer layout fails on its fields first: name its version instead
            #[derive(Deserialize)]
            struct Version {
                v: Option<u32>,
            }
            match serde_json::from_str::<Version>(text) {
                Ok(Version { v: Some(v) }) if v > ROW_VERSION => Err(unsupported(v)),
                _ => Err(PersistError::Malformed {
                    kind: R::KIND,
                    source,
                }),
            }
        }
    }
}

/// The row's `v` as written: always [`ROW_VERSION`].
pub fn current_version() -> Option<u32> {
    Some(ROW_VERSION)
}

/// A float as a string (`promql::format_float`: `NaN`, `+Inf`, `-Inf` are not JSON numbers).
pub mod float_text {
    use super::*;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::promql::format_float(*v))
    }

    /// A string that is no number reads as NaN, as before rows were typed (nothing this build
    /// writes is one).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        Ok(crate::promql::notation::parse_number(&text).unwrap_or(f64::NAN))
    }
}

/// A fingerprint as 16 hex digits (the form receivers and the API see).
pub mod hex_fingerprint {
    use super::*;

    pub fn serialize<S: Serializer>(fp: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::labels::format_fingerprint(*fp))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        parse(&String::deserialize(d)?)
    }

    pub(super) fn parse<E: serde::de::Error>(text: &str) -> Result<u64, E> {
        crate::labels::parse_fingerprint(text)
            .ok_or_else(|| E::custom(format!("invalid fingerprint {text:?}: expected hex digits")))
    }
}

/// A set of fingerprints as a list of 16-hex-digit strings.
pub mod hex_fingerprints {
    use super::*;

    pub fn serialize<S: Serializer>(fps: &BTreeSet<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(fps.iter().map(|fp| crate::labels::format_fingerprint(*fp)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<u64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| hex_fingerprint::parse(text))
            .collect()
    }
}

/// A label set as a JSON object, `{"name": "value"}` (outbox payloads; empty values dropped on
/// reading, as [`crate::labels::Labels`] holds none).
pub mod label_map {
    use super::*;
    use crate::labels::Labels;

    pub fn serialize<S: Serializer>(labels: &Labels, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&crate::labels::AsMap(labels), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        Ok(Labels::from_pairs(std::collections::BTreeMap::<
            String,
            String,
        >::deserialize(d)?))
    }
}

/// A label set as a list of `[name, value]` pairs (alert state rows).
pub mod label_pairs {
    use super::*;
    use crate::labels::Labels;

    pub fn serialize<S: Serializer>(labels: &Labels, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(labels.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        Ok(Labels::from_pairs(Vec::<(String, String)>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Debug, Serialize, Deserialize)]
    struct Probe {
        #[serde(default)]
        v: Option<u32>,
        #[serde(with = "float_text")]
        x: f64,
        #[serde(with = "hex_fingerprint")]
        fp: u64,
    }

    impl Row for Probe {
        const KIND: RowKind = RowKind::AlertState;
        fn version(&self) -> Option<u32> {
            self.v
        }
    }

    #[test]
    fn rows_without_a_version_read_as_version_1_and_newer_ones_are_refused() {
        let p: Probe = read_row(r#"{"x":"1.5","fp":"00000000000000ff"}"#).unwrap();
        assert_eq!((p.v, p.x, p.fp), (None, 1.5, 255));
        let p: Probe = read_row(r#"{"v":1,"x":"+Inf","fp":"ff"}"#).unwrap();
        assert_eq!((p.x, p.fp), (f64::INFINITY, 255));
        let e = read_row::<Probe>(r#"{"v":2,"x":"1","fp":"ff"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "alert state: unsupported row version 2 (this build reads up to 1)"
        );
        // a newer layout whose fields no longer fit: still its version that is named
        let e = read_row::<Probe>(r#"{"v":3,"y":[]}"#).unwrap_err();
        assert!(matches!(
            e,
            PersistError::UnsupportedVersion { version: 3, .. }
        ));
    }

    #[test]
    fn damaged_rows_name_the_field_and_position() {
        let e = read_row::<Probe>(r#"{"x":"1"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "alert state: missing field `fp` at line 1 column 9"
        );
        let e = read_row::<Probe>(r#"{"x":"1","fp":"zz"}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("alert state: invalid fingerprint \"zz\": expected hex digits"),
            "{e}"
        );
    }

    #[test]
    fn nan_and_infinities_round_trip_as_strings() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5, 1e300] {
            let text = serde_json::to_string(&Probe {
                v: current_version(),
                x,
                fp: u64::MAX,
            })
            .unwrap();
            let back: Probe = read_row(&text).unwrap();
            assert!(
                back.x.total_cmp(&x).is_eq() || (x.is_nan() && back.x.is_nan()),
                "{text}"
            );
            assert_eq!(back.fp, u64::MAX);
        }
    }
}
