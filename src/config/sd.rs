//! Service discovery and relabelling of a target (`file_sd`, `http_sd`, `dns_sd`,
//! `relabel_configs`): raw types and their pure validation. A target with a discovery section is
//! a job template, as a Prometheus `scrape_config` is: every address it discovers becomes a
//! target of its own (`<name>/<instance>`) with the template's interval, timeout, limits and
//! labels. The discovery itself (the only I/O) is `crate::ingest::sd`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::FieldError;
use crate::duration::PromDuration;

/// Default `refresh_interval` of `file_sd` (Prometheus's 5m; file changes are also seen at once).
pub const DEFAULT_FILE_SD_REFRESH_S: u64 = 300;
/// Default `refresh_interval` of `http_sd` (Prometheus's 60s).
pub const DEFAULT_HTTP_SD_REFRESH_S: u64 = 60;
/// Default `refresh_interval` of `dns_sd` (Prometheus's 30s).
pub const DEFAULT_DNS_SD_REFRESH_S: u64 = 30;
/// The shortest `refresh_interval` accepted: discovery is not a scrape.
pub const MIN_SD_REFRESH_MS: i64 = 1_000;
/// Relabelling steps a target may have.
pub const MAX_RELABEL_CONFIGS: usize = 256;

/// Targets from files in Prometheus's `file_sd` format: a JSON or YAML list of
/// `{targets: [host:port, ...], labels: {name: value}}`, re-read when a file changes and every
/// `refresh_interval`. A file that cannot be read or parsed keeps the targets it gave last.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths or patterns with wildcards in the file name (`sd/*.json`), relative to the
    /// directory of this configuration file. `.json` files are read as JSON, others as YAML.
    pub files: Spanned<Vec<String>>,
    /// How often the files are read again besides the changes seen. Default `5m`.
    #[serde(default)]
    pub refresh_interval: Option<Spanned<PromDuration>>,
}

/// Targets from an HTTP endpoint in Prometheus's HTTP SD format: `GET <url>` answers a JSON list
/// as `file_sd`'s, with `Content-Type: application/json`. A failed refresh (unreachable, a
/// timeout, a non-2xx status, another content type, an answer over the size limit or not in the
/// format) keeps the last good list.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSdConfig {
    /// The endpoint, `http` or `https`.
    pub url: Spanned<String>,
    /// How often the list is fetched again. Default `60s`.
    #[serde(default)]
    pub refresh_interval: Option<Spanned<PromDuration>>,
    /// A fetch that takes longer fails (the last good list stays). Default `10s`.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
    /// Name of an environment variable holding a bearer token sent with every fetch.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Path of a file holding a bearer token sent with every fetch (trailing newline ignored): a
    /// regular file of at most 64 KiB.
    #[serde(default)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// HTTP basic authentication sent with every fetch.
    #[serde(default)]
    pub basic_auth: Option<super::datasource::BasicAuthConfig>,
}

/// Targets from DNS records, resolved every `refresh_interval`: `A`/`AAAA` records with `port`,
/// or `SRV` records (their target and port). A failed lookup keeps the last good answer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsSdConfig {
    /// The names to resolve, e.g. `_metrics._tcp.example.org` for SRV.
    pub names: Spanned<Vec<String>>,
    /// The record type. Default `SRV`.
    #[serde(default, rename = "type")]
    pub kind: Option<DnsSdType>,
    /// The port of the targets of `A` and `AAAA` records (required for them).
    #[serde(default)]
    pub port: Option<u16>,
    /// How often the names are resolved again. Default `30s`.
    #[serde(default)]
    pub refresh_interval: Option<Spanned<PromDuration>>,
    /// The DNS server asked, `host` or `host:port`. Default: the first `nameserver` of
    /// `/etc/resolv.conf`.
    #[serde(default)]
    pub nameserver: Option<String>,
}

