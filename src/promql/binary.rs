//! Binary operators: arithmetic, comparisons (filtering or `bool`), `and`/`or`/`unless`, with
//! Prometheus's vector matching (`on`, `ignoring`, `group_left`, `group_right`) and its errors.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{Ctx, check_unique, drop_name};
use super::{QueryError, Sample, Value};
use crate::labels::{Labels, METRIC_NAME};

/// A binary operator, resolved once from the parser's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    /// The operator for its PromQL spelling (`+`, `>=`, `and`, `atan2`, …).
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }

    /// `(value, keep)`: the arithmetic result, or for a comparison the left value and whether
    /// the comparison holds.
    pub fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => unreachable!("set operators apply to vectors only"),
        }
    }
}

pub(super) fn eval(ctx: &Ctx<'_>, b: &BinaryExpr, t: i64) -> Result<Value, QueryError> {
    let op = Op::parse(&b.op.to_string())
        .ok_or_else(|| QueryError::Eval(format!("unsupported binary operator {}", b.op)))?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    if let Some(m) = &b.modifier
        && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
    {
        return Err(QueryError::Eval(
            "fill modifiers of binary operators are not supported".into(),
        ));
    }
    let lhs = ctx.eval(&b.lhs, t)?;
    // Prometheus evaluates both sides even when one cannot matter; so do we, for identical errors
    let rhs = ctx.eval(&b.rhs, t)?;
    let (card, matching) = match &b.modifier {
        Some(m) => (m.card.clone(), m.matching.clone()),
        None => (VectorMatchCardinality::OneToOne, None),
    };
    apply(op, lhs, rhs, &card, matching.as_ref(), return_bool, t)
}

/// Applies a binary operator to two evaluated operands (the Rhai front end's operators come here
/// too). `card` and `matching` matter only between two vectors.
pub fn apply(
    op: Op,
    lhs: Value,
    rhs: Value,
    card: &VectorMatchCardinality,
    matching: Option<&LabelModifier>,
    return_bool: bool,
    t: i64,
) -> Result<Value, QueryError> {
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = op.apply(l, r);
            if op.is_comparison() {
                if !return_bool {
                    return Err(QueryError::Eval(
                        "comparisons between scalars must use BOOL modifier".into(),
                    ));
                }
                Ok(Value::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Value::Scalar(v))
            }
        }
        (Value::Vector(l), Value::Scalar(r)) => {
            vector_scalar(op, l, r, false, return_bool, t).map(Value::Vector)
        }
        (Value::Scalar(l), Value::Vector(r)) => {
            vector_scalar(op, r, l, true, return_bool, t).map(Value::Vector)
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let out = if op.is_set() {
                set_op(op, l, r, matching)
            } else {
                vector_vector(op, l, r, card, matching, return_bool, t)?
            };
            check_unique(&out)?;
            Ok(Value::Vector(out))
        }
        (l, r) => Err(QueryError::Eval(format!(
            "binary operator {op:?} not defined between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: Op,
    vec: Vec<Sample>,
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
    t: i64,
) -> Result<Vec<Sample>, QueryError> {
    if op.is_set() {
        return Err(QueryError::Eval(
            "set operator not allowed in binary scalar expression".into(),
        ));
    }
    let mut out = Vec::with_capacity(vec.len());
    for s in vec {
        let (l, r) = if scalar_left {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, keep) = op.apply(l, r);
        // a comparison keeps the vector's value, whichever side it is on
        if op.is_comparison() && scalar_left {
            v = r;
        }
        let metric = if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            drop_name(&s.metric)
        } else if !keep {
            continue;
        } else if op.is_comparison() {
            s.metric
        } else {
            drop_name(&s.metric)
        };
        out.push(Sample { metric, t, v });
    }
    check_unique(&out)?;
    Ok(out)
}

/// The matching key of a label set: the `on` labels, or every label but the `ignoring` ones and
/// the name.
pub(super) fn signature(l: &Labels, matching: Option<&LabelModifier>) -> String {
    let mut key = String::new();
    let mut push = |k: &str, v: &str| {
        key.push_str(k);
        key.push('\u{ff}');
        key.push_str(v);
        key.push('\u{fe}');
    };
    match matching {
        Some(LabelModifier::Include(on)) => {
            let mut names: Vec<&str> = on.labels.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            for n in names {
                if let Some(v) = l.get(n) {
                    push(n, v);
                }
            }
        }
        Some(LabelModifier::Exclude(ign)) => {
            for (k, v) in l.iter() {
                if k != METRIC_NAME && !ign.labels.iter().any(|n| n == k) {
                    push(k, v);
                }
            }
        }
        None => {
            for (k, v) in l.iter() {
                if k != METRIC_NAME {
                    push(k, v);
                }
            }
        }
    }
    key
}

fn set_op(op: Op, l: Vec<Sample>, r: Vec<Sample>, matching: Option<&LabelModifier>) -> Vec<Sample> {
    match op {
        Op::And => {
            let right: HashSet<String> = r.iter().map(|s| signature(&s.metric, matching)).collect();
            l.into_iter()
                .filter(|s| right.contains(&signature(&s.metric, matching)))
                .collect()
        }
        Op::Unless => {
            let right: HashSet<String> = r.iter().map(|s| signature(&s.metric, matching)).collect();
            l.into_iter()
                .filter(|s| !right.contains(&signature(&s.metric, matching)))
                .collect()
        }
        Op::Or => {
            let left: HashSet<String> = l.iter().map(|s| signature(&s.metric, matching)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !left.contains(&signature(&s.metric, matching))),
            );
            out
        }
        _ => unreachable!("set_op is called for set operators"),
    }
}

