//! Alertmanager's `alertmanager.yml` → tocsin's `route`, `receivers`, `inhibit_rules` and
//! `time_intervals`. Old forms (`match`, `match_re`, `source_match`…) become matchers, one
//! matcher an entry, in tocsin's (and Alertmanager's) quoted syntax; `global` SMTP settings are
//! written into each email receiver that does not set its own.
//!
//! Where the two differ, the output keeps Alertmanager's behaviour: tocsin passes
//! `mute_time_intervals`/`active_time_intervals` on to child routes, Alertmanager does not, so a
//! child under a muted route gets `mute_time_intervals: []` (a comment says why).

use super::yaml::{MapOut, Node, Out, Value};
use super::{Cx, join};
use crate::labels::{MatchOp, op_text, valid_label_name};

/// Integrations tocsin does not have, by their Alertmanager key.
const OTHER_INTEGRATIONS: &[&str] = &[
    "discord_configs",
    "incidentio_configs",
    "jira_configs",
    "msteams_configs",
    "msteamsv2_configs",
    "opsgenie_configs",
    "pagerduty_configs",
    "pushover_configs",
    "rocketchat_configs",
    "slack_configs",
    "sns_configs",
    "telegram_configs",
    "victorops_configs",
    "webex_configs",
    "wechat_configs",
];

/// `global` settings that only configure integrations tocsin does not have.
const OTHER_GLOBALS: &[&str] = &[
    "slack_api_url",
    "slack_api_url_file",
    "pagerduty_url",
    "opsgenie_api_url",
    "opsgenie_api_key",
    "opsgenie_api_key_file",
    "wechat_api_url",
    "wechat_api_secret",
    "wechat_api_corp_id",
    "victorops_api_url",
    "victorops_api_key",
    "victorops_api_key_file",
    "telegram_api_url",
    "webex_api_url",
    "rocketchat_api_url",
    "rocketchat_token",
    "rocketchat_token_file",
    "rocketchat_token_id",
    "rocketchat_token_id_file",
    "jira_api_url",
];

fn ms(d: &str) -> i64 {
    crate::duration::PromDuration::parse(d).map_or(0, |d| d.as_millis())
}

/// The variable that holds `global.smtp_auth_password` in the output.
const GLOBAL_PASSWORD_ENV: &str = "TOCSIN_SMTP_PASSWORD";

/// The `global` SMTP defaults, as found (`password`: the node and the variable to read it from).
#[derive(Default)]
struct SmtpGlobal {
    from: Option<String>,
    smarthost: Option<String>,
    username: Option<String>,
    password: Option<(Node, String)>,
    password_file: Option<String>,
    require_tls: Option<(Node, bool)>,
}

pub(crate) fn convert(root: &Node, cx: &mut Cx) -> Out {
    let mut global = SmtpGlobal::default();
    let mut out = MapOut::new();
    let mut route = None;
    let mut receivers = Vec::new();
    let mut inhibit = Vec::new();
    let mut intervals = Vec::new();
    if let Some(g) = root.get("global") {
        global = convert_global(g, cx);
    }
    for (key, k, v) in cx.map(root, "") {
        match key.as_str() {
            "global" => {}
            "route" => route = Some(convert_route(v, "route", true, &[], &[], cx)),
            "receivers" => {
                for (i, r) in cx.list(v, "receivers").into_iter().enumerate() {
                    receivers.push(convert_receiver(r, &format!("receivers[{i}]"), &global, cx));
                }
            }
            "inhibit_rules" => {
                for (i, r) in cx.list(v, "inhibit_rules").into_iter().enumerate() {
                    inhibit.push(convert_inhibit(r, &format!("inhibit_rules[{i}]"), cx));
                }
            }
            "time_intervals" | "mute_time_intervals" => {
                for (i, t) in cx.list(v, &key).into_iter().enumerate() {
                    intervals.push(convert_time_interval(t, &format!("{key}[{i}]"), cx));
                }
            }
            "templates" => cx.dropped(
                k,
                "templates",
                "tocsin has no notification templates: webhooks get Alertmanager's JSON, emails tocsin's own text and HTML",
            ),
            _ => cx.unknown(k, &key),
        }
    }
    if let Some(r) = route {
        out.put("route", r);
    }
    if !receivers.is_empty() {
        out.put("receivers", Out::List(receivers));
    }
    if !inhibit.is_empty() {
        out.put("inhibit_rules", Out::List(inhibit));
    }
    if !intervals.is_empty() {
        out.put("time_intervals", Out::List(intervals));
    }
    out.done()
}