/// A DNS record type for `dns_sd`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum DnsSdType {
    /// IPv4 addresses, with the configured `port`.
    A,
    /// IPv6 addresses, with the configured `port`.
    #[serde(rename = "AAAA")]
    Aaaa,
    /// Service records: each gives a host name and a port.
    #[default]
    #[serde(rename = "SRV")]
    Srv,
}

/// One relabelling step of a target's labels, with Prometheus's semantics: the values of
/// `source_labels` joined with `separator` are matched against `regex` (anchored at both ends),
/// and `action` decides what happens. Before relabelling a target has `__address__`
/// (`host:port`), `__scheme__`, `__metrics_path__`, `job`, its `labels`, the labels of its
/// discovery group and the discovery's `__meta_*` labels (`__meta_filepath` for `file_sd`,
/// `__meta_url` for `http_sd`, `__meta_dns_name` and, for SRV, `__meta_dns_srv_record_target`
/// and `__meta_dns_srv_record_port` for `dns_sd`); `__param_<name>` labels become URL
/// parameters. After it, `instance` defaults to `__address__` and every label starting with
/// `__` is removed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetRelabelConfig {
    /// The labels whose values are joined and matched. Default: none (the empty string).
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins the values of `source_labels`. Default `;`.
    #[serde(default)]
    pub separator: Option<String>,
    /// A regular expression (RE2 syntax, anchored at both ends). Default `(.*)`.
    #[serde(default)]
    pub regex: Option<Spanned<String>>,
    /// The label `replace` writes (`$1`, `${name}` expanded from the match). Required for `replace`.
    #[serde(default)]
    pub target_label: Option<String>,
    /// What `replace` writes and `labelmap` names the copied label: `$1`, `${1}` and
    /// `${name}` are the regex's groups. Default `$1`.
    #[serde(default)]
    pub replacement: Option<String>,
    /// What to do. Default `replace`.
    #[serde(default)]
    pub action: TargetRelabelAction,
}

/// A relabelling action (Prometheus's names).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TargetRelabelAction {
    /// When the regex matches, set `target_label` to `replacement` (an empty result removes it).
    #[default]
    Replace,
    /// Drop the target unless the regex matches.
    Keep,
    /// Drop the target when the regex matches.
    Drop,
    /// Copy every label whose name matches to the name `replacement` gives.
    Labelmap,
    /// Remove every label whose name matches.
    Labeldrop,
    /// Remove every label whose name does not match.
    Labelkeep,
}

