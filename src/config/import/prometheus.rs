//! Prometheus's `prometheus.yml` → tocsin's `scrape`, `evaluation`, `rule_files` and `targets`.
//!
//! Each address of a job's `static_configs` becomes one tocsin target with the series labels
//! Prometheus gives it: `job` (the job's name, or a static `job` label) through the target's
//! `job` field, `instance` from the URL's `host:port` (tocsin and Prometheus 2 both fill in the
//! scheme's default port), static labels as `labels`. The special labels Prometheus reads before
//! relabelling (`__metrics_path__`, `__scheme__`, `__param_<name>`, `__scrape_interval__`,
//! `__scrape_timeout__`) shape the URL and timings as they do in Prometheus. Prometheus's
//! defaults that differ from tocsin's (`scrape_interval` and `evaluation_interval` 1m) are
//! written out.

use std::collections::BTreeMap;
use std::path::Path;

use super::yaml::{MapOut, Node, Out};
use super::{Cx, join};
use crate::duration::PromDuration;
use crate::labels::valid_label_name;

/// Prometheus's global defaults.
const PROMETHEUS_INTERVAL: &str = "1m";
const PROMETHEUS_TIMEOUT_MS: i64 = 10_000;

/// The global section, as found.
struct Global {
    interval: String,
    timeout: Option<String>,
    limits: Limits,
}

/// Per-scrape limits (global or per job); `None` is unset.
#[derive(Default, Clone)]
struct Limits {
    sample_limit: Option<u64>,
    body_size_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
}

fn ms(d: &str) -> i64 {
    PromDuration::parse(d).map_or(0, |d| d.as_millis())
}

