//! Reload triggers against real files in a temporary directory, real notify and a real SIGHUP.
//!
//! Positive cases wait on the channel with a timeout (real time; the watcher runs on notify's own
//! threads). Negative cases need no fixed wait: each ends by making a change that must be reported,
//! and since one watcher reports in event order, a request for the ignored change would arrive
//! first (or in the same request), so asserting that the next request names only the later
//! change proves the earlier one sent nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

use tocsin::daemon::reload::{
    ReloadCause, ReloadError, ReloadRequest, RuleWatcher, spawn_sighup, watch_rule_files,
};

/// Far above the debounce (300 ms), so only a watcher that missed the change times out.
const WAIT: Duration = Duration::from_secs(5);

/// A temporary directory with its path made absolute, as the watcher reports paths.
fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::absolute(dir.path()).unwrap();
    (dir, path)
}

fn watch(files: &[PathBuf], dirs: &[PathBuf]) -> (RuleWatcher, mpsc::Receiver<ReloadRequest>) {
    // room for several requests, so a duplicate would show up instead of being dropped
    let (tx, rx) = mpsc::channel(16);
    (watch_rule_files(files, dirs, tx).unwrap(), rx)
}

/// The paths of the next request, which must be a file change and arrive within [`WAIT`].
async fn next_change(rx: &mut mpsc::Receiver<ReloadRequest>) -> Vec<PathBuf> {
    let request = timeout(WAIT, rx.recv())
        .await
        .expect("no reload request within 5 s")
        .expect("channel closed");
    assert!(request.done.is_none());
    match request.cause {
        ReloadCause::FileChange(paths) => paths,
        other => panic!("expected a file change, got {other:?}"),
    }
}

