//! The text parser against `promtool check metrics` (Prometheus's `expfmt` text parser) over a
//! seeded mutation corpus: for every mutated exposition, tocsin and promtool agree on whether it
//! is a format error. promtool's lint problems (naming conventions, missing help) are not format
//! errors: only its "text format parsing error" counts as a rejection.
//!
//! Skips with a printed reason when promtool is absent (CI installs the `prometheus` package).
//! The bases are the fixtures, a few handwritten expositions covering every metric type, and,
//! when `../shared` is present, windows of the Prometheus project's `textparse` files.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{project_dir, shared_dir};
use tocsin::ingest::textparse::{Entry, ParseError, Parser, text_body};

/// Where tocsin deliberately differs from promtool: `(name, reason)`. An input on which the two
/// disagree must fall in one of these, recognised by [`known_difference`].
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "utf8-outside-label-values",
        "a body is text: tocsin refuses invalid UTF-8 anywhere (naming its line), promtool only \
         in label values",
    ),
    (
        "type-case",
        "`# TYPE m COUNTER` and `gauge_histogram`: promtool compares types in upper case against \
         its protobuf enum; Prometheus's scrape parser, like tocsin, takes the lowercase words only",
    ),
    (
        "value-glued-to-name",
        "`m.5` and `m-1`: promtool reads a value that starts right after the metric name with a \
         character no name has; the format separates them by a blank, and tocsin refuses it",
    ),
    (
        "quoted-utf8-names",
        "Prometheus 3's quoted UTF-8 names (`{\"my.metric\"}`, `a{\"my.label\"=\"v\"}`, \
         `# TYPE \"my.metric\" gauge`): tocsin reads them as Prometheus 3 does; promtool 2.42 \
         predates them and refuses every one",
    ),
    (
        "promtool-histogram-grouping",
        "promtool refuses a gauge_histogram family's samples ('unexpected type'), a type tocsin \
         refuses at its # TYPE line already",
    ),
];

const PARALLEL: usize = 4;
const CORPUS: usize = 2_100;

fn promtool_available() -> bool {
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// promtool's verdict: `Some(message)` when it reports a format (parse) error.
fn promtool_rejects(input: &[u8]) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // exit 3 is lint problems only; a parse error prints this and exits 1
    text.lines()
        .find(|l| l.contains("error while linting"))
        .map(str::to_string)
}

/// tocsin's verdict on a body served as `text/plain`: the scrape's path (UTF-8, then the parser).
fn tocsin_rejects(input: &[u8]) -> Option<ParseError> {
    let text = match text_body(input) {
        Ok(t) => t,
        Err(e) => return Some(e),
    };
    Parser::new(text).find_map(|e| e.err())
}

/// Which listed difference explains a disagreement, if any.
fn known_difference(
    input: &[u8],
    ours: Option<&ParseError>,
    theirs: Option<&str>,
) -> Option<&'static str> {
    match (ours, theirs) {
        (Some(e), None) => {
            let line = String::from_utf8_lossy(input)
                .lines()
                .nth(e.line - 1)
                .unwrap_or("")
                .trim_start()
                .to_string();
            if e.message.starts_with("invalid utf-8")
                && (line.starts_with('#') || !line.contains('"'))
            {
                return Some("utf8-outside-label-values");
            }
            if e.message.starts_with("invalid character") && e.message.contains("after metric name")
            {
                return Some("value-glued-to-name");
            }
            if e.message.starts_with("invalid utf-8") {
                // inside the label block but outside a quoted value: promtool accepts only if it
                // is in a value; the byte sits in a comment otherwise
                return None;
            }
            if e.message.starts_with("unknown metric type") {
                let kind = line.split_whitespace().nth(3).unwrap_or("");
                let upper = kind.to_ascii_uppercase();
                let promtools = [
                    "COUNTER",
                    "GAUGE",
                    "SUMMARY",
                    "UNTYPED",
                    "HISTOGRAM",
                    "GAUGE_HISTOGRAM",
                ];
                if promtools.contains(&upper.as_str())
                    && (kind != kind.to_ascii_lowercase() || upper == "GAUGE_HISTOGRAM")
                {
                    return Some("type-case");
                }
            }
            None
        }
        (None, Some(msg)) if msg.contains("unexpected type for metric name") => {
            Some("promtool-histogram-grouping")
        }
        (None, Some(msg))
            if msg.contains("invalid metric name") || msg.contains("invalid label name") =>
        {
            // tocsin accepted the line promtool names: a difference only if a name on it is quoted
            let line: usize = msg
                .split("in line ")
                .nth(1)?
                .split(':')
                .next()?
                .parse()
                .ok()?;
            let text = String::from_utf8_lossy(input);
            let l = text.lines().nth(line.checked_sub(1)?)?.trim_start();
            has_quoted_name(l).then_some("quoted-utf8-names")
        }
        _ => None,
    }
}