pub(crate) fn convert(root: &Node, cx: &mut Cx) -> Out {
    let mut global = Global {
        interval: PROMETHEUS_INTERVAL.into(),
        timeout: None,
        limits: Limits::default(),
    };
    let mut evaluation = PROMETHEUS_INTERVAL.to_string();
    let mut external = None;
    if let Some(g) = root.get("global") {
        for (key, k, v) in cx.map(g, "global") {
            let f = join("global", &key);
            match key.as_str() {
                "scrape_interval" => {
                    if let Some(d) = cx.duration(v, &f) {
                        global.interval = d
                    }
                }
                "scrape_timeout" => global.timeout = cx.duration(v, &f),
                "evaluation_interval" => {
                    if let Some(d) = cx.duration(v, &f) {
                        evaluation = d
                    }
                }
                "external_labels" => {
                    let mut m = MapOut::new();
                    for (lk, _, lv) in cx.map(v, &f) {
                        if let Some(val) = cx.text(lv, &join(&f, &lk)) {
                            m.put(&lk, Out::str(val));
                        }
                    }
                    external = Some(m.done());
                    cx.note(
                        k,
                        &f,
                        "tocsin adds them to the alerts its receivers get and to /api/v2/alerts, as Prometheus adds them to what it sends Alertmanager",
                    );
                }
                "rule_query_offset" => cx.dropped(
                    k,
                    &f,
                    "set query_offset on each rule group instead (tocsin has it per group only)",
                ),
                "query_log_file" | "scrape_failure_log_file" => {
                    cx.dropped(k, &f, "tocsin writes no query or scrape failure log file")
                }
                "scrape_protocols" => cx.note(
                    k,
                    &f,
                    "tocsin asks for the text format or OpenMetrics and reads either",
                ),
                "target_limit" | "keep_dropped_targets" => {
                    cx.note(k, &f, "static targets only: nothing to limit or keep")
                }
                "metric_name_validation_scheme" | "metric_name_escaping_scheme" => {
                    cx.note(k, &f, "tocsin validates names as Prometheus 2 does")
                }
                _ => {
                    if !limit(&mut global.limits, &key, v, &f, cx) {
                        cx.unknown(k, &f)
                    }
                }
            }
        }
    }
    let mut scrape = MapOut::new();
    scrape.put_commented(
        "interval",
        Out::str(global.interval.clone()),
        "Prometheus's default is 1m, tocsin's 15s: written out".into(),
    );
    if let Some(t) = &global.timeout {
        scrape.put("timeout", Out::str(t.clone()));
    }
    put_limits(&mut scrape, &global.limits);
    cx.header.push(
        "a scrape that sets no limit gets tocsin's: 200000 samples, a 32MiB body (Prometheus has none)".into(),
    );
    let mut out = MapOut::new();
    out.put("scrape", scrape.done());
    let mut ev = MapOut::new();
    ev.put("interval", Out::str(evaluation));
    out.put("evaluation", ev.done());
    if let Some(labels) = external {
        out.put("external_labels", labels);
    }

    let mut rule_files = Vec::new();
    let mut targets = Vec::new();
    for (key, k, v) in cx.map(root, "") {
        match key.as_str() {
            "global" => {}
            "rule_files" => {
                for (i, item) in cx.list(v, "rule_files").into_iter().enumerate() {
                    let f = format!("rule_files[{i}]");
                    let Some(p) = cx.text(item, &f) else { continue };
                    let dir = std::path::Path::new(&p)
                        .parent()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default();
                    if dir.contains(['*', '?', '[']) {
                        cx.dropped(
                            item,
                            &f,
                            "tocsin expands wildcards in the file name only, not in directories",
                        );
                        continue;
                    }
                    cx.note(
                        item,
                        &f,
                        "kept as written: tocsin reads it relative to the directory of the converted file, as Prometheus did relative to prometheus.yml's; a pattern that matches no file is an error in tocsin",
                    );
                    rule_files.push(p);
                }
            }
            "scrape_configs" => {
                for (i, job) in cx.list(v, "scrape_configs").into_iter().enumerate() {
                    convert_job(
                        job,
                        &format!("scrape_configs[{i}]"),
                        &global,
                        cx,
                        &mut targets,
                    );
                }
            }
            "alerting" => {
                for (ak, akn, _) in cx.map(v, "alerting") {
                    let f = join("alerting", &ak);
                    match ak.as_str() {
                        "alertmanagers" => cx.dropped(
                            akn,
                            &f,
                            "tocsin notifies by itself: convert alertmanager.yml with `tocsin import` and add its route and receivers",
                        ),
                        "alert_relabel_configs" => {
                            cx.dropped(akn, &f, "tocsin does not relabel alerts")
                        }
                        _ => cx.unknown(akn, &f),
                    }
                }
            }
            "remote_write"
            | "remote_read"
            | "storage"
            | "tracing"
            | "otlp"
            | "runtime"
            | "scrape_config_files" => cx.dropped(
                k,
                &key,
                format!("tocsin has no counterpart of Prometheus's {key}"),
            ),
            _ => cx.unknown(k, &key),
        }
    }
    if !rule_files.is_empty() {
        out.put_commented(
            "rule_files",
            Out::strs(rule_files),
            "relative to this file's directory: save it beside prometheus.yml, or adjust".into(),
        );
    }
    // unique names: a clash (two jobs and addresses with one name) gets a number
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let targets: Vec<Out> = targets
        .into_iter()
        .map(|mut t: MapOut| {
            if let Some(Out::Str(name)) = t.0.first().map(|e| e.value.clone()) {
                let n = seen.entry(name.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    t.0[0].value = Out::str(format!("{name}#{n}"));
                }
            }
            t.done()
        })
        .collect();
    if !targets.is_empty() {
        out.put("targets", Out::List(targets));
    }
    out.done()
}

/// Reads a limit key into `limits`; false when `key` is not one.
fn limit(limits: &mut Limits, key: &str, v: &Node, f: &str, cx: &mut Cx) -> bool {
    let slot = match key {
        "sample_limit" => &mut limits.sample_limit,
        "label_limit" => &mut limits.label_limit,
        "label_name_length_limit" => &mut limits.label_name_length_limit,
        "label_value_length_limit" => &mut limits.label_value_length_limit,
        "body_size_limit" => {
            limits.body_size_limit = match v.text().as_deref().map(prometheus_bytes) {
                Some(Some(n)) => Some(n),
                _ => {
                    cx.dropped(v, f, "not a size Prometheus reads (512KB, 10MB)");
                    None
                }
            };
            return true;
        }
        _ => return false,
    };
    *slot = cx.count(v, f);
    true
}