fn convert_global(g: &Node, cx: &mut Cx) -> SmtpGlobal {
    let mut s = SmtpGlobal::default();
    for (key, k, v) in cx.map(g, "global") {
        let field = join("global", &key);
        match key.as_str() {
            "smtp_from" => s.from = cx.text(v, &field),
            "smtp_smarthost" => s.smarthost = cx.text(v, &field),
            "smtp_auth_username" => s.username = cx.text(v, &field),
            "smtp_auth_password" => {
                if cx.text(v, &field).is_some() {
                    cx.changed(
                        v,
                        &field,
                        format!("tocsin keeps no secret in its configuration: set the environment variable {GLOBAL_PASSWORD_ENV} to this password"),
                    );
                    s.password = Some((v.clone(), GLOBAL_PASSWORD_ENV.to_string()));
                }
            }
            "smtp_auth_password_file" => {
                s.password_file = cx.text(v, &field).map(|p| cx.path(v, &field, &p))
            }
            "smtp_require_tls" => s.require_tls = cx.bool(v, &field).map(|b| (v.clone(), b)),
            "smtp_hello" => cx.note(
                k,
                &field,
                "tocsin greets the SMTP server with this host's name",
            ),
            "smtp_auth_identity" | "smtp_auth_secret" | "smtp_auth_secret_file" => cx.dropped(
                k,
                &field,
                "tocsin authenticates with a user name and password only (PLAIN or LOGIN)",
            ),
            "smtp_tls_config" => cx.dropped(
                k,
                &field,
                "tocsin verifies the SMTP server's certificate against the system's roots",
            ),
            "resolve_timeout" => {
                // tocsin holds an alert posted without endsAt for Alertmanager's default, fixed
                if let Some(d) = cx.duration(v, &field) {
                    if ms(&d) == 5 * 60_000 {
                        cx.note(
                            k,
                            &field,
                            "5m, as tocsin holds an alert posted without an end time",
                        );
                    } else {
                        cx.changed(
                            v,
                            &field,
                            "tocsin holds an alert posted without an end time for 5m, a fixed time (its own rules resolve their alerts themselves)",
                        );
                    }
                }
            }
            "http_config" => cx.dropped(
                k,
                &field,
                "tocsin's webhooks have no HTTP client settings (auth, TLS, proxy)",
            ),
            other if OTHER_GLOBALS.contains(&other) => {
                cx.note(k, &field, "only used by integrations tocsin does not have")
            }
            _ => cx.unknown(k, &field),
        }
    }
    s
}