fn vector_vector(
    op: Op,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    card: &VectorMatchCardinality,
    matching: Option<&LabelModifier>,
    return_bool: bool,
    t: i64,
) -> Result<Vec<Sample>, QueryError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: &[String] = match card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
        _ => &[],
    };
    // after the swap, `many` is the side whose samples are kept and `one` must be unique
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<String, &Sample> = HashMap::with_capacity(one.len());
    for s in &one {
        let sig = signature(&s.metric, matching);
        if let Some(dup) = one_by_sig.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            let (a, b) = if s.metric <= dup.metric {
                (&s.metric, &dup.metric)
            } else {
                (&dup.metric, &s.metric)
            };
            return Err(QueryError::Eval(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                go_labels(&match_group(&s.metric, matching)),
                go_labels(a),
                go_labels(b)
            )));
        }
        one_by_sig.insert(sig, s);
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<String, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for s in &many {
        let sig = signature(&s.metric, matching);
        let Some(o) = one_by_sig.get(&sig) else {
            continue;
        };
        // checked before a comparison filters: an error must not depend on the values
        if one_to_one && matched.insert(sig.clone(), HashSet::new()).is_some() {
            return Err(QueryError::Eval(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let (l, r) = if one_to_many { (o.v, s.v) } else { (s.v, o.v) };
        let (mut v, keep) = op.apply(l, r);
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut metric = result_metric(&s.metric, &o.metric, op, one_to_one, matching, include);
        if return_bool {
            metric = drop_name(&metric);
        }
        if !one_to_one && !matched.entry(sig).or_default().insert(metric.clone()) {
            return Err(QueryError::Eval(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample { metric, t, v });
    }
    Ok(out)
}

/// The label set of a vector-vector result, as Prometheus's `resultMetric`.
fn result_metric(
    many: &Labels,
    one: &Labels,
    op: Op,
    one_to_one: bool,
    matching: Option<&LabelModifier>,
    include: &[String],
) -> Labels {
    let drop = !op.is_comparison();
    let mut pairs: Vec<(&str, &str)> = many
        .iter()
        .filter(|(k, _)| !(drop && *k == METRIC_NAME))
        .collect();
    if one_to_one {
        match matching {
            Some(LabelModifier::Include(on)) => {
                pairs.retain(|(k, _)| on.labels.iter().any(|n| n == k))
            }
            Some(LabelModifier::Exclude(ign)) => {
                pairs.retain(|(k, _)| !ign.labels.iter().any(|n| n == k))
            }
            None => {}
        }
    }
    for name in include {
        pairs.retain(|(k, _)| k != name);
        if let Some(v) = one.get(name) {
            pairs.push((name.as_str(), v));
        }
    }
    Labels::from_pairs(pairs)
}

/// The labels a match group is made of, for error messages.
fn match_group(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => {
            Labels::from_pairs(l.iter().filter(|(k, _)| on.labels.iter().any(|n| n == k)))
        }
        Some(LabelModifier::Exclude(ign)) => Labels::from_pairs(
            l.iter()
                .filter(|(k, _)| *k != METRIC_NAME && !ign.labels.iter().any(|n| n == k)),
        ),
        None => drop_name(l),
    }
}

/// A label set as Go's `labels.Labels.String()` prints it: `{__name__="x", a="b"}`.
fn go_labels(l: &Labels) -> String {
    let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}