/// Every problem of one target's discovery and relabelling sections (pure); `field` makes a
/// field path (`targets[2].file_sd[0].files`), `at` is the target's position.
pub fn validate(
    t: &super::TargetConfig,
    path: &Path,
    at: (u64, u64),
    field: &dyn Fn(&str) -> String,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |(line, col): (u64, u64), f: String, message: String| {
        errors.push(FieldError {
            path: path.to_path_buf(),
            line,
            col,
            field: f,
            message,
        })
    };
    let pos = |s: &serde_saphyr::Location| (s.line(), s.column());
    let refresh = |errs: &mut dyn FnMut((u64, u64), String, String),
                   r: &Option<Spanned<PromDuration>>,
                   f: String| {
        if let Some(r) = r
            && r.value.as_millis() < MIN_SD_REFRESH_MS
        {
            errs(
                pos(&r.referenced),
                f,
                format!("{} is shorter than the minimum of 1s", r.value),
            );
        }
    };
    let discovers = t.discovers();
    if discovers
        && (t.metrics.is_some()
            || t.health.is_some()
            || !t.probes.is_empty()
            || t.heartbeat.is_some())
    {
        err(
            at,
            field(""),
            "a target with file_sd, http_sd or dns_sd takes its addresses from them: no metrics, health, probes or heartbeat".into(),
        );
    }
    if !discovers && (t.metrics_path.is_some() || t.scheme.is_some()) {
        err(
            at,
            field("metrics_path"),
            "metrics_path and scheme apply to discovered targets only (set the metrics url)".into(),
        );
    }
    if let Some(p) = &t.metrics_path
        && !p.starts_with('/')
    {
        err(
            at,
            field("metrics_path"),
            format!("{p:?} must start with /"),
        );
    }
    if let Some(s) = &t.scheme
        && !matches!(s.as_str(), "http" | "https")
    {
        err(
            at,
            field("scheme"),
            format!("unsupported scheme {s:?} (http or https)"),
        );
    }
    for (i, f) in t.file_sd.iter().enumerate() {
        let name = |x: &str| field(&format!("file_sd[{i}]{x}"));
        if f.files.value.is_empty() {
            err(
                pos(&f.files.referenced),
                name(".files"),
                "names no file".into(),
            );
        }
        for p in &f.files.value {
            let dir = Path::new(p)
                .parent()
                .map(|d| d.to_string_lossy().into_owned());
            if p.is_empty() || dir.is_some_and(|d| d.contains(['*', '?', '['])) {
                err(
                    pos(&f.files.referenced),
                    name(".files"),
                    format!("{p:?}: wildcards are supported in the file name only"),
                );
            }
        }
        refresh(&mut err, &f.refresh_interval, name(".refresh_interval"));
    }
    for (i, h) in t.http_sd.iter().enumerate() {
        let name = |x: &str| field(&format!("http_sd[{i}]{x}"));
        match url::Url::parse(&h.url.value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => err(
                pos(&h.url.referenced),
                name(".url"),
                format!("unsupported scheme {:?} (http or https)", u.scheme()),
            ),
            Err(e) => err(
                pos(&h.url.referenced),
                name(".url"),
                format!("invalid url {:?}: {e}", h.url.value),
            ),
        }
        if h.bearer_token_env.is_some() && h.bearer_token_file.is_some() {
            err(
                pos(&h.url.referenced),
                name(".bearer_token_env"),
                "set bearer_token_env or bearer_token_file, not both".into(),
            );
        }
        if let Some(b) = &h.basic_auth
            && b.password_env.is_some() == b.password_file.is_some()
        {
            err(
                pos(&h.url.referenced),
                name(".basic_auth"),
                "set exactly one of password_env and password_file".into(),
            );
        }
        if h.timeout.is_some_and(|t| t.0.is_zero()) {
            err(
                pos(&h.url.referenced),
                name(".timeout"),
                "must be positive".into(),
            );
        }
        refresh(&mut err, &h.refresh_interval, name(".refresh_interval"));
    }
    for (i, d) in t.dns_sd.iter().enumerate() {
        let name = |x: &str| field(&format!("dns_sd[{i}]{x}"));
        let at_names = pos(&d.names.referenced);
        if d.names.value.is_empty() {
            err(at_names, name(".names"), "names no name".into());
        }
        for n in &d.names.value {
            if hickory_proto::rr::Name::from_ascii(n).is_err() || n.is_empty() {
                err(at_names, name(".names"), format!("invalid DNS name {n:?}"));
            }
        }
        let kind = d.kind.unwrap_or_default();
        match (kind, d.port) {
            (DnsSdType::A | DnsSdType::Aaaa, None | Some(0)) => err(
                at_names,
                name(".port"),
                "A and AAAA records need a port".into(),
            ),
            (DnsSdType::Srv, Some(_)) => err(
                at_names,
                name(".port"),
                "SRV records carry their own port".into(),
            ),
            _ => {}
        }
        refresh(&mut err, &d.refresh_interval, name(".refresh_interval"));
    }
    if t.relabel_configs.len() > MAX_RELABEL_CONFIGS {
        err(
            at,
            field("relabel_configs"),
            format!(
                "{} steps, more than the limit of {MAX_RELABEL_CONFIGS}",
                t.relabel_configs.len()
            ),
        );
    }
    for (i, r) in t.relabel_configs.iter().enumerate() {
        let name = |x: &str| field(&format!("relabel_configs[{i}]{x}"));
        let here = r.regex.as_ref().map_or(at, |s| pos(&s.referenced));
        for m in relabel_problems(r) {
            err(here, name(m.0), m.1);
        }
    }
    errors
}

