//! Derivation of namespaces from exported class names.

/// Turns an export name into a namespace: `Counter` → `COUNTER`, `ChatRoom` →
/// `CHAT_ROOM`, `URLParser` → `URL_PARSER`, `chat-room` → `CHAT_ROOM`.
///
/// Letters and digits are upper-cased. A `_` goes before an upper-case letter
/// that follows a lower-case letter or a digit, and before the last capital
/// of an acronym that a lower-case letter follows. Any run of other
/// characters becomes one `_`; separators at either end are dropped. A name
/// with no letter or digit derives to the empty string.
pub fn export_name_to_namespace(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    let mut pending_separator = false;

    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            pending_separator = true;
            continue;
        }
        if !out.is_empty() && pending_separator {
            out.push('_');
        } else if !out.is_empty() && c.is_uppercase() {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_is_lower) {
                out.push('_');
            }
        }
        pending_separator = false;
        out.extend(c.to_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::export_name_to_namespace;

    #[test]
    fn derives_the_reference_table() {
        for (export, namespace) in [
            ("Counter", "COUNTER"),
            ("ChatRoom", "CHAT_ROOM"),
            ("URLParser", "URL_PARSER"),
            ("COUNTER", "COUNTER"),
            ("Chat_Room", "CHAT_ROOM"),
            ("chat-room", "CHAT_ROOM"),
            ("Counter2DView", "COUNTER2_D_VIEW"),
        ] {
            assert_eq!(export_name_to_namespace(export), namespace, "{export}");
        }
    }

    #[test]
    fn drops_separators_at_the_ends() {
        assert_eq!(export_name_to_namespace("__Room__"), "ROOM");
        assert_eq!(export_name_to_namespace("$"), "");
        assert_eq!(export_name_to_namespace("a--b"), "A_B");
    }
}
