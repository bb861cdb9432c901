//! `datasources:`: remote query engines (Prometheus, VictoriaMetrics, Thanos, Mimir: anything
//! serving the Prometheus HTTP API) that rule groups can evaluate against instead of the
//! embedded store (`datasource: <name>` in a rule group). Raw types, their pure validation and
//! their build (secrets read: the only I/O); the client is `crate::datasource`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ByteSize, FieldError, Secret, SecretFileError, read_secret_file};
use crate::duration::PromDuration;

/// Default `timeout` of a datasource query.
pub const DEFAULT_DATASOURCE_TIMEOUT_S: u64 = 30;
/// Default `datasource_error_for`: how long alerts keep their state while their datasource fails.
pub const DEFAULT_DATASOURCE_ERROR_FOR_S: u64 = 300;
/// Default `response_size_limit`: a query answer larger than this fails (16 MiB, about 100k series
/// of a few labels each).
pub const DEFAULT_DATASOURCE_RESPONSE_LIMIT: u64 = 16 << 20;

/// A remote query engine that rule groups can evaluate against (`datasource: <name>` in a
/// rule group). The group's PromQL is sent unchanged to `<url>/api/v1/query`; alert state,
/// routing, notifications, the API and the UI stay in tocsin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasourceConfig {
    /// Unique name: rule groups select the datasource with `datasource: <name>`, and it is the
    /// `datasource` label of `tocsin_datasource_up`.
    pub name: Spanned<String>,
    /// The API the engine serves.
    #[serde(rename = "type")]
    pub kind: DatasourceKind,
    /// Base URL of the engine, without `/api/v1`: e.g. `http://127.0.0.1:9090` for Prometheus,
    /// `http://127.0.0.1:8428` for single-node VictoriaMetrics, or a path prefix such as
    /// `http://vmselect:8481/select/0/prometheus`.
    pub url: Spanned<String>,
    /// A query that takes longer fails (a datasource error). Default `30s`.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
    /// Queries are evaluated this long before the group's slot (`time = slot - query_offset`),
    /// so samples still on their way into the engine are there; a group's own `query_offset`,
    /// when set, replaces it. Default `0s`.
    #[serde(default)]
    pub query_offset: Option<PromDuration>,
    /// While the datasource fails (unreachable, a timeout, a 5xx answer), the rules of its groups
    /// record the error and their alerts keep their state this long; after it, those alerts
    /// resolve as if the query had returned nothing. `tocsin_datasource_up` is 0 meanwhile and the
    /// `tocsin:self` rule `TocsinDatasourceDown` fires. Default `5m`.
    #[serde(default)]
    pub datasource_error_for: Option<PromDuration>,
    /// An answer larger than this (after decompression) fails the query. Bytes, or with a unit:
    /// `512KiB`, `32MiB`. Default `16MiB`.
    #[serde(default)]
    pub response_size_limit: Option<ByteSize>,
    /// Name of an environment variable holding a bearer token sent with every query.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Path of a file holding a bearer token sent with every query (trailing newline ignored): a
    /// regular file of at most 64 KiB.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication sent with every query.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// Extra HTTP headers sent with every query (e.g. `X-Scope-OrgID` for Mimir or Cortex).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The API a datasource serves.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DatasourceKind {
    /// The Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`): Prometheus,
    /// VictoriaMetrics, Thanos Query, Mimir, Cortex.
    Prometheus,
}

/// HTTP basic authentication.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name.
    pub username: String,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Path of a file holding the password (trailing newline ignored): a regular file of at most
    /// 64 KiB.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// A datasource with defaults applied and secrets read.
#[derive(Debug, Clone)]
pub struct Datasource {
    pub name: String,
    pub url: url::Url,
    pub timeout: std::time::Duration,
    pub query_offset_ms: i64,
    pub error_for_ms: i64,
    pub response_size_limit: u64,
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<(String, Secret)>,
    pub headers: Vec<(String, String)>,
}

