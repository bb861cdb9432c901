//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, `count_values`, …) with `by` and
//! `without`, computed as Prometheus computes them (Kahan sums, Welford variance, the same NaN
//! handling and output order).

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use promql_parser::parser::Expr;

use super::eval::{Compat, Ctx};
use super::functions;
use super::{QueryError, Sample, Value, format_float};
use crate::hash::BuildOneShot;
use crate::labels::{Labels, METRIC_NAME};

pub(super) fn eval(ctx: &Ctx<'_>, a: &AggregateExpr, t: i64) -> Result<Value, QueryError> {
    let op = a.op.to_string().to_lowercase();
    let param = match &a.param {
        Some(p) => Some(ctx.eval(p, t)?),
        None => None,
    };
    if SIMPLE.contains(&op.as_str())
        && let Some(out) = fused(ctx, &op, &a.expr, a.modifier.as_ref(), t)?
    {
        return Ok(Value::Vector(out));
    }
    let input = ctx.eval_vector(&a.expr, t)?;
    aggregate(&op, param, input, a.modifier.as_ref(), t, ctx.opts.compat)
}

/// Aggregations computed from values alone.
const SIMPLE: &[&str] = &[
    "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar",
];

/// The common rule shapes `sum by (x) (rate(m[5m]))` and `max by (x) (m)`, aggregated straight
/// from the store's series without building the input vector (no label set copied per series:
/// measured 190 → ~100 ms for the all-series load rule at 100k series). None when `e` is of
/// another shape.
fn fused(
    ctx: &Ctx<'_>,
    op: &str,
    e: &Expr,
    grouping: Option<&LabelModifier>,
    t: i64,
) -> Result<Option<Vec<Sample>>, QueryError> {
    let mut index: HashMap<String, usize, BuildOneShot> = HashMap::default();
    let mut groups: Vec<(Labels, Vec<f64>)> = Vec::new();
    let mut key = String::new();
    let mut add = |metric: &Labels, v: f64, name_dropped: bool| {
        group_key(metric, grouping, name_dropped, &mut key);
        match index.get(key.as_str()) {
            Some(&i) => groups[i].1.push(v),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((group_labels_of(metric, grouping, name_dropped), vec![v]));
            }
        }
    };
    let streamed = match e {
        Expr::VectorSelector(vs) => {
            for s in ctx.select_vector_shared(vs, t)? {
                add(&s.0, s.2, false);
            }
            true
        }
        other => functions::stream_range_call(ctx, other, t, &mut |m, v| add(m, v, true))?,
    };
    if !streamed {
        return Ok(None);
    }
    Ok(Some(
        groups
            .into_iter()
            .map(|(metric, vals)| Sample {
                metric,
                t,
                v: simple(op, &vals, ctx.opts.compat),
            })
            .collect(),
    ))
}