/// Whether a line tocsin accepted names a metric or label in quotes: a `# HELP`/`# TYPE` of a
/// quoted name, a sample whose braces start with its quoted name, or a quoted label name (a
/// quoted string followed by `=`).
fn has_quoted_name(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix('#') {
        let mut words = rest.split_whitespace();
        return matches!(words.next(), Some("HELP" | "TYPE"))
            && words.next().is_some_and(|w| w.starts_with('"'));
    }
    if line.starts_with('{') {
        return true;
    }
    let Some(open) = line.find('{') else {
        return false;
    };
    // walk the label block: a quoted string right after `{` or `,` is a label name
    let b = line.as_bytes();
    let mut i = open + 1;
    let mut expect_name = true;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => {}
            b'"' if expect_name => return true,
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b',' => expect_name = true,
            b'}' => return false,
            _ => expect_name = false,
        }
        i += 1;
    }
    false
}

/// Prometheus 3's UTF-8 names: tocsin reads them, promtool 2.42 refuses each one, and the
/// listed difference is what explains it (so the corpus test would accept such a mutation).
#[test]
fn quoted_utf8_names_are_the_listed_difference() {
    if !promtool_available() {
        println!("skipping: promtool is not on the PATH (Debian's prometheus package)");
        return;
    }
    for input in [
        "{\"my.metric\"} 1\n",
        "{\"my.metric\", \"my.label\"=\"v\", code=\"200\"} 1\n",
        "legacy{code=\"200\", \"my.label\"=\"v\"} 1\n",
        "# HELP \"my.metric\" help\n# TYPE \"my.metric\" gauge\n{\"my.metric\"} 1\n",
    ] {
        let ours = tocsin_rejects(input.as_bytes());
        let theirs = promtool_rejects(input.as_bytes());
        assert!(ours.is_none(), "{input:?}: {ours:?}");
        assert!(theirs.is_some(), "{input:?}: promtool accepted it");
        assert_eq!(
            known_difference(input.as_bytes(), ours.as_ref(), theirs.as_deref()),
            Some("quoted-utf8-names"),
            "{input:?}: {theirs:?}"
        );
    }
    // a quoted label *value* is no quoted name: promtool's refusal of this line is not excused
    let input = b"a{b=\"c\"} 1 2 3\n";
    assert_eq!(
        known_difference(
            input,
            None,
            Some("text format parsing error in line 1: invalid metric name")
        ),
        None
    );
}

