//! Text helpers shared by every layer that bounds what a guest or client sent.

/// The longest prefix of `text` of at most `bytes` bytes that ends on a char boundary.
pub fn prefix(text: &str, bytes: usize) -> &str {
    let mut cut = bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}
