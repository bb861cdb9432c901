//! Lexing and parsing: template text to [`Node`]s, every error with line and column.

use super::*;

pub(super) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
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

/// A template split into text and action segments (with the action's byte offset).
pub(super) enum Seg {
    Text(String),
    Action(String, usize),
}

pub(super) fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text[..off.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| off - i).unwrap_or(off + 1);
    (line, col)
}

pub(super) fn split(text: &str) -> Result<Vec<Seg>, TemplateError> {
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
pub(super) fn find_close(text: &str, from: usize) -> Option<usize> {
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
    pub(super) fn tokens(mut self) -> Result<Vec<Tok>, String> {
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

    pub(super) fn word(&mut self) {
        let b = self.src.as_bytes();
        while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'_') {
            self.pos += 1;
        }
    }

    pub(super) fn fields(&mut self) -> Vec<String> {
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

pub(super) fn unquote(s: &str) -> Result<String, String> {
    crate::promql::notation::unquote(s).map_err(|e| e.to_string())
}

pub(super) struct Parser<'a> {
    pub(super) segs: Vec<Seg>,
    pub(super) i: usize,
    pub(super) text: &'a str,
    pub(super) scopes: Vec<Vec<String>>,
    /// the tokens after `else` of the `{{else …}}` that ended the last `nodes()`
    pub(super) pending_else: Option<Vec<Tok>>,
    /// blocks (`if`, `range`, `with`) and parenthesized pipelines open around the current point
    pub(super) depth: usize,
}

impl Parser<'_> {
    pub(super) fn err(&self, off: usize, message: String) -> TemplateError {
        let (line, col) = line_col(self.text, off);
        TemplateError::Parse { line, col, message }
    }

    /// Counts one more level of nesting at `off`, refusing more than [`MAX_TEMPLATE_DEPTH`].
    fn enter(&mut self, off: usize) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_TEMPLATE_DEPTH {
            return Err(self.err(
                off,
                format!(
                    "nested deeper than the limit of {MAX_TEMPLATE_DEPTH} blocks and parentheses"
                ),
            ));
        }
        Ok(())
    }

    /// Nodes until an `end`/`else` keyword (returned with its offset) or the end of input.
    #[allow(clippy::type_complexity)]
    pub(super) fn nodes(&mut self) -> Result<(Vec<Node>, Option<(String, usize)>), TemplateError> {
        let off = match self.segs.get(self.i) {
            Some(Seg::Action(_, off)) => *off,
            _ => 0,
        };
        self.enter(off)?;
        // a template is parsed once and kept for the rule's life: its lists hold what they
        // need (a list grown by pushes holds room for 4 nodes of ~100 B each)
        let result = self.nodes_at_depth().map(|(mut nodes, end)| {
            nodes.shrink_to_fit();
            (nodes, end)
        });
        self.depth -= 1;
        result
    }

    #[allow(clippy::type_complexity)]
    fn nodes_at_depth(&mut self) -> Result<(Vec<Node>, Option<(String, usize)>), TemplateError> {
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
                    out.push(Node::Range(Box::new(RangeNode {
                        pipe,
                        vars,
                        body,
                        otherwise,
                    })));
                }
                "with" => {
                    let pipe = self.pipeline(&toks[1..], off)?;
                    self.scopes.push(Vec::new());
                    let (body, end) = self.nodes()?;
                    self.scopes.pop();
                    let otherwise = self.else_part(end, off)?;
                    out.push(Node::With(Box::new(WithNode {
                        pipe,
                        body,
                        otherwise,
                    })));
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

    pub(super) fn if_node(&mut self, cond: &[Tok], off: usize) -> Result<Node, TemplateError> {
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

    pub(super) fn else_part(
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

    pub(super) fn take_else(&mut self) -> Result<Vec<Tok>, TemplateError> {
        Ok(self.pending_else.take().unwrap_or_default())
    }

    pub(super) fn declared(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.iter().any(|v| v == name))
    }

    pub(super) fn pipeline(&mut self, toks: &[Tok], off: usize) -> Result<Pipeline, TemplateError> {
        self.enter(off)?;
        let result = self.pipeline_at_depth(toks, off);
        self.depth -= 1;
        result
    }

    fn pipeline_at_depth(&mut self, toks: &[Tok], off: usize) -> Result<Pipeline, TemplateError> {
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
                    f => {
                        let hint = crate::error::nearest(f, FUNCS.iter().copied())
                            .map(|n| format!(", did you mean {n}?"))
                            .unwrap_or_default();
                        return Err(self.err(off, format!("function {f:?} not defined{hint}")));
                    }
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
        // as Go's checkPipeline: later stages may start with a function, a field, a variable or a
        // parenthesized pipeline (a method call on it), never with a constant or the dot
        for c in &cmds[1..] {
            if matches!(c[0], Arg::Bool(_) | Arg::Dot | Arg::Num(_) | Arg::Str(_)) {
                return Err(self.err(off, "non executable command in pipeline stage".into()));
            }
        }
        // a literal regex is compiled now, within the limits it will be run with
        for c in &cmds {
            if let [Arg::Func(f), Arg::Str(pattern), ..] = c.as_slice()
                && matches!(f.as_str(), "reReplaceAll" | "match")
                && let Err(e) = crate::labels::compile_search_regex(pattern)
            {
                return Err(self.err(off, format!("{f}: {e}")));
            }
        }
        if let Some(d) = &decl
            && !self.declared(d)
        {
            self.scopes.last_mut().expect("scope").push(d.clone());
        }
        for c in &mut cmds {
            c.shrink_to_fit();
        }
        cmds.shrink_to_fit();
        Ok(Pipeline { decl, cmds })
    }
}

/// `range $i, $x := pipe` or `range $x := pipe`: the variables and the pipeline tokens.
pub(super) fn split_range_vars(toks: &[Tok]) -> (Vec<String>, &[Tok]) {
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
