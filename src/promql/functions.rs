//! PromQL functions, each as Prometheus computes it (extrapolated `rate`, compensated sums,
//! `histogram_quantile` over classic buckets with its monotonicity fixes).

use std::collections::HashMap;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};

use super::aggregate::{kahan_inc, kahan_sum, quantile, valid_label_name};
use super::eval::{Compat, Ctx, RangeArg, check_unique, drop_name};
use super::{QueryError, Sample, Value};
use crate::labels::{Labels, METRIC_NAME};
use crate::timefmt::civil_from_days;

pub(super) fn call(ctx: &Ctx<'_>, c: &Call, t: i64) -> Result<Value, QueryError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
    let arg = |i: usize| -> Result<&Expr, QueryError> {
        args.get(i)
            .copied()
            .ok_or_else(|| QueryError::Eval(format!("missing argument {} of {name}()", i + 1)))
    };
    let out = match name {
        "time" => return Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
        "scalar" => {
            let v = ctx.eval_vector(arg(0)?, t)?;
            return Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }));
        }
        "vector" => {
            let v = ctx.eval_scalar(arg(0)?, t)?;
            vec![Sample {
                metric: Labels::default(),
                t,
                v,
            }]
        }
        "absent" => {
            let v = ctx.eval_vector(arg(0)?, t)?;
            if v.is_empty() {
                vec![Sample {
                    metric: absent_labels(arg(0)?),
                    t,
                    v: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "absent_over_time" => {
            let r = ctx.eval_range(arg(0)?, t)?;
            if r.series.is_empty() {
                vec![Sample {
                    metric: absent_labels(arg(0)?),
                    t,
                    v: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "timestamp" => ctx
            .eval_vector(arg(0)?, t)?
            .into_iter()
            .map(|s| Sample {
                metric: drop_name(&s.metric),
                t,
                v: s.t as f64 / 1000.0,
            })
            .collect(),
        "predict_linear" => {
            let secs = ctx.eval_scalar(arg(1)?, t)?;
            over_range(ctx, arg(0)?, t, true, |r, p| {
                (p.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(p, r.eval_t);
                    slope * secs + intercept
                })
            })?
        }
        "last_over_time" => over_range(ctx, arg(0)?, t, false, |_, p| p.last().map(|x| x.1))?,
        "first_over_time" => over_range(ctx, arg(0)?, t, false, |_, p| p.first().map(|x| x.1))?,
        "quantile_over_time" => {
            let q = ctx.eval_scalar(arg(0)?, t)?;
            over_range(ctx, arg(1)?, t, true, |_, p| {
                Some(quantile(q, p.iter().map(|x| x.1).collect()))
            })?
        }
        "abs" => map(ctx, arg(0)?, t, f64::abs)?,
        "ceil" => map(ctx, arg(0)?, t, f64::ceil)?,
        "floor" => map(ctx, arg(0)?, t, f64::floor)?,
        "exp" => map(ctx, arg(0)?, t, f64::exp)?,
        "sqrt" => map(ctx, arg(0)?, t, f64::sqrt)?,
        "ln" => map(ctx, arg(0)?, t, f64::ln)?,
        "log2" => map(ctx, arg(0)?, t, f64::log2)?,
        "log10" => map(ctx, arg(0)?, t, f64::log10)?,
        "sgn" => map(ctx, arg(0)?, t, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        })?,
        "sin" => map(ctx, arg(0)?, t, f64::sin)?,
        "cos" => map(ctx, arg(0)?, t, f64::cos)?,
        "tan" => map(ctx, arg(0)?, t, f64::tan)?,
        "asin" => map(ctx, arg(0)?, t, f64::asin)?,
        "acos" => map(ctx, arg(0)?, t, f64::acos)?,
        "atan" => map(ctx, arg(0)?, t, f64::atan)?,
        "sinh" => map(ctx, arg(0)?, t, f64::sinh)?,
        "cosh" => map(ctx, arg(0)?, t, f64::cosh)?,
        "tanh" => map(ctx, arg(0)?, t, f64::tanh)?,
        "asinh" => map(ctx, arg(0)?, t, f64::asinh)?,
        "acosh" => map(ctx, arg(0)?, t, f64::acosh)?,
        "atanh" => map(ctx, arg(0)?, t, f64::atanh)?,
        "deg" => map(ctx, arg(0)?, t, |v| v * 180.0 / std::f64::consts::PI)?,
        "rad" => map(ctx, arg(0)?, t, |v| v * std::f64::consts::PI / 180.0)?,
        "round" => {
            let to_nearest = match args.get(1) {
                Some(e) => ctx.eval_scalar(e, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to_nearest;
            map(ctx, arg(0)?, t, |v| (v * inv + 0.5).floor() / inv)?
        }
        "clamp" => {
            let lo = ctx.eval_scalar(arg(1)?, t)?;
            let hi = ctx.eval_scalar(arg(2)?, t)?;
            if hi < lo {
                Vec::new()
            } else {
                map(ctx, arg(0)?, t, |v| lo.max(hi.min(v)))?
            }
        }
        "clamp_min" => {
            let lo = ctx.eval_scalar(arg(1)?, t)?;
            map(ctx, arg(0)?, t, |v| lo.max(v))?
        }
        "clamp_max" => {
            let hi = ctx.eval_scalar(arg(1)?, t)?;
            map(ctx, arg(0)?, t, |v| hi.min(v))?
        }
        "sort" | "sort_desc" => {
            let mut v = ctx.eval_vector(arg(0)?, t)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.v.partial_cmp(&a.v).expect("no nan"),
                _ => a.v.partial_cmp(&b.v).expect("no nan"),
            });
            for s in &mut v {
                s.t = t;
            }
            return Ok(Value::Vector(v));
        }
        "label_replace" => label_replace(ctx, &args, t)?,
        "label_join" => label_join(ctx, &args, t)?,
        "histogram_quantile" => {
            let q = ctx.eval_scalar(arg(0)?, t)?;
            classic_histograms(ctx.eval_vector(arg(1)?, t)?)
                .into_iter()
                .map(|(metric, buckets)| Sample {
                    metric,
                    t,
                    v: bucket_quantile(q, buckets),
                })
                .collect()
        }
        "histogram_fraction" => {
            let lower = ctx.eval_scalar(arg(0)?, t)?;
            let upper = ctx.eval_scalar(arg(1)?, t)?;
            classic_histograms(ctx.eval_vector(arg(2)?, t)?)
                .into_iter()
                .map(|(metric, buckets)| Sample {
                    metric,
                    t,
                    v: bucket_fraction(lower, upper, buckets),
                })
                .collect()
        }
        // These read native histogram samples only, which tocsin does not store: over float
        // samples (classic buckets included) Prometheus returns nothing, and so does tocsin.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            ctx.eval_vector(arg(0)?, t)?;
            Vec::new()
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => {
            let input = match args.first() {
                Some(e) => ctx.eval_vector(e, t)?,
                None => vec![Sample {
                    metric: Labels::default(),
                    t,
                    v: t as f64 / 1000.0,
                }],
            };
            input
                .into_iter()
                .map(|s| Sample {
                    metric: drop_name(&s.metric),
                    t,
                    v: date_part(name, s.v),
                })
                .collect()
        }
        other => match range_fn(other) {
            Some(f) => over_range(ctx, arg(0)?, t, true, f)?,
            None => {
                return Err(QueryError::Eval(format!(
                    "function {other}() is not supported"
                )));
            }
        },
    };
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// A function of one range vector computing one value per series (None: no output).
type RangeFn = fn(&RangeArg, &[(i64, f64)]) -> Option<f64>;

/// The single-argument range functions that drop the metric name, by name.
fn range_fn(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |r, p| rate_for(r, p, true, true),
        "increase" => |r, p| rate_for(r, p, true, false),
        "delta" => |r, p| rate_for(r, p, false, false),
        "irate" => |_, p| instant_delta(p, true),
        "idelta" => |_, p| instant_delta(p, false),
        "deriv" => |_, p| (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "resets" => |_, p| Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
        "changes" => |_, p| {
            Some(
                p.windows(2)
                    .filter(|w| !(w[1].1 == w[0].1 || (w[1].1.is_nan() && w[0].1.is_nan())))
                    .count() as f64,
            )
        },
        "avg_over_time" => |r, p| {
            Some(match r.compat {
                Compat::Prometheus2 => incremental_mean(p.iter().map(|x| x.1)),
                Compat::Prometheus3 => mean_over_time(p),
            })
        },
        "sum_over_time" => |r, p| {
            Some(match r.compat {
                Compat::Prometheus2 => p.iter().map(|x| x.1).sum(),
                Compat::Prometheus3 => kahan_sum(&p.iter().map(|x| x.1).collect::<Vec<_>>()),
            })
        },
        "count_over_time" => |_, p| Some(p.len() as f64),
        "present_over_time" => |_, _| Some(1.0),
        "min_over_time" => |_, p| {
            Some(p.iter().fold(
                f64::NAN,
                |m, &(_, v)| if v < m || m.is_nan() { v } else { m },
            ))
        },
        "max_over_time" => |_, p| {
            Some(p.iter().fold(
                f64::NAN,
                |m, &(_, v)| if v > m || m.is_nan() { v } else { m },
            ))
        },
        "stddev_over_time" => |_, p| Some(variance_over_time(p).sqrt()),
        "stdvar_over_time" => |_, p| Some(variance_over_time(p)),
        _ => return None,
    })
}

/// Streams `f(series)` of a call like `rate(metric{…}[5m])` to `sink` with each series' own
/// labels (the name still in them: the caller must treat it as dropped), without building the
/// intermediate vector. Applies only when dropping the name cannot make two results collide
/// (the selector names one metric), so the vector's uniqueness check could not have failed.
/// Returns false, having called nothing, when the expression is not of that shape.
pub(super) fn stream_range_call(
    ctx: &Ctx<'_>,
    e: &Expr,
    t: i64,
    sink: &mut dyn FnMut(&Labels, f64),
) -> Result<bool, QueryError> {
    let e = match e {
        Expr::Paren(p) => return stream_range_call(ctx, &p.expr, t, sink),
        e => e,
    };
    let Expr::Call(c) = e else {
        return Ok(false);
    };
    let Some(f) = range_fn(c.func.name) else {
        return Ok(false);
    };
    let [arg] = c.args.args.as_slice() else {
        return Ok(false);
    };
    let Expr::MatrixSelector(ms) = arg.as_ref() else {
        return Ok(false);
    };
    if ms.vs.name.is_none() || !ms.vs.matchers.or_matchers.is_empty() {
        return Ok(false);
    }
    ctx.for_each_range(arg, t, &mut |r, metric, points| {
        if let Some(v) = f(r, points) {
            sink(metric, v);
        }
    })?;
    Ok(true)
}

/// Applies `f` to each series of a range argument; series where `f` returns None are left out.
fn over_range(
    ctx: &Ctx<'_>,
    e: &Expr,
    t: i64,
    drop: bool,
    f: impl Fn(&RangeArg, &[(i64, f64)]) -> Option<f64>,
) -> Result<Vec<Sample>, QueryError> {
    let mut out = Vec::new();
    ctx.for_each_range(e, t, &mut |r, metric, points| {
        if let Some(v) = f(r, points) {
            out.push(Sample {
                metric: if drop {
                    drop_name(metric)
                } else {
                    metric.clone()
                },
                t,
                v,
            });
        }
    })?;
    Ok(out)
}

/// Applies `f` to every value of an instant-vector argument, dropping the metric name.
fn map(ctx: &Ctx<'_>, e: &Expr, t: i64, f: impl Fn(f64) -> f64) -> Result<Vec<Sample>, QueryError> {
    Ok(ctx
        .eval_vector(e, t)?
        .into_iter()
        .map(|s| Sample {
            metric: drop_name(&s.metric),
            t,
            v: f(s.v),
        })
        .collect())
}

/// `rate`, `increase` and `delta` with Prometheus's extrapolation to the window's edges.
pub(super) fn extrapolated_rate(
    p: &[(i64, f64)],
    maxt: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let range_start = maxt - range;
    let range_end = maxt;
    let (first_t, first_v) = p[0];
    let (last_t, last_v) = p[p.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut last = 0.0;
        for &(_, v) in p {
            if v < last {
                result += last;
            }
            last = v;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / (p.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first_v >= 0.0 {
            to_zero = sampled * (first_v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

fn rate_for(r: &RangeArg, p: &[(i64, f64)], counter: bool, rate: bool) -> Option<f64> {
    match r.compat {
        Compat::Prometheus2 => extrapolated_rate_v2(p, r.maxt, r.range, counter, rate),
        Compat::Prometheus3 => extrapolated_rate(p, r.maxt, r.range, counter, rate),
    }
}

/// Prometheus 2.x's `extrapolatedRate`: the counter's zero point is applied before the
/// extrapolation threshold is tested (3.x tests first), which changes results near a counter's
/// start.
fn extrapolated_rate_v2(
    p: &[(i64, f64)],
    maxt: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first_t, first_v) = p[0];
    let (last_t, last_v) = p[p.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut last = 0.0;
        for &(_, v) in p {
            if v < last {
                result += last;
            }
            last = v;
        }
    }
    let mut to_start = (first_t - (maxt - range)) as f64 / 1000.0;
    let to_end = (maxt - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / (p.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_between / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_between / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Prometheus 2.x's mean: `mean += v/n - mean/n`, with its handling of infinities.
pub(super) fn incremental_mean(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut count) = (0.0f64, 0.0);
    for v in vals {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// `irate` (with counter-reset handling) and `idelta` from the last two samples.
fn instant_delta(p: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev_t, prev) = p[p.len() - 2];
    let (last_t, last) = p[p.len() - 1];
    let mut v = if is_rate && last < prev {
        last
    } else {
        last - prev
    };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares slope and the intercept at `intercept_t` (ms), with compensated sums.
pub(super) fn linear_regression(p: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let init = p[0].1;
    let mut const_y = true;
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(ts, v)) in p.iter().enumerate() {
        if const_y && i > 0 && v != init {
            const_y = false;
        }
        n += 1.0;
        let x = (ts - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// `avg_over_time`: compensated sum, incremental mean once the sum would overflow.
fn mean_over_time(p: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (p[0].1, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &(_, f)) in p.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
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
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Population variance with compensated running sums (Prometheus's `stdvar_over_time`).
fn variance_over_time(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in p {
        count += 1.0;
        let delta = f - (mean + cm);
        (mean, cm) = kahan_inc(delta / count, mean, cm);
        (aux, ca) = kahan_inc(delta * (f - (mean + cm)), aux, ca);
    }
    (aux + ca) / count
}

/// The labels `absent()` reports: the selector's equality matchers, except names matched twice
/// or also by another matcher.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut has: HashMap<&str, bool> = HashMap::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !has.get(m.name.as_str()).copied().unwrap_or(false) {
            pairs.retain(|(k, _)| *k != m.name);
            pairs.push((m.name.clone(), m.value.clone()));
            has.insert(&m.name, true);
        } else {
            pairs.retain(|(k, _)| *k != m.name);
        }
    }
    Labels::from_pairs(pairs)
}

fn string_arg(ctx: &Ctx<'_>, e: Option<&&Expr>, t: i64, what: &str) -> Result<String, QueryError> {
    match e {
        Some(e) => match ctx.eval(e, t)? {
            Value::String(s) => Ok(s),
            other => Err(QueryError::Eval(format!(
                "{what} must be a string, got {}",
                other.type_name()
            ))),
        },
        None => Err(QueryError::Eval(format!("missing {what}"))),
    }
}

fn label_replace(ctx: &Ctx<'_>, args: &[&Expr], t: i64) -> Result<Vec<Sample>, QueryError> {
    let dst = string_arg(ctx, args.get(1), t, "destination label")?;
    let repl = string_arg(ctx, args.get(2), t, "replacement")?;
    let src = string_arg(ctx, args.get(3), t, "source label")?;
    let re = string_arg(ctx, args.get(4), t, "regex")?;
    let re = crate::labels::compile_regex(&re).map_err(|e| {
        QueryError::Eval(format!(
            "invalid regular expression in label_replace(): {re}: {e}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(QueryError::Eval(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let input = ctx.eval_vector(args[0], t)?;
    let mut out = Vec::with_capacity(input.len());
    for s in input {
        let value = s.metric.get(&src).unwrap_or("");
        let metric = match re.captures(value) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                s.metric.with(&dst, &res)
            }
            None => s.metric,
        };
        out.push(Sample { metric, t, v: s.v });
    }
    Ok(out)
}

fn label_join(ctx: &Ctx<'_>, args: &[&Expr], t: i64) -> Result<Vec<Sample>, QueryError> {
    let dst = string_arg(ctx, args.get(1), t, "destination label")?;
    let sep = string_arg(ctx, args.get(2), t, "separator")?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        let s = string_arg(ctx, args.get(i), t, "source label")?;
        srcs.push(s);
    }
    if !valid_label_name(&dst) {
        return Err(QueryError::Eval(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let input = ctx.eval_vector(args[0], t)?;
    Ok(input
        .into_iter()
        .map(|s| {
            let joined = srcs
                .iter()
                .map(|n| s.metric.get(n).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&sep);
            Sample {
                metric: s.metric.with(&dst, &joined),
                t,
                v: s.v,
            }
        })
        .collect())
}

/// Classic histograms in a vector: the buckets (`le`, count) of each series without its `le`
/// label, as Prometheus's `resetHistograms` groups them. The metric name is part of the group
/// and dropped from the result, so buckets of two metrics with the same other labels stay two
/// histograms and then collide ("same labelset"), never merge into one wrong answer. A sample
/// without a parseable `le` is skipped.
fn classic_histograms(input: Vec<Sample>) -> Vec<(Labels, Vec<(f64, f64)>)> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for s in input {
        let Some(le) = s.metric.get("le").and_then(parse_le) else {
            continue;
        };
        let key = Labels::from_pairs(s.metric.iter().filter(|(k, _)| *k != "le"));
        match index.get(&key) {
            Some(&i) => groups[i].1.push((le, s.v)),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![(le, s.v)]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(key, buckets)| (drop_name(&key), buckets))
        .collect()
}

/// Buckets sorted by upper bound with equal bounds merged, as Prometheus's `coalesceBuckets`.
fn sorted_buckets(mut b: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for (ub, c) in b {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    merged
}

/// Prometheus's `BucketFraction`: the estimated share of observations between `lower` and
/// `upper`, interpolating linearly within a bucket; the infinite-width buckets contribute
/// nothing to an interpolation.
fn bucket_fraction(lower: f64, upper: f64, b: Vec<(f64, f64)>) -> f64 {
    let b = sorted_buckets(b);
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let count = b[b.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if b[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, &(upper_bound, bucket_count)) in b.iter().enumerate() {
        if i > 0 {
            lower_bound = b[i - 1].0;
        }
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                bucket_count
            } else {
                rank + (bucket_count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bucket_count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Prometheus's `BucketQuantile`: sort, merge equal bounds, force monotonic counts, interpolate.
fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b = sorted_buckets(b);
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let mut prev = b[0].1;
    for bucket in b.iter_mut().skip(1) {
        let curr = bucket.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) || curr < prev {
            bucket.1 = prev;
            continue;
        }
        prev = curr;
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let idx = b[..b.len() - 1].partition_point(|x| x.1 < rank);
    if idx == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if idx == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[idx].0, b[idx].1);
    if idx > 0 {
        start = b[idx - 1].0;
        count -= b[idx - 1].1;
        rank -= b[idx - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Relative float comparison as Prometheus's `almost.Equal`.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// A calendar field of a Unix time in seconds, in UTC.
fn date_part(part: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let s = secs.floor() as i64;
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let doy = CUM[(m - 1) as usize] + d + i64::from(m > 2 && is_leap(y));
    (match part {
        "year" => y,
        "month" => m,
        "day_of_month" => d,
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_year" => doy,
        "days_in_month" => match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        },
        "hour" => sod / 3600,
        "minute" => sod % 3600 / 60,
        _ => unreachable!("date functions only"),
    }) as f64
}
