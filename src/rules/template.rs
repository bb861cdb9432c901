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

use std::collections::BTreeMap;
use std::fmt::Write;

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
    nodes: Vec<Node>,
    /// the text it was parsed from (what the rules API shows)
    source: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        vars: Vec<String>,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// `$x := …` (declare) or `$x = …` (assign)
    decl: Option<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Func(String),
    Var(String, Vec<String>),
    Field(Vec<String>),
    Dot,
    Str(String),
    Num(f64),
    Bool(bool),
    Sub(Box<Pipeline>),
}

const FUNCS: &[&str] = &[
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

// ---------------------------------------------------------------- parsing

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Var(String, Vec<String>),
    Field(Vec<String>),
    Dot,
    Str(String),
    Num(f64),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

impl Template {
    /// Parses and checks a template: syntax, functions and variables.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
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
        };
        let (nodes, end) = p.nodes()?;
        if let Some((kw, off)) = end {
            return Err(p.err(off, format!("unexpected {{{{{kw}}}}}")));
        }
        Ok(Template {
            nodes,
            source: text.to_string(),
        })
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `data`; `query` serves `query "…"` (None: `query` fails).
    pub fn render(
        &self,
        data: &TemplateData<'_>,
        query: Option<&dyn QueryFn>,
    ) -> Result<String, TemplateError> {
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
        };
        r.nodes(&self.nodes, &Val::Root)?;
        Ok(r.out)
    }
}

/// A template split into text and action segments (with the action's byte offset).
enum Seg {
    Text(String),
    Action(String, usize),
}

fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text[..off.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| off - i).unwrap_or(off + 1);
    (line, col)
}

fn split(text: &str) -> Result<Vec<Seg>, TemplateError> {
    let mut segs = Vec::new();
    let mut rest = 0;
    let mut pending_trim = false;
    while let Some(open) = text[rest..].find("{{") {
        let open = rest + open;
        let mut literal = text[rest..open].to_string();
        if pending_trim {
            literal = literal.trim_start().to_string();
        }
        let mut start = open + 2;
        let trim_left = text[start..].starts_with("- ")
            || text[start..].starts_with("-\t")
            || text[start..].starts_with("-\n");
        if trim_left {
            literal = literal.trim_end().to_string();
            start += 1;
        }
        if !literal.is_empty() {
            segs.push(Seg::Text(literal));
        }
        let inner_start = start;
        let close = if text[start..].trim_start().starts_with("/*") {
            let c = text[start..]
                .find("*/")
                .map(|i| start + i + 2)
                .ok_or_else(|| {
                    let (line, col) = line_col(text, open);
                    TemplateError::Parse {
                        line,
                        col,
                        message: "unclosed comment".into(),
                    }
                })?;
            let after = text[c..].trim_start_matches([' ', '\t', '\n']);
            let c2 = c + (text[c..].len() - after.len());
            if let Some(stripped) = after.strip_prefix("-}}") {
                let _ = stripped;
                pending_trim = true;
                rest = c2 + 3;
                continue;
            } else if after.starts_with("}}") {
                pending_trim = false;
                rest = c2 + 2;
                continue;
            }
            let (line, col) = line_col(text, open);
            return Err(TemplateError::Parse {
                line,
                col,
                message: "comment ends before closing delimiter".into(),
            });
        } else {
            find_close(text, start).ok_or_else(|| {
                let (line, col) = line_col(text, open);
                TemplateError::Parse {
                    line,
                    col,
                    message: "unclosed action".into(),
                }
            })?
        };
        let mut inner_end = close;
        pending_trim = false;
        if close > inner_start && text[..close].ends_with(" -")
            || text[..close].ends_with("\t-")
            || text[..close].ends_with("\n-")
        {
            inner_end = close - 1;
            pending_trim = true;
        }
        segs.push(Seg::Action(
            text[inner_start..inner_end].to_string(),
            inner_start,
        ));
        rest = close + 2;
    }
    let mut literal = text[rest..].to_string();
    if pending_trim {
        literal = literal.trim_start().to_string();
    }
    if !literal.is_empty() {
        segs.push(Seg::Text(literal));
    }
    Ok(segs)
}