/// One route; `inherited_mute`/`inherited_active` are what tocsin would pass down to it.
fn convert_route(
    node: &Node,
    field: &str,
    root: bool,
    inherited_mute: &[String],
    inherited_active: &[String],
    cx: &mut Cx,
) -> Out {
    let mut receiver = None;
    let mut matchers = Vec::new();
    let mut cont = None;
    let mut group_by = None;
    let mut timings: Vec<(&str, String)> = Vec::new();
    let mut mute = None;
    let mut active = None;
    let mut children = Vec::new();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "receiver" => receiver = cx.text(v, &f),
            "matchers" => matchers.extend(convert_matchers(v, &f, cx)),
            "match" => matchers.extend(old_matchers(v, &f, MatchOp::Equal, cx)),
            "match_re" => matchers.extend(old_matchers(v, &f, MatchOp::Regex, cx)),
            "continue" => cont = cx.bool(v, &f),
            "group_by" => group_by = Some(cx.strings(v, &f)),
            "group_wait" | "group_interval" | "repeat_interval" => {
                if let Some(d) = cx.duration(v, &f) {
                    timings.push((
                        match key.as_str() {
                            "group_wait" => "group_wait",
                            "group_interval" => "group_interval",
                            _ => "repeat_interval",
                        },
                        d,
                    ));
                }
            }
            "mute_time_intervals" => mute = Some(cx.strings(v, &f)),
            "active_time_intervals" => active = Some(cx.strings(v, &f)),
            "routes" => children.push(v),
            _ => cx.unknown(k, &f),
        }
    }
    let mut out = MapOut::new();
    if let Some(r) = receiver {
        out.put("receiver", Out::str(r));
    }
    if !matchers.is_empty() {
        out.put("matchers", Out::strs(matchers));
    }
    if let Some(c) = cont {
        out.put("continue", Out::Bool(c));
    }
    if let Some(g) = group_by {
        out.put("group_by", Out::strs(g));
    }
    timings.sort_by_key(|(k, _)| match *k {
        "group_wait" => 0,
        "group_interval" => 1,
        _ => 2,
    });
    for (k, d) in timings {
        out.put(k, Out::str(d));
    }
    // Alertmanager does not inherit these; tocsin does: an explicit [] keeps the child unmuted
    let mut effective = |name: &str, set: Option<Vec<String>>, inherited: &[String]| match set {
        Some(list) => {
            out.put(name, Out::strs(list.clone()));
            list
        }
        None if !root && !inherited.is_empty() => {
            out.put_commented(
                name,
                Out::List(vec![]),
                format!(
                    "Alertmanager does not pass {name} on to child routes, tocsin does: [] keeps this route as it was"
                ),
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    let mute = effective("mute_time_intervals", mute, inherited_mute);
    let active = effective("active_time_intervals", active, inherited_active);
    let mut routes = Vec::new();
    for v in children {
        let f = join(field, "routes");
        for (i, child) in cx.list(v, &f).into_iter().enumerate() {
            routes.push(convert_route(
                child,
                &format!("{f}[{i}]"),
                false,
                &mute,
                &active,
                cx,
            ));
        }
    }
    if !routes.is_empty() {
        out.put("routes", Out::List(routes));
    }
    out.done()
}

/// A matcher in the quoted form: `name="value"`, `"my name"=~"a|b"`.
fn matcher_text(name: &str, op: MatchOp, value: &str) -> String {
    let quote = |s: &str| {
        let mut q = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                '\n' => q.push_str("\\n"),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let name = if valid_label_name(name) {
        name.to_string()
    } else {
        quote(name)
    };
    format!("{name}{}{}", op_text(op), quote(value))
}

/// `matchers:` (each entry may hold several, comma-separated), one matcher an entry.
fn convert_matchers(node: &Node, field: &str, cx: &mut Cx) -> Vec<String> {
    let mut out = Vec::new();
    for (i, item) in cx.list(node, field).into_iter().enumerate() {
        let f = format!("{field}[{i}]");
        let Some(text) = cx.text(item, &f) else {
            continue;
        };
        match crate::labels::parse_matchers(&text) {
            Ok(ms) => out.extend(ms.iter().map(|m| matcher_text(&m.name, m.op, &m.value))),
            Err(e) => cx.dropped(item, &f, format!("tocsin cannot read this matcher: {e}")),
        }
    }
    out
}

/// The old map forms (`match`, `match_re`, `source_match`…), as matchers in key order.
fn old_matchers(node: &Node, field: &str, op: MatchOp, cx: &mut Cx) -> Vec<String> {
    let mut out = Vec::new();
    for (key, _, v) in cx.map(node, field) {
        let f = join(field, &key);
        let Some(value) = cx.text(v, &f) else {
            continue;
        };
        let text = matcher_text(&key, op, &value);
        match crate::labels::parse_matcher(&text) {
            Ok(_) => out.push(text),
            Err(e) => cx.dropped(v, &f, format!("tocsin cannot use this matcher: {e}")),
        }
    }
    out
}

fn convert_receiver(node: &Node, field: &str, global: &SmtpGlobal, cx: &mut Cx) -> Out {
    let mut out = MapOut::new();
    let mut name = String::new();
    let mut webhook = None;
    let mut email = None;
    if let Some(n) = node.get("name") {
        name = cx.text(n, &join(field, "name")).unwrap_or_default();
    }
    out.put("name", Out::str(name.clone()));
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "name" => {}
            "webhook_configs" | "email_configs" => {
                for (i, item) in cx.list(v, &f).into_iter().enumerate() {
                    let fi = format!("{f}[{i}]");
                    let (slot, what) = if key == "webhook_configs" {
                        (&mut webhook, "webhook")
                    } else {
                        (&mut email, "email")
                    };
                    if slot.is_some() {
                        cx.dropped(
                            item,
                            &fi,
                            format!("a tocsin receiver has one {what} integration; split the receiver and route to each with continue"),
                        );
                        continue;
                    }
                    *slot = Some(if key == "webhook_configs" {
                        convert_webhook(item, &fi, cx)
                    } else {
                        convert_email(item, &fi, &name, global, cx)
                    });
                }
            }
            other if OTHER_INTEGRATIONS.contains(&other) => cx.dropped(
                k,
                &f,
                format!(
                    "tocsin has no {} integration: a webhook receiver to a bridge can replace it",
                    other.trim_end_matches("_configs")
                ),
            ),
            _ => cx.unknown(k, &f),
        }
    }
    if let Some(w) = webhook {
        out.put("webhook", w);
    }
    if let Some(e) = email {
        out.put("email", e);
    }
    out.done()
}

fn convert_webhook(node: &Node, field: &str, cx: &mut Cx) -> Out {
    let mut out = MapOut::new();
    let mut rest = MapOut::new();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "url" => {
                if let Some(u) = cx.text(v, &f) {
                    out.put("url", Out::str(u))
                }
            }
            "url_file" => {
                if let Some(p) = cx.text(v, &f) {
                    let p = cx.path(v, &f, &p);
                    out.put("url_file", Out::str(p))
                }
            }
            "send_resolved" => {
                if let Some(b) = cx.bool(v, &f) {
                    rest.put("send_resolved", Out::Bool(b))
                }
            }
            "max_alerts" => {
                if let Some(n) = cx.count(v, &f) {
                    rest.put("max_alerts", Out::Int(n))
                }
            }
            "timeout" => {
                if let Some(d) = cx.duration(v, &f) {
                    // Alertmanager's 0 is no timeout of its own; tocsin's default is 10s
                    if crate::duration::PromDuration::parse(&d).is_ok_and(|x| x.0.is_zero()) {
                        cx.changed(
                            v,
                            &f,
                            "no timeout in Alertmanager; tocsin's default of 10s applies",
                        );
                    } else {
                        rest.put("timeout", Out::str(d))
                    }
                }
            }
            "http_config" => convert_http_config(v, &f, cx),
            _ => cx.unknown(k, &f),
        }
    }
    out.0.extend(rest.0);
    out.done()
}

