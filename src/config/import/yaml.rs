//! The two YAML halves of `tocsin import`: a node tree read with every node's position (so
//! each finding names its line and column, and every key is seen: nothing is dropped unread),
//! and a small emitter of tocsin's configuration in a fixed, readable order.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node with the position of its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: u64,
    pub col: u64,
    pub value: Value,
}

/// A YAML value. Mapping keys keep their own positions and their order in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar as text (`None` for null, a list or a map): what a string field reads.
    pub fn text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The value of key `name` in a map.
    pub fn get(&self, name: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.text().as_deref() == Some(name))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            line: s.referenced.line(),
            col: s.referenced.column(),
            value: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Value::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            out.push((k, v));
        }
        Ok(Value::Map(out))
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// tocsin configuration to print, in the order it is built.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Str(String),
    Bool(bool),
    Int(u64),
    /// A list, printed in flow style (`[a, b]`) when every item is a scalar.
    List(Vec<Out>),
    /// A map; an entry's comment is printed on the line above it.
    Map(Vec<Entry>),
}

/// One entry of an [`Out::Map`].
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Out,
    pub comment: Option<String>,
}

impl Out {
    pub fn str(s: impl Into<String>) -> Out {
        Out::Str(s.into())
    }
    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Out {
        Out::List(items.into_iter().map(|s| Out::Str(s.into())).collect())
    }
    fn is_scalar(&self) -> bool {
        matches!(self, Out::Str(_) | Out::Bool(_) | Out::Int(_))
    }
}

/// Builds an [`Out::Map`] entry by entry.
#[derive(Debug, Default, Clone)]
pub struct MapOut(pub Vec<Entry>);