/// What is wrong with one relabelling step (pure): (field suffix, message).
pub fn relabel_problems(r: &TargetRelabelConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(re) = &r.regex
        && let Err(e) = crate::labels::compile_regex(&re.value)
    {
        out.push((".regex", format!("invalid regex {:?}: {e}", re.value)));
    }
    for l in &r.source_labels {
        if !crate::labels::valid_label_name(l) {
            out.push((".source_labels", format!("invalid label name {l:?}")));
        }
    }
    match r.action {
        TargetRelabelAction::Replace => match &r.target_label {
            None => out.push((".target_label", "replace needs a target_label".into())),
            // a name with `$` is expanded from the match, and checked then
            Some(t) if !t.contains('$') && !crate::labels::valid_label_name(t) => {
                out.push((".target_label", format!("invalid label name {t:?}")))
            }
            _ => {}
        },
        TargetRelabelAction::Keep | TargetRelabelAction::Drop => {
            if r.source_labels.is_empty() {
                out.push((
                    ".source_labels",
                    format!("{} needs source_labels", action_name(r.action)),
                ));
            }
        }
        TargetRelabelAction::Labelmap => {}
        TargetRelabelAction::Labeldrop | TargetRelabelAction::Labelkeep => {
            if !r.source_labels.is_empty() || r.target_label.is_some() || r.replacement.is_some() {
                out.push((
                    "",
                    format!(
                        "{} takes only a regex over label names",
                        action_name(r.action)
                    ),
                ));
            }
        }
    }
    out
}

/// The action as written.
pub fn action_name(a: TargetRelabelAction) -> &'static str {
    match a {
        TargetRelabelAction::Replace => "replace",
        TargetRelabelAction::Keep => "keep",
        TargetRelabelAction::Drop => "drop",
        TargetRelabelAction::Labelmap => "labelmap",
        TargetRelabelAction::Labeldrop => "labeldrop",
        TargetRelabelAction::Labelkeep => "labelkeep",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every problem of the discovery and relabelling sections is reported at once, each at a
    /// real line with its field path.
    #[test]
    fn discovery_and_relabelling_errors_name_their_line_and_field() {
        let yaml = "targets:
  - name: n
    metrics: http://h:1/metrics
    file_sd: [{ files: ['*/x.json'] }]
  - name: m
    scheme: ftp
    metrics_path: metrics
    http_sd: [{ url: 'ftp://x/sd', refresh_interval: 10ms }]
    dns_sd:
      - { names: [a.example], type: A }
      - { names: ['bad name..'], port: 80 }
    relabel_configs:
      - { source_labels: [a], regex: '(' }
      - { action: keep }
      - { action: replace }
      - { action: labeldrop, regex: x, target_label: y }
";
        let e = crate::config::Config::from_yaml(yaml, Path::new("t.yml"))
            .unwrap_err()
            .to_string();
        for want in [
            "t.yml:2:11: targets[0]: a target with file_sd",
            "targets[0].file_sd[0].files: \"*/x.json\": wildcards are supported in the file name only",
            "targets[1].metrics_path: \"metrics\" must start with /",
            "targets[1].scheme: unsupported scheme \"ftp\"",
            "t.yml:8:22: targets[1].http_sd[0].url: unsupported scheme \"ftp\"",
            "targets[1].http_sd[0].refresh_interval: 10ms is shorter than the minimum of 1s",
            "targets[1].dns_sd[0].port: A and AAAA records need a port",
            "targets[1].dns_sd[1].names: invalid DNS name \"bad name..\"",
            "targets[1].dns_sd[1].port: SRV records carry their own port",
            "t.yml:13:38: targets[1].relabel_configs[0].regex: invalid regex",
            "targets[1].relabel_configs[1].source_labels: keep needs source_labels",
            "targets[1].relabel_configs[2].target_label: replace needs a target_label",
            "targets[1].relabel_configs[3]: labeldrop takes only a regex over label names",
        ] {
            assert!(e.contains(want), "{want}\n---\n{e}");
        }
    }
}
