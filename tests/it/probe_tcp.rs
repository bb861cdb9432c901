//! The `tcp` probe (connect, send, expect) with the bad-input list, and probes run by the
//! scheduler: their outcome in the status board (`/status`, `/api/v1/targets`) and the store.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::probe_tls::{probe_from, raw_server, run_bounded, value};
use tocsin::clock::{Clock, SystemClock};
use tocsin::labels::MatchOp;

/// An echo-ish server: answers `PING` with a greeting and `pong`.
async fn pong_server() -> std::net::SocketAddr {
    raw_server(|mut sock| async move {
        let _ = sock.write_all(b"hello from the test\n").await;
        let mut buf = [0u8; 64];
        if let Ok(n) = sock.read(&mut buf).await
            && buf[..n].starts_with(b"PING")
        {
            let _ = sock.write_all(b"+PONG\r\n").await;
        }
    })
    .await
}

#[tokio::test]
async fn connect_send_and_expect_pass_and_every_bad_answer_has_a_reason() {
    let pong = pong_server().await;
    let ok = probe_from(&format!(
        "{{kind: tcp, address: \"{pong}\", send: \"PING\\r\\n\", expect: '\\+PONG', timeout: 2s, interval: 5s}}"
    ));
    let r = run_bounded(&ok, Duration::from_secs(5)).await;
    assert_eq!(r.error, None);
    assert!(r.up && r.success);
    assert_eq!(value(&r, "probe_tcp_expect_matched"), Some(1.0));
    assert!(value(&r, "probe_connect_seconds").is_some());

    let hang = raw_server(|sock| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(sock);
    })
    .await;
    let endless = raw_server(|mut sock| async move {
        let junk = vec![b'x'; 64 * 1024];
        while sock.write_all(&junk).await.is_ok() {}
    })
    .await;
    let cases = [
        ("refused", free_addr(), false, "connecting: "),
        (
            "closed without a match",
            pong,
            true,
            "connection closed after 27 bytes without a match for \"nothing\"",
        ),
        (
            "hanging",
            hang,
            true,
            "timeout after 300ms while waiting for the expected text",
        ),
        (
            "endless",
            endless,
            true,
            "waiting for the expected text: answer exceeds the limit of 4096 bytes",
        ),
    ];
    for (case, addr, up, reason) in cases {
        let probe = probe_from(&format!(
            "{{kind: tcp, address: \"{addr}\", send: \"PING\\r\\n\", expect: nothing, response_size_limit: 4KiB, timeout: 300ms, interval: 1s}}"
        ));
        let r = run_bounded(&probe, Duration::from_secs(5)).await;
        assert_eq!((r.up, r.success), (up, false), "{case}");
        let e = r.error.unwrap();
        assert!(e.contains(reason), "{case}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_run_by_the_scheduler_show_in_the_status_board_and_the_store() {
    let pong = pong_server().await;
    let dead = free_addr();
    let yaml = format!(
        "targets:
  - name: mx
    labels: {{ team: mail }}
    probes:
      - {{kind: tcp, address: \"{pong}\", interval: 100ms, timeout: 100ms, labels: {{ site: a }}}}
      - {{kind: tcp, name: backup, address: \"{dead}\", interval: 100ms, timeout: 100ms}}
"
    );
    let running = start_scheduler(&yaml, Arc::new(SystemClock));
    let (store, status) = (running.store.clone(), running.status.clone());
    let deadline = Deadline::within("probes never ran", WAIT).every(Duration::from_millis(20));
    let (tcp, backup) = deadline
        .until_some(async || {
            let e = status.endpoints.read().unwrap();
            let tcp = e.get(&("mx/tcp".to_string(), "tcp"))?.clone();
            let backup = e.get(&("mx/backup".to_string(), "tcp"))?.clone();
            (tcp.up.is_some() && backup.up.is_some()).then_some((tcp, backup))
        })
        .await;
    running.stop().await;
    assert_eq!(tcp.up, Some(true));
    assert_eq!(tcp.last_error, None);
    assert_eq!(tcp.url, format!("tcp://{pong}"));
    assert_eq!(tcp.probe.as_deref(), Some("tcp"));
    assert!(tcp.labels.contains(&("site".into(), "a".into())));
    assert!(tcp.labels.contains(&("team".into(), "mail".into())));
    assert_eq!(backup.up, Some(false));
    assert!(
        backup
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("connecting: ")
    );
    // the /status JSON names the probe
    let json = serde_json::to_value(&backup).unwrap();
    assert_eq!(json["probe"], "backup");
    assert_eq!(json["kind"], "tcp");

    let now = SystemClock.now_ms();
    for (probe, up) in [("tcp", 1.0), ("backup", 0.0)] {
        let latest = store
            .latest(
                &[
                    matcher(MatchOp::Equal, "__name__", "up"),
                    matcher(MatchOp::Equal, "job", "mx"),
                    matcher(MatchOp::Equal, "probe", probe),
                ],
                now,
                300_000,
            )
            .unwrap();
        assert_eq!(latest.len(), 1, "{probe}");
        assert_eq!(latest[0].2, up, "{probe}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tocsin_probe_prints_the_samples_and_fails_with_the_reason() {
    let pong = pong_server().await;
    let dead = free_addr();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(BIN).args(args).output().unwrap()
        })
    };
    let ok = run(vec![
        "probe".into(),
        "tcp".into(),
        pong.to_string(),
        "--send".into(),
        "PING\r\n".into(),
        "--expect".into(),
        "PONG".into(),
        "--timeout".into(),
        "5s".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("up{probe=\"tcp\"} 1\n"), "{stdout}");
    assert!(
        stdout.contains("probe_success{probe=\"tcp\"} 1\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("probe_tcp_expect_matched{probe=\"tcp\"} 1\n"),
        "{stdout}"
    );

    let failed = run(vec!["probe".into(), "smtp".into(), dead.to_string()])
        .await
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(stdout.contains("up{probe=\"smtp\"} 0\n"), "{stdout}");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.starts_with("probe failed: connecting: "), "{stderr}");

    // a bad option is refused by the configuration's own validation
    let bad = run(vec!["probe".into(), "dns".into(), "127.0.0.1:53".into()])
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("a dns probe needs query_name"), "{stderr}");
}

#[test]
fn series_a_run_no_longer_writes_end_with_a_stale_marker() {
    use tocsin::ingest::probe::{ProbeReport, Sample, write_report};
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let base = tocsin::labels::Labels::from_pairs([
        ("job", "cdn"),
        ("instance", "a:443"),
        ("probe", "tls"),
    ]);
    let mut last = Default::default();
    let ok = ProbeReport {
        up: true,
        success: true,
        error: None,
        duration_seconds: 0.1,
        samples: vec![Sample::new("probe_tls_cert_not_after_seconds", 2e9)],
    };
    write_report(&store, &base, 1_000, &ok, &mut last);
    // the next run is refused: no certificate series
    let refused = ProbeReport {
        up: false,
        success: false,
        error: Some("connecting: connection refused".into()),
        duration_seconds: 0.1,
        samples: Vec::new(),
    };
    write_report(&store, &base, 2_000, &refused, &mut last);
    let cert = store
        .select(
            &[matcher(
                MatchOp::Equal,
                "__name__",
                "probe_tls_cert_not_after_seconds",
            )],
            0,
            3_000,
        )
        .unwrap();
    assert_eq!(cert[0].samples.len(), 2);
    assert_eq!(cert[0].samples[0], (1_000, 2e9));
    assert!(tocsin::store::is_stale(cert[0].samples[1].1));
    let success = store
        .select(
            &[matcher(MatchOp::Equal, "__name__", "probe_success")],
            0,
            3_000,
        )
        .unwrap();
    assert_eq!(success[0].samples, vec![(1_000, 1.0), (2_000, 0.0)]);
}

/// The real binary: probes in `/status`, `/api/v1/targets` (what the UI's targets table draws)
/// and queryable series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_shows_probes_in_status_and_the_targets_api_and_stores_their_series() {
    let pong = pong_server().await;
    let dead = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::in_dir(dir.path())
        .config(&format!(
            "storage: {{ flush_interval: 1s }}\ntargets:\n  - name: mx\n    probes:\n      \
             - {{kind: tcp, address: \"{pong}\", interval: 200ms, timeout: 200ms}}\n      \
             - {{kind: tcp, name: backup, address: \"{dead}\", interval: 200ms, timeout: 200ms}}\n"
        ))
        .start();
    d.wait_ready().await;
    let targets = d
        .wait_json("/api/v1/targets", WAIT, |v| {
            v["data"]["activeTargets"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|t| t["health"] != "unknown"))
        })
        .await;
    let active = targets["data"]["activeTargets"].as_array().unwrap();
    let ok = active
        .iter()
        .find(|t| t["labels"]["probe"] == "tcp")
        .unwrap();
    assert_eq!(ok["health"], "up");
    assert_eq!(ok["kind"], "tcp");
    assert_eq!(ok["scrapeUrl"], format!("tcp://{pong}"));
    assert_eq!(ok["labels"]["instance"], pong.to_string());
    let backup = active
        .iter()
        .find(|t| t["labels"]["probe"] == "backup")
        .unwrap();
    assert_eq!(backup["health"], "down");
    assert!(
        backup["lastError"]
            .as_str()
            .unwrap()
            .starts_with("connecting: ")
    );
    let status = d.get_json("/status").await;
    let probes: Vec<&str> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["probe"].as_str())
        .collect();
    assert_eq!(probes.len(), 2, "{status}");
    let q = d
        .wait_json(
            "/api/v1/query?query=probe_success%7Bjob%3D%22mx%22%7D",
            WAIT,
            |v| v["data"]["result"].as_array().is_some_and(|r| r.len() == 2),
        )
        .await;
    for r in q["data"]["result"].as_array().unwrap() {
        let want = if r["metric"]["probe"] == "tcp" {
            "1"
        } else {
            "0"
        };
        assert_eq!(r["value"][1], want, "{r}");
    }
}