/// The `}}` closing an action starting at `from`, skipping string literals.
fn find_close(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = from;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

impl<'a> Lexer<'a> {
    fn tokens(mut self) -> Result<Vec<Tok>, String> {
        let mut out = Vec::new();
        let b = self.src.as_bytes();
        while self.pos < b.len() {
            let c = b[self.pos];
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'|' => {
                    out.push(Tok::Pipe);
                    self.pos += 1
                }
                b'(' => {
                    out.push(Tok::LParen);
                    self.pos += 1
                }
                b')' => {
                    out.push(Tok::RParen);
                    self.pos += 1;
                    // a field access on a parenthesized pipeline is not supported
                    if b.get(self.pos) == Some(&b'.') {
                        return Err("field access on a parenthesized value is not supported".into());
                    }
                }
                b',' => {
                    out.push(Tok::Comma);
                    self.pos += 1
                }
                b':' if b.get(self.pos + 1) == Some(&b'=') => {
                    out.push(Tok::Declare);
                    self.pos += 2
                }
                b'=' => {
                    out.push(Tok::Assign);
                    self.pos += 1
                }
                b'"' => {
                    let start = self.pos;
                    self.pos += 1;
                    while self.pos < b.len() && b[self.pos] != b'"' {
                        if b[self.pos] == b'\\' {
                            self.pos += 1;
                        }
                        self.pos += 1;
                    }
                    if self.pos >= b.len() {
                        return Err("unterminated quoted string".into());
                    }
                    self.pos += 1;
                    out.push(Tok::Str(unquote(&self.src[start..self.pos])?));
                }
                b'`' => {
                    let start = self.pos + 1;
                    let end = self.src[start..]
                        .find('`')
                        .ok_or("unterminated raw string")?;
                    out.push(Tok::Str(self.src[start..start + end].to_string()));
                    self.pos = start + end + 1;
                }
                b'$' => {
                    let start = self.pos;
                    self.pos += 1;
                    self.word();
                    let name = self.src[start..self.pos].to_string();
                    let fields = self.fields();
                    out.push(Tok::Var(name, fields));
                }
                b'.' => {
                    let next = b.get(self.pos + 1).copied();
                    if next.is_some_and(|n| n.is_ascii_alphabetic() || n == b'_') {
                        let fields = self.fields();
                        out.push(Tok::Field(fields));
                    } else {
                        out.push(Tok::Dot);
                        self.pos += 1;
                    }
                }
                b'0'..=b'9' | b'-' | b'+' => {
                    let start = self.pos;
                    self.pos += 1;
                    while self.pos < b.len()
                        && (b[self.pos].is_ascii_alphanumeric()
                            || b[self.pos] == b'.'
                            || ((b[self.pos] == b'-' || b[self.pos] == b'+')
                                && matches!(b[self.pos - 1], b'e' | b'E')))
                    {
                        self.pos += 1;
                    }
                    let t = &self.src[start..self.pos];
                    let v = crate::promql::notation::parse_number(t)
                        .ok_or_else(|| format!("bad number syntax: {t:?}"))?;
                    out.push(Tok::Num(v));
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let start = self.pos;
                    self.word();
                    out.push(Tok::Ident(self.src[start..self.pos].to_string()));
                }
                other => return Err(format!("unexpected {:?} in action", other as char)),
            }
        }
        Ok(out)
    }

    fn word(&mut self) {
        let b = self.src.as_bytes();
        while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'_') {
            self.pos += 1;
        }
    }

    fn fields(&mut self) -> Vec<String> {
        let b = self.src.as_bytes();
        let mut out = Vec::new();
        while self.pos < b.len() && b[self.pos] == b'.' {
            self.pos += 1;
            let start = self.pos;
            self.word();
            out.push(self.src[start..self.pos].to_string());
        }
        out
    }
}

fn unquote(s: &str) -> Result<String, String> {
    crate::promql::notation::unquote(s).map_err(|e| e.to_string())
}

struct Parser<'a> {
    segs: Vec<Seg>,
    i: usize,
    text: &'a str,
    scopes: Vec<Vec<String>>,
    /// the tokens after `else` of the `{{else …}}` that ended the last `nodes()`
    pending_else: Option<Vec<Tok>>,
}

