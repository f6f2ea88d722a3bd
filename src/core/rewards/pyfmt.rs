//! The few Python built-ins the scorers lean on: `float(str)` and `repr(str)` (from the Python value
//! semantics in `pyliteral`) and `round(x, ndigits)`.

/// Python `float(s)` for a `str` argument (`None` where Python raises `ValueError`); the
/// implementation lives with the other Python value semantics in [`crate::core::pyliteral`].
pub fn py_float(s: &str) -> Option<f64> {
    crate::core::pyliteral::py_float_from_str(s)
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

/// Python `repr(s)` for a `str` (see [`crate::core::pyliteral::str_repr`]).
pub fn py_repr_str(s: &str) -> String {
    crate::core::pyliteral::str_repr(s)
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
