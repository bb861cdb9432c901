//! Error formatting shared by the modules that report other crates' errors (reqwest, lettre),
//! whose `Display` leaves the cause to the source chain.

/// An error and its causes, joined by `: `: `error sending request: client error (Connect):
/// tcp connect error: Connection refused (os error 111)`. A cause whose text the previous link's
/// text already ends with is skipped (wrappers that print their cause would repeat it).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut previous = out.clone();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !previous.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        previous = text;
        source = cause.source();
    }
    out
}

/// The candidate closest to `word` by edit distance (Levenshtein, over chars), if it is close
/// enough to be a typo: at most 1 edit for words up to 4 chars, 2 up to 8, 3 beyond; ties go to
/// the first candidate. For "unknown function rte, did you mean rate". Words over 64 chars are
/// not compared (bounded work for any input).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w: Vec<char> = word.chars().collect();
    if w.is_empty() || w.len() > 64 {
        return None;
    }
    let limit = match w.len() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == word {
            return None;
        }
        let d = levenshtein(&w, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// serde's message for an unknown field or enum value (``unknown field `group_wiat`, expected one
/// of `receiver`, `group_by`, …``), with the nearest expected name added: ``…, did you mean
/// `group_wait`?``. Any other message is returned as it is.
pub fn suggest_expected(message: &str) -> String {
    let Some(start) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.find(p).map(|i| i + p.len()))
    else {
        return message.to_string();
    };
    let Some(len) = message[start..].find('`') else {
        return message.to_string();
    };
    let word = &message[start..start + len];
    let rest = &message[start + len + 1..];
    let Some(expected) = rest
        .find("expected ")
        .map(|i| &rest[i + "expected ".len()..])
    else {
        return message.to_string();
    };
    // serde writes ``one of `a`, `b` `` or `` `a` or `b` ``; serde-saphyr drops the backquotes
    let list = expected.strip_prefix("one of ").unwrap_or(expected);
    let candidates = list
        .split(", ")
        .flat_map(|c| c.split(" or "))
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty() && !c.contains(' '));
    match nearest(word, candidates) {
        Some(near) => format!("{message}, did you mean `{near}`?"),
        None => message.to_string(),
    }
}

fn levenshtein(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().take(a.len() + 4).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_suggests_a_typo_fix_and_nothing_far() {
        let names = ["rate", "irate", "increase", "humanize", "humanize1024"];
        assert_eq!(nearest("rte", names), Some("rate"));
        assert_eq!(nearest("increse", names), Some("increase"));
        assert_eq!(nearest("humanze", names), Some("humanize"));
        assert_eq!(nearest("xyz", names), None);
        assert_eq!(
            nearest("rate", names),
            None,
            "an exact name needs no suggestion"
        );
        assert_eq!(nearest(&"r".repeat(10_000), names), None);
    }

    #[test]
    fn serde_unknown_names_get_the_nearest_expected_one() {
        assert_eq!(
            suggest_expected(
                "unknown field `group_wiat`, expected one of `receiver`, `group_by`, `group_wait`"
            ),
            "unknown field `group_wiat`, expected one of `receiver`, `group_by`, `group_wait`, \
             did you mean `group_wait`?"
        );
        assert_eq!(
            suggest_expected("unknown variant `jsn`, expected `text` or `json`"),
            "unknown variant `jsn`, expected `text` or `json`, did you mean `json`?"
        );
        // serde-saphyr's form, without backquotes around the expected names
        assert_eq!(
            suggest_expected("unknown variant `JSON`, expected one of text, json"),
            "unknown variant `JSON`, expected one of text, json"
        );
        assert_eq!(
            suggest_expected("unknown field `group_wiat`, expected one of receiver, group_wait"),
            "unknown field `group_wiat`, expected one of receiver, group_wait, did you mean `group_wait`?"
        );
        // nothing close, or not such a message: unchanged
        for m in [
            "unknown field `zzzzzz`, expected `a` or `b`",
            "invalid type: integer `3`, expected a string",
            "unknown field `x`, there are no fields",
            "unknown field `unterminated",
        ] {
            assert_eq!(suggest_expected(m), m);
        }
    }

    /// An error with a fixed text and an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn e(links: &[&'static str]) -> E {
        links
            .iter()
            .rev()
            .fold(None, |cause, text| Some(E(text, cause.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn causes_are_joined_and_repeats_skipped() {
        let check = |links: &[&'static str], want: &str| assert_eq!(chain(&e(links)), want);
        check(&["alone"], "alone");
        check(
            &["request failed", "connect", "refused"],
            "request failed: connect: refused",
        );
        // a wrapper that prints its cause: the cause is not repeated
        check(
            &["tls: bad certificate", "bad certificate"],
            "tls: bad certificate",
        );
        // skipped only at the end of the previous link, not anywhere in it
        check(&["refused here", "refused"], "refused here: refused");
        // compared with the previous link even when that one was skipped
        check(&["a: b: c", "b: c", "c", "d"], "a: b: c: d");
    }
}
