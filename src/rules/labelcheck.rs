//! Label names a rule uses that no series has: `tocsin check` (with the configuration's store
//! readable) and each daemon rule load warn about them, with the nearest known name
//! (`label `instnace` is not on any series; did you mean `instance`?`). A warning, never an
//! error: the series may simply not exist yet.
//!
//! Looked at: the label names of a PromQL condition's (`expr`, `resolve`) selectors, `by`/
//! `without`, `on`/`ignoring` and `group_left`/`group_right`. Known: the names the store's series
//! carry ([`crate::store::Store::label_names`]) plus those rules add themselves (group and rule
//! `labels`, the destination of `label_replace`/`label_join`, `alertname`, `alertstate`), and
//! `__name__`. Not looked at: Rhai scripts (their selectors are strings built at run time),
//! templates' `query`, built-in rule files (`tocsin:self`). Pure: the caller brings the names.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality};

use super::{Condition, PromExpr, RuleKind, RuleSet, is_self_rules};

/// One label name a rule uses that is not known.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownLabel {
    pub file: PathBuf,
    /// the rule's first line, or the label's own line once [`UnknownLabel::locate`]d
    pub line: u64,
    /// the label's column once located; 0: not located
    pub col: u64,
    pub group: String,
    pub rule: String,
    pub label: String,
    /// the nearest known name, when one is close enough to be a typo
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.file.display(), self.line)?;
        if self.col > 0 {
            write!(f, "{}:", self.col)?;
        }
        write!(
            f,
            " warning: group {:?}, rule {:?}: label `{}` is not on any series",
            self.group, self.rule, self.label
        )?;
        match &self.suggestion {
            Some(s) => write!(f, "; did you mean `{s}`?"),
            None => Ok(()),
        }
    }
}

impl UnknownLabel {
    /// Points at the label in the rule file's text `source`: its first whole-word occurrence
    /// at or after the rule's first line (the rule's expression, where the label is written).
    /// Left at the rule's line when not found.
    pub fn locate(&mut self, source: &str) {
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let start = match (self.line as usize).checked_sub(1) {
            Some(0) => 0,
            Some(n) => match source.match_indices('\n').nth(n - 1) {
                Some((i, _)) => i + 1,
                None => return,
            },
            None => return,
        };
        let found = source[start..]
            .match_indices(self.label.as_str())
            .map(|(i, _)| start + i)
            .find(|&at| {
                let before = source[..at].chars().next_back();
                let after = source[at + self.label.len()..].chars().next();
                !before.is_some_and(is_word) && !after.is_some_and(is_word)
            });
        if let Some(at) = found {
            let before = &source[..at];
            self.line = before.matches('\n').count() as u64 + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            self.col = source[line_start..at].chars().count() as u64 + 1;
        }
    }
}

/// Every label name a PromQL condition of `rules` uses that neither `known` (the store's label
/// names) nor a rule of the set introduces, once per rule, in file order. Nothing when `known` is
/// empty (an empty store says nothing about names).
pub fn unknown_labels(rules: &RuleSet, known: &BTreeSet<String>) -> Vec<UnknownLabel> {
    if known.is_empty() {
        return Vec::new();
    }
    let mut all: BTreeSet<String> = known.clone();
    all.extend(["__name__", "alertname", "alertstate"].map(String::from));
    // one walk of each expression, for the labels it introduces and (outside the built-in rule
    // files) those it reads: a remote rule's tree is parsed for the walk only
    let mut reads = Vec::new();
    for g in &rules.groups {
        all.extend(g.labels.keys().cloned());
        let checked = !is_self_rules(&g.file);
        for r in &g.rules {
            all.extend(r.labels.iter().map(|(k, _)| k.clone()));
            let mut used = Vec::new();
            for c in conditions(&r.kind, &r.condition) {
                c.with_tree(|tree| {
                    introduced(tree, &mut all);
                    if checked {
                        used_labels(tree, &mut used);
                    }
                });
            }
            if checked {
                reads.push((g, r, used));
            }
        }
    }
    let mut out = Vec::new();
    for (g, r, used) in reads {
        let mut seen = BTreeSet::new();
        for label in used {
            if all.contains(&label) || !seen.insert(label.clone()) {
                continue;
            }
            let suggestion =
                crate::error::nearest(&label, known.iter().map(String::as_str)).map(String::from);
            out.push(UnknownLabel {
                file: g.file.clone(),
                line: r.line,
                col: 0,
                group: g.name.clone(),
                rule: r.name.clone(),
                label,
                suggestion,
            });
        }
    }
    out
}

/// A rule's PromQL expressions: its condition and its `resolve`.
fn conditions<'a>(kind: &'a RuleKind, condition: &'a Condition) -> Vec<&'a PromExpr> {
    let mut out = Vec::new();
    if let Condition::PromQL { expr, .. } = condition {
        out.push(&**expr);
    }
    if let RuleKind::Alert {
        resolve: Some(Condition::PromQL { expr, .. }),
        ..
    } = kind
    {
        out.push(&**expr);
    }
    out
}

