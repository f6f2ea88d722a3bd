//! The few Python built-ins the scorers lean on, reproduced exactly: `float(str)`,
//! `round(x, ndigits)`, `str.strip()`, and `repr(str)` (used when a scorer stringifies a list).

use crate::core::prompts::PY_WS;

/// Python `float(s)` for a `str` argument: surrounding whitespace, optional sign, decimal digits
/// with single underscores between digits, optional fraction and exponent, or
/// `inf`/`infinity`/`nan` in any case. `None` where Python raises `ValueError`.
pub fn py_float(s: &str) -> Option<f64> {
    let t = s.trim_matches(PY_WS);
    let (sign, body) = match t.as_bytes().first() {
        Some(b'+') => (1.0, &t[1..]),
        Some(b'-') => (-1.0, &t[1..]),
        _ => (1.0, t),
    };
    let lower = body.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    // Validate the decimal grammar with underscores only between digits.
    let b = body.as_bytes();
    let mut cleaned = String::with_capacity(b.len());
    let mut i = 0;
    let digits = |i: &mut usize, out: &mut String| -> bool {
        let start = *i;
        while *i < b.len() {
            if b[*i].is_ascii_digit() {
                out.push(b[*i] as char);
                *i += 1;
            } else if b[*i] == b'_' && *i > start && *i + 1 < b.len() && b[*i + 1].is_ascii_digit() && b[*i - 1].is_ascii_digit() {
                *i += 1;
            } else {
                break;
            }
        }
        *i > start
    };
    let int_part = digits(&mut i, &mut cleaned);
    let mut frac_part = false;
    if i < b.len() && b[i] == b'.' {
        cleaned.push('.');
        i += 1;
        frac_part = digits(&mut i, &mut cleaned);
    }
    if !int_part && !frac_part {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        cleaned.push('e');
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            cleaned.push(b[i] as char);
            i += 1;
        }
        if !digits(&mut i, &mut cleaned) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    cleaned.parse::<f64>().ok().map(|v| sign * v)
}

/// Python `round(x, ndigits)` for floats: the correctly rounded decimal value (ties to even on
/// the exact binary value), returned as the nearest double.
pub fn py_round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let s = format!("{:.*}", ndigits, x);
    s.parse::<f64>().unwrap_or(x)
}

fn is_py_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() {
        return false;
    }
    // Zs (other than space), Zl, Zp, the common Cf characters, surrogates/private use.
    !matches!(u,
        0xA0 | 0x1680 | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x2064 | 0x2066..=0x206F | 0x3000
        | 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xE0001 | 0xE0020..=0xE007F | 0xF0000..=0x10FFFF)
}

/// Python `repr(s)` for a `str`.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_py_printable(c) => out.push(c),
            c => {
                let u = c as u32;
                if u < 0x100 {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u < 0x10000 {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_grammar() {
        assert_eq!(py_float(" 12 "), Some(12.0));
        assert_eq!(py_float("1_000.5"), Some(1000.5));
        assert_eq!(py_float("-.5"), Some(-0.5));
        assert_eq!(py_float("5."), Some(5.0));
        assert_eq!(py_float("1e3"), Some(1000.0));
        assert_eq!(py_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(py_float("NaN").unwrap().is_nan());
        for bad in ["", ".", "1__0", "_1", "1_", "1e", "0x10", "1,200", "12a", "e5", "1_.5", "--1"] {
            assert_eq!(py_float(bad), None, "{bad}");
        }
    }

    #[test]
    #[allow(clippy::approx_constant)]
    fn round_is_python_round() {
        assert_eq!(py_round(2.675, 2), 2.67);
        assert_eq!(py_round(0.125, 2), 0.12);
        assert_eq!(py_round(0.375, 2), 0.38);
        assert_eq!(py_round(-1.005, 2), -1.0);
        assert_eq!(py_round(3.14159, 2), 3.14);
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr_str("abc"), "'abc'");
        assert_eq!(py_repr_str("it's"), "\"it's\"");
        assert_eq!(py_repr_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr_str("x\ny\\"), "'x\\ny\\\\'");
        assert_eq!(py_repr_str("\u{7}\u{a0}é\u{2028}"), "'\\x07\\xa0é\\u2028'");
    }
}
