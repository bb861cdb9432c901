//! Alert label and annotation templates in Prometheus's form: Go `text/template` syntax with
//! Prometheus's functions (`humanize`, `humanizePercentage`, `printf`, `query`, …) and its
//! variables (`$labels`, `$value`, `$externalLabels`, `$externalURL`).
//!
//! Written here rather than taken from a crate: `gtmpl` (the Go-template crate) is passively
//! maintained, takes functions as plain `fn` pointers (so `query` would need global state),
//! prints floats the Rust way (`inf`, no exponents) and reports parse errors by line only.
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! pipelines (`x | f a`), parenthesized pipelines, `$var := …`, `if`/`else if`/`else`/`end`,
//! `range` (over query results or a map, with `$i, $x :=`), `with`; fields `.Labels.x`, `.Value`,
//! `$labels.x`; string, number and boolean literals. Everything is checked at [`Template::parse`]
//! (what `tocsin check` runs): syntax, unknown functions, undefined variables. Not supported
//! (parse errors): `define`/`template`/`block`, method calls on values, `break`/`continue`.
//! Comparisons (`eq`, `lt`, …) compare numbers numerically whatever their Go type (Go would
//! reject `gt $value 1` for mixing float and int; accepting it is the kinder choice).

mod format;
mod gotime;
mod parse;
mod render;

use std::collections::BTreeMap;

pub use format::{go_float_v, go_g};
use parse::*;
use render::*;

/// The deepest nesting of blocks (`if`, `range`, `with`) and parenthesized pipelines a template
/// may have: parsing and rendering recurse once per level, and a template nested 3,000 deep
/// aborted the daemon with a stack overflow at load (it passed `check`). Real templates nest a
/// few levels; the test `deepest_templates_fit_a_small_stack` parses and renders the worst
/// shapes at this depth in a debug build on half the stack the daemon's threads get.
pub const MAX_TEMPLATE_DEPTH: usize = 64;

/// Occurs when a template does not parse (at `check` time) or fails while rendering.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("template: {line}:{col}: {message}")]
    Parse {
        line: usize,
        col: usize,
        message: String,
    },
    #[error("template: {0}")]
    Render(String),
}

/// What a template sees.
pub struct TemplateData<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
    /// the evaluation time in ms (`now`)
    pub time_ms: i64,
}

/// One sample of a `query` result.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Runs `query "…"` for templates (the rule layer gives the real engine at the evaluation time).
pub trait QueryFn {
    fn query(&self, promql: &str) -> Result<Vec<QueryResult>, String>;
}

/// A parsed template, ready to render many times.
#[derive(Debug, Clone)]
pub struct Template {
    /// empty for a plain text (see `plain`)
    pub(super) nodes: Vec<Node>,
    /// the text it was parsed from (what the rules API shows)
    pub(super) source: String,
    /// the text has no action (`{{`): it renders as itself, and is kept once (as `source`)
    /// instead of also as a text node (most rule labels, `severity: page`, are plain)
    pub(super) plain: bool,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    // the rare blocks are boxed: a node is as large as its largest kind, and unboxed these made
    // every text and action node 128 bytes instead of 56
    Range(Box<RangeNode>),
    With(Box<WithNode>),
}

