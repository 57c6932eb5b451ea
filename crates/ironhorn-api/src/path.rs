//! URL path segments: names travel percent-encoded, so a name never changes a path's shape.

/// `text` percent-encoded for one URL path segment or query value (unreserved characters
/// stay as they are).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::path_segment;

    #[test]
    fn reserved_characters_are_escaped() {
        assert_eq!(path_segment("pvc-1.a_b~"), "pvc-1.a_b~");
        assert_eq!(path_segment("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    proptest! {
        #[test]
        fn a_segment_never_holds_a_separator(text in ".*") {
            let segment = path_segment(&text);
            prop_assert!(!segment.contains(['/', '?', '#', ' ']));
        }
    }
}
