//! `tocsin config-reference`: the configuration reference in Markdown, generated from the `///`
//! comments of the configuration types, so the reference cannot drift from the code.
//!
//! The sources are compiled in (`include_str!`) and read by a small line parser that knows the
//! shape the config types are written in: `pub struct X { /// doc  #[serde(..)]  pub field: Type, }`
//! and unit-variant enums. Starting from [`ROOT`] it follows every field whose type is another
//! config type, breadth first, and writes one section per type. It fails, naming file and line,
//! when a type, field or enum value lacks a doc comment or a field's type is not understood:
//! adding an undocumented field breaks `tocsin config-reference` and its test.
//!
//! The notification sections (`route`, `receivers`, `inhibit_rules`, `time_intervals`) are typed
//! fields of `Config` like any other and are followed the same way; [`TYPED_SECTIONS`] names the
//! few fields whose Rust type is not what the user writes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

/// The files holding the configuration types, as compiled into the binary.
pub const SOURCES: &[(&str, &str)] = &[
    ("src/config/mod.rs", include_str!("mod.rs")),
    ("src/config/datasource.rs", include_str!("datasource.rs")),
    ("src/config/sd.rs", include_str!("sd.rs")),
    (
        "src/config/remote_write.rs",
        include_str!("remote_write.rs"),
    ),
    (
        "src/notify/receivers.rs",
        include_str!("../notify/receivers.rs"),
    ),
    (
        "src/notify/route/mod.rs",
        include_str!("../notify/route/mod.rs"),
    ),
    (
        "src/notify/route/tree.rs",
        include_str!("../notify/route/tree.rs"),
    ),
    (
        "src/notify/route/inhibit.rs",
        include_str!("../notify/route/inhibit.rs"),
    ),
    (
        "src/notify/route/time_intervals.rs",
        include_str!("../notify/route/time_intervals.rs"),
    ),
    (
        "src/notify/dispatch.rs",
        include_str!("../notify/dispatch.rs"),
    ),
];

/// The type of the whole file.
pub const ROOT: &str = "Config";

/// Fields whose Rust type is not what the user writes, with the type they are read as: the route
/// timings, strings parsed as durations when the routing tree is built (so a bad one is reported
/// with its route's path). A `serde_json::Value` field would have to be named here too.
pub const TYPED_SECTIONS: &[(&str, &str, &str)] = &[
    ("RouteConfig", "group_wait", "Option<PromDuration>"),
    ("RouteConfig", "group_interval", "Option<PromDuration>"),
    ("RouteConfig", "repeat_interval", "Option<PromDuration>"),
];

/// Where the committed copy lives, and how to regenerate it.
pub const COMMITTED_PATH: &str = "fixtures/examples/config-reference.md";
pub const REGENERATE: &str =
    "cargo run -- config-reference > fixtures/examples/config-reference.md";

/// Occurs when the reference cannot be generated from the sources.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReferenceError {
    /// A config type, field or enum value has no `///` comment (its user documentation).
    #[error(
        "{file}:{line}: {item} has no doc comment: every config type, field and value needs one"
    )]
    MissingDoc {
        file: String,
        line: usize,
        item: String,
    },
    /// A field's type is neither a known scalar nor a config type found in the sources.
    #[error("{file}:{line}: {item}: type {ty} is not known to the reference generator")]
    UnknownType {
        file: String,
        line: usize,
        item: String,
        ty: String,
    },
    /// A line inside a config type is not in the shape the parser reads.
    #[error("{file}:{line}: cannot read {text:?} as a field or enum value")]
    Syntax {
        file: String,
        line: usize,
        text: String,
    },
    /// The root type is not defined in the sources.
    #[error("type {0} is not defined in the configuration sources")]
    MissingRoot(String),
}