impl Parser<'_> {
    fn err(&self, off: usize, message: String) -> TemplateError {
        let (line, col) = line_col(self.text, off);
        TemplateError::Parse { line, col, message }
    }

    /// Nodes until an `end`/`else` keyword (returned with its offset) or the end of input.
    #[allow(clippy::type_complexity)]
    fn nodes(&mut self) -> Result<(Vec<Node>, Option<(String, usize)>), TemplateError> {
        let mut out = Vec::new();
        while self.i < self.segs.len() {
            let (action, off) = match &self.segs[self.i] {
                Seg::Text(t) => {
                    out.push(Node::Text(t.clone()));
                    self.i += 1;
                    continue;
                }
                Seg::Action(a, off) => (a.clone(), *off),
            };
            self.i += 1;
            let toks = Lexer {
                src: &action,
                pos: 0,
            }
            .tokens()
            .map_err(|m| self.err(off, m))?;
            let kw = match toks.first() {
                Some(Tok::Ident(k)) => k.as_str(),
                _ => "",
            };
            match kw {
                "end" => return Ok((out, Some(("end".into(), off)))),
                "else" => {
                    let rest: Vec<Tok> = toks[1..].to_vec();
                    let tag = if matches!(rest.first(), Some(Tok::Ident(k)) if k == "if") {
                        "else if"
                    } else {
                        "else"
                    };
                    // the rest of an `else if` is the caller's next condition
                    self.pending_else = Some(rest);
                    return Ok((out, Some((tag.into(), off))));
                }
                "if" => out.push(self.if_node(&toks[1..], off)?),
                "range" => {
                    self.scopes.push(Vec::new());
                    let (vars, pipe_toks) = split_range_vars(&toks[1..]);
                    for v in &vars {
                        self.scopes.last_mut().expect("scope").push(v.clone());
                    }
                    let pipe = self.pipeline(pipe_toks, off)?;
                    let (body, end) = self.nodes()?;
                    let otherwise = self.else_part(end, off)?;
                    self.scopes.pop();
                    out.push(Node::Range {
                        pipe,
                        vars,
                        body,
                        otherwise,
                    });
                }
                "with" => {
                    let pipe = self.pipeline(&toks[1..], off)?;
                    self.scopes.push(Vec::new());
                    let (body, end) = self.nodes()?;
                    self.scopes.pop();
                    let otherwise = self.else_part(end, off)?;
                    out.push(Node::With {
                        pipe,
                        body,
                        otherwise,
                    });
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(self.err(off, format!("{{{{{kw}}}}} is not supported")));
                }
                _ => {
                    let pipe = self.pipeline(&toks, off)?;
                    out.push(Node::Action(pipe));
                }
            }
        }
        Ok((out, None))
    }

    fn if_node(&mut self, cond: &[Tok], off: usize) -> Result<Node, TemplateError> {
        let mut branches = Vec::new();
        let mut cond: Vec<Tok> = cond.to_vec();
        let mut cond_off = off;
        loop {
            let pipe = self.pipeline(&cond, cond_off)?;
            self.scopes.push(Vec::new());
            let (body, end) = self.nodes()?;
            self.scopes.pop();
            branches.push((pipe, body));
            match end {
                Some((k, _)) if k == "end" => {
                    return Ok(Node::If {
                        branches,
                        otherwise: Vec::new(),
                    });
                }
                Some((k, o)) if k == "else if" => {
                    let rest = self.take_else()?;
                    cond = rest[1..].to_vec();
                    cond_off = o;
                }
                Some((k, o)) if k == "else" => {
                    self.take_else()?;
                    self.scopes.push(Vec::new());
                    let (otherwise, end) = self.nodes()?;
                    self.scopes.pop();
                    if !matches!(end, Some((ref k, _)) if k == "end") {
                        return Err(self.err(o, "missing {{end}} after {{else}}".into()));
                    }
                    return Ok(Node::If {
                        branches,
                        otherwise,
                    });
                }
                _ => return Err(self.err(off, "unexpected EOF: missing {{end}} for {{if}}".into())),
            }
        }
    }

    fn else_part(
        &mut self,
        end: Option<(String, usize)>,
        off: usize,
    ) -> Result<Vec<Node>, TemplateError> {
        match end {
            Some((k, _)) if k == "end" => Ok(Vec::new()),
            Some((k, o)) if k == "else" => {
                self.take_else()?;
                let (otherwise, end) = self.nodes()?;
                if !matches!(end, Some((ref k, _)) if k == "end") {
                    return Err(self.err(o, "missing {{end}} after {{else}}".into()));
                }
                Ok(otherwise)
            }
            Some((_, o)) => Err(self.err(o, "{{else if}} is only valid in {{if}}".into())),
            None => Err(self.err(off, "unexpected EOF: missing {{end}}".into())),
        }
    }

    fn take_else(&mut self) -> Result<Vec<Tok>, TemplateError> {
        Ok(self.pending_else.take().unwrap_or_default())
    }

    fn declared(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.iter().any(|v| v == name))
    }

    fn pipeline(&mut self, toks: &[Tok], off: usize) -> Result<Pipeline, TemplateError> {
        let mut toks = toks;
        let mut decl = None;
        if let [Tok::Var(name, f), Tok::Declare | Tok::Assign, rest @ ..] = toks {
            if !f.is_empty() {
                return Err(self.err(off, "cannot assign to a field".into()));
            }
            if matches!(toks[1], Tok::Assign) && !self.declared(name) {
                return Err(self.err(off, format!("undefined variable {name:?}")));
            }
            decl = Some(name.clone());
            toks = rest;
        }
        if toks.is_empty() {
            return Err(self.err(off, "missing value for command".into()));
        }
        let mut cmds = Vec::new();
        let mut i = 0;
        let mut cur = Vec::new();
        while i < toks.len() {
            match &toks[i] {
                Tok::Pipe => {
                    if cur.is_empty() {
                        return Err(self.err(off, "missing command before |".into()));
                    }
                    cmds.push(std::mem::take(&mut cur));
                }
                Tok::LParen => {
                    let mut depth = 1;
                    let start = i + 1;
                    while depth > 0 {
                        i += 1;
                        match toks.get(i) {
                            Some(Tok::LParen) => depth += 1,
                            Some(Tok::RParen) => depth -= 1,
                            None => return Err(self.err(off, "unclosed left paren".into())),
                            _ => {}
                        }
                    }
                    let inner = self.pipeline(&toks[start..i], off)?;
                    cur.push(Arg::Sub(Box::new(inner)));
                }
                Tok::RParen => return Err(self.err(off, "unexpected right paren".into())),
                Tok::Ident(name) => match name.as_str() {
                    "true" => cur.push(Arg::Bool(true)),
                    "false" => cur.push(Arg::Bool(false)),
                    "nil" => return Err(self.err(off, "nil is not a command".into())),
                    f if FUNCS.contains(&f) => cur.push(Arg::Func(f.to_string())),
                    f => return Err(self.err(off, format!("function {f:?} not defined"))),
                },
                Tok::Var(name, fields) => {
                    if !self.declared(name) {
                        return Err(self.err(off, format!("undefined variable {name:?}")));
                    }
                    cur.push(Arg::Var(name.clone(), fields.clone()));
                }
                Tok::Field(f) => cur.push(Arg::Field(f.clone())),
                Tok::Dot => cur.push(Arg::Dot),
                Tok::Str(s) => cur.push(Arg::Str(s.clone())),
                Tok::Num(n) => cur.push(Arg::Num(*n)),
                Tok::Declare | Tok::Assign | Tok::Comma => {
                    return Err(self.err(off, "unexpected := or , in command".into()));
                }
            }
            i += 1;
        }
        if cur.is_empty() {
            return Err(self.err(off, "missing command after |".into()));
        }
        cmds.push(cur);
        for c in &cmds[1..] {
            if !matches!(c[0], Arg::Func(_)) {
                return Err(self.err(off, "non executable command in pipeline stage".into()));
            }
        }
        if let Some(d) = &decl
            && !self.declared(d)
        {
            self.scopes.last_mut().expect("scope").push(d.clone());
        }
        Ok(Pipeline { decl, cmds })
    }
}

