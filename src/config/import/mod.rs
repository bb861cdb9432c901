//! `tocsin import`: an Alertmanager or Prometheus configuration converted into tocsin's.
//!
//! The input is read as a node tree with positions ([`yaml::Node`]), never through serde types
//! with defaults, so every key is looked at: each is converted, or reported as a [`Finding`]
//! with its line and column. A finding says what happens to the field ([`Effect`]): a `note`
//! changes nothing (the conversion stays exact), `changed` means tocsin will behave differently
//! or needs an action before it runs (a secret moved to an environment variable), `dropped` means
//! the field has no counterpart in tocsin. The output is tocsin YAML in a fixed order, so two
//! runs over the same input print the same text.
//!
//! Limits: the input is at most [`MAX_INPUT_BYTES`], nests at most [`MAX_INPUT_DEPTH`] levels,
//! and goes through serde-saphyr's default budget (events, aliases, anchors), as `tocsin.yml` does.
//! Nothing here does I/O but [`import_file`]'s one bounded read.

pub mod alertmanager;
pub mod prometheus;
pub mod yaml;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use yaml::{Node, Value};

/// Largest input read: ten times the largest real Alertmanager configuration we know of, and
/// far below what would make the node tree a memory problem.
pub const MAX_INPUT_BYTES: u64 = 4 << 20;
/// Deepest nesting of the input (a routing tree 60 levels deep still fits): the node tree is
/// built recursively.
pub const MAX_INPUT_DEPTH: usize = 128;

/// Occurs when an input cannot be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_INPUT_BYTES`].
    #[error("{path}: larger than the limit of {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    /// The YAML is malformed, nests too deep or exceeds the parser's budget.
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        path: PathBuf,
        line: u64,
        col: u64,
        message: String,
    },
    /// The top level is neither an Alertmanager nor a Prometheus configuration.
    #[error(
        "{path}: neither an Alertmanager configuration (top-level route or receivers) nor a Prometheus one (scrape_configs, rule_files, alerting or global)"
    )]
    Unrecognised { path: PathBuf },
}

/// Which tool the input is the configuration of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Alertmanager,
    Prometheus,
}

/// What happens to a reported field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// Converted exactly, or without effect in tocsin; worth knowing.
    Note,
    /// Converted, but tocsin will behave differently, or needs an action first.
    Changed,
    /// Not converted: tocsin has no counterpart.
    Dropped,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Note => "note",
            Effect::Changed => "changed",
            Effect::Dropped => "dropped",
        })
    }
}

/// One reported field of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub line: u64,
    pub col: u64,
    /// dotted path in the input, e.g. `receivers[0].slack_configs`
    pub field: String,
    pub effect: Effect,
    pub message: String,
}

/// A finding with its file, as printed on stderr: `file:line:col: field: effect: message`.
pub struct Located<'a>(pub &'a Path, pub &'a Finding);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Located(path, x) = self;
        write!(
            f,
            "{}:{}:{}: {}: {}: {}",
            path.display(),
            x.line,
            x.col,
            x.field,
            x.effect,
            x.message
        )
    }
}

/// A converted configuration.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub source: Source,
    /// tocsin's configuration, YAML
    pub yaml: String,
    /// every field reported, in the order of the file
    pub findings: Vec<Finding>,
}

impl Conversion {
    /// Whether tocsin will do what the input made its tool do: no finding but notes.
    pub fn exact(&self) -> bool {
        self.findings.iter().all(|f| f.effect == Effect::Note)
    }
}

/// Reads (at most [`MAX_INPUT_BYTES`]) and converts a file.
pub fn import_file(path: &Path) -> Result<Conversion, ImportError> {
    let read = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut text = String::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_INPUT_BYTES,
        });
    }
    import_str(&text, path)
}

