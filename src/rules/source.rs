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
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

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

    /// [`Datasources::of`], shared: for the group task, which fetches the group's answers
    /// ahead of its blocking evaluation ([`Fetched`]).
    pub fn shared(&self, group: &super::Group) -> Option<Arc<dyn RemoteEngine>> {
        let d = group.datasource.as_ref()?;
        self.0.get(&d.name).cloned()
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
    /// The same query as a future, for a caller on the async runtime ([`Fetched::fetch`]);
    /// None when the engine answers only blocking (then every query goes through
    /// [`RemoteEngine::instant`]).
    fn instant_async<'a>(&'a self, _query: &'a str, _t: i64) -> Option<AnswerFuture<'a>> {
        None
    }
}

/// A remote query in flight.
pub type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, SourceError>> + Send + 'a>>;

/// How often [`Fetched::fetch`] looks at its cancellation token while a query is in flight.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// A group's conditions answered ahead of its evaluation: the group task sends each distinct
/// query on the async runtime, one after another as the evaluation would, then hands the
/// answers to the blocking evaluation step, which takes them from here instead of blocking a
/// thread on each request. A query or time not fetched (a template's `query`, a fetch stopped
/// by its token) goes to the engine's [`RemoteEngine::instant`].
///
/// Before, each rule's query ran on a blocking thread that parked on the runtime's answer: at
/// 10,000 remote rules, 42% of tocsin's CPU was the kernel's futex and task switches and the
/// blocking pool held 30–40 threads (`benches/vmalert.sh`).
pub struct Fetched {
    engine: Arc<dyn RemoteEngine>,
    t: i64,
    /// per query: the answer, and how many conditions still take it (the last takes it
    /// without a copy)
    answers: Mutex<HashMap<String, (usize, AnswerResult)>>,
}

type AnswerResult = Result<Answer, SourceError>;

impl Fetched {
    /// Sends `queries` at `t` to `engine` one after another, each distinct text once, and keeps
    /// the answers; stops sending once `cancel` is tripped (a query in flight is then dropped,
    /// checked every 50 ms). An engine without [`RemoteEngine::instant_async`] fetches nothing.
    pub async fn fetch(
        engine: Arc<dyn RemoteEngine>,
        queries: impl IntoIterator<Item = &str>,
        t: i64,
        cancel: &Cancel,
    ) -> Fetched {
        // each distinct text once, in the order the conditions first ask for it
        let mut order: Vec<&str> = Vec::new();
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for q in queries {
            let n = uses.entry(q).or_insert(0);
            if *n == 0 {
                order.push(q);
            }
            *n += 1;
        }
        let stopped = async {
            loop {
                if let Some(reason) = cancel.reason() {
                    return reason;
                }
                tokio::time::sleep(CANCEL_POLL).await;
            }
        };
        tokio::pin!(stopped);
        let mut answers = HashMap::with_capacity(uses.len());
        for query in order {
            let n = uses[query];
            let Some(request) = engine.instant_async(query, t) else {
                break;
            };
            let answer = tokio::select! {
                answer = request => answer,
                _ = &mut stopped => break,
            };
            answers.insert(query.to_string(), (n, answer));
        }
        Fetched {
            engine,
            t,
            answers: Mutex::new(answers),
        }
    }

