//! The invariants ARCHITECTURE.md states as absences, checked on the source text: which modules
//! may touch SQLite, the network, the clock, the process environment and `anyhow`. Each rule
//! lists the only places allowed; a new use elsewhere fails here with the file and line, and
//! either moves to where it belongs or changes the rule (and ARCHITECTURE.md) on purpose.

use std::path::{Path, PathBuf};

use crate::common::project_dir;

/// Every `.rs` file under `src/` (relative path, code lines before its `#[cfg(test)]` module,
/// comments dropped).
fn sources() -> Vec<(String, Vec<(usize, String)>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = project_dir().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let lines = text
                .lines()
                .enumerate()
                .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
                .filter(|(_, l)| !l.trim_start().starts_with("//"))
                .map(|(i, l)| (i + 1, l.to_string()))
                .collect();
            (rel, lines)
        })
        .collect()
}

/// The lines using any of `needles` outside the files or folders in `allowed`.
fn uses_outside(needles: &[&str], allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (file, lines) in sources() {
        if allowed
            .iter()
            .any(|a| file == *a || (a.ends_with('/') && file.starts_with(a)))
        {
            continue;
        }
        for (n, line) in lines {
            if needles.iter().any(|needle| line.contains(needle)) {
                found.push(format!("src/{file}:{n}: {}", line.trim()));
            }
        }
    }
    found
}

#[test]
fn only_the_store_touches_sqlite() {
    let found = uses_outside(&["rusqlite"], &["store/"]);
    assert!(
        found.is_empty(),
        "SQLite outside store/:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_ingest_and_notify_connect_out() {
    // cli/ holds `tocsin scrape` (through ingest) and `tocsin silence`, an API client;
    // datasource/ queries remote engines for rule groups with `datasource:` (neither bringing
    // samples in nor notifying, and the rule engine stays free of I/O: it sees the client only
    // through `rules::source::RemoteEngine`); remotewrite/ sends the store's samples to remote
    // write receivers (neither ingest nor notification; its queue is the store's, so the
    // network code stays out of store/)
    let found = uses_outside(
        &["reqwest::", "lettre::", "TcpStream", "UdpSocket"],
        &["ingest/", "notify/", "datasource/", "remotewrite/", "cli/"],
    );
    assert!(
        found.is_empty(),
        "outbound network outside ingest/, notify/, datasource/ and remotewrite/:\n{}",
        found.join("\n")
    );
    let found = uses_outside(&["TcpListener"], &["daemon/mod.rs"]);
    assert!(
        found.is_empty(),
        "a listener outside the daemon:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_loops_read_the_clock() {
    // each loop reads the clock once per tick or request and passes `now` down
    let found = uses_outside(
        &["now_ms()", "SystemTime::now", "Utc::now", "Local::now"],
        &[
            "clock.rs",
            "ingest/scheduler.rs",
            "ingest/selfscrape.rs",
            // the discovery loop: once per refresh, to stamp it for the status page
            "ingest/sd/mod.rs",
            "rules/manager.rs",
            "notify/sender.rs",
            "remotewrite/mod.rs",
            "server/",
            "daemon/",
            "cli/",
        ],
    );
    assert!(
        found.is_empty(),
        "a clock read below the loops:\n{}",
        found.join("\n")
    );
}

#[test]
fn anyhow_stays_at_the_binary_edge() {
    let found = uses_outside(&["anyhow"], &["main.rs", "cli/"]);
    assert!(
        found.is_empty(),
        "anyhow inside the library:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_command_line_reads_the_process_environment() {
    // the library takes the environment as an argument (`Config::apply_env`, `DaemonOptions::env`)
    let found = uses_outside(&["std::env::var", "env::vars()"], &["cli/"]);
    assert!(
        found.is_empty(),
        "the environment read below the command line:\n{}",
        found.join("\n")
    );
}
