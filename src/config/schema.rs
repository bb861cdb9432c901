//! `tocsin schema`: JSON Schemas (draft-07) for `tocsin.yml`, rule files and rule test files,
//! generated from the same type sources and `///` comments as `tocsin config-reference`
//! ([`super::reference`]'s line parser), so an editor's completion and checks cannot drift from
//! what the loaders read.
//!
//! Draft-07 because it is the newest draft yaml-language-server (VS Code's YAML extension)
//! supports fully; 2019-09 and 2020-12 schemas get a "not yet fully supported" warning there.
//!
//! How Rust types read: `Option<T>` may be `null`; `Spanned<T>` and `Box<T>` are `T`; `Vec<T>` an array;
//! `BTreeMap<String, T>` an object of `T`; a struct an object whose properties are its fields,
//! with `required` for the fields serde needs (no `Option`, no `#[serde(default)]` on the field
//! or the struct) and `additionalProperties: false` exactly when the struct has
//! `#[serde(deny_unknown_fields)]`; a unit-variant enum an `enum` of its serde names.
//! `PromDuration` is a string with the duration pattern (or `0`), `ByteSize` an integer or a
//! string with a size unit. A field read by a `deserialize_with` function is described by
//! [`deserializer_schema`]; one not listed there is an error, as is an unknown type or a
//! missing doc comment: never a guess.
//!
//! What the schema cannot say stays with `tocsin check`: cross-field rules (exactly one of
//! `expr` and `script`), ranges (durations up to 10y, interval floors), PromQL, templates,
//! regexes, and references between sections.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value, json};

use super::reference::{self, Body, Item, ReferenceError, flat, generic, paragraphs, parse_items};

/// The meta-schema every generated schema declares.
pub const DRAFT: &str = "http://json-schema.org/draft-07/schema#";

/// The pattern of a Prometheus duration as [`crate::duration::PromDuration::parse`] reads it:
/// units from largest to smallest, each at most once (`1h30m`, `250ms`, `15d`).
pub const DURATION_PATTERN: &str =
    r"^\s*(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)\s*$";

/// What yaml-language-server and VS Code say of a string that is not a duration (instead of
/// the pattern), as `patternErrorMessage`.
pub const DURATION_HELP: &str = "a duration: a number and a unit, units from the largest (y w d h \
    m s ms), e.g. 30s, 5m, 1h30m; 0 alone is zero";

/// The pattern of a size as [`super::ByteSize::parse`] reads it: bytes, or a number with a unit.
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$";

/// A boolean written as text, as serde-saphyr reads it (YAML 1.1, any case): `yes`, `off`, `"true"`.
pub const BOOL_TEXT: &str = "^([yY]|[yY][eE][sS]|[nN]|[nN][oO]|[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|[oO][nN]|[oO][fF][fF])$";

/// A non-negative integer written as text, as serde-saphyr reads it: `"100"`, `0x1F`, `0o17`,
/// `0b101`, `1_000`.
pub const UINT_TEXT: &str = r"^\s*\+?(0[xX][0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|0|[1-9][0-9_]*)\s*$";

/// An integer written as text: [`UINT_TEXT`] with a sign.
pub const INT_TEXT: &str = r"^\s*[-+]?(0[xX][0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|0|[1-9][0-9_]*)\s*$";

/// A number written as text: `"1.5"`, `.5`, `1e1`, `.inf`.
pub const FLOAT_TEXT: &str =
    r"^\s*[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?|\.(inf|Inf|INF|nan|NaN|NAN))\s*$";

/// Which file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `tocsin.yml`
    Config,
    /// a rule file (`groups:`)
    Rules,
    /// a rule unit-test file (`*_test.yml`)
    Tests,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 3] = [SchemaKind::Config, SchemaKind::Rules, SchemaKind::Tests];

    /// The name on the command line: `config`, `rules`, `tests`.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Config => "config",
            SchemaKind::Rules => "rules",
            SchemaKind::Tests => "tests",
        }
    }

    /// The file `tocsin schema --out-dir` writes: `tocsin-config.schema.json` and so on.
    pub fn file_name(self) -> String {
        format!("tocsin-{}.schema.json", self.name())
    }

    fn title(self) -> &'static str {
        match self {
            SchemaKind::Config => "tocsin configuration (tocsin.yml)",
            SchemaKind::Rules => "tocsin rule file",
            SchemaKind::Tests => "tocsin rule unit-test file",
        }
    }

    fn sources(self) -> &'static [(&'static str, &'static str)] {
        match self {
            SchemaKind::Config => reference::SOURCES,
            SchemaKind::Rules => RULE_SOURCES,
            SchemaKind::Tests => TEST_SOURCES,
        }
    }

    fn root(self) -> &'static str {
        match self {
            SchemaKind::Config => reference::ROOT,
            SchemaKind::Rules => "RawFile",
            SchemaKind::Tests => "RawTestFile",
        }
    }

    fn typed(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            SchemaKind::Config => reference::TYPED_SECTIONS,
            _ => &[],
        }
    }
}