/// Prometheus's sizes: a number with `B`, `KB`, `MB`… in powers of 1024 (Go's `units.Base2Bytes`).
fn prometheus_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let shift = match unit {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

fn put_limits(out: &mut MapOut, l: &Limits) {
    // 0 is Prometheus's "no limit"; in tocsin a sample or body limit of 0 refuses everything
    if let Some(n) = l.sample_limit.filter(|n| *n > 0) {
        out.put("sample_limit", Out::Int(n));
    }
    if let Some(n) = l.body_size_limit.filter(|n| *n > 0) {
        out.put("body_size_limit", Out::Int(n));
    }
    for (k, v) in [
        ("label_limit", l.label_limit),
        ("label_name_length_limit", l.label_name_length_limit),
        ("label_value_length_limit", l.label_value_length_limit),
    ] {
        if let Some(n) = v {
            out.put(k, Out::Int(n));
        }
    }
}

/// How a job's scrapes authenticate.
#[derive(Clone)]
enum Bearer {
    File(String),
    Env(String),
}

fn convert_job(node: &Node, field: &str, global: &Global, cx: &mut Cx, targets: &mut Vec<MapOut>) {
    let job_name = node
        .get("job_name")
        .and_then(Node::text)
        .unwrap_or_default();
    if job_name.is_empty() {
        cx.dropped(node, field, "a scrape config without job_name");
        return;
    }
    let mut interval = None;
    let mut timeout = None;
    let mut metrics_path = "/metrics".to_string();
    let mut scheme = "http".to_string();
    let mut params: Vec<(String, String)> = Vec::new();
    let mut bearer = None;
    let mut limits = Limits::default();
    let mut statics: Vec<(&Node, String)> = Vec::new();
    let mut relabel: Vec<Out> = Vec::new();
    let mut sd = Sd::default();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "job_name" => {}
            "scrape_interval" => interval = cx.duration(v, &f),
            "scrape_timeout" => timeout = cx.duration(v, &f),
            "metrics_path" => {
                if let Some(p) = cx.text(v, &f) {
                    metrics_path = p
                }
            }
            "scheme" => {
                if let Some(s) = cx.text(v, &f) {
                    scheme = s
                }
            }
            "params" => {
                for (pk, _, pv) in cx.map(v, &f) {
                    for value in cx.strings(pv, &join(&f, &pk)) {
                        params.push((pk.clone(), value));
                    }
                }
            }
            "honor_labels" => {
                if cx.bool(v, &f) == Some(true) {
                    cx.changed(
                        v,
                        &f,
                        "tocsin keeps the target's job and instance and renames an exposed one to exported_<name>, as Prometheus with honor_labels: false",
                    );
                }
            }
            "honor_timestamps" => {
                if cx.bool(v, &f) == Some(false) {
                    cx.changed(v, &f, "tocsin stores the timestamps a target exposes");
                }
            }
            "track_timestamps_staleness" => {
                if cx.bool(v, &f) == Some(true) {
                    cx.changed(
                        v,
                        &f,
                        "tocsin writes no staleness marker for series with their own timestamps",
                    );
                }
            }
            "bearer_token_file" => {
                bearer = cx.text(v, &f).map(|p| Bearer::File(cx.path(v, &f, &p)));
            }
            "bearer_token" => {
                let var = super::alertmanager::env_name(&job_name, "BEARER_TOKEN");
                cx.changed(
                    v,
                    &f,
                    format!("tocsin keeps no secret in its configuration: set the environment variable {var} to this token"),
                );
                bearer = Some(Bearer::Env(var));
            }
            "authorization" => {
                let kind = v
                    .get("type")
                    .and_then(Node::text)
                    .unwrap_or("Bearer".into());
                if kind != "Bearer" {
                    cx.dropped(
                        k,
                        &f,
                        format!("tocsin sends bearer tokens only, not {kind}"),
                    );
                    continue;
                }
                for (ak, akn, av) in cx.map(v, &f) {
                    let fa = join(&f, &ak);
                    match ak.as_str() {
                        "type" => {}
                        "credentials_file" => {
                            bearer = cx.text(av, &fa).map(|p| Bearer::File(cx.path(av, &fa, &p)))
                        }
                        "credentials" => {
                            let var = super::alertmanager::env_name(&job_name, "BEARER_TOKEN");
                            cx.changed(
                                av,
                                &fa,
                                format!("tocsin keeps no secret in its configuration: set the environment variable {var} to this token"),
                            );
                            bearer = Some(Bearer::Env(var));
                        }
                        _ => cx.unknown(akn, &fa),
                    }
                }
            }
            "basic_auth" | "oauth2" => cx.dropped(
                k,
                &f,
                "tocsin authenticates scrapes with a bearer token only",
            ),
            "tls_config" => cx.dropped(
                k,
                &f,
                "tocsin verifies targets against the system's roots, with no client certificate",
            ),
            "proxy_url" | "no_proxy" | "proxy_from_environment" | "proxy_connect_header" => {
                cx.dropped(k, &f, "tocsin scrapes directly, with no proxy")
            }
            "http_headers" => cx.dropped(k, &f, "tocsin sends no extra scrape headers"),
            "follow_redirects" | "enable_http2" | "enable_compression" => {
                cx.note(k, &f, "tocsin's HTTP client decides this itself")
            }
            "scrape_protocols" | "fallback_scrape_protocol" => cx.note(
                k,
                &f,
                "tocsin asks for the text format or OpenMetrics and reads either",
            ),
            "target_limit" => cx.dropped(
                k,
                &f,
                "tocsin bounds each discovery source itself (10,000 targets)",
            ),
            "keep_dropped_targets" => cx.note(k, &f, "tocsin does not list dropped targets"),
            "scrape_classic_histograms" | "always_scrape_classic_histograms" => {
                cx.note(k, &f, "tocsin stores classic histograms only")
            }
            "native_histogram_bucket_limit"
            | "native_histogram_min_bucket_factor"
            | "convert_classic_histograms_to_nhcb"
            | "scrape_native_histograms" => cx.dropped(k, &f, "tocsin has no native histograms"),
            "relabel_configs" => relabel = convert_relabel(v, &f, cx),
            "metric_relabel_configs" => cx.dropped(k, &f, "tocsin does not relabel scraped series"),
            "static_configs" => {
                for (i, sc) in cx.list(v, &f).into_iter().enumerate() {
                    statics.push((sc, format!("{f}[{i}]")));
                }
            }
            "file_sd_configs" => {
                for (i, c) in cx.list(v, &f).into_iter().enumerate() {
                    if let Some(o) = convert_file_sd(c, &format!("{f}[{i}]"), cx) {
                        sd.file.push(o);
                    }
                }
            }
            "http_sd_configs" => {
                for (i, c) in cx.list(v, &f).into_iter().enumerate() {
                    if let Some(o) = convert_http_sd(c, &format!("{f}[{i}]"), &job_name, cx) {
                        sd.http.push(o);
                    }
                }
            }
            "dns_sd_configs" => {
                for (i, c) in cx.list(v, &f).into_iter().enumerate() {
                    if let Some(o) = convert_dns_sd(c, &format!("{f}[{i}]"), cx) {
                        sd.dns.push(o);
                    }
                }
            }
            other if other.ends_with("_sd_configs") => cx.dropped(
                k,
                &f,
                format!(
                    "tocsin has no {} service discovery (file, http and dns only): list the targets in static_configs or a file_sd file",
                    other.trim_end_matches("_sd_configs")
                ),
            ),
            _ => {
                if !limit(&mut limits, &key, v, &f, cx) {
                    cx.unknown(k, &f)
                }
            }
        }
    }
    let job = Job {
        name: job_name,
        interval,
        timeout,
        metrics_path,
        scheme,
        params,
        bearer,
        limits,
        relabel,
    };
    if !sd.is_empty() {
        targets.push(discovering_target(&job, global, sd));
    }
    let count: usize = statics
        .iter()
        .map(|(sc, _)| {
            sc.get("targets").map_or(0, |t| match &t.value {
                super::yaml::Value::Seq(items) => items.len(),
                _ => 0,
            })
        })
        .sum();
    for (sc, f) in statics {
        convert_static(sc, &f, &job, global, count, cx, targets);
    }
}