/// A `///` comment, its lines joined.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Doc(pub(crate) Vec<String>);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) ty: String,
    pub(crate) doc: Doc,
    pub(crate) has_default: bool,
    /// the function of `#[serde(deserialize_with = "...")]`, which reads what the user writes
    pub(crate) deserialize_with: Option<String>,
    pub(crate) line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Variant {
    pub(crate) name: String,
    pub(crate) doc: Doc,
    pub(crate) line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Struct {
        fields: Vec<Field>,
        all_default: bool,
    },
    Enum {
        variants: Vec<Variant>,
    },
}

/// A top-level type; its body is read only when the reference reaches it (error enums and
/// other types beside the config types are never read).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) name: String,
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) doc: Doc,
    is_enum: bool,
    attrs: Vec<String>,
    /// the whole file, and the index of the body's first line in it
    lines: std::rc::Rc<Vec<String>>,
    body_start: usize,
}

impl Item {
    /// Whether serde refuses fields the type does not name (`#[serde(deny_unknown_fields)]`).
    pub(crate) fn denies_unknown_fields(&self) -> bool {
        self.attrs
            .iter()
            .any(|a| serde_words(a).contains(&"deny_unknown_fields"))
    }

    pub(crate) fn body(&self) -> Result<Body, ReferenceError> {
        let lines: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        Ok(if self.is_enum {
            let (variants, _) = parse_variants(&self.file, &lines, self.body_start, &self.attrs)?;
            Body::Enum { variants }
        } else {
            let (fields, _) = parse_fields(&self.file, &lines, self.body_start)?;
            Body::Struct {
                fields,
                all_default: self
                    .attrs
                    .iter()
                    .any(|a| serde_words(a).contains(&"default")),
            }
        })
    }
}

/// Generates the reference from the compiled-in sources.
pub fn generate() -> Result<String, ReferenceError> {
    generate_from(SOURCES, ROOT, TYPED_SECTIONS)
}