/// Converts configuration text; `path` names the file in findings and resolves relative secret
/// file paths as the tool did (against the file's directory).
pub fn import_str(text: &str, path: &Path) -> Result<Conversion, ImportError> {
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let root = parse(text, path)?;
    let has = |k: &str| root.get(k).is_some();
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut conversion = if has("route") || has("receivers") {
        let mut cx = Cx::new(dir);
        let out = alertmanager::convert(&root, &mut cx);
        cx.finish(Source::Alertmanager, out)
    } else if has("scrape_configs") || has("rule_files") || has("alerting") || has("global") {
        let mut cx = Cx::new(dir);
        let out = prometheus::convert(&root, &mut cx);
        cx.finish(Source::Prometheus, out)
    } else {
        return Err(ImportError::Unrecognised {
            path: path.to_path_buf(),
        });
    };
    conversion
        .findings
        .extend(self_check(&conversion.yaml, &root));
    Ok(conversion)
}

/// tocsin's own validation (pure, as `tocsin check` runs it before its I/O half) over the
/// output: what it refuses (an empty receiver name, a smarthost without a port, a timeout over
/// its interval) is a finding, so an output `check` would refuse never exits 0.
fn self_check(yaml: &str, root: &Node) -> Vec<Finding> {
    let output = Path::new("(output)");
    let refused = |field: String, line: u64, message: String| Finding {
        line: root.line,
        col: root.col,
        field: format!("(output) {field}"),
        effect: Effect::Changed,
        message: format!(
            "tocsin refuses the converted configuration at its line {line}: {message}"
        ),
    };
    match crate::config::Config::from_yaml(yaml, output) {
        Ok(_) => Vec::new(),
        Err(crate::config::ConfigError::Invalid(errors)) => errors
            .into_iter()
            .map(|e| refused(e.field, e.line, e.message))
            .collect(),
        Err(crate::config::ConfigError::Parse { line, message, .. }) => {
            vec![refused(String::new(), line, message)]
        }
        Err(e) => vec![refused(String::new(), 0, e.to_string())],
    }
}

fn parse(text: &str, path: &Path) -> Result<Node, ImportError> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_INPUT_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let source = if text.trim().is_empty() { "{}" } else { text };
    serde_saphyr::from_str_with_options::<Node>(source, options).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ImportError::Parse {
            path: path.to_path_buf(),
            line,
            col,
            message: crate::config::parse_message(&e),
        }
    })
}

/// The conversion's state: findings so far and the input's directory.
pub(crate) struct Cx {
    pub findings: Vec<Finding>,
    /// directory of the input, against which its tool resolved relative file paths
    pub dir: PathBuf,
    /// lines printed at the top of the output
    pub header: Vec<String>,
}

impl Cx {
    fn new(dir: PathBuf) -> Cx {
        Cx {
            findings: Vec::new(),
            dir,
            header: Vec::new(),
        }
    }

    pub fn report(&mut self, at: &Node, field: &str, effect: Effect, message: impl Into<String>) {
        self.findings.push(Finding {
            line: at.line,
            col: at.col,
            field: field.to_string(),
            effect,
            message: message.into(),
        });
    }
    pub fn note(&mut self, at: &Node, field: &str, message: impl Into<String>) {
        self.report(at, field, Effect::Note, message)
    }
    pub fn changed(&mut self, at: &Node, field: &str, message: impl Into<String>) {
        self.report(at, field, Effect::Changed, message)
    }
    pub fn dropped(&mut self, at: &Node, field: &str, message: impl Into<String>) {
        self.report(at, field, Effect::Dropped, message)
    }