    /// How many queries were answered (successfully or not).
    pub fn len(&self) -> usize {
        self.answers.lock().expect("fetched lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RemoteEngine for Fetched {
    fn name(&self) -> &str {
        self.engine.name()
    }

    fn query_offset_ms(&self) -> i64 {
        self.engine.query_offset_ms()
    }

    fn error_for_ms(&self) -> i64 {
        self.engine.error_for_ms()
    }

    fn instant(&self, query: &str, t: i64, cancel: Option<&Cancel>) -> Result<Answer, SourceError> {
        if t == self.t {
            let mut answers = self.answers.lock().expect("fetched lock");
            if let Some((left, answer)) = answers.get_mut(query) {
                if *left > 1 {
                    *left -= 1;
                    return answer.clone();
                }
                if let Some((_, answer)) = answers.remove(query) {
                    return answer;
                }
            }
        }
        self.engine.instant(query, t, cancel)
    }
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

/// A stand-in remote engine for the rule engine's tests (the HTTP client has its own, against
/// real engines in `tests/it/datasource.rs`): answers every query with one sample
/// `{query="<text>"} 1`, fails a query named `down` as unavailable, never answers a query
/// named `hang` asynchronously, and records which queries came asynchronously and which blocking.
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::labels::Labels;
    use crate::promql::Sample;

    #[derive(Default)]
    pub struct Recording {
        pub fetched: Mutex<Vec<(String, i64)>>,
        pub blocking: Mutex<Vec<(String, i64)>>,
        /// whether `instant_async` is offered
        pub blocking_only: bool,
    }

    impl Recording {
        fn answer(query: &str, t: i64) -> Result<Answer, SourceError> {
            if query == "down" {
                return Err(SourceError::Unavailable {
                    datasource: "engine".into(),
                    reason: "connection refused".into(),
                });
            }
            Ok(Answer {
                value: Value::Vector(vec![Sample {
                    metric: Labels::from_pairs([("query", query)]),
                    t,
                    v: 1.0,
                }]),
                warnings: Vec::new(),
            })
        }
    }

    impl RemoteEngine for Recording {
        fn name(&self) -> &str {
            "engine"
        }
        fn query_offset_ms(&self) -> i64 {
            0
        }
        fn error_for_ms(&self) -> i64 {
            0
        }
        fn instant(
            &self,
            query: &str,
            t: i64,
            _cancel: Option<&Cancel>,
        ) -> Result<Answer, SourceError> {
            self.blocking.lock().unwrap().push((query.to_string(), t));
            Self::answer(query, t)
        }
        fn instant_async<'a>(&'a self, query: &'a str, t: i64) -> Option<AnswerFuture<'a>> {
            if self.blocking_only {
                return None;
            }
            self.fetched.lock().unwrap().push((query.to_string(), t));
            Some(Box::pin(async move {
                if query == "hang" {
                    std::future::pending::<()>().await;
                }
                Self::answer(query, t)
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Recording;
    use super::*;
    use crate::promql::CancelReason;

    fn sent(calls: &Mutex<Vec<(String, i64)>>) -> Vec<(String, i64)> {
        calls.lock().unwrap().clone()
    }

    fn q(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(s, t)| (s.to_string(), *t)).collect()
    }

    #[tokio::test]
    async fn each_distinct_query_is_fetched_once_and_the_evaluation_takes_the_answers() {
        let engine = Arc::new(Recording::default());
        let fetched =
            Fetched::fetch(engine.clone(), ["a", "b", "a", "down"], 100, &Cancel::new()).await;
        assert_eq!(
            sent(&engine.fetched),
            q(&[("a", 100), ("b", 100), ("down", 100)])
        );
        assert_eq!(fetched.len(), 3);
        // both conditions on `a` get its answer, the unavailable one its error, and none blocks
        for query in ["a", "b", "a"] {
            let Value::Vector(v) = fetched.instant(query, 100, None).unwrap().value else {
                panic!("not a vector");
            };
            assert_eq!(v[0].metric.get("query"), Some(query));
        }
        assert!(
            fetched
                .instant("down", 100, None)
                .unwrap_err()
                .is_unavailable()
        );
        assert!(sent(&engine.blocking).is_empty());
        // what was not fetched (a third `a`, another time, a template's query) blocks
        fetched.instant("a", 100, None).unwrap();
        fetched.instant("b", 200, None).unwrap();
        fetched.instant("sum(up)", 100, None).unwrap();
        assert_eq!(
            sent(&engine.blocking),
            q(&[("a", 100), ("b", 200), ("sum(up)", 100)])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tripped_token_stops_the_fetch_and_what_is_left_goes_blocking() {
        let engine = Arc::new(Recording::default());
        let cancel = Cancel::new();
        let tripper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            tripper.cancel(CancelReason::ShuttingDown);
        });
        let fetched = Fetched::fetch(engine.clone(), ["a", "hang", "b"], 100, &cancel).await;
        // `hang` was in flight when the token tripped: dropped, and `b` never sent
        assert_eq!(sent(&engine.fetched), q(&[("a", 100), ("hang", 100)]));
        assert_eq!(fetched.len(), 1);
        fetched.instant("a", 100, None).unwrap();
        fetched.instant("b", 100, None).unwrap();
        assert_eq!(sent(&engine.blocking), q(&[("b", 100)]));
    }

    #[tokio::test]
    async fn an_engine_without_async_queries_is_asked_blocking() {
        let engine = Arc::new(Recording {
            blocking_only: true,
            ..Default::default()
        });
        let fetched = Fetched::fetch(engine.clone(), ["a"], 100, &Cancel::new()).await;
        assert!(fetched.is_empty());
        fetched.instant("a", 100, None).unwrap();
        assert_eq!(sent(&engine.blocking), q(&[("a", 100)]));
    }
}
