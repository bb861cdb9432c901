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

#[cfg(test)]
mod tests {
    use super::*;

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
