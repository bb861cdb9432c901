//! Where a group's queries go: tocsin's own engine over its store (the default), or a remote
//! engine (`datasource:` in the group, `crate::datasource`). The evaluation step takes the
//! source as a parameter ([`super::group::GroupContext::remote`]): the daemon, `tocsin test` and
//! `tocsin replay` drive remote groups through the same step, never through code of their own.
//!
//! A remote failure is one of two kinds: the engine is unavailable (unreachable, a timeout, a
//! 5xx answer, an unreadable answer), which the group tolerates for the datasource's
//! `datasource_error_for` before its alerts resolve; or the engine answered that the query is
//! wrong (a 4xx `bad_data`, an execution error), an ordinary rule error.

use std::collections::HashMap;
use std::sync::Arc;

use crate::promql::{Cancel, Value};

/// The configured datasources by name, for the drivers to hand each group its own.
#[derive(Clone, Default)]
pub struct Datasources(pub HashMap<String, Arc<dyn RemoteEngine>>);

impl std::fmt::Debug for Datasources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Datasources {
    /// The engine of `group`'s `datasource:`; None for a group on the embedded store (and for
    /// a name not configured, which [`super::RuleSet::check_datasources`] refuses at load).
    pub fn of(&self, group: &super::Group) -> Option<&dyn RemoteEngine> {
        let d = group.datasource.as_ref()?;
        self.0.get(&d.name).map(|e| e.as_ref())
    }

    /// The configured names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.keys().cloned().collect();
        v.sort();
        v
    }
}

/// A remote query engine answering instant queries at a time.
pub trait RemoteEngine: Send + Sync {
    /// the datasource's name, for errors and metrics
    fn name(&self) -> &str;
    /// queries are evaluated this long before the slot unless the group sets `query_offset`
    fn query_offset_ms(&self) -> i64;
    /// how long alerts keep their state while the engine is unavailable (ms)
    fn error_for_ms(&self) -> i64;
    /// Evaluates `query` (PromQL, sent unchanged) at `t` (ms). Blocking; stops early once
    /// `cancel` is tripped (checked between attempts and bounded by the request timeout).
    fn instant(&self, query: &str, t: i64, cancel: Option<&Cancel>) -> Result<Answer, SourceError>;
}

/// A remote answer: a vector or a scalar, and what the engine warned about.
#[derive(Debug, Clone)]
pub struct Answer {
    pub value: Value,
    /// the answer's `warnings` (Prometheus), and `partial response` when the engine says some
    /// of its storage nodes did not answer (VictoriaMetrics's `isPartial`)
    pub warnings: Vec<String>,
}

/// Occurs when a remote query fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The engine could not answer: connection refused, a timeout, a 5xx or 429 status, an
    /// answer too large or not in the API's shape. Counts towards `datasource_error_for`.
    #[error("datasource {datasource} unavailable: {reason}")]
    Unavailable { datasource: String, reason: String },
    /// The engine answered that the query failed (a 4xx `bad_data`, a 422 execution error, a
    /// result of the wrong type): the rule's own error.
    #[error("datasource {datasource}: {reason}")]
    Query { datasource: String, reason: String },
}

impl SourceError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SourceError::Unavailable { .. })
    }
}