/// Skips requests until one names `path`; other requests may come first when the kernel's events
/// for one change fall into two debounce batches.
async fn change_naming(rx: &mut mpsc::Receiver<ReloadRequest>, path: &Path) -> Vec<PathBuf> {
    timeout(WAIT, async {
        loop {
            let paths = next_change(rx).await;
            if paths.iter().any(|p| p == path) {
                return paths;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no reload request naming {} within 5 s", path.display()))
}

/// Replaces `path` the way most editors save: write a temporary file, rename it over.
fn save_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("yml.tmp");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn editing_a_watched_file_in_place_sends_one_request_naming_it() {
    let (_guard, dir) = tempdir();
    let a = dir.join("a.yml");
    let b = dir.join("b.yml");
    fs::write(&a, "groups: []\n").unwrap();
    let (_watcher, mut rx) = watch(&[a.clone(), b.clone()], &[]);

    fs::write(&a, "groups: [] # edited\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![a.clone()]);

    // one request: the next one is for a later change, not a second one for the edit
    fs::write(&b, "groups: []\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![b]);
}

#[tokio::test]
async fn atomic_saves_are_seen_and_the_watch_survives_them() {
    let (_guard, dir) = tempdir();
    let x = dir.join("x.yml");
    fs::write(&x, "groups: []\n").unwrap();
    let (_watcher, mut rx) = watch(std::slice::from_ref(&x), &[]);

    save_atomically(&x, "groups: [] # first save\n");
    assert_eq!(next_change(&mut rx).await, vec![x.clone()]);

    // the file is a new inode now; a watch on the old one would miss this
    save_atomically(&x, "groups: [] # second save\n");
    assert_eq!(next_change(&mut rx).await, vec![x.clone()]);
}

#[tokio::test]
async fn a_vim_style_save_is_seen_and_the_watch_survives_it() {
    let (_guard, dir) = tempdir();
    let x = dir.join("x.yml");
    fs::write(&x, "groups: []\n").unwrap();
    let (_watcher, mut rx) = watch(std::slice::from_ref(&x), &[]);

    // vim's default save: probe the directory, move the file to a backup, write anew, drop the backup
    fs::write(dir.join("4913"), "").unwrap();
    fs::remove_file(dir.join("4913")).unwrap();
    let backup = dir.join("x.yml~");
    fs::rename(&x, &backup).unwrap();
    fs::write(&x, "groups: [] # saved by vim\n").unwrap();
    fs::remove_file(&backup).unwrap();
    assert_eq!(next_change(&mut rx).await, vec![x.clone()]);

    fs::write(&x, "groups: [] # edited after\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![x]);
}

#[tokio::test]
async fn a_deleted_and_recreated_file_is_seen_each_time() {
    let (_guard, dir) = tempdir();
    let x = dir.join("x.yml");
    fs::write(&x, "groups: []\n").unwrap();
    let (_watcher, mut rx) = watch(std::slice::from_ref(&x), &[]);

    fs::remove_file(&x).unwrap();
    assert_eq!(next_change(&mut rx).await, vec![x.clone()]);
    fs::write(&x, "groups: [] # back\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![x.clone()]);
    fs::write(&x, "groups: [] # edited after\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![x]);
}

#[tokio::test]
async fn other_files_beside_a_watched_file_send_nothing() {
    let (_guard, dir) = tempdir();
    let x = dir.join("x.yml");
    fs::write(&x, "groups: []\n").unwrap();
    let (_watcher, mut rx) = watch(std::slice::from_ref(&x), &[]);

    // only x.yml is a rule file here, even though other.yml matches *.yml
    fs::write(dir.join("other.yml"), "groups: []\n").unwrap();
    fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    fs::read_to_string(&x).unwrap();
    fs::write(&x, "groups: [] # edited\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![x]);
}

#[tokio::test]
async fn a_new_rule_file_in_a_watched_directory_is_seen_but_editor_files_are_not() {
    let (_guard, dir) = tempdir();
    let rules = dir.join("rules");
    fs::create_dir(&rules).unwrap();
    let (_watcher, mut rx) = watch(&[], std::slice::from_ref(&rules));

    // what vim, emacs and atomic saves leave beside a file, and a file that is not yaml
    for name in [
        ".new.yml.swp",
        ".new.yml.swx",
        "4913",
        "new.yml~",
        ".#new.yml",
        "new.yml.tmp",
        "README.md",
    ] {
        // kept, not removed: the debouncer drops a file created and removed in one batch
        fs::write(rules.join(name), "x").unwrap();
    }
    let new = rules.join("new.yml");
    fs::write(&new, "groups: []\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![new.clone()]);

    let other = rules.join("other.yaml");
    fs::write(&other, "groups: []\n").unwrap();
    assert_eq!(next_change(&mut rx).await, vec![other]);

    fs::remove_file(&new).unwrap();
    assert_eq!(next_change(&mut rx).await, vec![new]);
}

#[tokio::test]
async fn a_removed_and_recreated_rule_directory_is_watched_again() {
    let (_guard, dir) = tempdir();
    let rules = dir.join("rules");
    fs::create_dir(&rules).unwrap();
    fs::write(rules.join("a.yml"), "groups: []\n").unwrap();
    let (_watcher, mut rx) = watch(&[], std::slice::from_ref(&rules));

    fs::remove_dir_all(&rules).unwrap();
    change_naming(&mut rx, &rules).await;

    // the directory is a new inode: the watcher must notice it exists again and watch it
    fs::create_dir(&rules).unwrap();
    change_naming(&mut rx, &rules).await;

    let b = rules.join("b.yml");
    fs::write(&b, "groups: []\n").unwrap();
    change_naming(&mut rx, &b).await;
}

#[tokio::test]
async fn a_missing_directory_is_an_error_naming_it() {
    let (_guard, dir) = tempdir();
    let missing = dir.join("missing");
    let (tx, _rx) = mpsc::channel(1);
    let err = watch_rule_files(&[], std::slice::from_ref(&missing), tx).unwrap_err();
    assert!(matches!(&err, ReloadError::Watch { path, .. } if *path == missing));
    assert_eq!(
        err.to_string(),
        format!("cannot watch {}", missing.display())
    );
}

#[tokio::test]
async fn dropping_the_watcher_stops_it_and_releases_the_channel() {
    let (_guard, dir) = tempdir();
    let x = dir.join("x.yml");
    fs::write(&x, "groups: []\n").unwrap();
    let (watcher, mut rx) = watch(std::slice::from_ref(&x), &[]);

    drop(watcher);
    fs::write(&x, "groups: [] # edited after drop\n").unwrap();
    // the watcher held the only sender: the channel closes instead of delivering the edit
    let next = timeout(WAIT, rx.recv()).await.expect("channel still open");
    assert!(next.is_none(), "request after drop: {next:?}");
}

#[tokio::test]
async fn sighup_sends_a_signal_request() {
    let (tx, mut rx) = mpsc::channel(1);
    // installs the handler before returning, so the signal below cannot kill the test process
    let task = spawn_sighup(tx).unwrap();

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let request = timeout(WAIT, rx.recv())
        .await
        .expect("no reload request within 5 s")
        .expect("channel closed");
    assert_eq!(request.cause, ReloadCause::Signal);
    assert!(request.done.is_none());
    task.abort();
}

/// A daemon whose rules are `rules/*.yml` in `dir`, started with one rule (`rules/base.yml`) and
/// returned once it is loaded.
async fn daemon_with_one_rule(dir: &Path) -> tocsin::daemon::Running {
    use std::sync::Arc;
    use tocsin::daemon::{Daemon, DaemonOptions};

    let listen = crate::common::free_addr().to_string();
    fs::create_dir(dir.join("rules")).unwrap();
    fs::write(
        dir.join("rules/base.yml"),
        "groups:\n  - name: base\n    rules:\n      - alert: Base\n        expr: vector(1) == 0\n",
    )
    .unwrap();
    let config = format!(
        "storage: {{ path: {} }}\nevaluation: {{ interval: 1h }}\nrule_files: [rules/*.yml]\nserver: {{ listen: \"{listen}\" }}\n",
        dir.join("data/tocsin.db").display()
    );
    let path = dir.join("tocsin.yml");
    fs::write(&path, config).unwrap();
    let cfg = tocsin::config::Config::load(&path).unwrap();
    let opts = DaemonOptions {
        source: Some(path),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(cfg, Arc::new(tocsin::clock::SystemClock), opts)
        .await
        .unwrap();
    let loaded = crate::common::Deadline::new(
        "first rule load",
        Duration::from_secs(20),
        Duration::from_millis(50),
    );
    while daemon.rules().rules().rule_count() != 1 {
        loaded.tick().await;
    }
    daemon
}

/// Waits until `daemon` runs `want` rules, failing if it runs any number but 1 (the rules it
/// started with) or `want` meanwhile.
async fn wait_for_rule_count(daemon: &tocsin::daemon::Running, want: usize) {
    let complete = crate::common::Deadline::new(
        "the complete rule file loaded",
        Duration::from_secs(30),
        Duration::from_millis(50),
    );
    loop {
        let n = daemon.rules().rules().rule_count();
        if n == want {
            return;
        }
        assert_eq!(n, 1, "a rule file was loaded before it was complete");
        complete.tick().await;
    }
}

/// `(cause, success)` of each reload `/api/v1/status` lists, oldest first.
async fn reload_history(daemon: &tocsin::daemon::Running) -> Vec<(String, bool)> {
    let base = format!("http://{}", daemon.addr());
    let text = reqwest::get(format!("{base}/api/v1/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    status["data"]["reloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["cause"].as_str().unwrap().to_string(),
                r["success"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn startup_then_one_file_reload() -> Vec<(String, bool)> {
    vec![("startup".to_string(), true), ("file".to_string(), true)]
}

/// A writer that writes a rule file in parts, pausing longer than the watcher's debounce but
/// shorter than the settle period, is never caught half-way: each part ends at a rule boundary,
/// so each prefix is a valid, shorter rule set, which a reload on the debounced event alone
/// loaded (one `file` reload per part). The daemon loads the file once, complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_written_in_parts_loads_once_and_complete() {
    use std::io::Write;
    use tocsin::daemon::reload::{DEBOUNCE, SETTLE};

    const PAUSE: Duration = Duration::from_millis(450);
    const PARTS: usize = 4;
    const RULES_PER_PART: usize = 5;
    assert!(DEBOUNCE < PAUSE && PAUSE < SETTLE);

    let (_guard, dir) = tempdir();
    let daemon = daemon_with_one_rule(&dir).await;

    // the writer: one file in parts, each ending at a rule boundary
    let big = dir.join("rules/big.yml");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&big)
        .unwrap();
    for part in 0..PARTS {
        if part > 0 {
            tokio::time::sleep(PAUSE).await;
            // what the daemon runs while the file is half-written: the old rules, never a prefix
            assert_eq!(
                daemon.rules().rules().rule_count(),
                1,
                "a half-written rule file was loaded"
            );
        }
        let mut text = String::new();
        if part == 0 {
            text.push_str("groups:\n  - name: big\n    rules:\n");
        }
        for i in part * RULES_PER_PART..(part + 1) * RULES_PER_PART {
            text.push_str(&format!(
                "      - alert: Part{i:02}\n        expr: vector({i}) == 0\n"
            ));
        }
        file.write_all(text.as_bytes()).unwrap();
        file.flush().unwrap();
    }
    drop(file);
    wait_for_rule_count(&daemon, 1 + PARTS * RULES_PER_PART).await;

    // the reload history: the first load, then one file-triggered reload, of the complete file
    assert_eq!(
        reload_history(&daemon).await,
        startup_then_one_file_reload()
    );
    daemon.shutdown().await;
}

/// A rule file rewritten more often than the settle period, for longer than a reload waits for
/// it to settle, is not loaded while it changes (each version is valid): the reload is
/// postponed, and the version left when the writes stop is loaded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_that_keeps_changing_loads_only_once_it_stops() {
    use tocsin::daemon::reload::{SETTLE, SETTLE_GIVE_UP};

    const PAUSE: Duration = Duration::from_millis(300);
    assert!(PAUSE < SETTLE);
    let (_guard, dir) = tempdir();
    let daemon = daemon_with_one_rule(&dir).await;

    let version = |n: usize, rules: usize| {
        let mut text = format!("# version {n}\ngroups:\n  - name: churn\n    rules:\n");
        for i in 0..rules {
            text.push_str(&format!(
                "      - alert: Churn{i}\n        expr: vector({i}) == 0\n"
            ));
        }
        text
    };
    let churn = dir.join("rules/churn.yml");
    let writes = (SETTLE_GIVE_UP + SETTLE * 2).as_millis() / PAUSE.as_millis();
    for n in 0..writes as usize {
        if n > 0 {
            tokio::time::sleep(PAUSE).await;
            assert_eq!(
                daemon.rules().rules().rule_count(),
                1,
                "a rule file still changing was loaded"
            );
        }
        fs::write(&churn, version(n, 1 + n % 3)).unwrap();
    }
    // the last version: 5 rules
    fs::write(&churn, version(writes as usize, 5)).unwrap();
    wait_for_rule_count(&daemon, 6).await;
    assert_eq!(
        reload_history(&daemon).await,
        startup_then_one_file_reload()
    );
    daemon.shutdown().await;
}