/// `range $i, $x := pipe` or `range $x := pipe`: the variables and the pipeline tokens.
fn split_range_vars(toks: &[Tok]) -> (Vec<String>, &[Tok]) {
    match toks {
        [
            Tok::Var(a, fa),
            Tok::Comma,
            Tok::Var(b, fb),
            Tok::Declare,
            rest @ ..,
        ] if fa.is_empty() && fb.is_empty() => (vec![a.clone(), b.clone()], rest),
        [Tok::Var(a, fa), Tok::Declare, rest @ ..] if fa.is_empty() => (vec![a.clone()], rest),
        _ => (Vec::new(), toks),
    }
}

// ---------------------------------------------------------------- rendering

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Nil,
    Root,
    Str(String),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Results(Vec<QueryResult>),
    Result(QueryResult),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Root => true,
            Val::Str(s) => !s.is_empty(),
            Val::Num(n) => *n != 0.0,
            Val::Bool(b) => *b,
            Val::Map(m) => !m.is_empty(),
            Val::Results(r) => !r.is_empty(),
            Val::Result(_) => true,
        }
    }

    fn print(&self) -> String {
        match self {
            Val::Nil => "<no value>".into(),
            Val::Root => "map[]".into(),
            Val::Str(s) => s.clone(),
            Val::Num(n) => go_float_v(*n),
            Val::Bool(b) => b.to_string(),
            Val::Map(m) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", parts.join(" "))
            }
            Val::Results(r) => format!(
                "[{}]",
                r.iter()
                    .map(|x| Val::Result(x.clone()).print())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Val::Result(q) => format!(
                "{{{} {}}}",
                Val::Map(q.labels.clone()).print(),
                go_float_v(q.value)
            ),
        }
    }

    fn num(&self) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(*n),
            Val::Bool(b) => Ok(f64::from(u8::from(*b))),
            Val::Str(s) => s
                .trim()
                .parse::<f64>()
                .or_else(|_| crate::promql::notation::parse_number(s.trim()).ok_or(()))
                .map_err(|_| format!("cannot convert {s:?} to a number")),
            Val::Result(q) => Ok(q.value),
            other => Err(format!("cannot convert {} to a number", other.print())),
        }
    }
}