/// xorshift64*: the same corpus on every run.
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

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const HANDWRITTEN: &[&str] = &[
    "# HELP http_requests_total The total number of HTTP requests.\n\
     # TYPE http_requests_total counter\n\
     http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
     http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
     \n\
     # Escaping in label values:\n\
     msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
     \n\
     # Minimalistic line:\n\
     metric_without_timestamp_and_labels 12.47\n\
     \n\
     # A weird metric from before the epoch:\n\
     something_weird{problem=\"division by zero\"} +Inf -3982045\n",
    "# HELP http_request_duration_seconds A histogram of the request duration.\n\
     # TYPE http_request_duration_seconds histogram\n\
     http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n\
     http_request_duration_seconds_bucket{le=\"0.1\"} 33444\n\
     http_request_duration_seconds_bucket{le=\"0.2\"} 100392\n\
     http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n\
     http_request_duration_seconds_sum 53423\n\
     http_request_duration_seconds_count 144320\n",
    "# HELP rpc_duration_seconds A summary of the RPC duration in seconds.\n\
     # TYPE rpc_duration_seconds summary\n\
     rpc_duration_seconds{quantile=\"0.01\"} 3102\n\
     rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
     rpc_duration_seconds{quantile=\"0.99\"} 76656\n\
     rpc_duration_seconds_sum 1.7560473e+07\n\
     rpc_duration_seconds_count 2693\n\
     # HELP go_goroutines Number of goroutines.\n\
     # TYPE go_goroutines gauge\n\
     go_goroutines 42\n\
     # TYPE pdns_up untyped\n\
     pdns_up{server=\"ns1\",zone=\"example.org.\"} 1\n\
     pdns_latency_seconds{server=\"ns1\"} NaN\n",
];

/// Spliced tokens that break (or nearly break) the format.
const SPICE: &[&str] = &[
    "{",
    "}",
    "\"",
    "\\",
    "\\t",
    "\\n",
    "\\\"",
    ",",
    "=",
    " ",
    "\t",
    "\r",
    "#",
    "# TYPE x gauge\n",
    "__name__",
    "NaN",
    "+Inf",
    "-inf",
    "1e309",
    "-1e309",
    "1e-400",
    "0x1p3",
    "1_0",
    "é",
    "\n",
    "\u{0}",
    ":",
    "-",
    ".",
    "le=\"x\",",
    "quantile=\"q\",",
    "a=\"1\",",
    "9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "\u{feff}",
];

const VALUES: &[&str] = &[
    "1", "-0", "1e309", "1E5", ".5", "5.", "+.5", "Inf", "-Inf", "+inf", "NaN", "nan", "-NaN",
    "Infinity", "1_000", "0x10", "0x1p3", "1e", "", "1.2.3", "١", "1e-400", "+-1",
];

const TIMESTAMPS: &[&str] = &[
    "1395066363000",
    "-5",
    "+5",
    "1.5",
    "1e3",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "abc",
    "0x10",
    "",
];

const TYPES: &[&str] = &[
    "counter",
    "gauge",
    "histogram",
    "summary",
    "untyped",
    "COUNTER",
    "Gauge",
    "gauge_histogram",
    "gaugehistogram",
    "info",
    "stateset",
    "unknown",
    "counter ",
    "gauges",
    "",
];

/// A window of 3..40 whole lines of `base`, so big files give many small, fast inputs.
fn window(rng: &mut Rng, base: &str) -> String {
    let lines: Vec<&str> = base.lines().collect();
    if lines.len() <= 40 {
        return base.to_string();
    }
    let n = 3 + rng.below(38);
    let start = rng.below(lines.len() - n);
    let mut out = lines[start..start + n].join("\n");
    out.push('\n');
    out
}

/// One or two mutations: byte-level damage, a spliced token, or a structural change (a value,
/// timestamp or type replaced, a line duplicated or moved, the final newline dropped).
fn mutate(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(2) {
        let len = b.len().max(1);
        let lines: Vec<String> = String::from_utf8_lossy(&b)
            .lines()
            .map(str::to_string)
            .collect();
        match rng.below(11) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = (1 + rng.below(8)).min(b.len() - i);
                b.drain(i..i + n);
            }
            2 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = (1 + rng.below(24)).min(b.len() - i);
                let run: Vec<u8> = b[i..i + n].to_vec();
                let at = rng.below(len).min(b.len());
                b.splice(at..at, run);
            }
            3 | 4 => {
                let at = rng.below(len).min(b.len());
                let spice = rng.pick(SPICE).as_bytes();
                b.splice(at..at, spice.iter().copied());
            }
            5 if !lines.is_empty() => {
                // a sample's value replaced
                let mut lines = lines;
                let i = rng.below(lines.len());
                if !lines[i].starts_with('#')
                    && let Some(at) = lines[i].rfind(['}', ' '])
                {
                    let head = &lines[i][..at + 1];
                    let head = if head.ends_with('}') {
                        format!("{head} ")
                    } else {
                        head.to_string()
                    };
                    lines[i] = format!("{head}{}", rng.pick(VALUES));
                }
                b = (lines.join("\n") + "\n").into_bytes();
            }
            6 if !lines.is_empty() => {
                // a timestamp added
                let mut lines = lines;
                let i = rng.below(lines.len());
                if !lines[i].starts_with('#') {
                    lines[i] = format!("{} {}", lines[i], rng.pick(TIMESTAMPS));
                }
                b = (lines.join("\n") + "\n").into_bytes();
            }
            7 if !lines.is_empty() => {
                // a # TYPE line's type replaced, or one added before a random line
                let mut lines = lines;
                let i = rng.below(lines.len());
                if let Some(rest) = lines[i].strip_prefix("# TYPE ") {
                    let name = rest.split(' ').next().unwrap_or("").to_string();
                    lines[i] = format!("# TYPE {name} {}", rng.pick(TYPES));
                } else {
                    let name: String = lines[i]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    let name = match rng.below(3) {
                        0 => name,
                        1 => name
                            .trim_end_matches("_sum")
                            .trim_end_matches("_count")
                            .to_string(),
                        _ => name.trim_end_matches("_bucket").to_string(),
                    };
                    lines.insert(i, format!("# TYPE {name} {}", rng.pick(TYPES)));
                }
                b = (lines.join("\n") + "\n").into_bytes();
            }
            8 if lines.len() > 1 => {
                // a line duplicated elsewhere (HELP/TYPE twice, or after the samples)
                let mut lines = lines;
                let i = rng.below(lines.len());
                let j = rng.below(lines.len() + 1);
                let l = lines[i].clone();
                lines.insert(j, l);
                b = (lines.join("\n") + "\n").into_bytes();
            }
            9 if lines.len() > 1 => {
                let mut lines = lines;
                let i = rng.below(lines.len());
                let j = rng.below(lines.len());
                lines.swap(i, j);
                b = (lines.join("\n") + "\n").into_bytes();
            }
            _ => {
                if b.last() == Some(&b'\n') {
                    b.pop();
                } else {
                    b.push(b'\n');
                }
            }
        }
    }
    b
}

