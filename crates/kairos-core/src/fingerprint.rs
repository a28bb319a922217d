//! Error fingerprints: an error text with what varies between occurrences of one fault
//! (numbers, UUIDs, hex ids, quoted values) replaced by placeholders, so dead jobs that
//! failed the same way group together (`connect to 10.0.0.7:5432 timed out after 30s`
//! and `… 10.0.0.9:5432 … 31s` are one group).

/// Longest error text read, in bytes (the rest cannot change the group much, and a
/// fingerprint is computed for many jobs at once).
pub const MAX_FINGERPRINT_INPUT: usize = 1024;

/// `error`'s fingerprint: each UUID becomes `<uuid>`, each hex id (8 or more hex digits
/// with a digit and a letter among them, or `0x…`) `<hex>`, each run of digits `<n>`,
/// each quoted value (`"…"`, `'…'`, `` `…` ``) `"<v>"`; whitespace runs become one
/// space.
pub fn fingerprint(error: &str) -> String {
    let mut cut = error.len().min(MAX_FINGERPRINT_INPUT);
    while !error.is_char_boundary(cut) {
        cut -= 1;
    }
    let text = &error[..cut];
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if matches!(b, b'"' | b'\'' | b'`') {
            // A quote that closes within the text; an apostrophe inside a word is not one.
            let opens = b != b'\'' || i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
            if let Some(len) = text[i + 1..].find(b as char).filter(|_| opens) {
                out.push_str("\"<v>\"");
                i += len + 2;
                continue;
            }
        }
        if b.is_ascii_alphanumeric() {
            let run = bytes[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            if is_uuid(&bytes[i..]) {
                out.push_str("<uuid>");
                i += 36;
                continue;
            }
            let word = &text[i..i + run];
            out.push_str(&word_print(word));
            i += run;
            continue;
        }
        if b.is_ascii_whitespace() {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(' ');
            continue;
        }
        // Any other character as it is (whole, when it is not ASCII).
        let ch = text[i..].chars().next().expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out.trim().to_string()
}

/// A word (ASCII letters and digits) with its variable parts replaced.
fn word_print(word: &str) -> String {
    let hex_digits = |s: &str| s.bytes().all(|c| c.is_ascii_hexdigit());
    if word
        .strip_prefix("0x")
        .is_some_and(|r| !r.is_empty() && hex_digits(r))
    {
        return "<hex>".to_string();
    }
    let has_digit = word.bytes().any(|c| c.is_ascii_digit());
    let has_letter = word.bytes().any(|c| c.is_ascii_alphabetic());
    if word.len() >= 8 && hex_digits(word) && has_digit && has_letter {
        return "<hex>".to_string();
    }
    if !has_digit {
        return word.to_string();
    }
    // Digits runs inside a word (`worker7`, `30s`, `503`) become `<n>`.
    let mut out = String::new();
    let mut in_digits = false;
    for c in word.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str("<n>");
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Whether `b` starts with a UUID in its textual form (8-4-4-4-12 hex digits).
fn is_uuid(b: &[u8]) -> bool {
    if b.len() < 36 {
        return false;
    }
    let shape_ok = b[..36].iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    shape_ok && b.get(36).is_none_or(|c| !c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn what_varies_is_replaced() {
        assert_eq!(
            fingerprint("connect to 10.0.0.7:5432 timed out after 30s"),
            "connect to <n>.<n>.<n>.<n>:<n> timed out after <n>s"
        );
        assert_eq!(
            fingerprint("job 0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b failed"),
            "job <uuid> failed"
        );
        assert_eq!(
            fingerprint("commit deadbeef12 missing, object 0x1F2e"),
            "commit <hex> missing, object <hex>"
        );
        assert_eq!(
            fingerprint(r#"no user "alice" in 'eu-west' (`users`)"#),
            r#"no user "<v>" in "<v>" ("<v>")"#
        );
        assert_eq!(
            fingerprint("  HTTP   503\n\tfrom upstream "),
            "HTTP <n> from upstream"
        );
    }

    #[test]
    fn occurrences_of_one_fault_share_a_fingerprint() {
        let a = fingerprint(r#"payment 4711 declined: card "4242" expired at 2026-11-30"#);
        let b = fingerprint(r#"payment 99 declined: card "1881" expired at 2026-12-01"#);
        assert_eq!(a, b);
        assert_ne!(a, fingerprint("payment 99 refused"));
    }

    #[test]
    fn words_and_apostrophes_stay() {
        assert_eq!(
            fingerprint("can't reach the server"),
            "can't reach the server"
        );
        assert_eq!(fingerprint("deadline exceeded"), "deadline exceeded");
        assert_eq!(
            fingerprint("décodage échoué: 3 octets"),
            "décodage échoué: <n> octets"
        );
    }

    #[test]
    fn long_texts_are_cut_on_a_character() {
        let long = "é".repeat(2000);
        let f = fingerprint(&long);
        assert!(f.len() <= super::MAX_FINGERPRINT_INPUT);
        assert!(f.chars().all(|c| c == 'é'));
    }
}