/// The label names an expression reads, in the order written.
fn used_labels(e: &Expr, out: &mut Vec<String>) {
    let modifier = |m: &Option<LabelModifier>, out: &mut Vec<String>| {
        if let Some(LabelModifier::Include(l) | LabelModifier::Exclude(l)) = m {
            out.extend(l.labels.iter().cloned());
        }
    };
    match e {
        Expr::VectorSelector(vs) => {
            let m = &vs.matchers;
            out.extend(
                m.matchers
                    .iter()
                    .chain(m.or_matchers.iter().flatten())
                    .map(|m| m.name.clone()),
            );
        }
        Expr::MatrixSelector(ms) => used_labels(&Expr::VectorSelector(ms.vs.clone()), out),
        Expr::Aggregate(a) => {
            modifier(&a.modifier, out);
            used_labels(&a.expr, out);
            if let Some(p) = &a.param {
                used_labels(p, out);
            }
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                modifier(&m.matching, out);
                if let VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) =
                    &m.card
                {
                    out.extend(l.labels.iter().cloned());
                }
            }
            used_labels(&b.lhs, out);
            used_labels(&b.rhs, out);
        }
        Expr::Paren(p) => used_labels(&p.expr, out),
        Expr::Unary(u) => used_labels(&u.expr, out),
        Expr::Subquery(s) => used_labels(&s.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                used_labels(a, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// The label names an expression creates: the destination (first string argument) of
/// `label_replace` and `label_join`.
fn introduced(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Call(c) => {
            if matches!(c.func.name, "label_replace" | "label_join")
                && let Some(Expr::StringLiteral(s)) = c.args.args.get(1).map(|a| a.as_ref())
            {
                out.insert(s.val.clone());
            }
            for a in &c.args.args {
                introduced(a, out);
            }
        }
        Expr::Aggregate(a) => {
            introduced(&a.expr, out);
            if let Some(p) = &a.param {
                introduced(p, out);
            }
        }
        Expr::Binary(b) => {
            introduced(&b.lhs, out);
            introduced(&b.rhs, out);
        }
        Expr::Paren(p) => introduced(&p.expr, out),
        Expr::Unary(u) => introduced(&u.expr, out),
        Expr::Subquery(s) => introduced(&s.expr, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> RuleSet {
        let scripts = crate::promql::rhai::ScriptEngine::new();
        let groups =
            super::super::parse_file(yaml, std::path::Path::new("r.yml"), 15_000, &scripts)
                .unwrap();
        RuleSet {
            groups: groups.into_iter().map(std::sync::Arc::new).collect(),
            files: Vec::new(),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_misspelt_label_in_a_selector_or_by_is_reported_with_the_nearest_name() {
        let set = rules(
            r#"groups:
  - name: g
    rules:
      - alert: Down
        expr: up{instnace="a"} == 0
      - record: by_job
        expr: sum by (jobs) (rate(http_requests_total[5m]))
      - alert: Ratio
        expr: a / on (servce) group_left (tenant) b
        resolve: c{zone="x"} > 0
"#,
        );
        let known = names(&["__name__", "instance", "job", "service", "tenant"]);
        let found: Vec<String> = unknown_labels(&set, &known)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            found,
            vec![
                r#"r.yml:4: warning: group "g", rule "Down": label `instnace` is not on any series; did you mean `instance`?"#,
                r#"r.yml:6: warning: group "g", rule "by_job": label `jobs` is not on any series; did you mean `job`?"#,
                r#"r.yml:8: warning: group "g", rule "Ratio": label `servce` is not on any series; did you mean `service`?"#,
                r#"r.yml:8: warning: group "g", rule "Ratio": label `zone` is not on any series"#,
            ]
        );
    }

    #[test]
    fn checking_a_remote_group_walks_its_trees_without_keeping_them() {
        let set = rules(
            "groups:\n  - name: remote\n    datasource: vm\n    rules:\n      - alert: A\n        expr: up{instnace=\"a\"} == 0\n        resolve: up == 1\n",
        );
        let found = unknown_labels(&set, &names(&["instance"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].suggestion.as_deref(), Some("instance"));
        let r = &set.groups[0].rules[0];
        for c in conditions(&r.kind, &r.condition) {
            assert!(!c.is_parsed(), "{c:?}");
        }
    }

    #[test]
    fn a_warning_is_located_at_the_label_in_the_rule_s_expression() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: instnace_typo\n        expr: up{instnace=\"a\"} == 0\n";
        let set = rules(text);
        let mut found = unknown_labels(&set, &names(&["instance"]));
        assert_eq!(found.len(), 1);
        found[0].locate(text);
        // not the rule's name on line 4 (no whole word), the matcher on line 5
        assert_eq!((found[0].line, found[0].col), (5, 18));
        assert!(
            found[0].to_string().starts_with("r.yml:5:18: warning:"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn labels_rules_add_themselves_and_an_empty_store_raise_nothing() {
        let set = rules(
            r#"groups:
  - name: g
    labels: { team: a }
    rules:
      - record: x:tagged
        expr: label_replace(up, "zone", "$1", "instance", "(.*)")
        labels: { tier: web }
      - alert: A
        expr: sum by (zone, tier, team) (x:tagged) > 0 and on (alertname) ALERTS{alertstate="firing"}
      - alert: Scripted
        script: select("up{nosuch=\"x\"}")
"#,
        );
        let known = names(&["__name__", "instance", "job"]);
        assert_eq!(unknown_labels(&set, &known), Vec::new());
        let typo = rules("groups: [{ name: g, rules: [{ alert: A, expr: 'up{jbo=\"x\"}' }] }]\n");
        assert_eq!(unknown_labels(&typo, &BTreeSet::new()), Vec::new());
        assert_eq!(unknown_labels(&typo, &known).len(), 1);
    }
}
