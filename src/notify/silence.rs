//! Silences: label matchers with a start and an end, an author and a comment, stored in SQLite.
//! A firing alert matched by an active silence is not notified (the silence stage runs before
//! routing, so a silence created while a group waits suppresses it).

use serde::{Deserialize, Serialize};

use crate::labels::{Labels, MatchOp, Matcher, MatcherError, MatcherParseError};

/// One matcher as the API and CLI write it: `name="value"`, `name!=value`, `name=~"re"`, `name!~re`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatcherSpec {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex", default)]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl MatcherSpec {
    /// Parses one matcher string (`name="value"`, `name!=value`, `name=~"re"`, `name!~re`) with
    /// the one matcher grammar, [`crate::labels::parse_matcher`].
    pub fn parse(s: &str) -> Result<MatcherSpec, MatcherParseError> {
        crate::labels::parse_matcher(s).map(|m| MatcherSpec::from(&m))
    }

    pub fn compile(&self) -> Result<Matcher, MatcherError> {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (false, true) => MatchOp::NotRegex,
        };
        Matcher::new(op, &self.name, &self.value)
    }
}

impl From<&Matcher> for MatcherSpec {
    fn from(m: &Matcher) -> Self {
        MatcherSpec {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(m.op, MatchOp::Equal | MatchOp::Regex),
        }
    }
}

/// A silence, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<MatcherSpec>,
    /// ms since the epoch
    #[serde(rename = "startsAt")]
    pub starts_at: i64,
    #[serde(rename = "endsAt")]
    pub ends_at: i64,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    /// Checks what a new silence must satisfy: matchers that compile, at least one that does not
    /// match the empty string (a silence of everything is a mistake), an end after the start.
    pub fn validate(&self) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        let mut all_empty = true;
        for m in &self.matchers {
            let c = m.compile().map_err(|e| e.to_string())?;
            if !c.matches_empty() {
                all_empty = false;
            }
        }
        if all_empty {
            return Err("at least one matcher must not match the empty string".into());
        }
        if self.ends_at <= self.starts_at {
            return Err("endsAt must be after startsAt".into());
        }
        if self.created_by.trim().is_empty() {
            return Err("createdBy must not be empty".into());
        }
        Ok(())
    }

    /// `active`, `pending` (starts later) or `expired` at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }

    /// Whether the silence is active at `now` and matches `labels`. Compiles the matchers on
    /// every call: what checks many alerts keeps a [`CompiledSilence`].
    pub fn silences(&self, labels: &Labels, now: i64) -> bool {
        CompiledSilence::new(self.clone()).silences(labels, now)
    }

    /// The persisted form (JSON, [`SilenceRow`]), read back by [`Silence::from_json`].
    pub fn to_json(&self) -> String {
        let row = SilenceRow {
            v: crate::persist::current_version(),
            id: self.id.clone(),
            matchers: self.matchers.clone(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
        };
        serde_json::to_string(&row).expect("silence rows serialize")
    }

    /// Reads a persisted silence (any version this build knows, and rows without one).
    pub fn from_json(text: &str) -> Result<Silence, crate::persist::PersistError> {
        let r: SilenceRow = crate::persist::read_row(text)?;
        Ok(Silence {
            id: r.id,
            matchers: r.matchers,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            created_by: r.created_by,
            comment: r.comment,
        })
    }
}

/// The persisted form of a [`Silence`] (`silences` table), version 1: the API's shape plus `v`.
/// Rows written before versions existed have the same layout without `v`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SilenceRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    pub id: String,
    pub matchers: Vec<MatcherSpec>,
    #[serde(rename = "startsAt")]
    pub starts_at: i64,
    #[serde(rename = "endsAt")]
    pub ends_at: i64,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub comment: String,
}

impl crate::persist::Row for SilenceRow {
    const KIND: crate::persist::RowKind = crate::persist::RowKind::Silence;
    fn version(&self) -> Option<u32> {
        self.v
    }
}

/// Reads stored silences, leaving out (and logging why) any that cannot be read.
pub fn read_stored(rows: &[String]) -> Vec<Silence> {
    rows.iter()
        .filter_map(|text| match Silence::from_json(text) {
            Ok(s) => Some(s),
            Err(e) => {
                // the id is inside the row: the error's position is what locates it
                tracing::warn!(error = %e, "unreadable stored silence skipped");
                None
            }
        })
        .collect()
}