/// Generates the reference from `sources` (file name, text), starting at `root`.
pub fn generate_from(
    sources: &[(&str, &str)],
    root: &str,
    typed: &[(&str, &str, &str)],
) -> Result<String, ReferenceError> {
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for (file, text) in sources {
        for item in parse_items(file, text) {
            // the first definition wins (a later file may reuse a private name)
            items.entry(item.name.clone()).or_insert(item);
        }
    }
    if !items.contains_key(root) {
        return Err(ReferenceError::MissingRoot(root.to_string()));
    }
    // breadth first from the root, each type once, with the YAML path it is first reached at
    let mut order: Vec<(String, String)> = Vec::new();
    let mut queue = VecDeque::from([(root.to_string(), String::new())]);
    let mut sections = Vec::new();
    while let Some((name, at)) = queue.pop_front() {
        if order.iter().any(|(n, _)| n == &name) {
            continue;
        }
        order.push((name.clone(), at.clone()));
        let item = &items[&name];
        if item.doc.0.is_empty() {
            return Err(ReferenceError::MissingDoc {
                file: item.file.clone(),
                line: item.line,
                item: format!("type {name}"),
            });
        }
        sections.push(render_item(item, &at, &items, typed, &mut queue)?);
    }
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    let _ = writeln!(
        out,
        "<!-- generated by `tocsin config-reference` from the `///` comments of the configuration \
         types ({}); do not edit, regenerate with `{REGENERATE}` -->\n",
        sources
            .iter()
            .map(|(f, _)| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str(
        "Types: `duration` is a Prometheus duration (`30s`, `5m`, `1h30m`); `size` is bytes or a \
         number with a unit (`512KiB`, `32MiB`, `1GB`); a field marked *required* must be set, \
         any other may be left out.\n\n",
    );
    for (name, at) in &order {
        let _ = writeln!(
            out,
            "- [{name}](#{}){}",
            name.to_lowercase(),
            if at.is_empty() {
                " (the whole file)".to_string()
            } else {
                format!(": `{at}`")
            }
        );
    }
    out.push('\n');
    out.push_str(&sections.join("\n"));
    Ok(out)
}

fn render_item(
    item: &Item,
    at: &str,
    items: &BTreeMap<String, Item>,
    typed: &[(&str, &str, &str)],
    queue: &mut VecDeque<(String, String)>,
) -> Result<String, ReferenceError> {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", item.name);
    if at.is_empty() {
        let _ = writeln!(out, "{}\n", paragraphs(&item.doc));
    } else {
        let _ = writeln!(out, "At `{at}`. {}\n", paragraphs(&item.doc));
    }
    match &item.body()? {
        Body::Struct {
            fields,
            all_default,
        } => {
            out.push_str("| field | type | default | description |\n|---|---|---|---|\n");
            for f in fields {
                let what = format!("{}.{}", item.name, f.name);
                if f.doc.0.is_empty() {
                    return Err(ReferenceError::MissingDoc {
                        file: item.file.clone(),
                        line: f.line,
                        item: format!("field {what}"),
                    });
                }
                // an untyped field must be named in `typed`; any other may be
                let ty = match typed
                    .iter()
                    .find(|(s, n, _)| *s == item.name && *n == f.name)
                {
                    Some((_, _, t)) => (*t).to_string(),
                    None if f.ty.contains("serde_json::Value") => {
                        return Err(ReferenceError::UnknownType {
                            file: item.file.clone(),
                            line: f.line,
                            item: what,
                            ty: f.ty.clone(),
                        });
                    }
                    None => f.ty.clone(),
                };
                let child_at = if at.is_empty() {
                    f.name.clone()
                } else {
                    format!("{at}.{}", f.name)
                };
                let (shown, optional) = match render_type(&ty, &child_at, items, queue) {
                    Some(r) => r,
                    None => {
                        return Err(ReferenceError::UnknownType {
                            file: item.file.clone(),
                            line: f.line,
                            item: what,
                            ty: f.ty.clone(),
                        });
                    }
                };
                let text = flat(&f.doc);
                let default = match stated_default(&text) {
                    Some(d) => format!("`{d}`"),
                    None if !(*all_default || f.has_default || optional) => "*required*".into(),
                    None => String::new(),
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    f.name,
                    cell(&shown),
                    cell(&default),
                    cell(&text)
                );
            }
        }
        Body::Enum { variants } => {
            out.push_str("| value | description |\n|---|---|\n");
            for v in variants {
                if v.doc.0.is_empty() {
                    return Err(ReferenceError::MissingDoc {
                        file: item.file.clone(),
                        line: v.line,
                        item: format!("value {}::{}", item.name, v.name),
                    });
                }
                let _ = writeln!(out, "| `{}` | {} |", v.name, cell(&flat(&v.doc)));
            }
        }
    }
    Ok(out)
}

/// How a Rust field type reads in the reference, and whether it may be left out (`Option`).
/// Config types are linked and queued, reached at `at`. `None`: not understood.
fn render_type(
    ty: &str,
    at: &str,
    items: &BTreeMap<String, Item>,
    queue: &mut VecDeque<(String, String)>,
) -> Option<(String, bool)> {
    let ty = ty.trim();
    if let Some(inner) = generic(ty, "Option") {
        return render_type(inner, at, items, queue).map(|(s, _)| (s, true));
    }
    if let Some(inner) = generic(ty, "Spanned") {
        return render_type(inner, at, items, queue);
    }
    if let Some(inner) = generic(ty, "Vec") {
        let (s, _) = render_type(inner, &format!("{at}[]"), items, queue)?;
        return Some((format!("list of {s}"), false));
    }
    if let Some(inner) = generic(ty, "BTreeMap") {
        let (k, v) = inner.split_once(',')?;
        let (k, _) = render_type(k, at, items, queue)?;
        let (v, _) = render_type(v, at, items, queue)?;
        return Some((format!("map of {k} to {v}"), false));
    }
    let last = ty.rsplit("::").next().unwrap_or(ty);
    let scalar = match last {
        "String" => "string",
        "PathBuf" => "path",
        "bool" => "boolean",
        "usize" | "u64" | "u32" | "u16" | "i64" => "integer",
        "PromDuration" => "duration",
        "ByteSize" => "size",
        _ => "",
    };
    if !scalar.is_empty() {
        return Some((scalar.to_string(), false));
    }
    if items.contains_key(last) {
        queue.push_back((last.to_string(), at.to_string()));
        return Some((format!("[{last}](#{})", last.to_lowercase()), false));
    }
    None
}

/// `Name<inner>` → inner.
pub(crate) fn generic<'a>(ty: &'a str, name: &str) -> Option<&'a str> {
    ty.strip_prefix(name)?.strip_prefix('<')?.strip_suffix('>')
}

