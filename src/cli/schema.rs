//! `tocsin schema`: the JSON Schemas of tocsin.yml, rule files and rule test files
//! (`config::schema`), printed or written to a directory for an editor to use.

use std::path::Path;

use anyhow::{Context, Result, bail};

use tocsin::config::schema::{SchemaKind, generate, render};

use super::Outcome;

pub(crate) fn schema(kind: Option<SchemaKind>, out_dir: Option<&Path>) -> Result<Outcome> {
    match (kind, out_dir) {
        (Some(kind), None) => {
            let schema = generate(kind)
                .with_context(|| format!("cannot generate the {} schema", kind.name()))?;
            print!("{}", render(&schema));
        }
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for kind in SchemaKind::ALL {
                let schema = generate(kind)
                    .with_context(|| format!("cannot generate the {} schema", kind.name()))?;
                let path = dir.join(kind.file_name());
                std::fs::write(&path, render(&schema))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", path.display());
            }
        }
        _ => bail!("name one schema (config, rules or tests) or give --out-dir for all three"),
    }
    Ok(Outcome::Ok)
}