/// A silence with its matchers compiled once, so checking alerts against it compiles nothing.
#[derive(Debug, Clone)]
pub struct CompiledSilence {
    pub silence: Silence,
    /// None when a matcher does not compile (a silence that then matches nothing)
    matchers: Option<Vec<Matcher>>,
}

impl CompiledSilence {
    pub fn new(silence: Silence) -> CompiledSilence {
        let matchers = silence.matchers.iter().map(|m| m.compile().ok()).collect();
        CompiledSilence { silence, matchers }
    }

    /// Whether the silence is active at `now` and matches `labels`.
    pub fn silences(&self, labels: &Labels, now: i64) -> bool {
        self.silence.state(now) == "active"
            && self
                .matchers
                .as_ref()
                .is_some_and(|ms| ms.iter().all(|m| m.matches_labels(labels)))
    }
}

/// Expired silences are kept this long (as Alertmanager's default retention), then forgotten.
pub const EXPIRED_RETENTION_MS: i64 = 5 * 24 * 3_600_000;

/// The silences in force, kept in memory and written through to the store.
pub struct Silences {
    store: std::sync::Arc<crate::store::Store>,
    list: std::sync::RwLock<Vec<CompiledSilence>>,
}

impl Silences {
    /// Loads the stored silences (blocking).
    pub fn load(
        store: std::sync::Arc<crate::store::Store>,
        now: i64,
    ) -> Result<Self, crate::store::StoreError> {
        let list = read_stored(&store.silences(now - EXPIRED_RETENTION_MS)?)
            .into_iter()
            .map(CompiledSilence::new)
            .collect();
        Ok(Silences {
            store,
            list: std::sync::RwLock::new(list),
        })
    }

