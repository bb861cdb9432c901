//! The metadata endpoints Grafana's metric browser reads (`/api/v1/labels`,
//! `/api/v1/label/{name}/values`, `/api/v1/series`) on the real daemon scraping a real target:
//! names, values and series, `match[]` filters, the time range, `limit` with its warning, the
//! 400s and the bounds; and their agreement with Debian's real Prometheus scraping the same
//! target.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::on_path;
use crate::common::{Daemon, Deadline, FakeTarget, Reply};
use crate::datasource::prometheus;

const METRICS: &str = "# TYPE demo_requests_total counter\n\
    demo_requests_total{method=\"get\",code=\"200\"} 5\n\
    demo_requests_total{method=\"post\",code=\"500\"} 1\n\
    # TYPE demo_queue gauge\n\
    demo_queue 3\n";

/// [`METRICS`] plus a series with a UTF-8 label name (Prometheus 3's quoted syntax).
const METRICS_UTF8: &str = "# TYPE demo_requests_total counter\n\
    demo_requests_total{method=\"get\",code=\"200\"} 5\n\
    demo_requests_total{method=\"post\",code=\"500\"} 1\n\
    # TYPE demo_queue gauge\n\
    demo_queue 3\n\
    demo_dotted{\"my.label\"=\"v\"} 1\n";

fn start(dir: &Path, target: &FakeTarget) -> Daemon {
    Daemon::in_dir(dir)
        .config(&format!(
            "storage: {{ flush_interval: 1s }}\nscrape: {{ interval: 1s, timeout: 1s, self_metrics: false }}\n\
             targets:\n  - name: svc\n    metrics: {}\n",
            target.url("/metrics")
        ))
        .start()
}

async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not json ({e}): {text}"));
    (code, v)
}

async fn post(url: &str, form: &[(&str, String)]) -> (u16, Value) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not json ({e}): {text}"));
    (code, v)
}