fn bases() -> Vec<String> {
    let mut out: Vec<String> = HANDWRITTEN.iter().map(|s| s.to_string()).collect();
    let fixtures = project_dir().join("fixtures/it");
    for e in std::fs::read_dir(&fixtures).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "txt") {
            out.push(std::fs::read_to_string(p).unwrap());
        }
    }
    match shared_dir() {
        Some(shared) => {
            let dir = shared.join("conformance/prometheus/textparse");
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            for p in files {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
        None => eprintln!("note: ../shared absent: the corpus is built from the fixtures only"),
    }
    out
}

struct Verdict {
    input: Vec<u8>,
    ours: Option<ParseError>,
    theirs: Option<String>,
}

#[test]
fn the_parser_agrees_with_promtool_on_a_mutation_corpus() {
    if !promtool_available() {
        eprintln!("skipping: promtool not found (apt-get install prometheus)");
        return;
    }
    let bases = bases();
    // the bases themselves are valid for both
    for (i, base) in bases.iter().enumerate() {
        assert!(
            tocsin_rejects(base.as_bytes()).is_none(),
            "base {i}: {:?}",
            tocsin_rejects(base.as_bytes())
        );
        assert!(
            promtool_rejects(base.as_bytes()).is_none(),
            "base {i} rejected by promtool"
        );
    }
    let mut rng = Rng(0x5eed_7e47_f0a7_2026);
    let inputs: Vec<Vec<u8>> = (0..CORPUS)
        .map(|i| {
            let base = &bases[i % bases.len()];
            let w = window(&mut rng, base);
            mutate(&mut rng, &w)
        })
        .collect();
    let chunk = inputs.len().div_ceil(PARALLEL);
    let verdicts: Vec<Verdict> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|input| Verdict {
                            input: input.clone(),
                            ours: tocsin_rejects(input),
                            theirs: promtool_rejects(input),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut agree = 0;
    let mut rejected = 0;
    let mut explained: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut unexplained = Vec::new();
    for v in &verdicts {
        if v.theirs.is_some() {
            rejected += 1;
        }
        if v.ours.is_some() == v.theirs.is_some() {
            agree += 1;
            continue;
        }
        match known_difference(&v.input, v.ours.as_ref(), v.theirs.as_deref()) {
            Some(name) => *explained.entry(name).or_default() += 1,
            None => unexplained.push(v),
        }
    }
    let total = verdicts.len();
    eprintln!(
        "promtool agreement: {agree}/{total} ({:.2}%); promtool rejected {rejected}; listed differences: {explained:?}; unexplained: {}",
        100.0 * agree as f64 / total as f64,
        unexplained.len()
    );
    for name in explained.keys() {
        assert!(DIFFERENCES.iter().any(|(n, _)| n == name));
    }
    assert!(
        total >= 2_000 && rejected > total / 4,
        "a corpus that tests rejection: {rejected}/{total}"
    );
    if !unexplained.is_empty() {
        let shown: Vec<String> = unexplained
            .iter()
            .take(8)
            .map(|v| {
                format!(
                    "input {:?}\n  tocsin: {}\n  promtool: {}",
                    String::from_utf8_lossy(&v.input),
                    v.ours.as_ref().map_or("accepted".into(), |e| e.to_string()),
                    v.theirs.as_deref().unwrap_or("accepted")
                )
            })
            .collect();
        panic!("{} disagreements:\n{}", unexplained.len(), shown.join("\n"));
    }
}

/// Every sample tocsin accepts from an input promtool accepts is the same count: the corpus's
/// accepted inputs parse to as many samples as lines that are samples (no line silently lost).
#[test]
fn accepted_mutations_lose_no_sample_line() {
    let mut rng = Rng(0x0dd_ba11);
    let bases = bases();
    for i in 0..500 {
        let w = window(&mut rng, &bases[i % bases.len()]);
        let input = mutate(&mut rng, &w);
        let Ok(text) = text_body(&input) else {
            continue;
        };
        let entries: Result<Vec<Entry>, _> = Parser::new(text).collect();
        let Ok(entries) = entries else { continue };
        let samples = entries
            .iter()
            .filter(|e| matches!(e, Entry::Sample(_)))
            .count();
        let lines = text
            .lines()
            .filter(|l| {
                let l = l.trim_start_matches([' ', '\t']);
                !l.is_empty() && !l.starts_with('#')
            })
            .count();
        assert_eq!(samples, lines, "{text:?}");
    }
}