struct Renderer<'a> {
    data: &'a TemplateData<'a>,
    query: Option<&'a dyn QueryFn>,
    vars: Vec<Vec<(String, Val)>>,
    out: String,
}

impl Renderer<'_> {
    fn nodes(&mut self, nodes: &[Node], dot: &Val) -> Result<(), TemplateError> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_none() {
                        let s = v.print();
                        self.out.push_str(&s);
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mut done = false;
                    for (cond, body) in branches {
                        if self.pipeline(cond, dot)?.truthy() {
                            self.scoped(body, dot)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.scoped(otherwise, dot)?;
                    }
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let v = self.pipeline(pipe, dot)?;
                    if v.truthy() {
                        self.scoped(body, &v)?;
                    } else {
                        self.scoped(otherwise, dot)?;
                    }
                }
                Node::Range {
                    pipe,
                    vars,
                    body,
                    otherwise,
                } => {
                    let v = self.pipeline(pipe, dot)?;
                    let items: Vec<(Val, Val)> = match v {
                        Val::Results(r) => r
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Val::Num(i as f64), Val::Result(x)))
                            .collect(),
                        Val::Map(m) => m
                            .into_iter()
                            .map(|(k, v)| (Val::Str(k), Val::Str(v)))
                            .collect(),
                        Val::Nil => Vec::new(),
                        other => {
                            return Err(TemplateError::Render(format!(
                                "range can't iterate over {}",
                                other.print()
                            )));
                        }
                    };
                    if items.is_empty() {
                        self.scoped(otherwise, dot)?;
                    }
                    for (k, x) in items {
                        let mut scope = Vec::new();
                        match vars.as_slice() {
                            [one] => scope.push((one.clone(), x.clone())),
                            [a, b] => {
                                scope.push((a.clone(), k));
                                scope.push((b.clone(), x.clone()));
                            }
                            _ => {}
                        }
                        self.vars.push(scope);
                        let r = self.nodes(body, &x);
                        self.vars.pop();
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn scoped(&mut self, nodes: &[Node], dot: &Val) -> Result<(), TemplateError> {
        self.vars.push(Vec::new());
        let r = self.nodes(nodes, dot);
        self.vars.pop();
        r
    }

    fn lookup(&self, name: &str) -> Val {
        for scope in self.vars.iter().rev() {
            if let Some((_, v)) = scope.iter().rev().find(|(n, _)| n == name) {
                return v.clone();
            }
        }
        Val::Nil
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> Result<Val, TemplateError> {
        let mut prev: Option<Val> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, dot, prev)?);
        }
        let v = prev.unwrap_or(Val::Nil);
        if let Some(name) = &p.decl {
            // `:=` declares in the innermost scope; `=` assigns where it was declared
            let mut assigned = false;
            for scope in self.vars.iter_mut().rev() {
                if let Some(slot) = scope.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                    assigned = true;
                    break;
                }
            }
            if !assigned {
                self.vars
                    .last_mut()
                    .expect("scope")
                    .push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn field(&self, base: Val, fields: &[String]) -> Result<Val, TemplateError> {
        let mut v = base;
        for f in fields {
            v = match (&v, f.as_str()) {
                (Val::Root, "Labels") => Val::Map(self.data.labels.clone()),
                (Val::Root, "ExternalLabels") => Val::Map(self.data.external_labels.clone()),
                (Val::Root, "ExternalURL") => Val::Str(self.data.external_url.to_string()),
                (Val::Root, "Value") => Val::Num(self.data.value),
                (Val::Map(m), k) => m.get(k).map(|s| Val::Str(s.clone())).unwrap_or(Val::Nil),
                (Val::Result(q), "Labels") => Val::Map(q.labels.clone()),
                (Val::Result(q), "Value") => Val::Num(q.value),
                (other, k) => {
                    return Err(TemplateError::Render(format!(
                        "can't evaluate field {k} in {}",
                        other.print()
                    )));
                }
            };
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Val) -> Result<Val, TemplateError> {
        Ok(match a {
            Arg::Var(name, fields) => {
                let base = if name == "$" {
                    Val::Root
                } else {
                    self.lookup(name)
                };
                self.field(base, fields)?
            }
            Arg::Field(fields) => self.field(dot.clone(), fields)?,
            Arg::Dot => dot.clone(),
            Arg::Str(s) => Val::Str(s.clone()),
            Arg::Num(n) => Val::Num(*n),
            Arg::Bool(b) => Val::Bool(*b),
            Arg::Sub(p) => self.pipeline(p, dot)?,
            Arg::Func(f) => self.call(f, Vec::new())?,
        })
    }

    fn command(&mut self, cmd: &[Arg], dot: &Val, prev: Option<Val>) -> Result<Val, TemplateError> {
        match &cmd[0] {
            Arg::Func(f) => {
                let mut args = Vec::with_capacity(cmd.len());
                for a in &cmd[1..] {
                    args.push(self.arg(a, dot)?);
                }
                if let Some(p) = prev {
                    args.push(p);
                }
                self.call(f, args)
            }
            a => {
                if cmd.len() > 1 || prev.is_some() {
                    return Err(TemplateError::Render(
                        "can't give argument to non-function".into(),
                    ));
                }
                self.arg(a, dot)
            }
        }
    }

    fn call(&mut self, f: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
        let e = |m: String| TemplateError::Render(format!("error calling {f}: {m}"));
        let want = |n: usize| -> Result<(), TemplateError> {
            if args.len() != n {
                Err(TemplateError::Render(format!(
                    "wrong number of args for {f}: want {n} got {}",
                    args.len()
                )))
            } else {
                Ok(())
            }
        };
        let num0 = |args: &[Val]| args[0].num().map_err(e);
        let s = |v: &Val| v.print();
        Ok(match f {
            "humanize" => {
                want(1)?;
                Val::Str(humanize(num0(&args)?))
            }
            "humanize1024" => {
                want(1)?;
                Val::Str(humanize1024(num0(&args)?))
            }
            "humanizeDuration" => {
                want(1)?;
                Val::Str(humanize_duration(num0(&args)?))
            }
            "humanizePercentage" => {
                want(1)?;
                Val::Str(format!("{}%", go_g(num0(&args)? * 100.0, 4)))
            }
            "humanizeTimestamp" => {
                want(1)?;
                let v = num0(&args)?;
                if !v.is_finite() {
                    Val::Str(go_g(v, 4))
                } else {
                    let ms = (v * 1000.0).round() as i64;
                    let t = crate::timefmt::format_rfc3339(ms);
                    // Go's time.Time String(): "2006-01-02 15:04:05.999 +0000 UTC"
                    let t = t.trim_end_matches('Z').replacen('T', " ", 1);
                    Val::Str(format!("{t} +0000 UTC"))
                }
            }
            "toUpper" => {
                want(1)?;
                Val::Str(s(&args[0]).to_uppercase())
            }
            "toLower" => {
                want(1)?;
                Val::Str(s(&args[0]).to_lowercase())
            }
            "title" => {
                want(1)?;
                let mut out = String::new();
                let mut start = true;
                for c in s(&args[0]).chars() {
                    if start && c.is_alphabetic() {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                    start = !c.is_alphanumeric() && c != '\'';
                }
                Val::Str(out)
            }
            "reReplaceAll" => {
                want(3)?;
                let re = regex::Regex::new(&s(&args[0])).map_err(|x| e(x.to_string()))?;
                Val::Str(
                    re.replace_all(&s(&args[2]), s(&args[1]).as_str())
                        .into_owned(),
                )
            }
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&s(&args[0])).map_err(|x| e(x.to_string()))?;
                Val::Bool(re.is_match(&s(&args[1])))
            }
            "printf" => {
                if args.is_empty() {
                    return Err(e("missing format".into()));
                }
                Val::Str(go_printf(&s(&args[0]), &args[1..]))
            }
            "print" => Val::Str(go_sprint(&args)),
            "println" => Val::Str(args.iter().map(Val::print).collect::<Vec<_>>().join(" ") + "\n"),
            "query" => {
                want(1)?;
                let q = self.query.ok_or_else(|| e("no query engine".into()))?;
                Val::Results(q.query(&s(&args[0])).map_err(e)?)
            }
            "first" => {
                want(1)?;
                match &args[0] {
                    Val::Results(r) => r
                        .first()
                        .cloned()
                        .map(Val::Result)
                        .ok_or_else(|| e("first() called on vector with no elements".into()))?,
                    other => return Err(e(format!("first of {}", other.print()))),
                }
            }
            "value" => {
                want(1)?;
                match &args[0] {
                    Val::Result(q) => Val::Num(q.value),
                    other => Val::Num(other.num().map_err(e)?),
                }
            }
            "label" => {
                want(2)?;
                match &args[1] {
                    Val::Result(q) => {
                        Val::Str(q.labels.get(&s(&args[0])).cloned().unwrap_or_default())
                    }
                    Val::Map(m) => Val::Str(m.get(&s(&args[0])).cloned().unwrap_or_default()),
                    other => return Err(e(format!("label of {}", other.print()))),
                }
            }
            "strvalue" => {
                want(1)?;
                match &args[0] {
                    Val::Result(q) => {
                        Val::Str(q.labels.get("__value__").cloned().unwrap_or_default())
                    }
                    other => return Err(e(format!("strvalue of {}", other.print()))),
                }
            }
            "sortByLabel" => {
                want(2)?;
                let key = s(&args[0]);
                match &args[1] {
                    Val::Results(r) => {
                        let mut r = r.clone();
                        r.sort_by(|a, b| a.labels.get(&key).cmp(&b.labels.get(&key)));
                        Val::Results(r)
                    }
                    other => return Err(e(format!("sortByLabel of {}", other.print()))),
                }
            }
            "args" => Val::Map(
                args.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("arg{i}"), v.print()))
                    .collect(),
            ),
            "safeHtml" => {
                want(1)?;
                Val::Str(s(&args[0]))
            }
            "stripPort" => {
                want(1)?;
                let h = s(&args[0]);
                Val::Str(match h.rsplit_once(':') {
                    Some((host, port))
                        if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() =>
                    {
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string()
                    }
                    _ => h,
                })
            }
            "stripDomain" => {
                want(1)?;
                let h = s(&args[0]);
                let (host, port) = match h.rsplit_once(':') {
                    Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                        (host.to_string(), format!(":{port}"))
                    }
                    _ => (h.clone(), String::new()),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    Val::Str(h)
                } else {
                    Val::Str(format!("{}{port}", host.split('.').next().unwrap_or("")))
                }
            }
            "parseDuration" => {
                want(1)?;
                let d = crate::duration::PromDuration::parse(&s(&args[0]))
                    .map_err(|x| e(x.to_string()))?;
                Val::Num(d.as_millis() as f64 / 1000.0)
            }
            "externalURL" => Val::Str(self.data.external_url.to_string()),
            "pathPrefix" => {
                let u = self.data.external_url;
                let path = url::Url::parse(u)
                    .map(|u| u.path().trim_end_matches('/').to_string())
                    .unwrap_or_default();
                Val::Str(path)
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if args.len() < 2 {
                    return Err(e("missing argument for comparison".into()));
                }
                let cmp = |a: &Val, b: &Val| -> Result<std::cmp::Ordering, TemplateError> {
                    match (a, b) {
                        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
                        (Val::Bool(x), Val::Bool(y)) if f == "eq" || f == "ne" => Ok(x.cmp(y)),
                        _ => {
                            let (x, y) = (a.num().map_err(e)?, b.num().map_err(e)?);
                            x.partial_cmp(&y)
                                .ok_or_else(|| e("incomparable NaN".into()))
                        }
                    }
                };
                let r = match f {
                    "eq" => {
                        let mut any = false;
                        for b in &args[1..] {
                            if cmp(&args[0], b).map(|o| o.is_eq()).unwrap_or(false) {
                                any = true;
                            }
                        }
                        any
                    }
                    "ne" => !cmp(&args[0], &args[1])?.is_eq(),
                    "lt" => cmp(&args[0], &args[1])?.is_lt(),
                    "le" => cmp(&args[0], &args[1])?.is_le(),
                    "gt" => cmp(&args[0], &args[1])?.is_gt(),
                    _ => cmp(&args[0], &args[1])?.is_ge(),
                };
                Val::Bool(r)
            }
            "and" => args
                .iter()
                .find(|a| !a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Val::Nil),
            "or" => args
                .iter()
                .find(|a| a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Val::Nil),
            "not" => {
                want(1)?;
                Val::Bool(!args[0].truthy())
            }
            "len" => {
                want(1)?;
                Val::Num(match &args[0] {
                    Val::Str(x) => x.len(),
                    Val::Map(m) => m.len(),
                    Val::Results(r) => r.len(),
                    other => return Err(e(format!("len of {}", other.print()))),
                } as f64)
            }
            "index" => {
                want(2)?;
                match (&args[0], &args[1]) {
                    (Val::Map(m), k) => m
                        .get(&s(k))
                        .map(|v| Val::Str(v.clone()))
                        .unwrap_or(Val::Nil),
                    (Val::Results(r), i) => {
                        let i = i.num().map_err(e)? as usize;
                        r.get(i)
                            .cloned()
                            .map(Val::Result)
                            .ok_or_else(|| e(format!("index {i} out of range")))?
                    }
                    (other, _) => return Err(e(format!("can't index {}", other.print()))),
                }
            }
            "html" => Val::Str(
                go_sprint(&args)
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&#34;")
                    .replace('\'', "&#39;"),
            ),
            "js" => Val::Str(
                go_sprint(&args)
                    .replace('\\', "\\\\")
                    .replace('\'', "\\'")
                    .replace('"', "\\\"")
                    .replace('<', "\\u003C")
                    .replace('>', "\\u003E"),
            ),
            "urlquery" => Val::Str(
                url::form_urlencoded::byte_serialize(go_sprint(&args).as_bytes()).collect(),
            ),
            other => return Err(e(format!("function {other:?} not defined"))),
        })
    }
}

