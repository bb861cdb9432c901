//! What ships beside the code: `--version`, the committed configuration reference, the example
//! configurations under `fixtures/examples/`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = regex::Regex::new(r"^tocsin \d+\.\d+\.\d+ \(([0-9a-f]{12}|unknown)\)\n$").unwrap();
    assert!(want.is_match(&text), "unexpected --version output {text:?}");
    assert!(text.starts_with(&format!("tocsin {} (", env!("CARGO_PKG_VERSION"))));
    assert!(text.contains(&format!("({})", tocsin::GIT_HASH)));
}