struct Job {
    name: String,
    interval: Option<String>,
    timeout: Option<String>,
    metrics_path: String,
    scheme: String,
    params: Vec<(String, String)>,
    bearer: Option<Bearer>,
    limits: Limits,
    /// `relabel_configs`, converted
    relabel: Vec<Out>,
}

/// A job's discovery sections, converted.
#[derive(Default)]
struct Sd {
    file: Vec<Out>,
    http: Vec<Out>,
    dns: Vec<Out>,
}

impl Sd {
    fn is_empty(&self) -> bool {
        self.file.is_empty() && self.http.is_empty() && self.dns.is_empty()
    }
}

/// The tocsin timeout of a job when it differs from what tocsin would pick: Prometheus's
/// (the job's, else the global one capped at the job's interval).
fn timeout_out(job: &Job, global: &Global, interval: &Option<String>) -> Option<Out> {
    let interval_ms = ms(interval.as_deref().unwrap_or(&global.interval));
    let global_timeout_ms = global
        .timeout
        .as_deref()
        .map(ms)
        .unwrap_or_else(|| PROMETHEUS_TIMEOUT_MS.min(ms(&global.interval)));
    let prom = job
        .timeout
        .as_deref()
        .map(ms)
        .unwrap_or(global_timeout_ms.min(interval_ms));
    let tocsin = global
        .timeout
        .as_deref()
        .map(ms)
        .unwrap_or(PROMETHEUS_TIMEOUT_MS.min(interval_ms));
    (job.timeout.is_some() || prom != tocsin).then(|| {
        Out::str(PromDuration(std::time::Duration::from_millis(prom.max(0) as u64)).to_string())
    })
}