impl std::str::FromStr for SchemaKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SchemaKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown schema {s:?} (config, rules or tests)"))
    }
}

/// The rule file's types (`rules::load`'s raw format), compiled in.
pub const RULE_SOURCES: &[(&str, &str)] =
    &[("src/rules/load.rs", include_str!("../rules/load.rs"))];

/// The rule test file's types (`rules::unittest`'s raw format), compiled in.
pub const TEST_SOURCES: &[(&str, &str)] = &[(
    "src/rules/unittest.rs",
    include_str!("../rules/unittest.rs"),
)];

/// The schema of `kind`, from the compiled-in sources.
pub fn generate(kind: SchemaKind) -> Result<Value, ReferenceError> {
    generate_from(kind.sources(), kind.root(), kind.typed(), kind.title())
}

/// The schema of the type `root` in `sources` (file name, text). `typed` names fields whose Rust
/// type is not what the user writes, as for the reference.
pub fn generate_from(
    sources: &[(&str, &str)],
    root: &str,
    typed: &[(&str, &str, &str)],
    title: &str,
) -> Result<Value, ReferenceError> {
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for (file, text) in sources {
        for item in parse_items(file, text) {
            items.entry(item.name.clone()).or_insert(item);
        }
    }
    if !items.contains_key(root) {
        return Err(ReferenceError::MissingRoot(root.to_string()));
    }
    let mut walk = Walk {
        items: &items,
        typed,
        queue: VecDeque::from([root.to_string()]),
        done: BTreeSet::new(),
        uses: BTreeSet::new(),
    };
    let mut definitions = Map::new();
    let mut root_schema = None;
    while let Some(name) = walk.queue.pop_front() {
        if !walk.done.insert(name.clone()) {
            continue;
        }
        let schema = walk.item_schema(&items[&name])?;
        if name == root {
            root_schema = Some(schema);
        } else {
            definitions.insert(name, schema);
        }
    }
    if walk.uses.contains("duration") {
        definitions.insert(
            "duration".into(),
            // no description here: an editor's hover shows the field's own (yaml-language-server
            // prefers the innermost description it finds)
            json!({
                "anyOf": [
                    {
                        "type": "string",
                        // every part of the pattern is optional: a digit makes it non-empty
                        "allOf": [
                            { "pattern": DURATION_PATTERN, "patternErrorMessage": DURATION_HELP },
                            { "pattern": "[0-9]", "patternErrorMessage": DURATION_HELP }
                        ]
                    },
                    { "const": 0 }
                ]
            }),
        );
    }
    if walk.uses.contains("size") {
        definitions.insert(
            "size".into(),
            json!({
                "anyOf": [
                    { "type": "integer", "minimum": 0 },
                    {
                        "type": "string",
                        "pattern": SIZE_PATTERN,
                        "patternErrorMessage": "a size: bytes, or a number with a unit (B KB MB \
                            GB KiB MiB GiB), e.g. 512KiB or 32MiB"
                    }
                ]
            }),
        );
    }
    let Some(Value::Object(mut out)) = root_schema else {
        return Err(ReferenceError::MissingRoot(root.to_string()));
    };
    let mut head = Map::new();
    head.insert("$schema".into(), DRAFT.into());
    head.insert("title".into(), title.into());
    head.append(&mut out);
    head.insert(
        "$comment".into(),
        format!(
            "generated by `tocsin schema` from the `///` comments of {}; do not edit",
            sources
                .iter()
                .map(|(f, _)| *f)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into(),
    );
    head.insert("definitions".into(), Value::Object(definitions));
    Ok(Value::Object(head))
}

/// The schema as the text `tocsin schema` prints: pretty JSON and a newline.
pub fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("a JSON value serializes");
    s.push('\n');
    s
}

struct Walk<'a> {
    items: &'a BTreeMap<String, Item>,
    typed: &'a [(&'a str, &'a str, &'a str)],
    queue: VecDeque<String>,
    done: BTreeSet<String>,
    /// the shared definitions used (`duration`, `size`)
    uses: BTreeSet<&'static str>,
}