/// `data` of a successful answer.
async fn data(url: &str) -> Value {
    let (code, v) = get(url).await;
    assert_eq!(code, 200, "{url}: {v}");
    assert_eq!(v["status"], "success", "{url}: {v}");
    v["data"].clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Waits until the daemon at `base` has stored every series of the target.
async fn wait_for_series(base: &str, selector: &str, n: usize) {
    let url = format!("{base}/api/v1/series?match[]={}", enc(selector));
    Deadline::within(
        format!("{n} series for {selector}"),
        Duration::from_secs(30),
    )
    .until_some(async || {
        // the daemon may not listen yet
        let resp = reqwest::get(&url).await.ok()?;
        let v: Value = serde_json::from_str(&resp.text().await.ok()?).ok()?;
        v["data"]
            .as_array()
            .is_some_and(|a| a.len() == n)
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_values_and_series_of_a_scraped_target_answer_as_prometheus_does() {
    let target = FakeTarget::start().await;
    target.route(
        "/metrics",
        Reply::text(METRICS_UTF8).header(
            "content-type",
            "text/plain; version=1.0.0; escaping=allow-utf-8",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), &target);
    let b = d.base.clone();
    wait_for_series(&b, r#"{__name__=~"demo_.*"}"#, 4).await;
    let api = |path: &str| format!("{b}/api/v1/{path}");

    // label names: every series, sorted, `__name__` included; GET and POST agree
    let names = strings(&data(&api("labels")).await);
    for n in ["__name__", "code", "instance", "job", "method", "my.label"] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let (code, posted) = post(&api("labels"), &[]).await;
    assert_eq!((code, strings(&posted["data"])), (200, names.clone()));
    // filtered by match[]
    let queue = strings(&data(&api("labels?match[]=demo_queue")).await);
    assert_eq!(queue, ["__name__", "instance", "job"]);
    let two = strings(
        &data(&api(&format!(
            "labels?match[]=demo_queue&match[]={}",
            enc(r#"demo_requests_total{code="500"}"#)
        )))
        .await,
    );
    assert_eq!(two, ["__name__", "code", "instance", "job", "method"]);
    let (_, posted) = post(
        &api("labels"),
        &[
            ("match[]", "demo_queue".into()),
            ("match[]", r#"demo_requests_total{code="500"}"#.into()),
        ],
    )
    .await;
    assert_eq!(strings(&posted["data"]), two, "a form POST reads the same");

    // label values: metric names, a label's values, filtered
    let metrics = strings(&data(&api("label/__name__/values")).await);
    for m in ["demo_dotted", "demo_queue", "demo_requests_total", "up"] {
        assert!(metrics.contains(&m.to_string()), "{m} in {metrics:?}");
    }
    assert_eq!(
        strings(&data(&api("label/method/values")).await),
        ["get", "post"]
    );
    assert_eq!(
        strings(
            &data(&api(&format!(
                "label/method/values?match[]={}",
                enc(r#"{code="500"}"#)
            )))
            .await
        ),
        ["post"]
    );
    assert_eq!(
        strings(&data(&api("label/nope/values")).await),
        Vec::<String>::new()
    );
    // a UTF-8 label name, escaped as Prometheus 3 escapes it, or percent-encoded as written
    assert_eq!(
        strings(&data(&api("label/U__my_2e_label/values")).await),
        ["v"]
    );
    assert_eq!(strings(&data(&api("label/my.label/values")).await), ["v"]);

    // series: label sets, sorted, a union over match[] with each series once
    let series = data(&api(&format!(
        "series?match[]=demo_requests_total&match[]={}",
        enc(r#"{method="get"}"#)
    )))
    .await;
    let series = series.as_array().unwrap();
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(series[0]["method"], "get");
    assert_eq!(series[1]["method"], "post");
    assert_eq!(series[0]["__name__"], "demo_requests_total");
    assert_eq!(series[0]["job"], "svc");
    let (_, posted) = post(&api("series"), &[("match[]", "demo_queue".into())]).await;
    assert_eq!(posted["data"].as_array().map(Vec::len), Some(1));

    // the time range: long before the first scrape, and after the last, nothing
    for range in [
        "start=0&end=1000",
        "start=4102444800",
        "end=1970-01-01T00:16:40Z",
    ] {
        assert_eq!(
            data(&api(&format!("labels?{range}"))).await,
            json!([]),
            "{range}"
        );
        assert_eq!(
            data(&api(&format!("label/__name__/values?{range}"))).await,
            json!([]),
            "{range}"
        );
        assert_eq!(
            data(&api(&format!("series?match[]=demo_queue&{range}"))).await,
            json!([]),
            "{range}"
        );
    }
    // and a range around now holds them
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let around = format!("start={}&end={}", now - 600, now + 600);
    assert_eq!(
        data(&api(&format!(
            "series?match[]=demo_requests_total&{around}"
        )))
        .await
        .as_array()
        .map(Vec::len),
        Some(2)
    );

    // limit: the first in order, and the warning; no warning when nothing was cut
    let (_, cut) = get(&api("label/method/values?limit=1")).await;
    assert_eq!(strings(&cut["data"]), ["get"]);
    assert_eq!(cut["warnings"], json!(["results truncated due to limit"]));
    let (_, whole) = get(&api("label/method/values?limit=2")).await;
    assert_eq!(strings(&whole["data"]), ["get", "post"]);
    assert!(whole.get("warnings").is_none(), "{whole}");
    let (_, cut) = get(&api("series?match[]=demo_requests_total&limit=1")).await;
    assert_eq!(cut["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(cut["data"][0]["method"], "get");
    assert_eq!(cut["warnings"], json!(["results truncated due to limit"]));
    let (_, cut) = get(&api("labels?limit=1")).await;
    assert_eq!(strings(&cut["data"]), ["__name__"]);
    assert_eq!(cut["warnings"], json!(["results truncated due to limit"]));

    // refusals: 400 bad_data with Prometheus's reason
    let refused = [
        ("series", "no match[] parameter provided"),
        (
            "labels?match[]=%7B__name__%3D~%22.*%22%7D",
            "match[] must contain at least one non-empty matcher",
        ),
        (
            "series?match[]=%7Bjob%3D~%22.*%22%7D",
            "match[] must contain at least one non-empty matcher",
        ),
        ("series?match[]=%7B%7D", "non-empty matcher"),
        ("labels?start=yesterday", "invalid parameter \"start\""),
        ("series?match[]=up&end=soon", "invalid parameter \"end\""),
        ("labels?match[]=rate(up%5B1m%5D)", "not a series selector"),
        ("series?match[]=up%20offset%205m", "not a series selector"),
        ("series?match[]=%7Ba%3D~%22(%22%7D", "regex"),
        ("label/job/values?limit=-1", "invalid parameter \"limit\""),
        ("labels?limit=many", "invalid parameter \"limit\""),
    ];
    for (path, reason) in refused {
        let (code, v) = get(&api(path)).await;
        assert_eq!(code, 400, "{path}: {v}");
        assert_eq!(v["errorType"], "bad_data", "{path}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(reason),
            "{path}: {v} lacks {reason:?}"
        );
    }

    // bounds: 100 selectors pass, 101 do not; a selector over 16 KiB does not
    let mut form: Vec<(&str, String)> = (0..100)
        .map(|i| ("match[]", format!("demo_queue{{n!=\"{i}\"}}")))
        .collect();
    let (code, v) = post(&api("series"), &form).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
    form.push(("match[]", "demo_queue".into()));
    let (code, v) = post(&api("labels"), &form).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("101 selectors, more than the limit of 100"),
        "{v}"
    );
    let long = format!("demo_queue{{a=~\"{}\"}}", "x|".repeat(8 * 1024));
    let (code, v) = post(&api("series"), &[("match[]", long)]).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("longer than the limit"),
        "{v}"
    );
    let (code, v) = get(&api(&format!("label/{}/values", "a".repeat(2000)))).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = get(&api("label/%ff%fe/values")).await;
    assert_eq!((code, &v["errorType"]), (400, &json!("bad_data")), "{v}");

    // and the daemon is still well
    assert_eq!(
        strings(&data(&api("label/method/values")).await),
        ["get", "post"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_endpoints_agree_with_prometheus_on_the_same_target() {
    let Some(bin) = on_path("prometheus") else {
        println!("skipping: prometheus not installed (apt install prometheus)");
        return;
    };
    let target = FakeTarget::start().await;
    target.set_metrics(METRICS);
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), &target);
    let hostport = target.base().trim_start_matches("http://").to_string();
    let prom = prometheus(&bin, dir.path(), "prom-data", Some(&hostport)).await;
    let (tocsin, prom) = (d.base.clone(), prom.url());
    let demo = r#"{__name__=~"demo_.*"}"#;
    wait_for_series(&tocsin, demo, 3).await;
    wait_for_series(&prom, demo, 3).await;

    let selectors = [
        demo,
        "demo_requests_total",
        r#"demo_requests_total{code="500"}"#,
        r#"{method=~"g.*|p.*"}"#,
        r#"{__name__=~"demo_.*", method!="get"}"#,
        "up",
    ];
    let mut compared = 0;
    for sel in selectors {
        let m = format!("match[]={}", enc(sel));
        let mut paths = vec![
            format!("labels?{m}"),
            format!("series?{m}"),
            format!("label/__name__/values?{m}"),
            format!("label/method/values?{m}"),
            format!("label/job/values?{m}"),
        ];
        if sel == "up" {
            // tocsin's `up` is the target's; Prometheus's `up` too: compared whole, since both
            // name the job and instance the same way
            paths.truncate(2);
        }
        for path in paths {
            let ours = data(&format!("{tocsin}/api/v1/{path}")).await;
            let theirs = data(&format!("{prom}/api/v1/{path}")).await;
            assert_eq!(as_set(&ours), as_set(&theirs), "{path}");
            compared += 1;
        }
    }
    // without match[]: the names and values of the target's series (Prometheus has its own
    // scrape_* series beside them, which tocsin names otherwise: compared as a subset)
    for path in ["label/method/values", "label/code/values"] {
        let ours = data(&format!("{tocsin}/api/v1/{path}")).await;
        let theirs = data(&format!("{prom}/api/v1/{path}")).await;
        assert_eq!(as_set(&ours), as_set(&theirs), "{path}");
        compared += 1;
    }
    let ours = as_set(&data(&format!("{tocsin}/api/v1/label/__name__/values")).await);
    let theirs = as_set(&data(&format!("{prom}/api/v1/label/__name__/values")).await);
    for m in ["demo_queue", "demo_requests_total", "up"] {
        let m = json!(m).to_string();
        assert!(ours.contains(&m) && theirs.contains(&m), "{m}");
    }
    // errors: the same status and error type
    for path in [
        "series",
        "labels?match[]=%7B__name__%3D~%22.*%22%7D",
        "labels?start=yesterday",
        "series?match[]=rate(up%5B1m%5D)",
    ] {
        let (ours, o) = get(&format!("{tocsin}/api/v1/{path}")).await;
        let (theirs, t) = get(&format!("{prom}/api/v1/{path}")).await;
        assert_eq!(
            (ours, &o["errorType"]),
            (theirs, &t["errorType"]),
            "{path}: {o} {t}"
        );
        compared += 1;
    }
    assert_eq!(compared, 33);
}

/// A JSON list as a set of its items' texts (Prometheus does not sort one selector's series).
fn as_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(Value::to_string)
        .collect()
}
