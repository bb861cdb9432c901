//! Input from outside never panics, never overflows the stack and never runs unbounded: property
//! tests (proptest) for each parser a user or a target can reach, round trips where a printer
//! exists, and a seeded mutation corpus (over 20,000 mutated expositions, rule files, configs,
//! templates and PromQL expressions) through the library. A panic is caught and reported with
//! the input that caused it; a stack overflow would abort the test binary, which fails too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use proptest::prelude::*;

use tocsin::duration::PromDuration;
use tocsin::ingest::textparse::Parser;
use tocsin::labels::{MatchOp, parse_matcher, parse_matchers};
use tocsin::promql::notation::parse_series_desc;
use tocsin::promql::rhai::ScriptEngine;
use tocsin::rules::template::Template;

use crate::common::project_dir;

/// Every entry of an exposition, to the end or the first error.
fn parse_exposition(text: &str) -> usize {
    let mut n = 0;
    for entry in Parser::new(text) {
        n += 1;
        if entry.is_err() {
            break;
        }
    }
    n
}

/// A value written as the matcher grammar's quoted form.
fn quote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_text_parser_never_panics(text in "\\PC{0,200}") {
        parse_exposition(&text);
    }

    #[test]
    fn the_text_parser_never_panics_on_near_valid_lines(
        name in "[a-z_:]{1,8}",
        labels in proptest::collection::vec(("[a-z_]{1,4}", "[^\"\\\\]{0,6}"), 0..5),
        value in "[-+0-9.eEinfNa]{1,8}",
        tail in "[ 0-9#{}=\",\\\\a-z]{0,10}",
    ) {
        let block: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        parse_exposition(&format!("{name}{{{}}} {value}{tail}\n", block.join(",")));
    }

    #[test]
    fn matchers_never_panic(text in "\\PC{0,60}") {
        let _ = parse_matcher(&text);
        let _ = parse_matchers(&text);
    }

    #[test]
    fn matchers_round_trip(name in "[a-zA-Z_][a-zA-Z0-9_]{0,10}", value in "\\PC{0,20}", equal in any::<bool>()) {
        let op = if equal { "=" } else { "!=" };
        let m = parse_matcher(&format!("{name}{op}{}", quote(&value))).unwrap();
        prop_assert_eq!(&m.name, &name);
        prop_assert_eq!(&m.value, &value);
        prop_assert_eq!(m.op, if equal { MatchOp::Equal } else { MatchOp::NotEqual });
        let list = parse_matchers(&format!("{{{name}{op}{}}}", quote(&value))).unwrap();
        prop_assert_eq!(list.len(), 1);
        prop_assert_eq!(&list[0].value, &value);
    }

    #[test]
    fn durations_never_panic_and_round_trip(text in "[0-9a-z]{0,12}", ms in 0u64..(10 * 365 * 86_400_000)) {
        let _ = PromDuration::parse(&text);
        let d = PromDuration(std::time::Duration::from_millis(ms));
        let printed = d.to_string();
        prop_assert_eq!(PromDuration::parse(&printed).unwrap(), d, "{}", printed);
    }

    #[test]
    fn series_notation_never_panics(text in "[a-z_{}=\",0-9x+\\- ._stale]{0,40}") {
        let _ = parse_series_desc(&text);
    }

    #[test]
    fn templates_never_panic(text in "[{}()a-z$. |\"0-9-]{0,80}") {
        if let Ok(t) = Template::parse(&text) {
            let labels = std::collections::BTreeMap::new();
            let ext = std::collections::BTreeMap::new();
            let data = tocsin::rules::template::TemplateData {
                labels: &labels,
                external_labels: &ext,
                external_url: "",
                value: 1.0,
                time_ms: 0,
            };
            let _ = t.render(&data, None);
        }
    }

    #[test]
    fn promql_never_panics(text in "[a-z_(){}\\[\\]=~!\"0-9+*/^<>,. :-]{0,80}") {
        let _ = tocsin::promql::parse(&text);
    }
}