/// Applies an aggregation (`sum`, `topk`, …, lowercase) to an evaluated vector; `param` is the
/// scalar or string parameter of `topk`, `quantile`, `count_values`.
pub fn aggregate(
    op: &str,
    param: Option<Value>,
    input: Vec<Sample>,
    grouping: Option<&LabelModifier>,
    t: i64,
    compat: Compat,
) -> Result<Value, QueryError> {
    let op = op.to_string();
    let num_param = |name: &str| -> Result<f64, QueryError> {
        match &param {
            Some(Value::Scalar(v)) => Ok(*v),
            _ => Err(QueryError::Eval(format!(
                "{name} parameter must be a scalar"
            ))),
        }
    };
    let out = match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let k = num_param(&op)?;
            if k.is_nan() {
                return Err(QueryError::Eval("Parameter value is NaN".into()));
            }
            let mut out = top_k(&op, k, input, grouping)?;
            for s in &mut out {
                s.t = t;
            }
            out
        }
        "quantile" => {
            let q = num_param("quantile")?;
            let mut groups = group(input, grouping);
            groups
                .iter_mut()
                .map(|g| Sample {
                    metric: std::mem::take(&mut g.labels),
                    t,
                    v: quantile(q, g.samples.iter().map(|s| s.v).collect()),
                })
                .collect()
        }
        "count_values" => {
            let label = match &param {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(QueryError::Eval(
                        "count_values parameter must be a string".into(),
                    ));
                }
            };
            if !valid_label_name(&label) {
                return Err(QueryError::Eval(format!("invalid label name {label:?}")));
            }
            count_values(&label, input, grouping, t)
        }
        "sum" | "avg" | "count" | "min" | "max" | "group" | "stddev" | "stdvar" => {
            let groups = group(input, grouping);
            groups
                .into_iter()
                .map(|g| {
                    let vals: Vec<f64> = g.samples.iter().map(|s| s.v).collect();
                    Sample {
                        metric: g.labels,
                        t,
                        v: simple(&op, &vals, compat),
                    }
                })
                .collect()
        }
        "limit_ratio" => {
            return Err(QueryError::Eval(
                "limit_ratio is an experimental aggregation and not supported".into(),
            ));
        }
        other => return Err(QueryError::Eval(format!("unsupported aggregation {other}"))),
    };
    Ok(Value::Vector(out))
}

/// A label name PromQL may create (`count_values`, `label_replace`): any non-empty UTF-8, as in
/// Prometheus 3. Not `labels::valid_label_name`, the classic check for names the configuration and
/// rule files define.
pub(super) fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && std::str::from_utf8(name.as_bytes()).is_ok()
}

/// One output group: its labels and the input samples in it, in input order.
struct Group {
    labels: Labels,
    samples: Vec<Sample>,
}

/// [`group_labels`] of a series whose name counts as dropped when `name_dropped`.
fn group_labels_of(l: &Labels, grouping: Option<&LabelModifier>, name_dropped: bool) -> Labels {
    let g = group_labels(l, grouping);
    if name_dropped { g.without_name() } else { g }
}

/// The label set a sample's group is keyed by.
pub(super) fn group_labels(l: &Labels, grouping: Option<&LabelModifier>) -> Labels {
    match grouping {
        None => Labels::default(),
        Some(LabelModifier::Include(by)) => l.filter(|k| by.labels.iter().any(|n| n == k)),
        Some(LabelModifier::Exclude(without)) => {
            l.filter(|k| k != METRIC_NAME && !without.labels.iter().any(|n| n == k))
        }
    }
}

/// Groups samples in order of each group's first sample (Prometheus's output order). The group
/// key is built in a reused buffer, so only a group's first sample allocates.
fn group(input: Vec<Sample>, grouping: Option<&LabelModifier>) -> Vec<Group> {
    let mut index: HashMap<String, usize, BuildOneShot> = HashMap::default();
    let mut groups: Vec<Group> = Vec::new();
    let mut key = String::new();
    for s in input {
        group_key(&s.metric, grouping, false, &mut key);
        match index.get(key.as_str()) {
            Some(&i) => groups[i].samples.push(s),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    labels: group_labels(&s.metric, grouping),
                    samples: vec![s],
                });
            }
        }
    }
    groups
}

/// Writes the grouping labels of `l` into `key` (cleared first), unambiguously.
fn group_key(l: &Labels, grouping: Option<&LabelModifier>, name_dropped: bool, key: &mut String) {
    key.clear();
    let keep = |k: &str| match grouping {
        None => false,
        Some(LabelModifier::Include(_)) if name_dropped && k == METRIC_NAME => false,
        Some(LabelModifier::Include(by)) => by.labels.iter().any(|n| n == k),
        Some(LabelModifier::Exclude(without)) => {
            k != METRIC_NAME && !without.labels.iter().any(|n| n == k)
        }
    };
    for (k, v) in l.iter() {
        if keep(k) {
            key.push_str(k);
            key.push('\u{ff}');
            key.push_str(v);
            key.push('\u{fe}');
        }
    }
}