/// Alertmanager's HTTP client settings of a webhook: tocsin's webhook has none of them.
fn convert_http_config(node: &Node, field: &str, cx: &mut Cx) {
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "follow_redirects" | "enable_http2" => {
                cx.note(k, &f, "tocsin's HTTP client decides this itself")
            }
            "basic_auth" | "authorization" | "bearer_token" | "bearer_token_file" | "oauth2" => {
                cx.dropped(
                    k,
                    &f,
                    "tocsin's webhook sends no Authorization header; sign requests with secret_env instead, or keep a token in the URL with url_file",
                )
            }
            "tls_config" => cx.dropped(
                k,
                &f,
                "tocsin verifies webhook servers against the system's roots, with no client certificate",
            ),
            "proxy_url" | "no_proxy" | "proxy_from_environment" | "proxy_connect_header" => {
                cx.dropped(k, &f, "tocsin's webhook connects directly, with no proxy")
            }
            "http_headers" => cx.dropped(k, &f, "tocsin's webhook sends no extra headers"),
            _ if v.value == Value::Null => {}
            _ => cx.unknown(k, &f),
        }
    }
}

fn convert_email(
    node: &Node,
    field: &str,
    receiver: &str,
    global: &SmtpGlobal,
    cx: &mut Cx,
) -> Out {
    let mut to = Vec::new();
    let mut from = global.from.clone();
    let mut smarthost = global.smarthost.clone();
    let mut username = global.username.clone();
    let mut password = global.password.clone();
    let mut password_file = global.password_file.clone();
    let mut require_tls = global.require_tls.clone();
    let mut send_resolved = None;
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "to" => {
                if let Some(t) = cx.text(v, &f) {
                    to = split_addresses(&t);
                }
            }
            "from" => from = cx.text(v, &f),
            "smarthost" => smarthost = cx.text(v, &f),
            "auth_username" => username = cx.text(v, &f),
            "auth_password" => {
                if cx.text(v, &f).is_some() {
                    let var = env_name(receiver, "SMTP_PASSWORD");
                    cx.changed(
                        v,
                        &f,
                        format!("tocsin keeps no secret in its configuration: set the environment variable {var} to this password"),
                    );
                    password = Some((v.clone(), var));
                }
                password_file = None;
            }
            "auth_password_file" => {
                password_file = cx.text(v, &f).map(|p| cx.path(v, &f, &p));
                password = None;
            }
            "require_tls" => require_tls = cx.bool(v, &f).map(|b| (v.clone(), b)),
            "send_resolved" => send_resolved = cx.bool(v, &f),
            "hello" => cx.note(k, &f, "tocsin greets the SMTP server with this host's name"),
            "auth_identity" | "auth_secret" | "auth_secret_file" => cx.dropped(
                k,
                &f,
                "tocsin authenticates with a user name and password only (PLAIN or LOGIN)",
            ),
            "headers" => {
                for (h, hk, _) in cx.map(v, &f) {
                    cx.dropped(
                        hk,
                        &join(&f, &h),
                        "tocsin writes its own headers (the subject says what changed)",
                    );
                }
            }
            "html" | "text" => cx.dropped(
                k,
                &f,
                "tocsin has no email templates: it sends its own text and HTML parts",
            ),
            "tls_config" => cx.dropped(
                k,
                &f,
                "tocsin verifies the SMTP server's certificate against the system's roots",
            ),
            "threading" => cx.dropped(k, &f, "tocsin does not thread emails yet"),
            _ => cx.unknown(k, &f),
        }
    }
    let mut out = MapOut::new();
    out.put("to", Out::strs(to));
    out.put("from", Out::str(from.unwrap_or_default()));
    out.put("smarthost", Out::str(smarthost.unwrap_or_default()));
    if let Some(u) = &username {
        if password.is_some() || password_file.is_some() {
            out.put("username", Out::str(u.clone()));
        } else {
            cx.dropped(
                node,
                &join(field, "auth_username"),
                "a user name without a password: Alertmanager does not authenticate, tocsin needs both",
            );
        }
    }
    if let Some((_, var)) = &password {
        if username.is_some() {
            out.put("password_env", Out::str(var.clone()));
        }
    } else if let Some(p) = password_file
        && username.is_some()
    {
        out.put("password_file", Out::str(p));
    }
    if let Some((at, false)) = require_tls {
        cx.changed(
            &at,
            &join(field, "require_tls"),
            "tocsin requires TLS (STARTTLS, or implicit TLS on port 465) where Alertmanager would send in clear text to a server that offers none",
        );
    }
    if let Some(b) = send_resolved {
        out.put("send_resolved", Out::Bool(b));
    }
    out.done()
}