/// Occurs when a datasource's secret named by `*_env` or `*_file` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasourceSecretError {
    /// A `*_env` field names a variable absent from the environment `tocsin` runs in.
    #[error("datasource {datasource}: {field} names {var}, which is not set in this environment")]
    MissingEnv {
        datasource: String,
        field: &'static str,
        var: String,
    },
    /// A `*_file` field names a file that is missing, not a regular file or too large.
    #[error("datasource {datasource}: {field}: {source}")]
    File {
        datasource: String,
        field: &'static str,
        #[source]
        source: SecretFileError,
    },
}

/// Every problem of the `datasources` section (pure), each at its position in `path`.
pub fn validate(datasources: &[DatasourceConfig], path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for (i, d) in datasources.iter().enumerate() {
        let (line, col) = (d.name.referenced.line(), d.name.referenced.column());
        let mut err = |line: u64, col: u64, field: &str, message: String| {
            errors.push(FieldError {
                path: path.to_path_buf(),
                line,
                col,
                field: format!("datasources[{i}]{field}"),
                message,
            })
        };
        let name = d.name.value.as_str();
        if name.trim().is_empty() {
            err(line, col, ".name", "must not be empty".into());
        }
        if let Some(first) = seen.insert(name, line) {
            err(
                line,
                col,
                ".name",
                format!("duplicate datasource name {name:?} (first at line {first})"),
            );
        }
        let (ul, uc) = (d.url.referenced.line(), d.url.referenced.column());
        match url::Url::parse(&d.url.value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.query().is_some() || u.fragment().is_some() {
                    err(
                        ul,
                        uc,
                        ".url",
                        "must not have a query or fragment (the API path and parameters are added)"
                            .into(),
                    );
                }
            }
            Ok(_) => err(ul, uc, ".url", "must be an http or https URL".into()),
            Err(e) => err(ul, uc, ".url", format!("invalid URL: {e}")),
        }
        if d.timeout.is_some_and(|t| t.as_millis() <= 0) {
            err(line, col, ".timeout", "must be positive".into());
        }
        for (field, message) in client_problems(
            &d.bearer_token_env,
            &d.bearer_token_file,
            d.basic_auth.as_ref(),
            &d.headers,
        ) {
            err(line, col, &field, message);
        }
    }
    errors
}

/// The problems of the HTTP client settings a datasource and a remote write entry share: a
/// bearer token from one source, basic auth with one password source and not beside a token,
/// valid headers, none of them `Authorization`. Each as (field path from the entry, message).
pub(crate) fn client_problems(
    bearer_token_env: &Option<String>,
    bearer_token_file: &Option<PathBuf>,
    basic_auth: Option<&BasicAuthConfig>,
    headers: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut err = |field: &str, message: &str| out.push((field.to_string(), message.to_string()));
    if bearer_token_env.is_some() && bearer_token_file.is_some() {
        err(
            ".bearer_token_env",
            "set bearer_token_env or bearer_token_file, not both",
        );
    }
    if let Some(b) = basic_auth {
        match (&b.password_env, &b.password_file) {
            (Some(_), Some(_)) => err(".basic_auth", "set password_env or password_file, not both"),
            (None, None) => err(".basic_auth", "needs password_env or password_file"),
            _ => {}
        }
        if bearer_token_env.is_some() || bearer_token_file.is_some() {
            err(".basic_auth", "set a bearer token or basic_auth, not both");
        }
    }
    for (k, v) in headers {
        if !crate::datasource::valid_header(k, v) {
            err(&format!(".headers.{k}"), "is not a valid HTTP header");
        }
        if k.eq_ignore_ascii_case("authorization") {
            err(
                &format!(".headers.{k}"),
                "use bearer_token_env/_file or basic_auth: a header value is not a secret",
            );
        }
    }
    out
}

/// Why a secret named by `*_env` or `*_file` could not be read: each caller wraps it in its own
/// error naming the entry.
pub(crate) enum SecretProblem {
    MissingEnv {
        field: &'static str,
        var: String,
    },
    File {
        field: &'static str,
        source: SecretFileError,
    },
}

