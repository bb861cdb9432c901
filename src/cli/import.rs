//! `tocsin import FILE`: an Alertmanager or Prometheus configuration converted by
//! [`tocsin::config::import`]; the YAML on stdout, every finding on stderr, exit 1 unless exact.

use std::path::Path;

use anyhow::Result;

use super::Outcome;
use tocsin::config::import::{Located, import_file};

pub(crate) fn import(path: &Path) -> Result<Outcome> {
    let conversion = import_file(path)?;
    print!("{}", conversion.yaml);
    for f in &conversion.findings {
        eprintln!("{}", Located(path, f));
    }
    Ok(if conversion.exact() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