/// Alertmanager's `to`, an address list (`a@x.org, "Doe, Jane" <j@x.org>`), one address an
/// item: commas inside double quotes or angle brackets do not separate.
fn split_addresses(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    let mut escaped = false;
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(list[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim().to_string());
    out.retain(|a| !a.is_empty());
    out
}

/// An environment variable's name for a secret of `owner`: `TOCSIN_<OWNER>_<what>`.
pub(crate) fn env_name(owner: &str, what: &str) -> String {
    let owner: String = owner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TOCSIN_{owner}_{what}")
}

fn convert_inhibit(node: &Node, field: &str, cx: &mut Cx) -> Out {
    let mut source = Vec::new();
    let mut target = Vec::new();
    let mut equal = None;
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "source_matchers" => source.extend(convert_matchers(v, &f, cx)),
            "target_matchers" => target.extend(convert_matchers(v, &f, cx)),
            "source_match" => source.extend(old_matchers(v, &f, MatchOp::Equal, cx)),
            "source_match_re" => source.extend(old_matchers(v, &f, MatchOp::Regex, cx)),
            "target_match" => target.extend(old_matchers(v, &f, MatchOp::Equal, cx)),
            "target_match_re" => target.extend(old_matchers(v, &f, MatchOp::Regex, cx)),
            "equal" => equal = Some(cx.strings(v, &f)),
            _ => cx.unknown(k, &f),
        }
    }
    let mut out = MapOut::new();
    out.put("source_matchers", Out::strs(source));
    out.put("target_matchers", Out::strs(target));
    if let Some(e) = equal {
        out.put("equal", Out::strs(e));
    }
    out.done()
}