/// The secret of an `(env field, variable)` or `(file field, path)` pair (the variable wins, as
/// validation refuses both); None when neither is set.
pub(crate) fn read_secret(
    env: &HashMap<String, String>,
    env_field: (&'static str, &Option<String>),
    file_field: (&'static str, &Option<PathBuf>),
) -> Result<Option<Secret>, SecretProblem> {
    match (env_field.1, file_field.1) {
        (Some(var), _) => match env.get(var) {
            Some(v) => Ok(Some(Secret(v.clone()))),
            None => Err(SecretProblem::MissingEnv {
                field: env_field.0,
                var: var.clone(),
            }),
        },
        (None, Some(path)) => read_secret_file(path)
            .map(|s| Some(Secret(s)))
            .map_err(|source| SecretProblem::File {
                field: file_field.0,
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// A client's bearer token and its basic-auth `(username, password)`.
pub(crate) type ClientAuth = (Option<Secret>, Option<(String, Secret)>);

/// A client's bearer token and basic-auth pair, read from its `bearer_token_env`/`_file` and
/// `basic_auth` (the settings datasources and `remote_write` entries share).
pub(crate) fn read_client_auth(
    env: &HashMap<String, String>,
    bearer_token_env: &Option<String>,
    bearer_token_file: &Option<PathBuf>,
    basic_auth: Option<&BasicAuthConfig>,
) -> Result<ClientAuth, SecretProblem> {
    let bearer_token = read_secret(
        env,
        ("bearer_token_env", bearer_token_env),
        ("bearer_token_file", bearer_token_file),
    )?;
    let basic_auth = match basic_auth {
        Some(b) => read_secret(
            env,
            ("basic_auth.password_env", &b.password_env),
            ("basic_auth.password_file", &b.password_file),
        )?
        .map(|p| (b.username.clone(), p)),
        None => None,
    };
    Ok((bearer_token, basic_auth))
}

/// The error of datasource `datasource` for a secret it could not read.
fn secret_error(datasource: &str, p: SecretProblem) -> DatasourceSecretError {
    let datasource = datasource.to_string();
    match p {
        SecretProblem::MissingEnv { field, var } => DatasourceSecretError::MissingEnv {
            datasource,
            field,
            var,
        },
        SecretProblem::File { field, source } => DatasourceSecretError::File {
            datasource,
            field,
            source,
        },
    }
}

/// `d` with defaults applied and secrets read (`*_env` from `env`).
pub fn build(
    d: &DatasourceConfig,
    env: &HashMap<String, String>,
) -> Result<Datasource, DatasourceSecretError> {
    let name = d.name.value.clone();
    let (bearer_token, basic_auth) = read_client_auth(
        env,
        &d.bearer_token_env,
        &d.bearer_token_file,
        d.basic_auth.as_ref(),
    )
    .map_err(|p| secret_error(&name, p))?;
    let mut url = url::Url::parse(&d.url.value).expect("validated url");
    // a base path joins as a directory: `…/prometheus` + `api/v1/query`
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(Datasource {
        url,
        timeout: std::time::Duration::from_millis(
            d.timeout
                .map(|t| t.as_millis() as u64)
                .unwrap_or(DEFAULT_DATASOURCE_TIMEOUT_S * 1000),
        ),
        query_offset_ms: d.query_offset.map(|o| o.as_millis()).unwrap_or(0),
        error_for_ms: d
            .datasource_error_for
            .map(|o| o.as_millis())
            .unwrap_or(DEFAULT_DATASOURCE_ERROR_FOR_S as i64 * 1000),
        response_size_limit: d
            .response_size_limit
            .map(|b| b.0)
            .unwrap_or(DEFAULT_DATASOURCE_RESPONSE_LIMIT),
        bearer_token,
        basic_auth,
        headers: d
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        name,
    })
}

/// A datasource given by URL alone (`tocsin replay --datasource http://…`): every default.
pub fn from_url(url: &str) -> Result<Datasource, String> {
    let yaml = format!("name: {url:?}\ntype: prometheus\nurl: {url:?}\n");
    let d: DatasourceConfig = serde_saphyr::from_str(&yaml).map_err(|e| e.to_string())?;
    let errors = validate(std::slice::from_ref(&d), Path::new("--datasource"));
    if let Some(e) = errors.first() {
        return Err(e.message.clone());
    }
    build(&d, &HashMap::new()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn errors(yaml: &str) -> String {
        match Config::from_yaml(yaml, Path::new("t.yml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_problem_of_the_section_is_reported_at_its_field() {
        let e = errors(
            "datasources:\n  - name: a\n    type: prometheus\n    url: ftp://x\n  \
             - name: a\n    type: prometheus\n    url: 'http://x/?q=1'\n    bearer_token_env: T\n    bearer_token_file: /t\n    \
             headers: { Authorization: x, 'bad header': y }\n  \
             - name: b\n    type: prometheus\n    url: http://x\n    basic_auth: { username: u }\n",
        );
        for want in [
            "t.yml:4:10: datasources[0].url: must be an http or https URL",
            "t.yml:5:11: datasources[1].name: duplicate datasource name \"a\" (first at line 2)",
            "t.yml:7:10: datasources[1].url: must not have a query or fragment",
            "datasources[1].bearer_token_env: set bearer_token_env or bearer_token_file, not both",
            "datasources[1].headers.Authorization: use bearer_token_env/_file or basic_auth",
            "datasources[1].headers.bad header: is not a valid HTTP header",
            "datasources[2].basic_auth: needs password_env or password_file",
        ] {
            assert!(e.contains(want), "{want}\n---\n{e}");
        }
        let e = errors("datasources:\n  - name: a\n    type: graphite\n    url: http://x\n");
        assert!(e.contains("t.yml:3:11"), "{e}");
    }

    #[test]
    fn secrets_come_from_env_or_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let cfg = Config::from_yaml(
            &format!(
                "datasources:\n  - name: vm\n    type: prometheus\n    url: http://vm:8481/select/0/prometheus\n    \
                 basic_auth: {{ username: u, password_file: {} }}\n  \
                 - name: p\n    type: prometheus\n    url: http://p:9090\n    bearer_token_env: TOK\n    \
                 query_offset: 30s\n    timeout: 5s\n    datasource_error_for: 10m\n    response_size_limit: 1MiB\n",
                file.display()
            ),
            Path::new("t.yml"),
        )
        .unwrap();
        let env: HashMap<String, String> = [("TOK".to_string(), "t0k".to_string())].into();
        let built = cfg.build_datasources(&env).unwrap();
        assert_eq!(
            built[0].basic_auth,
            Some(("u".into(), Secret("s3cret".into())))
        );
        // a path prefix joins as a directory
        assert_eq!(
            built[0].url.join("api/v1/query").unwrap().as_str(),
            "http://vm:8481/select/0/prometheus/api/v1/query"
        );
        assert_eq!(built[0].timeout, std::time::Duration::from_secs(30));
        assert_eq!(built[0].error_for_ms, 300_000);
        assert_eq!(built[0].response_size_limit, 16 << 20);
        assert_eq!(built[1].bearer_token, Some(Secret("t0k".into())));
        assert_eq!(built[1].query_offset_ms, 30_000);
        assert_eq!(built[1].timeout, std::time::Duration::from_secs(5));
        assert_eq!(built[1].error_for_ms, 600_000);
        assert_eq!(built[1].response_size_limit, 1 << 20);
        // an unset variable names the datasource and the field, never a value
        let e = cfg
            .build_datasources(&HashMap::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "datasource p: bearer_token_env names TOK, which is not set in this environment"
        );
        assert!(!format!("{:?}", built[1]).contains("t0k"));
    }

    #[test]
    fn a_group_naming_an_unknown_datasource_is_an_error_at_its_line() {
        let set = crate::rules::load::parse_file(
            "groups:\n  - name: g\n    datasource: vmm\n    rules: []\n",
            Path::new("r.yml"),
            15_000,
            &crate::promql::rhai::ScriptEngine::new(),
        )
        .unwrap();
        let set = crate::rules::RuleSet {
            groups: set.into_iter().map(std::sync::Arc::new).collect(),
            files: Vec::new(),
        };
        let e = set
            .check_datasources(&["vm".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "r.yml:3:17: group \"g\": datasource: datasource \"vmm\" is not configured (configured: vm)"
        );
        assert!(
            set.check_datasources(&[])
                .unwrap_err()
                .to_string()
                .contains("tocsin.yml has no datasources")
        );
        assert!(from_url("not a url").is_err());
        assert_eq!(
            from_url("http://127.0.0.1:8428").unwrap().name,
            "http://127.0.0.1:8428"
        );
    }
}