/// A small deterministic generator (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that break formats when they appear in the wrong place.
const SPICE: &[&str] = &[
    "{", "}", "(", ")", "[", "]", "\"", "\\", "\n", ",", "=", ":", "#", "-", "  ", "{{", "}}",
    "\t", "NaN", "1e309", "é", "\u{0}", "- ", "&a", "*a", "!!", "'", "`", "${", "|",
];

/// One mutation of `text`: a byte flip, a deleted or duplicated run, a spliced special token.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = b.len().max(1);
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = rng.below(16).min(b.len() - i);
                b.drain(i..i + n);
            }
            2 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = (1 + rng.below(32)).min(b.len() - i);
                let run: Vec<u8> = b[i..i + n].to_vec();
                let at = rng.below(len);
                b.splice(at..at, run);
            }
            _ => {
                let at = rng.below(len).min(b.len());
                let spice = SPICE[rng.below(SPICE.len())].as_bytes();
                b.splice(at..at, spice.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Runs `f` on each of `count` mutations of each seed; returns the number run. A panic is
/// reported with its kind, corpus index and input.
fn corpus(
    kind: &str,
    seeds: &[String],
    count: usize,
    rng: &mut Rng,
    f: &mut dyn FnMut(&str),
) -> usize {
    let mut run = 0;
    for i in 0..count {
        let seed = &seeds[i % seeds.len()];
        let input = mutate(rng, seed);
        if catch_unwind(AssertUnwindSafe(|| f(&input))).is_err() {
            panic!("{kind} #{i} panicked on input:\n{input}");
        }
        run += 1;
    }
    run
}

fn read_all(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_str().is_some_and(&keep))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn a_seeded_mutation_corpus_never_panics() {
    let root = project_dir();
    let mut rng = Rng(0x7c05_1a11_2026_1205);
    let expositions = read_all(&root.join("fixtures/it"), |p| p.ends_with(".txt"));
    let rule_files = read_all(&root.join("rules"), |p| {
        p.ends_with(".yml") && !p.ends_with("_test.yml")
    });
    let configs = read_all(&root.join("fixtures/config"), |p| p.ends_with(".yml"));
    let mut exprs: Vec<String> = Vec::new();
    let mut templates: Vec<String> = Vec::new();
    for text in &rule_files {
        for line in text.lines() {
            let line = line.trim();
            if let Some(e) = line.strip_prefix("expr:") {
                exprs.push(e.trim().trim_matches(['"', '\'', '|']).to_string());
            }
            if line.contains("{{") {
                templates.push(
                    line.split_once(':')
                        .map_or(line, |x| x.1)
                        .trim()
                        .to_string(),
                );
            }
        }
    }
    assert!(!expositions.is_empty() && rule_files.len() >= 5 && !configs.is_empty());
    assert!(
        exprs.len() >= 10 && templates.len() >= 10,
        "{} {}",
        exprs.len(),
        templates.len()
    );

    let scripts = ScriptEngine::new();
    let mut total = 0;
    total += corpus("exposition", &expositions, 8_000, &mut rng, &mut |t| {
        parse_exposition(t);
    });
    total += corpus("promql", &exprs, 6_000, &mut rng, &mut |t| {
        let _ = tocsin::promql::parse(t);
    });
    total += corpus("template", &templates, 4_000, &mut rng, &mut |t| {
        let _ = Template::parse(t);
    });
    total += corpus("config", &configs, 1_500, &mut rng, &mut |t| {
        let _ = tocsin::config::Config::from_yaml(t, Path::new("mutated.yml"));
    });
    total += corpus("rule file", &rule_files, 1_500, &mut rng, &mut |t| {
        let _ = tocsin::rules::parse_file(t, Path::new("mutated.yml"), 15_000, &scripts);
    });
    assert!(total >= 20_000, "{total}");
}
