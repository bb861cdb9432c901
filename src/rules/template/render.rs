//! Rendering: [`Node`]s over [`TemplateData`], with Prometheus's template functions.

use super::format::*;
use super::gotime;
use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Nil,
    Root,
    Str(String),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Results(Vec<QueryResult>),
    Result(QueryResult),
    /// a Go integer (`Time.Unix`, `Duration.Milliseconds`): printed without an exponent
    Int(i64),
    /// Go's `time.Duration` (`toDuration`): nanoseconds
    Duration(i64),
    /// Go's `time.Time` in UTC (`toTime`): nanoseconds since the epoch
    Time(i64),
    /// a list of values (a notification's `.Alerts`)
    List(Vec<Val>),
    /// a struct with named fields (a notification, one of its alerts)
    Obj(BTreeMap<String, Val>),
}

impl Val {
    pub(super) fn truthy(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Root => true,
            Val::Str(s) => !s.is_empty(),
            Val::Num(n) => *n != 0.0,
            Val::Int(n) => *n != 0,
            Val::Bool(b) => *b,
            Val::Map(m) => !m.is_empty(),
            Val::Results(r) => !r.is_empty(),
            Val::Result(_) | Val::Duration(_) | Val::Time(_) => true,
            Val::List(l) => !l.is_empty(),
            Val::Obj(_) => true,
        }
    }

    pub(super) fn print(&self) -> String {
        match self {
            Val::Nil => "<no value>".into(),
            Val::Root => "map[]".into(),
            Val::Str(s) => s.clone(),
            Val::Num(n) => go_float_v(*n),
            Val::Int(n) => n.to_string(),
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
            Val::Duration(d) => gotime::duration_string(*d),
            Val::Time(t) => gotime::time_string(*t),
            Val::List(l) => format!(
                "[{}]",
                l.iter().map(Val::print).collect::<Vec<_>>().join(" ")
            ),
            Val::Obj(o) => {
                let parts: Vec<String> = o.values().map(Val::print).collect();
                format!("{{{}}}", parts.join(" "))
            }
        }
    }

    pub(super) fn num(&self) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(*n),
            Val::Int(n) => Ok(*n as f64),
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

pub(super) struct Renderer<'a> {
    pub(super) data: &'a TemplateData<'a>,
    pub(super) query: Option<&'a dyn QueryFn>,
    pub(super) vars: Vec<Vec<(String, Val)>>,
    pub(super) out: String,
    /// nodes still allowed to run, and bytes still allowed to be written (`range` nested over
    /// many alerts multiplies both)
    pub(super) budget: Budget,
}

/// What one rendering may do before it fails.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    pub nodes: u64,
    pub bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: 10_000_000,
            bytes: 16 << 20,
        }
    }
}

