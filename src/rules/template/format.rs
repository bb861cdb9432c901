//! Go's number formatting (`%v`, `%g`, `printf`) and Prometheus's `humanize*` functions, so
//! templates print exactly what Prometheus prints.

use std::fmt::Write;

use super::render::Val;

/// Go's `%v` of a float64 (`strconv.FormatFloat(v, 'g', -1, 64)`): shortest digits, exponent
/// form when the exponent is below -4 or at least 6, as `{{ $value }}` prints 1234567 as
/// `1.234567e+06` in Prometheus (checked with promtool).
pub fn go_float_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let exp = v.abs().log10().floor() as i32;
    let sci = format!("{v:e}");
    let real_exp: i32 = sci
        .split('e')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(exp);
    if !(-4..6).contains(&real_exp) {
        go_exp(&sci)
    } else {
        format!("{v}")
    }
}

/// Rust's `1.5e-7` as Go's `1.5e-07`.
pub(super) fn go_exp(sci: &str) -> String {
    let (m, e) = sci.split_once('e').unwrap_or((sci, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let sign = if e < 0 { '-' } else { '+' };
    format!("{m}e{sign}{:02}", e.abs())
}

/// Go's `%.Ng` (`strconv.FormatFloat(v, 'g', N, 64)`): N significant digits, trailing zeros
/// removed, exponent form when the exponent is below -4 or at least N.
pub fn go_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let prec = prec.max(1);
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{:.*e}", prec - 1, v);
    let (mant, e) = sci.split_once('e').expect("exponent");
    let e: i32 = e.parse().expect("exponent digits");
    if e < -4 || e >= prec as i32 {
        let mant = if mant.contains('.') {
            mant.trim_end_matches('0').trim_end_matches('.')
        } else {
            mant
        };
        go_exp(&format!("{mant}e{e}"))
    } else {
        let decimals = (prec as i32 - 1 - e).max(0) as usize;
        let s = format!("{:.*}", decimals, v);
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

pub(super) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        (v, prefix) = below_one(v);
    }
    format!("{}{prefix}", go_g(v, 4))
}

/// `v` (|v| < 1) scaled by thousands until it is at least 1, and the SI prefix that says so
/// (`m`, `u`, `n`, … as Prometheus's `humanize` and `humanizeDuration` write them).
fn below_one(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

pub(super) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

pub(super) fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_g(v, 4));
    }
    let (v, prefix) = below_one(v);
    format!("{}{prefix}s", go_g(v, 4))
}

/// Go's `fmt.Sprint`: operands joined, with a space between two that are not strings.
pub(super) fn go_sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.print());
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q %x %t %%` with flags
/// (`-`, `+`, `0`, space), width and precision.
pub(super) fn go_printf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = format.chars().peekable();
    let mut ai = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = it.peek() {
            if "-+0 #".contains(f) {
                flags.push(f);
                it.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let body = match (verb, arg) {
            ('s' | 'v', Val::Num(n)) if verb == 'v' => go_float_v(*n),
            ('s' | 'v', a) => {
                let s = a.print();
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            ('q', a) => format!("{:?}", a.print()),
            ('t', Val::Bool(b)) => b.to_string(),
            ('d', a) => match a.num() {
                Ok(n) if n.fract() == 0.0 && n.is_finite() => {
                    let s = format!("{}", n as i64);
                    if flags.contains('+') && n >= 0.0 {
                        format!("+{s}")
                    } else {
                        s
                    }
                }
                _ => format!("%!d(float64={})", a.print()),
            },
            ('x' | 'X', a) => match a {
                Val::Str(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                a => match a.num() {
                    Ok(n) if n.fract() == 0.0 => format!("{:x}", n as i64),
                    _ => format!("%!x({})", a.print()),
                },
            },
            ('f' | 'F' | 'e' | 'g', a) => match a.num() {
                Ok(n) => {
                    let s = match verb {
                        'e' => {
                            if n.is_finite() {
                                go_exp(&format!("{:.*e}", prec.unwrap_or(6), n))
                            } else {
                                go_g(n, 1)
                            }
                        }
                        'g' => match prec {
                            Some(p) => go_g(n, p),
                            None => go_float_v(n),
                        },
                        _ => {
                            if n.is_finite() {
                                format!("{:.*}", prec.unwrap_or(6), n)
                            } else {
                                go_g(n, 1)
                            }
                        }
                    };
                    if flags.contains('+') && n >= 0.0 && !s.starts_with('+') {
                        format!("+{s}")
                    } else {
                        s
                    }
                }
                Err(_) => format!("%!{verb}(string={})", a.print()),
            },
            (v, a) => format!("%!{v}({})", a.print()),
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len < w {
            let pad = w - len;
            if flags.contains('-') {
                out.push_str(&body);
                out.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && !matches!(arg, Val::Str(_)) {
                let (sign, digits) = match body.strip_prefix('-') {
                    Some(d) => ("-", d),
                    None => ("", body.as_str()),
                };
                out.push_str(sign);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
    }
    if ai < args.len() {
        let extra: Vec<String> = args[ai..].iter().map(Val::print).collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}