/// The value of the first "Default `...`" in a comment.
pub(crate) fn stated_default(text: &str) -> Option<&str> {
    let rest = &text[text.find("Default `")? + "Default `".len()..];
    rest.find('`').map(|end| &rest[..end])
}

/// A comment as one line; intra-doc links (`` [`x`] ``) become code.
pub(crate) fn flat(doc: &Doc) -> String {
    unlink(
        &doc.0
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A comment as Markdown paragraphs (blank `///` lines separate them).
pub(crate) fn paragraphs(doc: &Doc) -> String {
    let mut paras: Vec<String> = vec![String::new()];
    for l in &doc.0 {
        let l = l.trim();
        if l.is_empty() {
            paras.push(String::new());
        } else {
            let p = paras.last_mut().expect("never empty");
            if !p.is_empty() {
                p.push(' ');
            }
            p.push_str(l);
        }
    }
    unlink(
        &paras
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
    )
}

fn unlink(s: &str) -> String {
    let re = regex::Regex::new(r"\[(`[^`\]]+`)\](\([^)]*\))?").expect("valid regex");
    re.replace_all(s, "$1").into_owned()
}

/// Text made safe for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Every top-level `struct` / `enum` with a brace body in one file (public or not: the rule
/// and rule-test file types are private to their modules). Items inside other items (a `mod
/// tests`) are indented and so ignored.
pub(crate) fn parse_items(file: &str, text: &str) -> Vec<Item> {
    let lines: Vec<&str> = text.lines().collect();
    let shared = std::rc::Rc::new(lines.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    let mut items = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    let mut attrs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            i += 1;
            continue;
        }
        if line.starts_with("#[") {
            let (attr, next) = attribute(&lines, i);
            attrs.push(attr);
            i = next;
            continue;
        }
        let decl = line
            .strip_prefix("pub ")
            .or_else(|| line.strip_prefix("pub(crate) "))
            .unwrap_or(line);
        let header = decl
            .strip_prefix("struct ")
            .map(|r| (r, false))
            .or_else(|| decl.strip_prefix("enum ").map(|r| (r, true)));
        if let Some((rest, is_enum)) = header
            && let Some(name) = rest.strip_suffix(" {")
            && !name.contains(['<', ' '])
        {
            items.push(Item {
                name: name.to_string(),
                file: file.to_string(),
                line: i + 1,
                doc: Doc(std::mem::take(&mut doc)),
                is_enum,
                attrs: std::mem::take(&mut attrs),
                lines: shared.clone(),
                body_start: i + 1,
            });
            // skip the body
            i += 1;
            while i < lines.len() && lines[i] != "}" {
                i += 1;
            }
            i += 1;
            continue;
        }
        doc.clear();
        attrs.clear();
        i += 1;
    }
    items
}

/// One attribute starting at line `i`, possibly over several lines; returns it and the next line.
fn attribute(lines: &[&str], i: usize) -> (String, usize) {
    let mut text = String::new();
    let mut depth = 0i32;
    let mut j = i;
    while j < lines.len() {
        let l = lines[j].trim();
        text.push_str(l);
        depth += l.matches('[').count() as i32 - l.matches(']').count() as i32;
        j += 1;
        if depth <= 0 {
            break;
        }
    }
    (text, j)
}

/// The words of a `#[serde(...)]` attribute: `default`, `deserialize_with = "x"` → `deserialize_with`.
fn serde_words(attr: &str) -> Vec<&str> {
    let Some(inner) = attr
        .strip_prefix("#[serde(")
        .and_then(|a| a.strip_suffix(")]"))
    else {
        return Vec::new();
    };
    inner
        .split(',')
        .map(|w| w.split('=').next().unwrap_or("").trim())
        .collect()
}

/// The value of `key = "value"` in a `#[serde(...)]` attribute.
fn serde_value<'a>(attr: &'a str, key: &str) -> Option<&'a str> {
    let inner = attr.strip_prefix("#[serde(")?.strip_suffix(")]")?;
    inner.split(',').find_map(|w| {
        let (k, v) = w.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// Walks the members of a type body starting at line `i` up to its closing `}`: collects each
/// member's `///` doc and `#[...]` attributes and hands them to `member` with the declaration
/// line (trimmed) and its 1-based number. Returns the line after the body.
fn parse_members(
    file: &str,
    lines: &[&str],
    mut i: usize,
    mut member: impl FnMut(&str, usize, Doc, &[String]) -> Result<(), ReferenceError>,
) -> Result<usize, ReferenceError> {
    let mut doc: Vec<String> = Vec::new();
    let mut attrs: Vec<String> = Vec::new();
    while i < lines.len() {
        let line = lines[i].trim();
        if lines[i] == "}" {
            return Ok(i + 1);
        }
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            i += 1;
            continue;
        }
        if line.starts_with("#[") {
            let (attr, next) = attribute(lines, i);
            attrs.push(attr);
            i = next;
            continue;
        }
        if line.is_empty() || line.starts_with("//") {
            i += 1;
            continue;
        }
        member(line, i + 1, Doc(std::mem::take(&mut doc)), &attrs)?;
        attrs.clear();
        i += 1;
    }
    Err(ReferenceError::Syntax {
        file: file.to_string(),
        line: i,
        text: "end of file inside a type".into(),
    })
}

fn parse_fields(
    file: &str,
    lines: &[&str],
    i: usize,
) -> Result<(Vec<Field>, usize), ReferenceError> {
    let mut fields = Vec::new();
    let next = parse_members(file, lines, i, |line, at, doc, attrs| {
        let decl = line.strip_prefix("pub ").unwrap_or(line);
        let Some((name, ty)) = decl.strip_suffix(',').and_then(|d| d.split_once(": ")) else {
            return Err(ReferenceError::Syntax {
                file: file.to_string(),
                line: at,
                text: line.to_string(),
            });
        };
        let name = name.trim().trim_start_matches("r#");
        let renamed = attrs.iter().find_map(|a| serde_value(a, "rename"));
        fields.push(Field {
            name: renamed.unwrap_or(name).to_string(),
            ty: ty.trim().to_string(),
            doc,
            has_default: attrs.iter().any(|a| serde_words(a).contains(&"default")),
            deserialize_with: attrs
                .iter()
                .find_map(|a| serde_value(a, "deserialize_with"))
                .map(str::to_string),
            line: at,
        });
        Ok(())
    })?;
    Ok((fields, next))
}

fn parse_variants(
    file: &str,
    lines: &[&str],
    i: usize,
    enum_attrs: &[String],
) -> Result<(Vec<Variant>, usize), ReferenceError> {
    let rename_all = enum_attrs.iter().find_map(|a| serde_value(a, "rename_all"));
    let mut variants = Vec::new();
    let next = parse_members(file, lines, i, |line, at, doc, attrs| {
        let Some(name) = line
            .strip_suffix(',')
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        else {
            return Err(ReferenceError::Syntax {
                file: file.to_string(),
                line: at,
                text: line.to_string(),
            });
        };
        let shown = match attrs.iter().find_map(|a| serde_value(a, "rename")) {
            Some(r) => r.to_string(),
            None => match rename_all {
                Some("lowercase") => name.to_lowercase(),
                Some("snake_case") => snake_case(name),
                _ => name.to_string(),
            },
        };
        variants.push(Variant {
            name: shown,
            doc,
            line: at,
        });
        Ok(())
    })?;
    Ok((variants, next))
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (k, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if k > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
/// The file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen. Default `127.0.0.1:9477`.
    #[serde(default)]
    pub listen: String,
    /// The targets.
    pub targets: Vec<Target>,
    /// Output format.
    #[serde(default)]
    pub format: Format,
}

/// One target.
#[derive(Deserialize)]
pub struct Target {
    /// Its name; `a|b` is escaped.
    pub name: Spanned<String>,
    /// Scrape interval.
    pub interval: Option<PromDuration>,
    /// Whether to go on.
    #[serde(rename = "continue")]
    pub r#continue: bool,
}

/// How it looks.
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// for people
    #[default]
    PlainText,
    /// one object a line
    Json,
}

/// Not reachable from Config: never rendered, so it needs no docs.
pub struct Unused {
    pub x: u64,
}

#[cfg(test)]
mod tests {
    pub struct Indented {
        pub y: u64,
    }
}
"#;

    #[test]
    fn reference_lists_reachable_types_with_type_default_and_description() {
        let out = generate_from(&[("sample.rs", SAMPLE)], "Config", &[]).unwrap();
        for want in [
            "- [Config](#config) (the whole file)",
            "- [Target](#target): `targets[]`",
            "- [Format](#format): `format`",
            "## Config\n\nThe file.\n",
            "| `listen` | string | `127.0.0.1:9477` | Where to listen. Default `127.0.0.1:9477`. |",
            "| `targets` | list of [Target](#target) | *required* | The targets. |",
            "## Target\n\nAt `targets[]`. One target.",
            "| `name` | string | *required* | Its name; `a\\|b` is escaped. |",
            "| `interval` | duration |  | Scrape interval. |",
            "| `continue` | boolean | *required* | Whether to go on. |",
            "| `plain_text` | for people |",
        ] {
            assert!(out.contains(want), "{want:?} missing in:\n{out}");
        }
        assert!(!out.contains("Unused") && !out.contains("Indented"));
    }

    #[test]
    fn an_undocumented_field_fails_naming_file_and_line() {
        let text = SAMPLE.replace("    /// Scrape interval.\n", "");
        let err = generate_from(&[("sample.rs", &text)], "Config", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sample.rs:21: field Target.interval has no doc comment: every config type, field and value needs one"
        );
        let text = SAMPLE.replace("    /// one object a line\n", "");
        let err = generate_from(&[("sample.rs", &text)], "Config", &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("value Format::json has no doc comment"),
            "{err}"
        );
        let text = SAMPLE.replace("/// One target.\n", "");
        let err = generate_from(&[("sample.rs", &text)], "Config", &[]).unwrap_err();
        assert!(
            err.to_string().contains("type Target has no doc comment"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_type_fails_instead_of_being_guessed() {
        let text = SAMPLE.replace(
            "pub interval: Option<PromDuration>",
            "pub interval: Instant",
        );
        let err = generate_from(&[("sample.rs", &text)], "Config", &[]).unwrap_err();
        assert!(
            matches!(&err, ReferenceError::UnknownType { ty, .. } if ty == "Instant"),
            "{err}"
        );
        let text = SAMPLE.replace("pub targets: Vec<Target>", "pub targets: serde_json::Value");
        assert!(generate_from(&[("sample.rs", &text)], "Config", &[]).is_err());
        let out = generate_from(
            &[("sample.rs", &text)],
            "Config",
            &[("Config", "targets", "Vec<Target>")],
        )
        .unwrap();
        assert!(out.contains("| `targets` | list of [Target](#target) |"));
    }

    #[test]
    fn the_real_config_types_are_all_documented() {
        let out = generate().unwrap();
        for section in [
            "## Config",
            "## StorageConfig",
            "## TargetConfig",
            "## JsonGauge",
            "## LogFormat",
            "## RouteConfig",
            "## ReceiverConfig",
            "## WebhookRaw",
            "## EmailRaw",
            "## Digest",
            "## InhibitRuleConfig",
            "## TimeIntervalConfig",
            "## TimeIntervalSpec",
            "## TimeOfDayConfig",
        ] {
            assert!(out.contains(section), "{section} missing in:\n{out}");
        }
        assert!(out.contains("| `retention` | duration | `15d` |"), "{out}");
    }
}