fn convert_time_interval(node: &Node, field: &str, cx: &mut Cx) -> Out {
    let mut out = MapOut::new();
    let mut specs = Vec::new();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "name" => {
                if let Some(n) = cx.text(v, &f) {
                    out.put("name", Out::str(n));
                }
            }
            "time_intervals" => {
                for (i, spec) in cx.list(v, &f).into_iter().enumerate() {
                    specs.push(convert_spec(spec, &format!("{f}[{i}]"), cx));
                }
            }
            _ => cx.unknown(k, &f),
        }
    }
    out.put("time_intervals", Out::List(specs));
    out.done()
}

fn convert_spec(node: &Node, field: &str, cx: &mut Cx) -> Out {
    let mut out = MapOut::new();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "times" => {
                let mut times = Vec::new();
                for (i, t) in cx.list(v, &f).into_iter().enumerate() {
                    let fi = format!("{f}[{i}]");
                    let mut m = MapOut::new();
                    for (tk, tkn, tv) in cx.map(t, &fi) {
                        let ft = join(&fi, &tk);
                        match tk.as_str() {
                            "start_time" | "end_time" => {
                                if let Some(x) = cx.text(tv, &ft) {
                                    m.put(
                                        if tk == "start_time" {
                                            "start_time"
                                        } else {
                                            "end_time"
                                        },
                                        Out::str(x),
                                    );
                                }
                            }
                            _ => cx.unknown(tkn, &ft),
                        }
                    }
                    times.push(m.done());
                }
                out.put("times", Out::List(times));
            }
            "weekdays" | "days_of_month" | "months" | "years" => {
                let items = cx.strings(v, &f);
                let name = match key.as_str() {
                    "weekdays" => "weekdays",
                    "days_of_month" => "days_of_month",
                    "months" => "months",
                    _ => "years",
                };
                out.put(name, Out::strs(items));
            }
            "location" => {
                if let Some(l) = cx.text(v, &f) {
                    if l == "Local" {
                        cx.changed(
                            v,
                            &f,
                            "Alertmanager's local time zone has no name here: tocsin reads these times in UTC; write the IANA zone (Europe/Berlin)",
                        );
                    } else {
                        out.put("location", Out::str(l));
                    }
                }
            }
            _ => cx.unknown(k, &f),
        }
    }
    out.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_are_written_in_the_quoted_form_and_read_back_the_same() {
        for (name, op, value, want) in [
            ("severity", MatchOp::Equal, "page", r#"severity="page""#),
            (
                "service",
                MatchOp::Regex,
                "foo1|foo2",
                r#"service=~"foo1|foo2""#,
            ),
            ("x", MatchOp::NotEqual, r#"a"b\c"#, r#"x!="a\"b\\c""#),
            ("my label", MatchOp::NotRegex, "", r#""my label"!~"""#),
            ("host", MatchOp::Regex, r"web\d+", r#"host=~"web\\d+""#),
        ] {
            let text = matcher_text(name, op, value);
            assert_eq!(text, want);
            let back = crate::labels::parse_matcher(&text).unwrap();
            assert_eq!(
                (back.name.as_str(), back.op, back.value.as_str()),
                (name, op, value)
            );
        }
    }

    #[test]
    fn address_lists_split_at_commas_outside_quotes_and_brackets() {
        for (list, want) in [
            ("a@x.org", vec!["a@x.org"]),
            ("a@x.org, b@x.org,", vec!["a@x.org", "b@x.org"]),
            (
                r#""Doe, Jane" <j@x.org>, ops <o@x.org>"#,
                vec![r#""Doe, Jane" <j@x.org>"#, "ops <o@x.org>"],
            ),
            (r#""a \" , b" <q@x.org>"#, vec![r#""a \" , b" <q@x.org>"#]),
            ("", vec![]),
        ] {
            assert_eq!(split_addresses(list), want, "{list}");
        }
    }

    #[test]
    fn secret_variables_are_named_after_their_owner() {
        assert_eq!(
            env_name("team-X mails", "SMTP_PASSWORD"),
            "TOCSIN_TEAM_X_MAILS_SMTP_PASSWORD"
        );
    }
}