#[derive(Debug, Clone)]
pub(super) struct RangeNode {
    pub(super) pipe: Pipeline,
    pub(super) vars: Vec<String>,
    pub(super) body: Vec<Node>,
    pub(super) otherwise: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(super) struct WithNode {
    pub(super) pipe: Pipeline,
    pub(super) body: Vec<Node>,
    pub(super) otherwise: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(super) struct Pipeline {
    /// `$x := …` (declare) or `$x = …` (assign)
    pub(super) decl: Option<String>,
    pub(super) cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
pub(super) enum Arg {
    Func(String),
    Var(String, Vec<String>),
    Field(Vec<String>),
    Dot,
    Str(String),
    Num(f64),
    Bool(bool),
    Sub(Box<Pipeline>),
}

pub(super) const FUNCS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "printf",
    "query",
    "first",
    "value",
    "label",
    "sortByLabel",
    "strvalue",
    "args",
    "safeHtml",
    "stripPort",
    "stripDomain",
    "parseDuration",
    "pathPrefix",
    "externalURL",
    "toDuration",
    "toTime",
    "now",
    "urlQueryEscape",
    "toJson",
    "join",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "println",
    "html",
    "js",
    "urlquery",
];

impl Template {
    /// Parses and checks a template: syntax, functions and variables.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if !text.contains("{{") {
            return Ok(Template {
                nodes: Vec::new(),
                source: text.to_string(),
                plain: true,
            });
        }
        let segments = split(text)?;
        let mut p = Parser {
            segs: segments,
            i: 0,
            text,
            scopes: vec![vec![
                "$".into(),
                "$labels".into(),
                "$externalLabels".into(),
                "$externalURL".into(),
                "$value".into(),
            ]],
            pending_else: None,
            depth: 0,
        };
        let (nodes, end) = p.nodes()?;
        if let Some((kw, off)) = end {
            return Err(p.err(off, format!("unexpected {{{{{kw}}}}}")));
        }
        Ok(Template {
            nodes,
            source: text.to_string(),
            plain: false,
        })
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template is a plain text without actions, rendering as itself.
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// Renders with `data`; `query` serves `query "…"` (None: `query` fails).
    pub fn render(
        &self,
        data: &TemplateData<'_>,
        query: Option<&dyn QueryFn>,
    ) -> Result<String, TemplateError> {
        if self.plain {
            return Ok(self.source.clone());
        }
        let mut r = Renderer {
            data,
            query,
            vars: vec![vec![
                ("$labels".into(), Val::Map(data.labels.clone())),
                (
                    "$externalLabels".into(),
                    Val::Map(data.external_labels.clone()),
                ),
                (
                    "$externalURL".into(),
                    Val::Str(data.external_url.to_string()),
                ),
                ("$value".into(), Val::Num(data.value)),
                ("$".into(), Val::Root),
            ]],
            out: String::new(),
            budget: Budget::default(),
        };
        r.nodes(&self.nodes, &Val::Root)?;
        Ok(r.out)
    }
}

/// Most bytes a notification template may write (a webhook body, a header).
pub const MAX_NOTIFICATION_OUTPUT_BYTES: usize = 1 << 20;

impl Template {
    /// Renders a notification template over Alertmanager's template data, given as the version 4
    /// webhook JSON (`notify::webhook::payload`): `.Status`, `.Receiver`, `.GroupLabels`,
    /// `.CommonLabels`, `.CommonAnnotations`, `.ExternalURL`, `.GroupKey`, `.TruncatedAlerts`,
    /// and `.Alerts` (also `.Alerts.Firing` and `.Alerts.Resolved`), each with `.Status`,
    /// `.Labels`, `.Annotations`, `.StartsAt` and `.EndsAt` (Go times), `.GeneratorURL` and
    /// `.Fingerprint`; `extra` adds fields at the top (`.Secret`). `now_ms` is `now`.
    pub fn render_notification(
        &self,
        payload: &serde_json::Value,
        extra: &[(&str, &str)],
        now_ms: i64,
    ) -> Result<String, TemplateError> {
        if self.plain {
            return if self.source.len() > MAX_NOTIFICATION_OUTPUT_BYTES {
                Err(TemplateError::Render(format!(
                    "output longer than {MAX_NOTIFICATION_OUTPUT_BYTES} bytes"
                )))
            } else {
                Ok(self.source.clone())
            };
        }
        let mut root = match notification_value(payload, "") {
            Val::Obj(o) => o,
            _ => BTreeMap::new(),
        };
        for (k, v) in extra {
            root.insert((*k).to_string(), Val::Str((*v).to_string()));
        }
        let root = Val::Obj(root);
        let empty = BTreeMap::new();
        let data = TemplateData {
            labels: &empty,
            external_labels: &empty,
            external_url: payload
                .get("externalURL")
                .and_then(|u| u.as_str())
                .unwrap_or(""),
            value: 0.0,
            time_ms: now_ms,
        };
        let mut r = Renderer {
            data: &data,
            query: None,
            vars: vec![vec![("$".into(), root.clone())]],
            out: String::new(),
            budget: Budget {
                bytes: MAX_NOTIFICATION_OUTPUT_BYTES,
                ..Budget::default()
            },
        };
        r.nodes(&self.nodes, &root)?;
        if r.out.len() > MAX_NOTIFICATION_OUTPUT_BYTES {
            return Err(TemplateError::Render(format!(
                "output longer than {MAX_NOTIFICATION_OUTPUT_BYTES} bytes"
            )));
        }
        Ok(r.out)
    }
}

/// Alertmanager's webhook JSON as Go's template data: keys as Go field names (`groupLabels` →
/// `GroupLabels`), label and annotation sets as maps (their keys kept), `startsAt`/`endsAt` as
/// times (Go's zero time as the text Go prints for it).
fn notification_value(v: &serde_json::Value, key: &str) -> Val {
    use serde_json::Value as J;
    let is_map = key.ends_with("abels") || key.ends_with("nnotations");
    match v {
        J::Null => Val::Nil,
        J::Bool(b) => Val::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) if key == "startsAt" || key == "endsAt" => {
            if s == crate::notify::webhook::ZERO_TIME {
                Val::Str("0001-01-01 00:00:00 +0000 UTC".into())
            } else {
                match crate::timefmt::parse_time(s) {
                    Ok(ms) => Val::Time(ms.saturating_mul(1_000_000)),
                    Err(_) => Val::Str(s.clone()),
                }
            }
        }
        J::String(s) => Val::Str(s.clone()),
        J::Array(a) => Val::List(a.iter().map(|x| notification_value(x, "")).collect()),
        J::Object(o) if is_map => Val::Map(
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect(),
        ),
        J::Object(o) => Val::Obj(
            o.iter()
                .map(|(k, v)| {
                    let mut field = String::with_capacity(k.len());
                    let mut chars = k.chars();
                    if let Some(c) = chars.next() {
                        field.extend(c.to_uppercase());
                        field.extend(chars);
                    }
                    (field, notification_value(v, k))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_with(t: &str, labels: &[(&str, &str)], value: f64) -> Result<String, TemplateError> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ext = BTreeMap::from([("cluster".to_string(), "eu1".to_string())]);
        let data = TemplateData {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://tocsin.example:9477/x",
            value,
            time_ms: 1_353_755_652_000,
        };
        struct Q;
        impl QueryFn for Q {
            fn query(&self, q: &str) -> Result<Vec<QueryResult>, String> {
                if q == "fail" {
                    return Err("boom".into());
                }
                Ok(vec![
                    QueryResult {
                        labels: BTreeMap::from([("instance".into(), "b".into())]),
                        value: 2.0,
                    },
                    QueryResult {
                        labels: BTreeMap::from([("instance".into(), "a".into())]),
                        value: 1.5,
                    },
                ])
            }
        }
        Template::parse(t)?.render(&data, Some(&Q))
    }

    fn render(t: &str, value: f64) -> String {
        render_with(t, &[("instance", "host:1"), ("job", "api")], value).unwrap()
    }

    #[test]
    fn a_node_is_no_larger_than_an_action() {
        // every parsed text and action node is this size: the blocks are boxed
        assert!(std::mem::size_of::<Node>() <= std::mem::size_of::<Pipeline>() + 8);
    }

    #[test]
    fn a_text_without_actions_renders_as_itself_and_holds_no_nodes() {
        // (template, plain, rendered): only a text without `{{` skips the parser
        let cases = [
            ("page", true, "page"),
            ("", true, ""),
            // braces that open no action are text, in Go as here
            ("a } b {c} }}", true, "a } b {c} }}"),
            ("{{/* only a comment */}}", false, ""),
            ("x {{ $value }}", false, "x 2"),
            ("{{- \" a \" -}}", false, " a "),
        ];
        for (t, plain, want) in cases {
            let parsed = Template::parse(t).unwrap();
            assert_eq!(parsed.is_plain(), plain, "{t}");
            assert_eq!(
                parsed.nodes.is_empty(),
                plain || t.starts_with("{{/*"),
                "{t}"
            );
            assert_eq!(parsed.source(), t);
            assert_eq!(render(t, 2.0), want, "{t}");
        }
        // a plain text is a notification template too, within the same output limit
        let payload = serde_json::json!({});
        let ok = Template::parse("x").unwrap();
        assert_eq!(ok.render_notification(&payload, &[], 0).unwrap(), "x");
        let long = Template::parse(&"x".repeat(MAX_NOTIFICATION_OUTPUT_BYTES + 1)).unwrap();
        assert!(long.render_notification(&payload, &[], 0).is_err());
    }

    #[test]
    fn time_functions_as_prometheus_3() {
        // expected values from Prometheus's template_test.go (its `now` is 1353755652 s, as here)
        for (t, want) in [
            ("{{ (1800 | toDuration).String }}", "30m0s"),
            (r#"{{ ("1800" | toDuration).String }}"#, "30m0s"),
            ("{{ 5400 | toDuration }}", "1h30m0s"),
            ("{{ (90 | toDuration).Minutes }}", "1.5"),
            ("{{ now }}", "1.353755652e+09"),
            // `%v` of a float64, as promtool renders `{{ $value }}`
            ("{{ 123456 }}", "123456"),
            ("{{ 1234567.0 }}", "1.234567e+06"),
            ("{{ 0.0001 }}", "0.0001"),
            ("{{ 0.00001 }}", "1e-05"),
            (
                r#"{{ (now | toTime).Format "Mon Jan 2 15:04:05 2006" }}"#,
                "Sat Nov 24 11:14:12 2012",
            ),
            (
                r#"{{ ("-30m" | parseDuration | toDuration | (now | toTime).Add).UnixMilli }}"#,
                "1353753852000",
            ),
            (r#"{{ (1435065584.128 | toTime).Format "2006" }}"#, "2015"),
            (r#"{{ ("1435065584.128" | toTime).Format "2006" }}"#, "2015"),
            (
                "{{ 1435065584.128 | toTime }}",
                "2015-06-23 13:19:44.128 +0000 UTC",
            ),
            (
                r#"{{ $t := now | toTime }}{{ $t.Format "15:04" }}"#,
                "11:14",
            ),
            (
                r#"{{ "a b&c=d/é~*" | urlQueryEscape }}"#,
                "a+b%26c%3Dd%2F%C3%A9~%2A",
            ),
        ] {
            assert_eq!(render(t, 0.0), want, "{t}");
        }
        for (t, err) in [
            ("{{ (1 | toDuration).Nope }}", "can't evaluate field Nope"),
            (
                r#"{{ (1 | toDuration).Format "x" }}"#,
                "can't evaluate field Format",
            ),
            ("{{ 1e300 | toTime }}", "cannot be converted to a time"),
            (r#"{{ "x" | toDuration }}"#, "cannot convert"),
            ("{{ (now | toTime).Add 5 }}", "not a duration"),
            (
                r#"{{ (now | toTime).Format "2006" "x" }}"#,
                "want 1 arguments",
            ),
        ] {
            let got = render_with(t, &[], 0.0);
            assert!(
                matches!(&got, Err(e) if e.to_string().contains(err)),
                "{t}: {got:?}"
            );
        }
        let long = format!(
            r#"{{{{ (now | toTime).Format "{}" }}}}"#,
            "2006".repeat(300)
        );
        assert!(
            render_with(&long, &[], 0.0).is_err(),
            "an overlong layout is refused"
        );
    }

    #[test]
    fn prometheus_humanize_outputs() {
        // expected values from Prometheus's template_test.go
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (1234567.0, "1.235M"),
            (12345.0, "12.35k"),
            (0.0001234, "123.4u"),
            (-1234567.0, "-1.235M"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
            (1e30, "1e+06Y"),
        ] {
            assert_eq!(render("{{ humanize $value }}", v), want, "humanize({v})");
        }
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (1048576.0, "1Mi"),
            (1234567.0, "1.177Mi"),
            (4096.0, "4ki"),
        ] {
            assert_eq!(
                render("{{ humanize1024 $value }}", v),
                want,
                "humanize1024({v})"
            );
        }
        for (v, want) in [
            (0.0, "0s"),
            (1.0, "1s"),
            (60.0, "1m 0s"),
            (3600.0, "1h 0m 0s"),
            (86400.0, "1d 0h 0m 0s"),
            (90061.0, "1d 1h 1m 1s"),
            (3661.0, "1h 1m 1s"),
            (1.5, "1.5s"),
            (0.5, "500ms"),
            (0.0012, "1.2ms"),
            (-3661.0, "-1h 1m 1s"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(
                render("{{ humanizeDuration $value }}", v),
                want,
                "humanizeDuration({v})"
            );
        }
        assert_eq!(render("{{ $value | humanizePercentage }}", 0.0512), "5.12%");
        assert_eq!(render("{{ $value | humanizePercentage }}", 0.0123), "1.23%");
        assert_eq!(
            render("{{ humanizeTimestamp $value }}", 1435065584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
    }

    #[test]
    fn seed_annotations_render_as_promtool() {
        assert_eq!(
            render(
                "scaidns 5xx ratio {{ $value | humanizePercentage }} on {{ $labels.instance }}",
                0.0123
            ),
            "scaidns 5xx ratio 1.23% on host:1"
        );
        assert_eq!(
            render(r#"{{ printf "%.2f" $value }} jobs/s"#, 1.23456),
            "1.23 jobs/s"
        );
        assert_eq!(
            render(
                "{{ .Labels.job }} {{ .Value }} {{ $externalLabels.cluster }}",
                2.5
            ),
            "api 2.5 eu1"
        );
        assert_eq!(render("{{ $value }}", 1e21), "1e+21");
        assert_eq!(render("{{ $value }}", 0.00001), "1e-05");
    }

    #[test]
    fn control_flow_variables_and_trimming() {
        assert_eq!(
            render(
                "{{ if gt $value 1.0 }}high{{ else if gt $value 0.5 }}mid{{ else }}low{{ end }}",
                0.7
            ),
            "mid"
        );
        assert_eq!(
            render("{{- $x := toUpper $labels.job -}} [ {{ $x }} ]", 0.0),
            "[ API ]"
        );
        assert_eq!(render("a {{/* note */}} b", 0.0), "a  b");
        assert_eq!(
            render("{{ with $labels.missing }}x{{ else }}none{{ end }}", 0.0),
            "none"
        );
        assert_eq!(
            render(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0
            ),
            "instance=host:1;job=api;"
        );
        assert_eq!(
            render(
                r#"{{ reReplaceAll ":.*" "" $labels.instance | title }}"#,
                0.0
            ),
            "Host"
        );
        assert_eq!(
            render(
                r#"{{ if match "^host" $labels.instance }}yes{{ end }}"#,
                0.0
            ),
            "yes"
        );
        assert_eq!(render("{{ $labels.instance | stripPort }}", 0.0), "host");
    }

    #[test]
    fn template_regexes_are_held_to_the_label_regex_limits() {
        let nested = "(a{1,100}){1,100}b";
        // a literal: refused when the template is loaded
        for t in [
            format!(r#"{{{{ reReplaceAll "{nested}" "" $labels.job }}}}"#),
            format!(r#"{{{{ if match "{nested}" $labels.job }}}}y{{{{ end }}}}"#),
            format!(r#"{{{{ $labels.job | reReplaceAll "{nested}" "" }}}}"#),
        ] {
            let e = Template::parse(&t).unwrap_err().to_string();
            assert!(e.contains("more than the limit of 1000 times"), "{t}: {e}");
        }
        // from the data: the render fails cleanly, at once
        let started = std::time::Instant::now();
        for t in [
            r#"{{ reReplaceAll $labels.re "" $labels.long }}"#,
            r#"{{ match $labels.re $labels.long }}"#,
        ] {
            let long = "a".repeat(5_000);
            let e = render_with(t, &[("re", nested), ("long", &long)], 0.0).unwrap_err();
            assert!(
                e.to_string().contains("more than the limit of 1000 times"),
                "{t}: {e}"
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // unanchored, as Go's regexp: a search, not a whole-string match
        assert_eq!(
            render_with(r#"{{ reReplaceAll "o" "0" "foo" }}"#, &[], 0.0).unwrap(),
            "f00"
        );
    }

    #[test]
    fn query_results_are_usable() {
        assert_eq!(render(r#"{{ query "x" | first | value }}"#, 0.0), "2");
        assert_eq!(
            render(
                r#"{{ range query "x" | sortByLabel "instance" }}{{ .Labels.instance }}:{{ .Value }} {{ end }}"#,
                0.0
            ),
            "a:1.5 b:2 "
        );
        let e = render_with(r#"{{ query "fail" }}"#, &[], 0.0).unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[test]
    fn check_time_errors_name_the_position() {
        let e = Template::parse("ok {{ nosuchfunc $value }}").unwrap_err();
        assert!(matches!(&e, TemplateError::Parse { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("\"nosuchfunc\" not defined"), "{e}");
        let e = Template::parse("Instance {{ $label.foo }} down").unwrap_err();
        assert!(
            e.to_string().contains("undefined variable \"$label\""),
            "{e}"
        );
        assert!(Template::parse("{{ if $value }}x").is_err());
        assert!(Template::parse("x }} {{ end }}").is_err());
        assert!(Template::parse("{{ template \"x\" }}").is_err());
        let e = Template::parse("line1\n{{ $value | \n").unwrap_err();
        assert!(matches!(e, TemplateError::Parse { line: 2, .. }), "{e}");
    }

    /// The shapes that overflowed the stack, `n` levels deep.
    fn deep_templates(n: usize) -> Vec<(&'static str, String)> {
        vec![
            (
                "if",
                format!("{}x{}", "{{ if true }}".repeat(n), "{{ end }}".repeat(n)),
            ),
            (
                "with",
                format!("{}x{}", "{{ with 1 }}".repeat(n), "{{ end }}".repeat(n)),
            ),
            (
                "range",
                format!(
                    "{}x{}",
                    "{{ range $labels }}".repeat(n),
                    "{{ end }}".repeat(n)
                ),
            ),
            (
                "parentheses",
                format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n)),
            ),
        ]
    }

    #[test]
    fn templates_deeper_than_the_limit_are_refused_at_parse() {
        for n in [MAX_TEMPLATE_DEPTH, 3_000, 20_000] {
            for (shape, text) in deep_templates(n) {
                match Template::parse(&text) {
                    Err(TemplateError::Parse { message, line, .. }) => {
                        assert!(message.contains("limit of 64"), "{shape}: {message}");
                        assert_eq!(line, 1, "{shape}");
                    }
                    other => panic!("{shape} at {n}: expected a parse error, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn deepest_templates_fit_a_small_stack() {
        let handle = std::thread::Builder::new()
            .stack_size(crate::daemon::THREAD_STACK_BYTES / 2)
            .spawn(|| {
                for (shape, text) in deep_templates(MAX_TEMPLATE_DEPTH - 2) {
                    Template::parse(&text).unwrap_or_else(|e| panic!("{shape}: {e}"));
                    let out = render_with(&text, &[("a", "b")], 1.0)
                        .unwrap_or_else(|e| panic!("{shape}: {e}"));
                    assert!(out == "x" || out == "1", "{shape}: {out}");
                }
            })
            .unwrap();
        handle.join().expect("no stack overflow at the depth limit");
    }
}