/// The target that discovers a job's addresses: the job's settings, its discovery sections
/// and relabelling (`params` become `__param_*` relabelling steps, as Prometheus reads them).
fn discovering_target(job: &Job, global: &Global, sd: Sd) -> MapOut {
    let mut t = MapOut::new();
    t.put("name", Out::str(job.name.clone()));
    if let Some(i) = &job.interval {
        t.put("interval", Out::str(i.clone()));
    }
    if let Some(timeout) = timeout_out(job, global, &job.interval) {
        t.put("timeout", timeout);
    }
    put_limits(&mut t, &job.limits);
    match &job.bearer {
        Some(Bearer::File(p)) => t.put("bearer_token_file", Out::str(p.clone())),
        Some(Bearer::Env(v)) => t.put("bearer_token_env", Out::str(v.clone())),
        None => {}
    }
    if job.metrics_path != "/metrics" {
        t.put("metrics_path", Out::str(job.metrics_path.clone()));
    }
    if job.scheme != "http" {
        t.put("scheme", Out::str(job.scheme.clone()));
    }
    if !sd.file.is_empty() {
        t.put("file_sd", Out::List(sd.file));
    }
    if !sd.http.is_empty() {
        t.put("http_sd", Out::List(sd.http));
    }
    if !sd.dns.is_empty() {
        t.put("dns_sd", Out::List(sd.dns));
    }
    let mut steps: Vec<Out> = job
        .params
        .iter()
        .map(|(k, v)| {
            let mut m = MapOut::new();
            m.put("target_label", Out::str(format!("__param_{k}")));
            m.put("replacement", Out::str(v.clone()));
            m.done()
        })
        .collect();
    steps.extend(job.relabel.iter().cloned());
    if !steps.is_empty() {
        t.put("relabel_configs", Out::List(steps));
    }
    t
}

/// `relabel_configs`: the actions tocsin has, with their fields; others are reported.
fn convert_relabel(node: &Node, field: &str, cx: &mut Cx) -> Vec<Out> {
    let mut out = Vec::new();
    for (i, step) in cx.list(node, field).into_iter().enumerate() {
        let f = format!("{field}[{i}]");
        let mut m = MapOut::new();
        let mut keep = true;
        for (key, k, v) in cx.map(step, &f) {
            let fk = join(&f, &key);
            match key.as_str() {
                "source_labels" => {
                    let labels = cx.strings(v, &fk);
                    m.put("source_labels", Out::strs(labels));
                }
                "separator" | "target_label" | "replacement" => {
                    if let Some(t) = cx.text(v, &fk) {
                        m.put(&key, Out::str(t));
                    }
                }
                "regex" => {
                    if let Some(t) = cx.text(v, &fk) {
                        if let Err(e) = crate::labels::compile_regex(&t) {
                            cx.dropped(v, &fk, format!("a regex tocsin does not compile: {e}"));
                            keep = false;
                        }
                        m.put("regex", Out::str(t));
                    }
                }
                "action" => match cx.text(v, &fk).as_deref() {
                    Some(
                        a @ ("replace" | "keep" | "drop" | "labelmap" | "labeldrop" | "labelkeep"),
                    ) => m.put("action", Out::str(a)),
                    Some(a) => {
                        cx.dropped(
                            v,
                            &f,
                            format!(
                                "tocsin relabels with replace, keep, drop, labelmap, labeldrop and labelkeep, not {a}"
                            ),
                        );
                        keep = false;
                    }
                    None => keep = false,
                },
                "modulus" => {
                    cx.dropped(k, &fk, "hashmod is not a tocsin action");
                    keep = false;
                }
                _ => {
                    cx.unknown(k, &fk);
                    keep = false;
                }
            }
        }
        if keep {
            out.push(m.done());
        }
    }
    out
}

