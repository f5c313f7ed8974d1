//! Text helpers shared by every layer that bounds what a guest or client sent.

/// The longest prefix of `text` of at most `bytes` bytes that ends on a char boundary.
pub fn prefix(text: &str, bytes: usize) -> &str {
    let mut cut = bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Refuses JSON text holding an integer literal that no 64-bit integer can hold: serde_json
/// would read it as a float, and a job would receive a different number than was sent.
/// Written by hand because it must see the literal as sent, which a parsed value no longer
/// shows (serde_json's `arbitrary_precision` would change every number's representation).
/// Numbers with a fraction or an exponent are floats as sent and pass.
pub fn check_integers(json: &str) -> Result<(), String> {
    let bytes = json.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            {
                i += 1;
            }
            let literal = &json[start..i];
            let integer = !literal.contains(['.', 'e', 'E']);
            if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                return Err(format!(
                    "the integer {} does not fit in 64 bits; send it as a string",
                    prefix(literal, 40)
                ));
            }
            continue;
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_past_64_bits_are_refused_wherever_they_are() {
        for ok in [
            r#"{"n": 18446744073709551615}"#,
            r#"{"n": -9223372036854775808}"#,
            r#"[1.5e300, 123456789012345678901234567890.0, 1E400]"#,
            r#"{"s": "18446744073709551616", "e": "\" 99999999999999999999"}"#,
        ] {
            assert_eq!(check_integers(ok), Ok(()), "{ok}");
        }
        for bad in [
            r#"{"n": 18446744073709551616}"#,
            r#"[1, {"deep": [-9223372036854775809]}]"#,
            "123456789012345678901234567890",
        ] {
            let err = check_integers(bad).expect_err(bad);
            assert!(err.contains("64 bits"), "{err}");
        }
    }
}