impl Renderer<'_> {
    pub(super) fn nodes(&mut self, nodes: &[Node], dot: &Val) -> Result<(), TemplateError> {
        for n in nodes {
            if self.budget.nodes == 0 || self.out.len() > self.budget.bytes {
                return Err(TemplateError::Render(format!(
                    "template too costly: over {} bytes of output or {} steps",
                    self.budget.bytes,
                    Budget::default().nodes
                )));
            }
            self.budget.nodes -= 1;
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
                Node::With(with) => {
                    let WithNode {
                        pipe,
                        body,
                        otherwise,
                    } = &**with;
                    let v = self.pipeline(pipe, dot)?;
                    if v.truthy() {
                        self.scoped(body, &v)?;
                    } else {
                        self.scoped(otherwise, dot)?;
                    }
                }
                Node::Range(range) => {
                    let RangeNode {
                        pipe,
                        vars,
                        body,
                        otherwise,
                    } = &**range;
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
                        Val::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Val::Int(i as i64), x))
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

    pub(super) fn scoped(&mut self, nodes: &[Node], dot: &Val) -> Result<(), TemplateError> {
        self.vars.push(Vec::new());
        let r = self.nodes(nodes, dot);
        self.vars.pop();
        r
    }

    pub(super) fn lookup(&self, name: &str) -> Val {
        for scope in self.vars.iter().rev() {
            if let Some((_, v)) = scope.iter().rev().find(|(n, _)| n == name) {
                return v.clone();
            }
        }
        Val::Nil
    }

    pub(super) fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> Result<Val, TemplateError> {
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

    pub(super) fn field(&self, base: Val, fields: &[String]) -> Result<Val, TemplateError> {
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
                (Val::Duration(_) | Val::Time(_), _) => self.method(&v, f, Vec::new())?,
                (Val::Obj(o), k) => o.get(k).cloned().unwrap_or(Val::Nil),
                // Alertmanager's `.Alerts.Firing` and `.Alerts.Resolved`
                (Val::List(l), "Firing" | "Resolved") => {
                    let want = if f == "Firing" { "firing" } else { "resolved" };
                    Val::List(
                        l.iter()
                            .filter(|a| {
                                matches!(a, Val::Obj(o)
                                    if matches!(o.get("Status"), Some(Val::Str(s)) if s == want))
                            })
                            .cloned()
                            .collect(),
                    )
                }
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

    pub(super) fn arg(&mut self, a: &Arg, dot: &Val) -> Result<Val, TemplateError> {
        Ok(match a {
            Arg::Var(name, fields) => {
                // `$` is bound at the start: the root data (an alert's, a notification's)
                let base = self.lookup(name);
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

    pub(super) fn command(
        &mut self,
        cmd: &[Arg],
        dot: &Val,
        prev: Option<Val>,
    ) -> Result<Val, TemplateError> {
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
            // a field of a parenthesized value, `(query "up" | first).Labels`, and a method with
            // arguments, `(now | toTime).Format "2006"`, `$t.Add $d`
            a @ (Arg::Sub(_) | Arg::Var(..) | Arg::Field(_)) if cmd.len() > 1 || prev.is_some() => {
                let (base, method, rest) = match (a, cmd.get(1)) {
                    (Arg::Sub(_), Some(Arg::Field(fields))) if !fields.is_empty() => {
                        let base = self.arg(a, dot)?;
                        let (last, init) = fields.split_last().expect("not empty");
                        (self.field(base, init)?, last.clone(), &cmd[2..])
                    }
                    (Arg::Var(name, fields), _) if !fields.is_empty() => {
                        let (last, init) = fields.split_last().expect("not empty");
                        let var = Arg::Var(name.clone(), init.to_vec());
                        (self.arg(&var, dot)?, last.clone(), &cmd[1..])
                    }
                    (Arg::Field(fields), _) => {
                        let (last, init) = fields.split_last().expect("a field has a name");
                        (self.field(dot.clone(), init)?, last.clone(), &cmd[1..])
                    }
                    _ => {
                        return Err(TemplateError::Render(
                            "can't give argument to non-function".into(),
                        ));
                    }
                };
                if !matches!(base, Val::Duration(_) | Val::Time(_)) {
                    if !rest.is_empty() || prev.is_some() {
                        return Err(TemplateError::Render(
                            "can't give argument to non-function".into(),
                        ));
                    }
                    return self.field(base, std::slice::from_ref(&method));
                }
                let mut args = Vec::with_capacity(rest.len() + 1);
                for a in rest {
                    args.push(self.arg(a, dot)?);
                }
                args.extend(prev);
                self.method(&base, &method, args)
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

    pub(super) fn call(&mut self, f: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
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
                let re = crate::labels::compile_search_regex(&s(&args[0]))
                    .map_err(|x| e(x.to_string()))?;
                Val::Str(
                    re.replace_all(&s(&args[2]), s(&args[1]).as_str())
                        .into_owned(),
                )
            }
            "match" => {
                want(2)?;
                let re = crate::labels::compile_search_regex(&s(&args[0]))
                    .map_err(|x| e(x.to_string()))?;
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
                // Prometheus 3's `model.ParseDurationAllowNegative`: `-30m` is -1800
                let text = s(&args[0]);
                let (sign, text) = match text.strip_prefix('-') {
                    Some(rest) => (-1.0, rest.to_string()),
                    None => (1.0, text),
                };
                let d =
                    crate::duration::PromDuration::parse(&text).map_err(|x| e(x.to_string()))?;
                Val::Num(sign * d.as_millis() as f64 / 1000.0)
            }
            "toDuration" => {
                want(1)?;
                Val::Duration(gotime::seconds_to_nanos(num0(&args)?))
            }
            "toTime" => {
                want(1)?;
                let v = num0(&args)?;
                if !v.is_finite() || v.abs() >= 9.2e9 {
                    return Err(e(format!(
                        "{} cannot be converted to a time",
                        go_float_v(v)
                    )));
                }
                Val::Time(gotime::seconds_to_nanos(v))
            }
            "now" => {
                want(0)?;
                Val::Num(self.data.time_ms as f64 / 1000.0)
            }
            "urlQueryEscape" => {
                want(1)?;
                Val::Str(url_query_escape(&s(&args[0])))
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
                    Val::List(l) => l.len(),
                    Val::Obj(o) => o.len(),
                    other => return Err(e(format!("len of {}", other.print()))),
                } as f64)
            }
            "index" => {
                want(2)?;
                match (&args[0], &args[1]) {
                    // Go's `index` gives a missing key's zero value: "" in a label map
                    (Val::Map(m), k) => Val::Str(m.get(&s(k)).cloned().unwrap_or_default()),
                    (Val::Results(r), i) => {
                        let i = i.num().map_err(e)? as usize;
                        r.get(i)
                            .cloned()
                            .map(Val::Result)
                            .ok_or_else(|| e(format!("index {i} out of range")))?
                    }
                    (Val::List(l), i) => {
                        let i = i.num().map_err(e)? as usize;
                        l.get(i)
                            .cloned()
                            .ok_or_else(|| e(format!("index {i} out of range")))?
                    }
                    (Val::Obj(o), k) => o.get(&s(k)).cloned().unwrap_or(Val::Nil),
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
            "toJson" => {
                want(1)?;
                Val::Str(to_json(&args[0]).to_string())
            }
            "join" => {
                want(2)?;
                let sep = s(&args[1]);
                match &args[0] {
                    Val::List(l) => {
                        Val::Str(l.iter().map(Val::print).collect::<Vec<_>>().join(&sep))
                    }
                    Val::Map(m) => Val::Str(m.values().cloned().collect::<Vec<_>>().join(&sep)),
                    other => return Err(e(format!("join of {}", other.print()))),
                }
            }
            "urlquery" => Val::Str(
                url::form_urlencoded::byte_serialize(go_sprint(&args).as_bytes()).collect(),
            ),
            other => return Err(e(format!("function {other:?} not defined"))),
        })
    }
}

impl Renderer<'_> {
    /// A method of a Go `time.Duration` or `time.Time` value.
    pub(super) fn method(
        &self,
        base: &Val,
        name: &str,
        args: Vec<Val>,
    ) -> Result<Val, TemplateError> {
        let e = |m: String| TemplateError::Render(format!("error calling {name}: {m}"));
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(e(format!("want {n} arguments, got {}", args.len())))
            }
        };
        Ok(match (base, name) {
            (Val::Duration(d), "String") => {
                want(0)?;
                Val::Str(gotime::duration_string(*d))
            }
            (Val::Duration(d), "Seconds" | "Minutes" | "Hours") => {
                want(0)?;
                let div = match name {
                    "Seconds" => 1e9,
                    "Minutes" => 60e9,
                    _ => 3600e9,
                };
                Val::Num(*d as f64 / div)
            }
            (Val::Duration(d), "Milliseconds") => {
                want(0)?;
                Val::Int(*d / 1_000_000)
            }
            (Val::Time(t), "String") => {
                want(0)?;
                Val::Str(gotime::time_string(*t))
            }
            (Val::Time(t), "Unix") => {
                want(0)?;
                Val::Int(t.div_euclid(1_000_000_000))
            }
            (Val::Time(t), "UnixMilli") => {
                want(0)?;
                Val::Int(t.div_euclid(1_000_000))
            }
            (Val::Time(t), "UTC") => {
                want(0)?;
                Val::Time(*t)
            }
            (Val::Time(t), "Format") => {
                want(1)?;
                let layout = args[0].print();
                if layout.len() > MAX_LAYOUT_BYTES {
                    return Err(e(format!("layout longer than {MAX_LAYOUT_BYTES} bytes")));
                }
                Val::Str(gotime::format(*t, &layout))
            }
            (Val::Time(t), "Add") => {
                want(1)?;
                match &args[0] {
                    Val::Duration(d) => Val::Time(t.saturating_add(*d)),
                    other => return Err(e(format!("Add of {}, not a duration", other.print()))),
                }
            }
            (other, _) => {
                return Err(TemplateError::Render(format!(
                    "can't evaluate field {name} in {}",
                    other.print()
                )));
            }
        })
    }
}

/// The longest layout `Time.Format` takes (its output is at most a few times longer).
const MAX_LAYOUT_BYTES: usize = 1024;

/// Go's `url.QueryEscape`: letters, digits and `-_.~` as they are, a space as `+`, every other
/// byte as `%XX`.
fn url_query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A value as JSON (`toJson`): strings quoted and escaped, maps and structs as objects, lists as
/// arrays, times as RFC 3339 text, durations as Go prints them, NaN and infinities as strings.
pub(super) fn to_json(v: &Val) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Val::Nil => J::Null,
        Val::Root => J::Object(Default::default()),
        Val::Str(s) => J::String(s.clone()),
        Val::Num(n) => serde_json::Number::from_f64(*n)
            .map(J::Number)
            .unwrap_or_else(|| J::String(go_float_v(*n))),
        Val::Int(n) => J::from(*n),
        Val::Bool(b) => J::Bool(*b),
        Val::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), J::String(v.clone())))
                .collect(),
        ),
        Val::Results(r) => J::Array(r.iter().map(|x| to_json(&Val::Result(x.clone()))).collect()),
        Val::Result(q) => serde_json::json!({
            "Labels": to_json(&Val::Map(q.labels.clone())),
            "Value": to_json(&Val::Num(q.value)),
        }),
        Val::Duration(d) => J::String(gotime::duration_string(*d)),
        Val::Time(t) => J::String(gotime::format(*t, "2006-01-02T15:04:05.999999999Z07:00")),
        Val::List(l) => J::Array(l.iter().map(to_json).collect()),
        Val::Obj(o) => J::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}
