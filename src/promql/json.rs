//! A query result in the shape of Prometheus's HTTP API (`{"resultType": …, "result": …}`), for
//! the API's answers and `tocsin query -o json`, so both print the same thing.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::{Value, format_float};
use crate::labels::Labels;

/// `[seconds, "value"]`, a point as Prometheus encodes it (the value as a string, so NaN and
/// infinities survive JSON).
pub fn point(t: i64, v: f64) -> Json {
    json!([t as f64 / 1000.0, format_float(v)])
}

/// The labels as a JSON object.
pub fn labels_map(l: &Labels) -> BTreeMap<&str, &str> {
    l.iter().collect()
}

/// A query result as Prometheus encodes it: `{"resultType": …, "result": …}`. An instant query's
/// scalars, strings and vector samples carry its evaluation time `t`.
pub fn value_json(v: &Value, t: Option<i64>) -> Json {
    let at = t.unwrap_or(0);
    match v {
        Value::Scalar(x) => json!({"resultType": "scalar", "result": point(at, *x)}),
        Value::String(s) => json!({"resultType": "string", "result": [at as f64 / 1000.0, s]}),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({
                "metric": labels_map(&s.metric),
                "value": point(t.unwrap_or(s.t), s.v),
            })).collect::<Vec<_>>(),
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({
                "metric": labels_map(&s.metric),
                "values": s.points.iter().map(|(t, v)| point(*t, *v)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    }
}