// ---------------------------------------------------------------- Go number formatting

/// Go's `%v` of a float64: shortest digits, exponent form below 1e-4 and from 1e21.
pub fn go_float_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let exp = v.abs().log10().floor() as i32;
    let sci = format!("{v:e}");
    let real_exp: i32 = sci
        .split('e')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(exp);
    if !(-4..21).contains(&real_exp) {
        go_exp(&sci)
    } else {
        format!("{v}")
    }
}

/// Rust's `1.5e-7` as Go's `1.5e-07`.
fn go_exp(sci: &str) -> String {
    let (m, e) = sci.split_once('e').unwrap_or((sci, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let sign = if e < 0 { '-' } else { '+' };
    format!("{m}e{sign}{:02}", e.abs())
}

/// Go's `%.Ng` (`strconv.FormatFloat(v, 'g', N, 64)`): N significant digits, trailing zeros
/// removed, exponent form when the exponent is below -4 or at least N.
pub fn go_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let prec = prec.max(1);
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{:.*e}", prec - 1, v);
    let (mant, e) = sci.split_once('e').expect("exponent");
    let e: i32 = e.parse().expect("exponent digits");
    if e < -4 || e >= prec as i32 {
        let mant = if mant.contains('.') {
            mant.trim_end_matches('0').trim_end_matches('.')
        } else {
            mant
        };
        go_exp(&format!("{mant}e{e}"))
    } else {
        let decimals = (prec as i32 - 1 - e).max(0) as usize;
        let s = format!("{:.*}", decimals, v);
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

/// Go's `fmt.Sprint`: operands joined, with a space between two that are not strings.
fn go_sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.print());
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q %x %t %%` with flags
/// (`-`, `+`, `0`, space), width and precision.
fn go_printf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = format.chars().peekable();
    let mut ai = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = it.peek() {
            if "-+0 #".contains(f) {
                flags.push(f);
                it.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let body = match (verb, arg) {
            ('s' | 'v', Val::Num(n)) if verb == 'v' => go_float_v(*n),
            ('s' | 'v', a) => {
                let s = a.print();
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            ('q', a) => format!("{:?}", a.print()),
            ('t', Val::Bool(b)) => b.to_string(),
            ('d', a) => match a.num() {
                Ok(n) if n.fract() == 0.0 && n.is_finite() => {
                    let s = format!("{}", n as i64);
                    if flags.contains('+') && n >= 0.0 {
                        format!("+{s}")
                    } else {
                        s
                    }
                }
                _ => format!("%!d(float64={})", a.print()),
            },
            ('x' | 'X', a) => match a {
                Val::Str(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                a => match a.num() {
                    Ok(n) if n.fract() == 0.0 => format!("{:x}", n as i64),
                    _ => format!("%!x({})", a.print()),
                },
            },
            ('f' | 'F' | 'e' | 'g', a) => match a.num() {
                Ok(n) => {
                    let s = match verb {
                        'e' => {
                            if n.is_finite() {
                                go_exp(&format!("{:.*e}", prec.unwrap_or(6), n))
                            } else {
                                go_g(n, 1)
                            }
                        }
                        'g' => match prec {
                            Some(p) => go_g(n, p),
                            None => go_float_v(n),
                        },
                        _ => {
                            if n.is_finite() {
                                format!("{:.*}", prec.unwrap_or(6), n)
                            } else {
                                go_g(n, 1)
                            }
                        }
                    };
                    if flags.contains('+') && n >= 0.0 && !s.starts_with('+') {
                        format!("+{s}")
                    } else {
                        s
                    }
                }
                Err(_) => format!("%!{verb}(string={})", a.print()),
            },
            (v, a) => format!("%!{v}({})", a.print()),
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len < w {
            let pad = w - len;
            if flags.contains('-') {
                out.push_str(&body);
                out.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && !matches!(arg, Val::Str(_)) {
                let (sign, digits) = match body.strip_prefix('-') {
                    Some(d) => ("-", d),
                    None => ("", body.as_str()),
                };
                out.push_str(sign);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
    }
    if ai < args.len() {
        let extra: Vec<String> = args[ai..].iter().map(Val::print).collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
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
}