    /// Creates a silence (a new id when `id` is empty) or replaces one; returns its id
    /// (blocking: writes the store).
    pub fn put(&self, mut s: Silence, now: i64) -> Result<String, String> {
        s.validate()?;
        // an id given by the client updates that silence; it never creates one (Alertmanager
        // answers "silence not found"): ids are tocsin's, so a client cannot pick or guess one
        if !s.id.is_empty() && !self.exists(&s.id) {
            return Err(format!(
                "silence {:?} not found: leave the id out to create a silence",
                s.id
            ));
        }
        if s.id.is_empty() {
            s.id = format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(
                    format!(
                        "{}/{now}/{}",
                        serde_json::to_string(&s).expect("silences serialize"),
                        self.list.read().expect("silences lock").len()
                    )
                    .as_bytes()
                )
            );
        }
        self.store
            .put_silence(&s.id, &s.to_json(), s.ends_at)
            .map_err(|e| e.to_string())?;
        let mut list = self.list.write().expect("silences lock");
        list.retain(|x| x.silence.id != s.id);
        list.push(CompiledSilence::new(s.clone()));
        Ok(s.id)
    }

    /// Creates or updates a silence as Alertmanager's API v2 does: without an id, a new one;
    /// with the id of a stored silence, that silence is updated in place when Alertmanager
    /// would (same matchers, not expired; an active one keeps its start), else the old one is
    /// expired (if it still runs) and a new one created, so an imported or edited silence
    /// gets a new id; an unknown id is refused. Returns the id in force (blocking).
    pub fn set(&self, mut s: Silence, now: i64) -> Result<String, String> {
        if s.id.is_empty() {
            return self.put(s, now);
        }
        let Some(prev) = self.all().into_iter().find(|p| p.id == s.id) else {
            return Err(format!("silence {:?} not found", s.id));
        };
        let updatable = match prev.state(now) {
            "expired" => false,
            "active" => prev.matchers == s.matchers && s.ends_at >= now,
            _ => prev.matchers == s.matchers,
        };
        if updatable {
            if prev.state(now) == "active" {
                s.starts_at = prev.starts_at;
            }
            return self.put(s, now);
        }
        s.validate()?;
        if prev.state(now) != "expired" {
            self.expire(&prev.id, now)?;
        }
        s.id = String::new();
        self.put(s, now)
    }

    /// Ends a silence now; false when there is no such silence.
    pub fn expire(&self, id: &str, now: i64) -> Result<bool, String> {
        let Some(mut s) = self.all().into_iter().find(|s| s.id == id) else {
            return Ok(false);
        };
        if s.ends_at > now {
            s.ends_at = now.max(s.starts_at + 1);
            if s.starts_at > now {
                s.starts_at = now - 1;
                s.ends_at = now;
            }
            self.store
                .put_silence(&s.id, &s.to_json(), s.ends_at)
                .map_err(|e| e.to_string())?;
            let mut list = self.list.write().expect("silences lock");
            list.retain(|x| x.silence.id != s.id);
            list.push(CompiledSilence::new(s));
        }
        Ok(true)
    }

    /// Whether a silence with this id is stored (active, pending or expired), without copying
    /// the list.
    fn exists(&self, id: &str) -> bool {
        self.list
            .read()
            .expect("silences lock")
            .iter()
            .any(|c| c.silence.id == id)
    }

    pub fn all(&self) -> Vec<Silence> {
        self.list
            .read()
            .expect("silences lock")
            .iter()
            .map(|c| c.silence.clone())
            .collect()
    }

    /// The ids of the active silences that match `labels` at `now` (Alertmanager's
    /// `silencedBy`), in the order they were created.
    pub fn silenced_by(&self, labels: &Labels, now: i64) -> Vec<String> {
        self.list
            .read()
            .expect("silences lock")
            .iter()
            .filter(|s| s.silences(labels, now))
            .map(|s| s.silence.id.clone())
            .collect()
    }

    /// Whether an active silence matches `labels` at `now`.
    pub fn silenced(&self, labels: &Labels, now: i64) -> bool {
        self.list
            .read()
            .expect("silences lock")
            .iter()
            .any(|s| s.silences(labels, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn matchers_parse_and_silence_only_while_active() {
        let s = Silence {
            id: "1".into(),
            matchers: vec![
                MatcherSpec::parse(r#"alertname="Down""#).unwrap(),
                MatcherSpec::parse("instance=~a.*").unwrap(),
            ],
            starts_at: 100,
            ends_at: 200,
            created_by: "me".into(),
            comment: "maintenance".into(),
        };
        s.validate().unwrap();
        let hit = labels(&[("alertname", "Down"), ("instance", "abc")]);
        assert!(!s.silences(&hit, 99));
        assert!(s.silences(&hit, 150));
        assert!(!s.silences(&hit, 200));
        assert!(
            !s.silences(&labels(&[("alertname", "Down"), ("instance", "xa")]), 150),
            "anchored"
        );
        assert_eq!(Silence::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn bad_silences_are_refused_with_a_reason() {
        assert!(MatcherSpec::parse("noop").is_err());
        assert!(MatcherSpec::parse(r#"a=~"(""#).is_err());
        let mut s = Silence {
            id: String::new(),
            matchers: vec![MatcherSpec::parse(r#"a=~".*""#).unwrap()],
            starts_at: 0,
            ends_at: 10,
            created_by: "me".into(),
            comment: String::new(),
        };
        assert!(s.validate().unwrap_err().contains("empty string"));
        s.matchers = vec![MatcherSpec::parse("a=b").unwrap()];
        s.ends_at = 0;
        assert!(s.validate().unwrap_err().contains("endsAt"));
    }

    #[test]
    fn silence_written_before_versions_reads_back() {
        // as `serde_json::to_string(&Silence)` wrote it before typed rows (no `v`)
        let old = r#"{"id":"5eed","matchers":[{"name":"alertname","value":"Down","isRegex":false,"isEqual":true},{"name":"instance","value":"a.*","isRegex":true,"isEqual":false}],"startsAt":100,"endsAt":200,"createdBy":"me","comment":"maintenance"}"#;
        let s = Silence::from_json(old).unwrap();
        assert_eq!((s.id.as_str(), s.starts_at, s.ends_at), ("5eed", 100, 200));
        assert_eq!(s.matchers[1].compile().unwrap().op, MatchOp::NotRegex);
        assert!(s.to_json().starts_with(r#"{"v":1,"id":"5eed","#));
        assert_eq!(Silence::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn a_damaged_silence_names_the_field_and_is_skipped_when_loading() {
        let damaged =
            r#"{"id":"1","matchers":[],"startsAt":"soon","endsAt":2,"createdBy":"","comment":""}"#;
        let e = Silence::from_json(damaged).unwrap_err().to_string();
        assert!(
            e.starts_with("silence: invalid type: string \"soon\""),
            "{e}"
        );
        assert!(e.contains("line 1 column"), "{e}");
        let good = Silence {
            id: "2".into(),
            matchers: vec![MatcherSpec::parse("a=b").unwrap()],
            starts_at: 0,
            ends_at: 1,
            created_by: "me".into(),
            comment: String::new(),
        };
        let read = read_stored(&[damaged.to_string(), good.to_json()]);
        assert_eq!(read, vec![good]);
    }
}