/// One `file_sd_configs` entry.
fn convert_file_sd(node: &Node, field: &str, cx: &mut Cx) -> Option<Out> {
    let mut m = MapOut::new();
    let mut files = Vec::new();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "files" => {
                for (i, p) in cx.list(v, &f).into_iter().enumerate() {
                    let fi = format!("{f}[{i}]");
                    if let Some(t) = cx.text(p, &fi) {
                        if Path::new(&t)
                            .parent()
                            .is_some_and(|d| d.to_string_lossy().contains(['*', '?', '[']))
                        {
                            cx.dropped(p, &fi, "tocsin reads wildcards in the file name only");
                            continue;
                        }
                        files.push(t);
                    }
                }
            }
            "refresh_interval" => {
                if let Some(d) = cx.duration(v, &f) {
                    m.put("refresh_interval", Out::str(d));
                }
            }
            _ => cx.unknown(k, &f),
        }
    }
    if files.is_empty() {
        return None;
    }
    // both resolve relative paths against the configuration's directory
    let mut out = MapOut::new();
    out.put("files", Out::strs(files));
    out.0.extend(m.0);
    Some(out.done())
}

/// One `http_sd_configs` entry, with the HTTP client settings tocsin has (bearer token, basic
/// auth from a file or the environment).
fn convert_http_sd(node: &Node, field: &str, job: &str, cx: &mut Cx) -> Option<Out> {
    let mut m = MapOut::new();
    let mut url = None;
    let mut rest = MapOut::new();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "url" => url = cx.text(v, &f),
            "refresh_interval" => {
                if let Some(d) = cx.duration(v, &f) {
                    rest.put("refresh_interval", Out::str(d));
                }
            }
            "bearer_token_file" => {
                if let Some(p) = cx.text(v, &f) {
                    let p = cx.path(v, &f, &p);
                    rest.put("bearer_token_file", Out::str(p));
                }
            }
            "bearer_token" => {
                let var = super::alertmanager::env_name(job, "SD_BEARER_TOKEN");
                cx.changed(
                    v,
                    &f,
                    format!("tocsin keeps no secret in its configuration: set the environment variable {var} to this token"),
                );
                rest.put("bearer_token_env", Out::str(var));
            }
            "authorization" => {
                for (ak, akn, av) in cx.map(v, &f) {
                    let fa = join(&f, &ak);
                    match ak.as_str() {
                        "type" => {
                            if av.text().as_deref() != Some("Bearer") {
                                cx.dropped(av, &fa, "tocsin sends bearer tokens only");
                            }
                        }
                        "credentials_file" => {
                            if let Some(p) = cx.text(av, &fa) {
                                let p = cx.path(av, &fa, &p);
                                rest.put("bearer_token_file", Out::str(p));
                            }
                        }
                        "credentials" => {
                            let var = super::alertmanager::env_name(job, "SD_BEARER_TOKEN");
                            cx.changed(
                                av,
                                &fa,
                                format!("tocsin keeps no secret in its configuration: set the environment variable {var} to this token"),
                            );
                            rest.put("bearer_token_env", Out::str(var));
                        }
                        _ => cx.unknown(akn, &fa),
                    }
                }
            }
            "basic_auth" => {
                let mut b = MapOut::new();
                for (bk, bkn, bv) in cx.map(v, &f) {
                    let fb = join(&f, &bk);
                    match bk.as_str() {
                        "username" => {
                            if let Some(u) = cx.text(bv, &fb) {
                                b.put("username", Out::str(u));
                            }
                        }
                        "password_file" => {
                            if let Some(p) = cx.text(bv, &fb) {
                                let p = cx.path(bv, &fb, &p);
                                b.put("password_file", Out::str(p));
                            }
                        }
                        "password" => {
                            let var = super::alertmanager::env_name(job, "SD_PASSWORD");
                            cx.changed(
                                bv,
                                &fb,
                                format!("tocsin keeps no secret in its configuration: set the environment variable {var} to this password"),
                            );
                            b.put("password_env", Out::str(var));
                        }
                        _ => cx.unknown(bkn, &fb),
                    }
                }
                rest.put("basic_auth", b.done());
            }
            "tls_config" => cx.dropped(
                k,
                &f,
                "tocsin verifies the endpoint against the system's roots, with no client certificate",
            ),
            "proxy_url" | "no_proxy" | "proxy_from_environment" | "proxy_connect_header" => {
                cx.dropped(k, &f, "tocsin fetches directly, with no proxy")
            }
            "follow_redirects" | "enable_http2" => {
                cx.note(k, &f, "tocsin's HTTP client decides this itself")
            }
            _ => cx.unknown(k, &f),
        }
    }
    m.put("url", Out::str(url?));
    m.0.extend(rest.0);
    Some(m.done())
}