impl Walk<'_> {
    fn item_schema(&mut self, item: &Item) -> Result<Value, ReferenceError> {
        if item.doc.0.is_empty() {
            return Err(ReferenceError::MissingDoc {
                file: item.file.clone(),
                line: item.line,
                item: format!("type {}", item.name),
            });
        }
        let description = paragraphs(&item.doc);
        match item.body()? {
            Body::Struct {
                fields,
                all_default,
            } => {
                let mut properties = Map::new();
                let mut required = Vec::new();
                for f in &fields {
                    let what = format!("{}.{}", item.name, f.name);
                    if f.doc.0.is_empty() {
                        return Err(ReferenceError::MissingDoc {
                            file: item.file.clone(),
                            line: f.line,
                            item: format!("field {what}"),
                        });
                    }
                    let unknown = || ReferenceError::UnknownType {
                        file: item.file.clone(),
                        line: f.line,
                        item: what.clone(),
                        ty: f.ty.clone(),
                    };
                    // a field named in `typed` reads as that type whatever reads it (the route
                    // timings: any scalar as text, then parsed as a duration)
                    let typed = self
                        .typed
                        .iter()
                        .find(|(s, n, _)| *s == item.name && *n == f.name)
                        .map(|(_, _, t)| *t);
                    let (mut schema, optional) = match (typed, &f.deserialize_with) {
                        (Some(ty), _) => self.type_schema(ty).ok_or_else(unknown)?,
                        (None, Some(func)) => {
                            deserializer_schema(func, &f.ty, self).ok_or_else(unknown)?
                        }
                        (None, None) => self.type_schema(&f.ty).ok_or_else(unknown)?,
                    };
                    let text = flat(&f.doc);
                    if !(all_default || f.has_default || optional) {
                        required.push(Value::from(f.name.clone()));
                    }
                    describe(&mut schema, text);
                    properties.insert(f.name.clone(), schema);
                }
                let mut out = Map::new();
                out.insert("description".into(), description.into());
                out.insert("type".into(), "object".into());
                out.insert("properties".into(), Value::Object(properties));
                if !required.is_empty() {
                    out.insert("required".into(), Value::Array(required));
                }
                if item.denies_unknown_fields() {
                    out.insert("additionalProperties".into(), false.into());
                }
                Ok(Value::Object(out))
            }
            Body::Enum { variants } => {
                let mut names = Vec::new();
                let mut docs = Vec::new();
                for v in &variants {
                    if v.doc.0.is_empty() {
                        return Err(ReferenceError::MissingDoc {
                            file: item.file.clone(),
                            line: v.line,
                            item: format!("value {}::{}", item.name, v.name),
                        });
                    }
                    names.push(Value::from(v.name.clone()));
                    docs.push(Value::from(flat(&v.doc)));
                }
                let listed = variants
                    .iter()
                    .map(|v| format!("- `{}`: {}", v.name, flat(&v.doc)))
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(json!({
                    "description": format!("{description}\n\n{listed}"),
                    "type": "string",
                    "enum": names,
                    // VS Code and yaml-language-server show these beside each completion
                    "enumDescriptions": docs,
                }))
            }
        }
    }

    /// The schema of a Rust field type, and whether it may be left out (`Option`). None: not
    /// understood.
    fn type_schema(&mut self, ty: &str) -> Option<(Value, bool)> {
        let ty = ty.trim();
        if let Some(inner) = generic(ty, "Option") {
            let (s, _) = self.type_schema(inner)?;
            return Some((nullable(s), true));
        }
        if let Some(inner) = generic(ty, "Spanned").or_else(|| generic(ty, "Box")) {
            return self.type_schema(inner);
        }
        // rule files' labels and annotations: a map of names to strings, read as sorted pairs
        if ty == "RawMap" {
            let (v, _) = self.type_schema("String")?;
            return Some((
                json!({ "type": "object", "additionalProperties": v }),
                false,
            ));
        }
        if let Some(inner) = generic(ty, "Vec") {
            let (s, _) = self.type_schema(inner)?;
            return Some((json!({ "type": "array", "items": s }), false));
        }
        if let Some(inner) = generic(ty, "BTreeMap") {
            let (k, v) = inner.split_once(',')?;
            if !matches!(k.trim(), "String") {
                return None;
            }
            let (v, _) = self.type_schema(v)?;
            return Some((
                json!({ "type": "object", "additionalProperties": v }),
                false,
            ));
        }
        let last = ty.rsplit("::").next().unwrap_or(ty);
        // serde-saphyr reads YAML 1.1 scalars leniently, quoted or not: a string field takes any
        // scalar as its text, a boolean `yes`/`off`/`"true"`, a number `"100"`, `0x10`, `1_000`;
        // the schema accepts the same (a `pattern` constrains strings only)
        let scalar = match last {
            "String" | "PathBuf" => json!({ "type": ["string", "number", "boolean"] }),
            "bool" => json!({ "type": ["boolean", "string"], "pattern": BOOL_TEXT }),
            "usize" | "u64" | "u32" | "u16" => {
                json!({ "type": ["integer", "string"], "minimum": 0, "pattern": UINT_TEXT })
            }
            "i64" => json!({ "type": ["integer", "string"], "pattern": INT_TEXT }),
            "f64" => json!({ "type": ["number", "string"], "pattern": FLOAT_TEXT }),
            // any JSON value (a webhook payload field's expected value)
            "Value" if ty.contains("serde_json") => json!({}),
            "PromDuration" => {
                self.uses.insert("duration");
                json!({ "$ref": "#/definitions/duration" })
            }
            "ByteSize" => {
                self.uses.insert("size");
                json!({ "$ref": "#/definitions/size" })
            }
            // rule tests' untagged `Scalar`: a YAML scalar given as text or as a number
            "Scalar" => json!({ "type": ["number", "string", "boolean"] }),
            _ => Value::Null,
        };
        if !scalar.is_null() {
            return Some((scalar, false));
        }
        if self.items.contains_key(last) {
            self.queue.push_back(last.to_string());
            return Some((json!({ "$ref": format!("#/definitions/{last}") }), false));
        }
        None
    }
}