/// Kahan-Babuška-Neumaier summation step, as Prometheus's `kahansum.Inc`.
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Sum with compensation; `+Inf` and `-Inf` together give NaN as plain addition does.
pub(super) fn kahan_sum(vals: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &v in vals {
        (sum, c) = kahan_inc(v, sum, c);
    }
    sum + c
}

/// `avg` as Prometheus's aggregation computes it: a compensated sum, switching to an
/// incremental mean when the sum would overflow.
fn avg(vals: &[f64]) -> f64 {
    let (mut sum, mut c) = (vals[0], 0.0);
    let mut mean = 0.0;
    let mut incremental = false;
    for (i, &f) in vals.iter().enumerate().skip(1) {
        let count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        if mean.is_infinite() {
            if f.is_infinite() && (mean > 0.0) == (f > 0.0) {
                continue;
            }
            if !f.is_infinite() && !f.is_nan() {
                continue;
            }
        }
        let current = mean + c;
        (mean, c) = kahan_inc(f / count - current / count, mean, c);
    }
    if incremental {
        mean + c
    } else {
        (sum + c) / vals.len() as f64
    }
}

fn simple(op: &str, vals: &[f64], compat: Compat) -> f64 {
    match op {
        "sum" if compat == Compat::Prometheus2 => vals.iter().sum(),
        "avg" if compat == Compat::Prometheus2 => functions::incremental_mean(vals.iter().copied()),
        "sum" => kahan_sum(vals),
        "avg" => avg(vals),
        "count" => vals.len() as f64,
        "group" => 1.0,
        "min" => vals
            .iter()
            .fold(f64::NAN, |m, &v| if v < m || m.is_nan() { v } else { m }),
        "max" => vals
            .iter()
            .fold(f64::NAN, |m, &v| if v > m || m.is_nan() { v } else { m }),
        "stddev" => variance(vals).sqrt(),
        "stdvar" => variance(vals),
        _ => unreachable!("simple aggregations only"),
    }
}

/// Population variance (Welford), as Prometheus's `stdvar`.
pub(super) fn variance(vals: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &v in vals {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}

/// The φ-quantile with linear interpolation (Prometheus's `quantile`).
pub(super) fn quantile(q: f64, mut vals: Vec<f64>) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN first, as Go's sort.Float64s
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).expect("no nan"),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(vals.len() - 1);
    let weight = rank - rank.floor();
    vals[lower] * (1.0 - weight) + vals[upper] * weight
}

fn count_values(
    label: &str,
    input: Vec<Sample>,
    grouping: Option<&LabelModifier>,
    t: i64,
) -> Vec<Sample> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Sample> = Vec::new();
    for s in input {
        let key = group_labels(&s.metric, grouping).with(label, &format_float(s.v));
        match index.get(&key) {
            Some(&i) => out[i].v += 1.0,
            None => {
                index.insert(key.clone(), out.len());
                out.push(Sample {
                    metric: key,
                    t,
                    v: 1.0,
                });
            }
        }
    }
    out
}

/// `topk`/`bottomk`: the k largest (smallest) per group, NaN last, original labels kept.
fn top_k(
    op: &str,
    k: f64,
    input: Vec<Sample>,
    grouping: Option<&LabelModifier>,
) -> Result<Vec<Sample>, QueryError> {
    if k < 1.0 {
        return Ok(Vec::new());
    }
    let k = if k >= usize::MAX as f64 {
        usize::MAX
    } else {
        k as usize
    };
    let groups = group(input, grouping);
    let mut out = Vec::new();
    for g in groups {
        let mut samples = g.samples;
        if op == "limitk" {
            samples.truncate(k);
            out.extend(samples);
            continue;
        }
        let top = op == "topk";
        // stable sort: ties keep input order; NaN always sorts after every number
        samples.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ if top => b.v.partial_cmp(&a.v).expect("no nan"),
            _ => a.v.partial_cmp(&b.v).expect("no nan"),
        });
        samples.truncate(k);
        out.extend(samples);
    }
    Ok(out)
}