    /// The entries of a map node (the key's text and the key node for positions); anything else
    /// is reported as dropped and gives nothing.
    pub fn map<'a>(&mut self, node: &'a Node, field: &str) -> Vec<(String, &'a Node, &'a Node)> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.text().unwrap_or_default(), k, v))
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.dropped(
                    node,
                    field,
                    format!("expected a map, found {}", node.kind()),
                );
                Vec::new()
            }
        }
    }

    /// The items of a list node; null is empty; anything else is reported and gives nothing.
    pub fn list<'a>(&mut self, node: &'a Node, field: &str) -> Vec<&'a Node> {
        match &node.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            _ => {
                self.dropped(
                    node,
                    field,
                    format!("expected a list, found {}", node.kind()),
                );
                Vec::new()
            }
        }
    }

    /// A scalar's text; a list or map is reported and gives `None`.
    pub fn text(&mut self, node: &Node, field: &str) -> Option<String> {
        let t = node.text();
        if t.is_none() && node.value != Value::Null {
            self.dropped(
                node,
                field,
                format!("expected a value, found {}", node.kind()),
            );
        }
        t
    }

    /// A list of strings (a single string is read as a list of one, as Alertmanager's
    /// list fields are not; it is reported).
    pub fn strings(&mut self, node: &Node, field: &str) -> Vec<String> {
        self.list(node, field)
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| self.text(n, &format!("{field}[{i}]")))
            .collect()
    }

    /// A boolean; anything else is reported and gives `None`.
    pub fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.dropped(
                    node,
                    field,
                    format!("expected true or false, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A Prometheus duration as written, checked with tocsin's parser; one it refuses is
    /// reported and gives `None`.
    pub fn duration(&mut self, node: &Node, field: &str) -> Option<String> {
        let text = self.text(node, field)?;
        match crate::duration::PromDuration::parse(&text) {
            Ok(_) => Some(text),
            Err(e) => {
                self.dropped(
                    node,
                    field,
                    format!("{text:?} is not a duration tocsin reads: {e}"),
                );
                None
            }
        }
    }

    /// A non-negative integer; anything else is reported and gives `None`.
    pub fn count(&mut self, node: &Node, field: &str) -> Option<u64> {
        match node.value {
            Value::Int(i) if i >= 0 && i <= u64::MAX as i128 => Some(i as u64),
            _ => {
                self.dropped(
                    node,
                    field,
                    format!("expected a count, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A file path as the input's tool resolved it (relative to the input's directory), for
    /// tocsin, which resolves secret file paths against its working directory.
    pub fn path(&mut self, node: &Node, field: &str, value: &str) -> String {
        let p = Path::new(value);
        if p.is_absolute() || self.dir.as_os_str().is_empty() {
            return value.to_string();
        }
        let joined = self.dir.join(p).display().to_string();
        self.note(
            node,
            field,
            format!(
                "relative path {value:?} was read from the configuration's directory; tocsin reads it from its working directory, so it is written as {joined:?}"
            ),
        );
        joined
    }

    /// An unknown key: reported, never silently dropped.
    pub fn unknown(&mut self, key: &Node, field: &str) {
        self.dropped(key, field, "unknown field");
    }

    fn finish(mut self, source: Source, out: yaml::Out) -> Conversion {
        self.findings.sort_by_key(|f| (f.line, f.col));
        let mut yaml = String::new();
        let tool = match source {
            Source::Alertmanager => "an Alertmanager",
            Source::Prometheus => "a Prometheus",
        };
        yaml.push_str(&format!(
            "# converted by `tocsin import` from {tool} configuration\n"
        ));
        let counts = |e| self.findings.iter().filter(|f| f.effect == e).count();
        let (changed, dropped) = (counts(Effect::Changed), counts(Effect::Dropped));
        if changed + dropped > 0 {
            yaml.push_str(&format!(
                "# not exact: {changed} field(s) changed and {dropped} dropped, listed on stderr\n"
            ));
        }
        for line in &self.header {
            yaml.push_str(&format!("# {line}\n"));
        }
        yaml.push_str(&yaml::emit(&out));
        Conversion {
            source,
            yaml,
            findings: self.findings,
        }
    }
}

/// `field` joined to its parent's path: `a.b`, or `b` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}