/// The schema of a field read by `#[serde(deserialize_with = "func")]` over Rust type `ty`, and
/// whether it may be left out. These functions accept more than the type says (`null` for an
/// empty list, any scalar as text); a function not listed here is an error, never a guess.
fn deserializer_schema(func: &str, ty: &str, walk: &mut Walk<'_>) -> Option<(Value, bool)> {
    // what `notify::route`'s `Text` reads: a string, or a number or boolean taken as its text
    let text = || json!({ "type": ["string", "number", "boolean"] });
    // (the same as a plain `String` field: serde-saphyr reads any scalar as text)
    Some(match func.rsplit("::").next().unwrap_or(func) {
        // `config::empty_when_null`: a list, or null for none
        "empty_when_null" => (nullable(walk.type_schema(ty)?.0), false),
        "lenient_string" => (text(), false),
        "lenient_opt_spanned" => (nullable(text()), true),
        "lenient_spanned_strings" => (nullable(json!({ "type": "array", "items": text() })), false),
        "lenient_spanned_map" => (
            nullable(json!({ "type": "object", "additionalProperties": text() })),
            false,
        ),
        // a point in time as an offset: a duration without the 10y bound
        "deserialize_time_offset" => {
            walk.uses.insert("duration");
            (json!({ "$ref": "#/definitions/duration" }), false)
        }
        _ => return None,
    })
}

/// `schema`, or null.
fn nullable(schema: Value) -> Value {
    match schema {
        Value::Object(mut m) if matches!(m.get("type"), Some(Value::String(_))) => {
            let t = m.remove("type").expect("checked");
            m.insert("type".into(), json!([t, "null"]));
            Value::Object(m)
        }
        Value::Object(mut m) if matches!(m.get("type"), Some(Value::Array(_))) => {
            if let Some(Value::Array(types)) = m.get_mut("type")
                && !types.contains(&Value::from("null"))
            {
                types.push("null".into());
            }
            Value::Object(m)
        }
        other => json!({ "anyOf": [other, { "type": "null" }] }),
    }
}

/// Sets a property's description; a `$ref` is wrapped in `allOf`, since draft-07 ignores the
/// siblings of `$ref`.
fn describe(schema: &mut Value, text: String) {
    if let Value::Object(m) = schema {
        if m.contains_key("$ref") {
            let inner = Value::Object(std::mem::take(m));
            m.insert("allOf".into(), json!([inner]));
        }
        m.insert("description".into(), text.into());
    }
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
    /// Receivers, or null.
    #[serde(default, deserialize_with = "empty_when_null")]
    pub receivers: Vec<String>,
}

/// One target.
#[derive(Deserialize)]
struct Target {
    /// Its name.
    pub name: Spanned<String>,
    /// Scrape interval.
    pub interval: Option<PromDuration>,
    /// Limit.
    pub limit: ByteSize,
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
"#;

