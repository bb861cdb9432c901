//! The JSON API of the real binary: every `/api/v1/` endpoint's shape, the filters, reload, and
//! the faults (malformed JSON, unknown fields, missing token, a 70 KiB body, bad matchers, bad
//! queries and times) answered with a 4xx and a message while nothing changes.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Daemon, FakeTarget, HEALTH_DEGRADED};

const TOKEN: &str = "s3cret";

const RULES: &str = include_str!("../../fixtures/it/api-rules.yml");

fn start(dir: &Path, target: &FakeTarget) -> Daemon {
    let base = target.base();
    Daemon::in_dir(dir)
        .file("rules.yml", RULES)
        .config(&format!(
            "rule_files: [rules.yml]\nserver: {{ api_token_env: API_TOKEN }}\nstorage: {{ flush_interval: 1s }}\n\
             scrape: {{ interval: 1s, timeout: 1s }}\ntargets:\n  - name: svc\n    metrics: {base}/metrics\n    health: {base}/health\n"
        ))
        .env("API_TOKEN", TOKEN)
        .start()
}

async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not json ({e}): {text}")),
    )
}

/// A started daemon that has scraped its target and evaluated its rules with both alerts active.
async fn ready_daemon(dir: &Path) -> Daemon {
    let target = FakeTarget::start().await;
    target.set_health(503, HEALTH_DEGRADED);
    let d = start(dir, &target);
    d.wait_json("/api/v1/status", Duration::from_secs(30), |v| {
        v["data"]["startup"]["firstScrapeDone"] == true
            && v["data"]["startup"]["firstEvaluationDone"] == true
    })
    .await;
    d.wait_json("/api/v1/alerts", Duration::from_secs(15), |v| {
        v["data"]["alerts"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    d
}

fn alert_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_endpoints_answer_in_prometheus_shapes_with_tocsin_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let d = ready_daemon(dir.path()).await;
    let b = &d.base;

    // alerts and their filters
    let (_, all) = get(&format!("{b}/api/v1/alerts")).await;
    assert_eq!(all["status"], "success");
    assert_eq!(alert_names(&all), ["Always", "SvcUp"]);
    let (_, firing) = get(&format!("{b}/api/v1/alerts?state=firing")).await;
    assert_eq!(alert_names(&firing), ["Always"]);
    let (_, pending) = get(&format!("{b}/api/v1/alerts?state=pending")).await;
    assert_eq!(alert_names(&pending), ["SvcUp"]);
    let (_, page) = get(&format!(
        "{b}/api/v1/alerts?filter=%7Bseverity%3D%22page%22%7D"
    ))
    .await;
    assert_eq!(alert_names(&page), ["SvcUp"]);
    let (_, none) = get(&format!(
        "{b}/api/v1/alerts?filter=severity%3D%22page%22&state=firing"
    ))
    .await;
    assert_eq!(alert_names(&none), Vec::<String>::new());
    let (_, either) = get(&format!(
        "{b}/api/v1/alerts?match[]=%7Bseverity%3D%22page%22%7D&match[]=%7Balertname%3D%22Always%22%7D"
    ))
    .await;
    assert_eq!(alert_names(&either), ["Always", "SvcUp"]);

    // rules: Prometheus's shape, plus evaluations and transitions
    let (code, rules) = get(&format!("{b}/api/v1/rules")).await;
    assert_eq!(code, 200);
    let group = &rules["data"]["groups"][0];
    assert_eq!(group["name"], "api");
    assert_eq!(group["file"].as_str().unwrap(), "rules.yml");
    assert_eq!(group["interval"], 1.0);
    let rs = group["rules"].as_array().unwrap();
    assert_eq!(rs.len(), 3);
    let always = &rs[0];
    assert_eq!(always["type"], "alerting");
    assert_eq!(always["name"], "Always");
    assert_eq!(always["query"], "vector(1)");
    assert_eq!(always["health"], "ok");
    assert_eq!(always["lastError"], "");
    assert_eq!(always["state"], "firing");
    assert_eq!(always["labels"]["severity"], "ticket");
    assert_eq!(always["annotations"]["summary"], "value {{ $value }}");
    assert_eq!(always["alerts"][0]["state"], "firing");
    let evals = always["evaluations"].as_array().unwrap();
    assert!(!evals.is_empty() && evals.len() <= 20);
    assert_eq!(evals[0]["results"], 1);
    assert!(evals[0]["duration"].as_f64().unwrap() >= 0.0);
    assert_eq!(evals[0]["t"], always["lastEvaluation"]);
    let tr = always["transitions"].as_array().unwrap();
    assert_eq!(tr.last().unwrap()["from"], "inactive");
    assert_eq!(tr.last().unwrap()["to"], "firing");
    assert_eq!(rs[1]["state"], "pending");
    assert_eq!(rs[1]["duration"], 3600.0);
    assert_eq!(rs[2]["type"], "recording");
    assert!(rs[2].get("transitions").is_none());
    let (_, only_records) = get(&format!("{b}/api/v1/rules?type=record")).await;
    assert_eq!(
        only_records["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Prometheus's name filters: a rule by name, a group by name; an unknown group leaves none
    let (_, by_name) = get(&format!("{b}/api/v1/rules?rule_name[]=Always")).await;
    let names: Vec<&str> = by_name["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Always"]);
    let (_, no_group) = get(&format!("{b}/api/v1/rules?rule_group[]=nope")).await;
    assert_eq!(no_group["data"]["groups"], serde_json::json!([]));
    let (_, by_file) = get(&format!("{b}/api/v1/rules?file[]=rules.yml&type=alert")).await;
    assert_eq!(
        by_file["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // targets: Prometheus's state filter (nothing is ever dropped)
    let (_, dropped) = get(&format!("{b}/api/v1/targets?state=dropped")).await;
    assert_eq!(dropped["data"]["activeTargets"], serde_json::json!([]));
    let (code, _) = get(&format!("{b}/api/v1/targets?state=sleeping")).await;
    assert_eq!(code, 400);

    // targets: one per endpoint
    let (_, targets) = get(&format!("{b}/api/v1/targets")).await;
    let active = targets["data"]["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 2);
    let metrics = active.iter().find(|t| t["kind"] == "metrics").unwrap();
    assert_eq!(metrics["health"], "up");
    assert_eq!(metrics["labels"]["job"], "svc");
    assert_eq!(metrics["scrapePool"], "svc");
    assert!(metrics["samples"].as_u64().unwrap() > 0);
    assert!(metrics["scrapeUrl"].as_str().unwrap().ends_with("/metrics"));
    assert_ne!(metrics["lastScrape"], "0001-01-01T00:00:00Z");
    let health = active.iter().find(|t| t["kind"] == "health").unwrap();
    assert_eq!(health["health"], "down");
    assert_eq!(
        health["lastError"],
        "HTTP status 503; pdns: connection refused"
    );
    // answered, one check of two failing: degraded, with the checks to say which
    assert_eq!(health["degraded"], true);
    assert_eq!(
        health["checks"],
        serde_json::json!([
            {"name": "database", "ok": true, "text": "ok"},
            {"name": "pdns", "ok": false, "text": "connection refused"},
        ])
    );
    assert_eq!(metrics["degraded"], false);
    assert_eq!(targets["data"]["droppedTargets"], serde_json::json!([]));

    // query: vector, scalar at the given time, POST form
    let (code, q) = get(&format!(
        "{b}/api/v1/query?query=up%7Bjob%3D%22svc%22%2Cprobe%21%3D%22health%22%7D"
    ))
    .await;
    assert_eq!(code, 200);
    assert_eq!(q["data"]["resultType"], "vector");
    let result = q["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["metric"]["job"], "svc");
    assert_eq!(result[0]["value"][1], "1");
    let (_, s) = get(&format!(
        "{b}/api/v1/query?query=1%2B1&time=2023-11-14T22:13:20Z"
    ))
    .await;
    assert_eq!(
        s["data"],
        serde_json::json!({"resultType": "scalar", "result": [1_700_000_000.0, "2"]})
    );
    let form: Value = reqwest::Client::new()
        .post(format!("{b}/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=svc%3Aup&timeout=10s")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(form["status"], "success");
    assert_eq!(form["data"]["resultType"], "vector");

    // query_range: a matrix with one point per step
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (code, r) = get(&format!(
        "{b}/api/v1/query_range?query=vector(3)&start={}&end={now}&step=1s",
        now - 4
    ))
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["data"]["resultType"], "matrix");
    let values = r["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 5);
    assert_eq!(values[0], serde_json::json!([(now - 4) as f64, "3"]));

    // status
    let (_, st) = get(&format!("{b}/api/v1/status")).await;
    let data = &st["data"];
    assert!(data["uptimeSeconds"].as_f64().unwrap() > 0.0);
    assert_eq!(data["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(data["build"]["gitHash"].is_string());
    assert_eq!(data["startup"]["rules"], 3);
    assert_eq!(data["reloads"][0]["success"], true);
    assert_eq!(data["reloads"][0]["cause"], "startup");
    // where rules come from, and notifications off without a route (the UI says both)
    assert_eq!(data["ruleFiles"], serde_json::json!(["rules.yml"]));
    assert_eq!(data["notifications"]["enabled"], false);

    // the API description
    let (code, doc) = get(&format!("{b}/api/v1/openapi.json")).await;
    assert_eq!(code, 200);
    assert!(doc["paths"]["/api/v1/query_range"]["get"].is_object());
}

/// Asserts a Prometheus-shaped error with `code` and a message containing `needle`.
async fn assert_refused(resp: reqwest::Response, code: u16, needle: &str) {
    assert_eq!(resp.status().as_u16(), code);
    let v: Value = resp
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["errorType"].is_string(), "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_refused_with_a_message_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = ready_daemon(dir.path()).await;
    let b = &d.base;
    let client = reqwest::Client::new();
    let silences = format!("{b}/api/v1/silences");
    let post = |body: Vec<u8>, token: Option<&str>| {
        let mut req = client
            .post(&silences)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let valid =
        br#"{"matchers":["severity=\"page\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"t"}"#;

    assert_refused(
        post(valid.to_vec(), None).await.unwrap(),
        401,
        "bearer token",
    )
    .await;
    assert_refused(
        post(valid.to_vec(), Some("wrong")).await.unwrap(),
        401,
        "bearer token",
    )
    .await;
    assert_refused(
        post(b"{\"matchers\": [".to_vec(), Some(TOKEN))
            .await
            .unwrap(),
        400,
        "invalid silence",
    )
    .await;
    let unknown = br#"{"matchers":["a=\"b\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"t","colour":"red"}"#;
    assert_refused(
        post(unknown.to_vec(), Some(TOKEN)).await.unwrap(),
        400,
        "unknown field",
    )
    .await;
    let bad_matcher =
        br#"{"matchers":["{severity=\"page\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"t"}"#;
    assert_refused(
        post(bad_matcher.to_vec(), Some(TOKEN)).await.unwrap(),
        400,
        "expected a label name",
    )
    .await;
    // a regex over the repetition limit, as text and as a structured matcher
    for body in [
        br#"{"matchers":["job=~\"(a{1,100}){1,100}b\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"t"}"#.to_vec(),
        br#"{"matchers":[{"name":"job","value":"(a{1,100}){1,100}b","isRegex":true}],"endsAt":"2999-01-01T00:00:00Z","createdBy":"t"}"#.to_vec(),
    ] {
        let r = post(body, Some(TOKEN)).await.unwrap();
        let code = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!((code, v["errorType"].as_str()), (400, Some("bad_data")), "{v}");
        assert!(v["error"].as_str().unwrap().contains("limit of 1000"), "{v}");
    }
    let mut huge =
        br#"{"matchers":["a=\"b\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"t","comment":""#
            .to_vec();
    huge.extend(std::iter::repeat_n(b'x', 70 * 1024));
    huge.extend(b"\"}");
    assert_refused(post(huge, Some(TOKEN)).await.unwrap(), 413, "length limit").await;
    // a client-chosen id never creates a silence: ids are the daemon's
    let chosen =
        br#"{"id":"mine","matchers":["a=\"b\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"t"}"#;
    assert_refused(
        post(chosen.to_vec(), Some(TOKEN)).await.unwrap(),
        400,
        "not found",
    )
    .await;
    let (_, list) = get(&silences).await;
    assert_eq!(
        list["data"],
        serde_json::json!([]),
        "a refused write changed nothing"
    );
    let expire = client
        .delete(format!("{silences}/nope"))
        .send()
        .await
        .unwrap();
    assert_refused(expire, 401, "bearer token").await;

    // reload needs the token; a reload through the API is recorded in the status
    let reload = client.post(format!("{b}/-/reload")).send().await.unwrap();
    assert_refused(reload, 401, "bearer token").await;
    let reload = client
        .post(format!("{b}/-/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let (_, st) = get(&format!("{b}/api/v1/status")).await;
    let reloads = st["data"]["reloads"].as_array().unwrap();
    assert_eq!(reloads.last().unwrap()["cause"], "api");
    assert_eq!(reloads.last().unwrap()["success"], true);

    // bad matchers and states
    let r = client
        .get(format!("{b}/api/v1/alerts?filter=%7Bseverity%3D%22page%22"))
        .send()
        .await
        .unwrap();
    assert_refused(r, 400, "filter").await;
    let r = client
        .get(format!("{b}/api/v1/alerts?match[]=%7Ba%3D~%22(%22%7D"))
        .send()
        .await
        .unwrap();
    assert_refused(r, 400, "match[]").await;
    let r = client
        .get(format!("{b}/api/v1/alerts?state=resolved"))
        .send()
        .await
        .unwrap();
    assert_refused(r, 400, "state").await;

    // bad queries, times, durations and ranges: 400 bad_data as Prometheus
    for (path, needle) in [
        ("query?query=sum(", "query"),
        ("query?query=", "query"),
        ("query?query=up&time=yesterday", "time"),
        ("query?query=up&timeout=soon", "timeout"),
        (
            "query_range?query=up&start=10&end=5&step=1",
            "end timestamp must not be before start time",
        ),
        (
            "query_range?query=up&start=0&end=11001&step=1",
            "11,000 points",
        ),
        (
            "query_range?query=up&start=0&end=10&step=0",
            "zero or negative",
        ),
        ("query_range?query=up&start=0&end=10&step=often", "step"),
        ("query_range?query=up&start=then&end=10&step=1", "start"),
    ] {
        let r = client
            .get(format!("{b}/api/v1/{path}"))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let v: Value = r
            .text()
            .await
            .map(|t| serde_json::from_str::<Value>(&t).unwrap())
            .unwrap();
        assert_eq!(
            (code, v["errorType"].as_str()),
            (400, Some("bad_data")),
            "{path}: {v}"
        );
        assert!(v["error"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    // a regex matcher the engine would refuse is a bad query (Prometheus compiles matchers when
    // it parses), for an instant and a range query; a regex refused in the alerts' filters and
    // in a silence's matchers answers the same
    let nested = r#"up{job=~"(a{1,100}){1,100}b"}"#;
    for (path, query) in [
        ("query", vec![("query", nested)]),
        (
            "query_range",
            vec![
                ("query", nested),
                ("start", "0"),
                ("end", "10"),
                ("step", "1"),
            ],
        ),
        (
            "alerts",
            vec![("match[]", r#"{job=~"(a{1,100}){1,100}b"}"#)],
        ),
        ("alerts", vec![("filter", r#"job=~"(a{1,100}){1,100}b""#)]),
    ] {
        let params = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish();
        let r = client
            .get(format!("{b}/api/v1/{path}?{params}"))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(
            (code, v["errorType"].as_str()),
            (400, Some("bad_data")),
            "{path} {query:?}: {v}"
        );
        assert!(
            v["error"].as_str().unwrap().contains("limit of 1000"),
            "{path}: {v}"
        );
    }
    // exactly 11,000 steps (11,001 points counting both ends) is what Prometheus still accepts
    let r = client
        .get(format!(
            "{b}/api/v1/query_range?query=vector(1)&start=0&end=11000&step=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // an evaluation error is 422 execution
    let r = client
        .get(format!(
            "{b}/api/v1/query?query=label_replace(vector(1),%22a%22,%22%22,%22b%22,%22(%22)"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let v: Value = r
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(v["errorType"], "execution");
    // a form body with a JSON content type is refused
    let r = client
        .post(format!("{b}/api/v1/query"))
        .header("content-type", "application/json")
        .body("{\"query\":\"up\"}")
        .send()
        .await
        .unwrap();
    assert_refused(r, 415, "content type").await;
}