impl MapOut {
    pub fn new() -> MapOut {
        MapOut::default()
    }
    pub fn put(&mut self, key: &str, value: Out) {
        self.0.push(Entry {
            key: key.to_string(),
            value,
            comment: None,
        });
    }
    pub fn put_commented(&mut self, key: &str, value: Out, comment: String) {
        self.0.push(Entry {
            key: key.to_string(),
            value,
            comment: Some(comment),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn done(self) -> Out {
        Out::Map(self.0)
    }
}

/// A string as a YAML scalar: plain when it reads back as the same string, else double-quoted
/// (JSON's escapes are YAML's).
pub fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./@+-".contains(c))
        && !s.starts_with(['-', '.', '@', '+'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
        )
        && s.parse::<f64>().is_err()
        && !(s.starts_with('0') && s.len() > 1 && s[1..].starts_with(['x', 'o', 'b', 'X', 'O']))
        && !s.chars().all(|c| c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else if !s.chars().any(char::is_control) {
        // single quotes need no escape but '' for ': matchers read as written
        format!("'{}'", s.replace('\'', "''"))
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

fn scalar_text(o: &Out) -> String {
    match o {
        Out::Str(s) => scalar(s),
        Out::Bool(b) => b.to_string(),
        Out::Int(i) => i.to_string(),
        Out::List(_) | Out::Map(_) => unreachable!("only scalars"),
    }
}

/// Prints a map as block YAML, two spaces an indent level.
pub fn emit(out: &Out) -> String {
    let mut s = String::new();
    if let Out::Map(entries) = out {
        emit_map(entries, 0, &mut s);
    }
    s
}

fn emit_map(entries: &[Entry], indent: usize, s: &mut String) {
    let pad = " ".repeat(indent);
    for (i, e) in entries.iter().enumerate() {
        if let Some(c) = &e.comment {
            for line in c.lines() {
                s.push_str(&format!("{pad}# {line}\n"));
            }
        }
        let key = scalar(&e.key);
        // first entry of a list item follows its dash on the same line
        let lead = if i == 0 && indent > 0 && s.ends_with("- ") {
            String::new()
        } else {
            pad.clone()
        };
        s.push_str(&lead);
        emit_value(&key, &e.value, indent, s);
    }
}

fn emit_value(key: &str, v: &Out, indent: usize, s: &mut String) {
    match v {
        Out::List(items) if items.is_empty() => s.push_str(&format!("{key}: []\n")),
        Out::List(items) if items.iter().all(Out::is_scalar) => {
            let inner: Vec<String> = items.iter().map(scalar_text).collect();
            s.push_str(&format!("{key}: [{}]\n", inner.join(", ")));
        }
        Out::List(items) => {
            s.push_str(&format!("{key}:\n"));
            emit_list(items, indent + 2, s);
        }
        Out::Map(entries) if entries.is_empty() => s.push_str(&format!("{key}: {{}}\n")),
        Out::Map(entries) => {
            s.push_str(&format!("{key}:\n"));
            emit_map(entries, indent + 2, s);
        }
        scalar_value => s.push_str(&format!("{key}: {}\n", scalar_text(scalar_value))),
    }
}

fn emit_list(items: &[Out], indent: usize, s: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Out::Map(entries) if !entries.is_empty() => {
                // a comment on the first entry goes above the dash
                if let Some(c) = &entries[0].comment {
                    for line in c.lines() {
                        s.push_str(&format!("{pad}# {line}\n"));
                    }
                }
                s.push_str(&format!("{pad}- "));
                let mut first = entries[0].clone();
                first.comment = None;
                let mut rest = vec![first];
                rest.extend(entries[1..].iter().cloned());
                emit_map(&rest, indent + 2, s);
            }
            Out::Map(_) => s.push_str(&format!("{pad}- {{}}\n")),
            Out::List(inner) => {
                let inner: Vec<String> = inner.iter().map(scalar_text).collect();
                s.push_str(&format!("{pad}- [{}]\n", inner.join(", ")));
            }
            scalar_value => s.push_str(&format!("{pad}- {}\n", scalar_text(scalar_value))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_positions_of_keys_and_values() {
        let n: Node = serde_saphyr::from_str("a:\n  b: [1, x]\n  'c': true\n").unwrap();
        let Value::Map(top) = &n.value else { panic!() };
        assert_eq!((top[0].0.line, top[0].0.col), (1, 1));
        let inner = n.get("a").unwrap();
        let b = inner.get("b").unwrap();
        assert_eq!((b.line, b.col), (2, 6));
        let Value::Seq(items) = &b.value else {
            panic!()
        };
        assert_eq!(items[1].value, Value::Str("x".into()));
        assert_eq!((items[1].line, items[1].col), (2, 10));
        assert_eq!(inner.get("c").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn scalars_that_would_read_back_differently_are_quoted() {
        for (s, want) in [
            ("ops", "ops"),
            ("5m", "5m"),
            ("true", "'true'"),
            ("10", "'10'"),
            ("1e3", "'1e3'"),
            ("localhost:9090", "'localhost:9090'"),
            ("", "''"),
            ("a b", "'a b'"),
            ("severity=\"page\"", "'severity=\"page\"'"),
            ("it's", "'it''s'"),
            ("-x", "'-x'"),
            ("No", "'No'"),
            ("0x1f", "'0x1f'"),
            ("a\nb", "\"a\\nb\""),
        ] {
            assert_eq!(scalar(s), want, "{s}");
        }
    }

    #[test]
    fn emitted_yaml_reads_back_as_the_same_tree() {
        let mut inner = MapOut::new();
        inner.put("name", Out::str("a: b"));
        inner.put("list", Out::strs(["x", "y z"]));
        let mut top = MapOut::new();
        top.put_commented("items", Out::List(vec![inner.done()]), "why".into());
        top.put("flag", Out::Bool(false));
        top.put("empty", Out::List(vec![]));
        let text = emit(&top.done());
        assert_eq!(
            text,
            "# why\nitems:\n  - name: 'a: b'\n    list: [x, 'y z']\nflag: false\nempty: []\n"
        );
        let back: Node = serde_saphyr::from_str(&text).unwrap();
        let items = back.get("items").unwrap();
        let Value::Seq(v) = &items.value else {
            panic!()
        };
        assert_eq!(v[0].get("name").unwrap().value, Value::Str("a: b".into()));
    }
}