    fn sample() -> Value {
        generate_from(&[("sample.rs", SAMPLE)], "Config", &[], "sample").unwrap()
    }

    #[test]
    fn structs_become_objects_with_required_fields_and_closed_when_serde_denies_unknown_ones() {
        let s = sample();
        assert_eq!(s["$schema"], DRAFT);
        assert_eq!(s["type"], "object");
        assert_eq!(s["description"], "The file.");
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"], json!(["targets"]));
        assert_eq!(
            s["properties"]["targets"],
            json!({"type": "array", "items": {"$ref": "#/definitions/Target"}, "description": "The targets."})
        );
        assert_eq!(
            s["properties"]["receivers"]["type"],
            json!(["array", "null"])
        );
        let target = &s["definitions"]["Target"];
        // no deny_unknown_fields on Target: other keys are not refused
        assert!(target.get("additionalProperties").is_none(), "{target}");
        assert_eq!(target["required"], json!(["name", "limit"]));
        assert_eq!(
            target["properties"]["interval"],
            json!({"anyOf": [{"$ref": "#/definitions/duration"}, {"type": "null"}], "description": "Scrape interval."})
        );
        assert_eq!(
            s["definitions"]["duration"]["anyOf"][0]["allOf"][0]["pattern"],
            DURATION_PATTERN
        );
        assert!(s["definitions"]["size"].is_object());
    }

    #[test]
    fn enums_list_their_serde_names_with_descriptions() {
        let s = sample();
        let f = &s["definitions"]["Format"];
        assert_eq!(f["enum"], json!(["plain_text", "json"]));
        assert_eq!(
            f["enumDescriptions"],
            json!(["for people", "one object a line"])
        );
        // a reference to a definition keeps its own description through allOf
        assert_eq!(
            s["properties"]["format"],
            json!({"allOf": [{"$ref": "#/definitions/Format"}], "description": "Output format."})
        );
    }

    #[test]
    fn an_undocumented_field_or_unknown_type_or_deserializer_fails() {
        let text = SAMPLE.replace("    /// Limit.\n", "");
        let err = generate_from(&[("sample.rs", &text)], "Config", &[], "t").unwrap_err();
        assert!(
            err.to_string()
                .contains("field Target.limit has no doc comment"),
            "{err}"
        );
        let text = SAMPLE.replace("pub limit: ByteSize", "pub limit: Instant");
        let err = generate_from(&[("sample.rs", &text)], "Config", &[], "t").unwrap_err();
        assert!(matches!(err, ReferenceError::UnknownType { .. }), "{err}");
        let text = SAMPLE.replace("\"empty_when_null\"", "\"something_else\"");
        let err = generate_from(&[("sample.rs", &text)], "Config", &[], "t").unwrap_err();
        assert!(matches!(err, ReferenceError::UnknownType { .. }), "{err}");
    }

    #[test]
    fn the_duration_pattern_is_the_parser_s_notation() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        let digit = regex::Regex::new("[0-9]").unwrap();
        struct Both(regex::Regex, regex::Regex);
        impl Both {
            fn is_match(&self, s: &str) -> bool {
                self.0.is_match(s) && self.1.is_match(s)
            }
        }
        let re = Both(pattern, digit);
        for ok in [
            "0",
            "15s",
            "5m",
            "1h30m",
            "250ms",
            "1d",
            "2w",
            "1y",
            "1h1m1s1ms",
            "5m ",
        ] {
            assert!(re.is_match(ok), "{ok}");
            assert!(crate::duration::PromDuration::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "5", "1.5s", "-1s", "1m1h", "1s1s", "5 m", "5M", "1x"] {
            assert!(!re.is_match(bad), "{bad}");
            assert!(crate::duration::PromDuration::parse(bad).is_err(), "{bad}");
        }
        let re = Both(
            regex::Regex::new(SIZE_PATTERN).unwrap(),
            regex::Regex::new("").unwrap(),
        );
        for ok in ["512", "512KiB", "32MiB", "1GB", "7B"] {
            assert!(
                re.is_match(ok) && super::super::ByteSize::parse(ok).is_ok(),
                "{ok}"
            );
        }
        for bad in ["1.5MiB", "32mib", "MiB", "-1"] {
            assert!(
                !re.is_match(bad) && super::super::ByteSize::parse(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_shipped_schema_generates() {
        for kind in SchemaKind::ALL {
            let s = generate(kind).unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            assert_eq!(s["type"], "object", "{}", kind.name());
            assert_eq!(s["additionalProperties"], false, "{}", kind.name());
        }
    }
}
