//! The I/O half of validation, shared by `tocsin check` and `tocsin run`: what the daemon needs
//! from outside the file before it can run ([`Config::preflight`]).
//!
//! [`Config::validate`] is pure; this reads the environment the process runs in and the files the
//! configuration names: every `*_env` secret set (targets, receivers, `server.api_token_env`,
//! `server.api_read_token_env`), every `*_file` secret readable ([`super::read_secret_file`]), every
//! `rule_files` pattern matching a file (the reserved `tocsin:self`, the built-in self-alert rules,
//! always does: [`crate::rules::expand_globs`] is the one place that knows it). `check` and the daemon's start-up call this one function,
//! so `check` passes exactly the configurations `run` can run. Every problem is returned at once.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, SecretError};

/// One reason the daemon could not run this configuration in this environment.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// A target's `bearer_token_env` or `bearer_token_file` (or an `http_sd` secret) cannot be read.
    #[error("targets: {0}")]
    Target(#[from] SecretError),
    /// A receiver's integration cannot be built: a `*_env` secret not set, a `*_file` secret
    /// unreadable.
    #[error("{0}")]
    Receiver(String),
    /// A datasource's `*_env` or `*_file` secret cannot be read.
    #[error("datasources: {0}")]
    Datasource(#[from] super::datasource::DatasourceSecretError),
    /// A remote write entry's `url_env`/`url_file` or `*_env`/`*_file` secret cannot be read.
    #[error("{0}")]
    RemoteWrite(#[from] super::remote_write::RemoteWriteSecretError),
    /// `server.api_token_env` or `server.api_read_token_env` names an unset variable.
    #[error("server.{field} names {var}, which is not set in this environment")]
    TokenUnset { field: &'static str, var: String },
    /// A `rule_files` entry names no existing file or its pattern matches none.
    #[error("{path}:{line}:{col}: rule_files[{index}]: {message}", path = .path.display())]
    RuleFiles {
        path: PathBuf,
        line: u64,
        col: u64,
        index: usize,
        message: String,
    },
}

/// Every [`PreflightError`] of a configuration, one a line.
#[derive(Debug, thiserror::Error)]
pub struct PreflightErrors(pub Vec<PreflightError>);

impl fmt::Display for PreflightErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Checks what the configuration needs from outside its file, with `env` the environment the
    /// daemon runs in and `path` the configuration file (`rule_files` are relative to its
    /// directory; `None` for the built-in default). Returns the rule files `rule_files` expands
    /// to. Used by `tocsin check` and by the daemon's start, so both refuse the same things.
    pub fn preflight(
        &self,
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Vec<PathBuf>, PreflightErrors> {
        let mut errors = Vec::new();
        for t in &self.targets {
            if let Err(e) = super::target_secret(t, env) {
                errors.push(PreflightError::Target(e));
            }
            errors.extend(
                crate::ingest::sd::sd_secret_errors(t, env)
                    .into_iter()
                    .map(PreflightError::Target),
            );
        }
        for d in &self.datasources {
            if let Err(e) = super::datasource::build(d, env) {
                errors.push(PreflightError::Datasource(e));
            }
        }
        for r in &self.remote_write {
            if let Err(e) = super::remote_write::build(&r.value, env, self.retention()) {
                errors.push(PreflightError::RemoteWrite(e));
            }
        }
        if let Some(plan) = self.notify_plan()
            && let Err(es) = plan.check_integrations(env)
        {
            errors.extend(es.into_iter().map(PreflightError::Receiver));
        }
        for (field, var) in [
            ("api_token_env", &self.server.api_token_env),
            ("api_read_token_env", &self.server.api_read_token_env),
        ] {
            if let Some(var) = var
                && !env.contains_key(var)
            {
                errors.push(PreflightError::TokenUnset {
                    field,
                    var: var.clone(),
                });
            }
        }
        let base = path.and_then(Path::parent).unwrap_or(Path::new(""));
        let mut files = Vec::new();
        for (index, pattern) in self.rule_files.iter().enumerate() {
            match crate::rules::expand_globs(std::slice::from_ref(&pattern.value), base) {
                Ok(found) => files.extend(found),
                Err(es) => errors.extend(es.0.into_iter().map(|e| PreflightError::RuleFiles {
                    path: path.map(Path::to_path_buf).unwrap_or_default(),
                    line: pattern.referenced.line(),
                    col: pattern.referenced.column(),
                    index,
                    message: e.message,
                })),
            }
        }
        files.dedup();
        if errors.is_empty() {
            Ok(files)
        } else {
            Err(PreflightErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, yaml: &str) -> (Config, PathBuf) {
        let path = dir.join("tocsin.yml");
        std::fs::write(&path, yaml).unwrap();
        (Config::load(&path).unwrap(), path)
    }

    #[test]
    fn the_reserved_self_rules_entry_needs_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, path) = config(dir.path(), "rule_files:\n  - tocsin:self\n");
        let files = cfg.preflight(Some(&path), &HashMap::new()).unwrap();
        assert_eq!(files, vec![PathBuf::from(crate::rules::SELF_RULES)]);
        // a look-alike is an ordinary (missing) file
        let (cfg, path) = config(dir.path(), "rule_files:\n  - tocsin:selfie\n");
        let e = cfg.preflight(Some(&path), &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("rule_files[0]"), "{e}");
    }

    #[test]
    fn unset_env_secrets_are_reported_with_the_environment_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, path) = config(
            dir.path(),
            "server: { api_token_env: API_TOKEN }\n\
             targets:\n  - name: svc\n    metrics: http://127.0.0.1:1/metrics\n    bearer_token_env: SVC_TOKEN\n\
             \x20 - name: sd\n    http_sd: [{ url: 'http://127.0.0.1:1/sd', basic_auth: { username: u, password_env: SD_PASSWORD } }]\n\
             route: { receiver: mail }\n\
             receivers:\n  - name: mail\n    email: { to: [a@example.com], from: t@example.com, smarthost: 'smtp.example.com:587', username: u, password_env: SMTP_PASSWORD }\n",
        );
        let e = cfg
            .preflight(Some(&path), &HashMap::new())
            .unwrap_err()
            .to_string();
        for var in ["API_TOKEN", "SVC_TOKEN", "SMTP_PASSWORD", "SD_PASSWORD"] {
            assert!(
                e.contains(&format!(
                    "names {var}, which is not set in this environment"
                )),
                "{var}: {e}"
            );
        }
        let env: HashMap<String, String> =
            ["API_TOKEN", "SVC_TOKEN", "SMTP_PASSWORD", "SD_PASSWORD"]
                .into_iter()
                .map(|v| (v.to_string(), "x".to_string()))
                .collect();
        cfg.preflight(Some(&path), &env).unwrap();
    }

    #[test]
    fn unreadable_secret_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, path) = config(
            dir.path(),
            "targets:\n  - name: svc\n    metrics: http://127.0.0.1:1/metrics\n    bearer_token_file: /dev/zero\n\
             route: { receiver: hook }\n\
             receivers:\n  - name: hook\n    webhook: { url: 'http://127.0.0.1:1/', secret_file: /nonexistent/secret }\n",
        );
        let e = cfg
            .preflight(Some(&path), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero is a device"), "{e}");
        assert!(e.contains("/nonexistent/secret"), "{e}");
    }

    #[test]
    fn a_rule_pattern_matching_nothing_is_an_error_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), "groups: []\n").unwrap();
        let (cfg, path) = config(dir.path(), "rule_files:\n  - a.yml\n  - rulez/*.yml\n");
        let e = cfg
            .preflight(Some(&path), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("tocsin.yml:3:5: rule_files[1]"), "{e}");
        assert!(e.contains("\"rulez/*.yml\" matches no file"), "{e}");
    }
}