/// One `dns_sd_configs` entry: `A`, `AAAA` and `SRV`.
fn convert_dns_sd(node: &Node, field: &str, cx: &mut Cx) -> Option<Out> {
    let mut names = Vec::new();
    let mut rest = MapOut::new();
    let mut ok = true;
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "names" => names = cx.strings(v, &f),
            "type" => match cx.text(v, &f).map(|t| t.to_ascii_uppercase()).as_deref() {
                Some(t @ ("A" | "AAAA" | "SRV")) => rest.put("type", Out::str(t)),
                Some(t) => {
                    cx.dropped(
                        v,
                        &f,
                        format!("tocsin resolves A, AAAA and SRV records, not {t}"),
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "port" => {
                if let Some(n) = cx.count(v, &f) {
                    rest.put("port", Out::Int(n));
                }
            }
            "refresh_interval" => {
                if let Some(d) = cx.duration(v, &f) {
                    rest.put("refresh_interval", Out::str(d));
                }
            }
            _ => cx.unknown(k, &f),
        }
    }
    if !ok || names.is_empty() {
        return None;
    }
    let mut m = MapOut::new();
    m.put("names", Out::strs(names));
    m.0.extend(rest.0);
    Some(m.done())
}

fn convert_static(
    node: &Node,
    field: &str,
    job: &Job,
    global: &Global,
    count: usize,
    cx: &mut Cx,
    targets: &mut Vec<MapOut>,
) {
    let mut addresses = Vec::new();
    let mut labels: BTreeMap<String, (String, Node)> = BTreeMap::new();
    for (key, k, v) in cx.map(node, field) {
        let f = join(field, &key);
        match key.as_str() {
            "targets" => {
                for (i, a) in cx.list(v, &f).into_iter().enumerate() {
                    if let Some(t) = cx.text(a, &format!("{f}[{i}]")) {
                        addresses.push((t, a));
                    }
                }
            }
            "labels" => {
                for (lk, lkn, lv) in cx.map(v, &f) {
                    if let Some(val) = cx.text(lv, &join(&f, &lk)) {
                        labels.insert(lk, (val, lkn.clone()));
                    }
                }
            }
            _ => cx.unknown(k, &f),
        }
    }
    // the labels Prometheus reads before relabelling
    let mut scheme = job.scheme.clone();
    let mut path = job.metrics_path.clone();
    let mut params = job.params.clone();
    let mut interval = job.interval.clone();
    let mut timeout = job.timeout.clone();
    let mut job_label = job.name.clone();
    let mut instance = None;
    let mut plain = BTreeMap::new();
    let lf = join(field, "labels");
    for (name, (value, at)) in &labels {
        let f = join(&lf, name);
        match name.as_str() {
            "__scheme__" => scheme = value.clone(),
            "__metrics_path__" => path = value.clone(),
            "__scrape_interval__" | "__scrape_timeout__" => {
                if PromDuration::parse(value).is_err() {
                    cx.dropped(at, &f, format!("{value:?} is not a duration tocsin reads"));
                } else if name == "__scrape_interval__" {
                    interval = Some(value.clone());
                } else {
                    timeout = Some(value.clone());
                }
            }
            "__address__" => cx.changed(at, &f, "the address is the target's own; this label is not used"),
            n if n.starts_with("__param_") => {
                let p = n.trim_start_matches("__param_").to_string();
                params.retain(|(k, _)| *k != p);
                params.push((p, value.clone()));
            }
            n if n.starts_with("__") => cx.note(
                at,
                &f,
                "Prometheus drops labels starting with __ after relabelling; so does the conversion",
            ),
            "job" => job_label = value.clone(),
            "instance" => instance = Some((value.clone(), at.clone())),
            n if !valid_label_name(n) => {
                cx.dropped(at, &f, "not a label name tocsin accepts")
            }
            _ => {
                plain.insert(name.clone(), value.clone());
            }
        }
    }
    let interval_s = interval.clone().unwrap_or(global.interval.clone());
    let interval_ms = ms(&interval_s);
    // Prometheus: the job's timeout, else the global one capped at the job's interval
    let global_timeout_ms = global
        .timeout
        .as_deref()
        .map(ms)
        .unwrap_or_else(|| PROMETHEUS_TIMEOUT_MS.min(ms(&global.interval)));
    let prom_timeout_ms = timeout
        .as_deref()
        .map(ms)
        .unwrap_or(global_timeout_ms.min(interval_ms));
    // tocsin: the target's timeout, else scrape.timeout, else 10s capped at the interval
    let tocsin_default_ms = global
        .timeout
        .as_deref()
        .map(ms)
        .unwrap_or(PROMETHEUS_TIMEOUT_MS.min(interval_ms));
    for (address, at) in addresses {
        let f = format!("{field}.targets");
        let url = match build_url(&scheme, &address, &path, &params) {
            Ok(u) => u,
            Err(e) => {
                cx.dropped(at, &f, format!("no scrape URL from {address:?}: {e}"));
                continue;
            }
        };
        // a static `instance` label is set before relabelling, as Prometheus sets it
        let mut steps = Vec::new();
        if let Some((value, _)) = &instance
            && *value != crate::ingest::instance_of(&url)
        {
            let mut m = MapOut::new();
            m.put("target_label", Out::str("instance"));
            m.put("replacement", Out::str(value.clone()));
            steps.push(m.done());
        }
        steps.extend(job.relabel.iter().cloned());
        let name = if count == 1 {
            job_label.clone()
        } else {
            format!("{job_label}/{address}")
        };
        let mut t = MapOut::new();
        t.put("name", Out::str(name.clone()));
        if name != job_label {
            t.put("job", Out::str(job_label.clone()));
        }
        t.put("metrics", Out::str(url.to_string()));
        if !plain.is_empty() {
            let mut l = MapOut::new();
            for (k, v) in &plain {
                l.put(k, Out::str(v.clone()));
            }
            t.put("labels", l.done());
        }
        if let Some(i) = &interval {
            t.put("interval", Out::str(i.clone()));
        }
        if timeout.is_some() || prom_timeout_ms != tocsin_default_ms {
            t.put(
                "timeout",
                Out::str(
                    PromDuration(std::time::Duration::from_millis(
                        prom_timeout_ms.max(0) as u64
                    ))
                    .to_string(),
                ),
            );
        }
        put_limits(&mut t, &job.limits);
        match &job.bearer {
            Some(Bearer::File(p)) => t.put("bearer_token_file", Out::str(p.clone())),
            Some(Bearer::Env(v)) => t.put("bearer_token_env", Out::str(v.clone())),
            None => {}
        }
        if !steps.is_empty() {
            t.put("relabel_configs", Out::List(steps));
        }
        targets.push(t);
    }
}

/// The URL Prometheus scrapes: `scheme://address/path?params`.
fn build_url(
    scheme: &str,
    address: &str,
    path: &str,
    params: &[(String, String)],
) -> Result<url::Url, String> {
    if !matches!(scheme, "http" | "https") {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    if address.contains('/') {
        return Err("an address is host:port, without a path".into());
    }
    let mut url = url::Url::parse(&format!("{scheme}://{address}")).map_err(|e| e.to_string())?;
    url.set_path(path);
    if !params.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_in_powers_of_1024_as_prometheus_reads_them() {
        for (s, want) in [
            ("512", Some(512)),
            ("10KB", Some(10 << 10)),
            ("10MB", Some(10 << 20)),
            ("1GiB", Some(1 << 30)),
            ("1 MB", None),
            ("x", None),
        ] {
            assert_eq!(prometheus_bytes(s), want, "{s}");
        }
    }

    #[test]
    fn urls_carry_scheme_path_and_params() {
        let u = build_url(
            "https",
            "example.org:9100",
            "/probe",
            &[
                ("module".into(), "http_2xx".into()),
                ("target".into(), "a b".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://example.org:9100/probe?module=http_2xx&target=a+b"
        );
        assert!(build_url("ftp", "x:1", "/", &[]).is_err());
    }
}
