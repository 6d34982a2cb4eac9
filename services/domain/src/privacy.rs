//! Masking what identifies a citizen in text that leaves its place: a
//! phone number or an email typed into a request, a dead-lettered message,
//! an error that quotes its input.

/// Fields whose values are a citizen's name or contact, in the JSON the
/// platform receives (the intake topic, Open311 forms).
pub const CONTACT_FIELDS: &[&str] =
    &["citizen_name", "citizen_phone", "citizen_email", "first_name", "last_name", "phone", "email", "name"];

/// Phone numbers (seven digits or more, spaces and hyphens allowed, a
/// leading `+`) and the user part of email addresses, masked as `***`.
pub fn mask_contacts(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() || (chars[i] == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].is_ascii_digit() || (matches!(chars[j], ' ' | '-') && chars.get(j + 1).is_some_and(char::is_ascii_digit)))
            {
                j += 1;
            }
            let run: String = chars[i..j].iter().collect();
            let digits = run.chars().filter(char::is_ascii_digit).count();
            if digits >= 7 && !is_date(&run) && crate::TicketNumber::parse(&run).is_err() {
                out.push_str("***");
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
            continue;
        }
        if chars[i] == '@' {
            // user@host: the user part goes.
            let user = out.chars().rev().take_while(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')).count();
            let host_ok = chars.get(i + 1).is_some_and(|c| c.is_alphanumeric());
            if user > 0 && host_ok {
                for _ in 0..user {
                    out.pop();
                }
                out.push_str("***");
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// `2026-11-23` (a date, not a phone).
fn is_date(run: &str) -> bool {
    let parts: Vec<&str> = run.split('-').collect();
    matches!(parts.as_slice(), [y, m, d] if y.len() == 4 && (1..=2).contains(&m.len()) && (1..=2).contains(&d.len()))
}

/// The string values of a field in JSON-like text (whole or broken), as
/// byte ranges.
fn string_values(text: &str, field: &str) -> Vec<std::ops::Range<usize>> {
    let needle = format!("\"{field}\"");
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(&needle) {
        let at = from + found + needle.len();
        from = at;
        let rest = &text[at..];
        let skipped = rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r', ':']).len();
        if !rest[..skipped].contains(':') || !text[at + skipped..].starts_with('"') {
            continue;
        }
        let start = at + skipped + 1;
        let mut end = start;
        while end < bytes.len() && !(bytes[end] == b'"' && bytes[end - 1] != b'\\') {
            end += 1;
        }
        out.push(start..end);
    }
    out
}

/// JSON-like text (whole or broken) with the values of the contact fields
/// masked wherever they appear (a citizen often repeats their name in the
/// text), and phones and emails masked inside the free text (`text`,
/// `description`); ids and the rest are left as they are.
pub fn mask_json_contacts(text: &str) -> String {
    let values: Vec<String> = CONTACT_FIELDS.iter().flat_map(|f| string_values(text, f)).map(|r| text[r].to_owned()).collect();
    let mut out = mask_values(text, &values);
    for field in ["text", "description"] {
        // From the end, so the earlier ranges stay where they are.
        for r in string_values(&out, field).into_iter().rev() {
            let masked = mask_contacts(&out[r.clone()]);
            out.replace_range(r, &masked);
        }
    }
    out
}

/// `text` with every occurrence of the given values (a name, a phone)
/// replaced by `***`.
pub fn mask_values(text: &str, values: &[String]) -> String {
    let mut out = text.to_owned();
    let mut values: Vec<&String> = values.iter().filter(|v| v.trim().chars().count() >= 2 && v.as_str() != "***").collect();
    // Longer first, so a full name goes before a part of it.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        out = out.replace(v.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_emails_and_contact_fields_are_masked() {
        assert_eq!(mask_contacts("我的电话13800138000，请回电"), "我的电话***，请回电");
        assert_eq!(mask_contacts("call +86 138 0013 8000 or mail li.wei@example.cn"), "call *** or mail ***@example.cn");
        assert_eq!(mask_contacts("3号楼502室，漏水3天，2026-11-23"), "3号楼502室，漏水3天，2026-11-23", "short numbers and dates stay");
        assert_eq!(mask_contacts("工单20261123000001还没办"), "工单20261123000001还没办", "ticket numbers stay");
        assert_eq!(mask_contacts("138-0013-8000"), "***");
        let broken = r#"{"channel":"grid","external_id":"grid-2026-0043","citizen_name": "张三丰","citizen_phone":"13812345678","text":"我是张三丰，电话 139 1234 5678，漏水","lat":100"#;
        let masked = mask_json_contacts(broken);
        assert!(!masked.contains("张三丰") && !masked.contains("13812345678"), "{masked}");
        assert!(masked.contains(r#""citizen_name": "***""#) && masked.contains(r#""text":"我是***，电话 ***，漏水""#), "{masked}");
        assert!(masked.contains("grid-2026-0043"), "ids stay: {masked}");
        assert_eq!(mask_json_contacts(r#"{"name": "a \"quoted\" name"}"#), r#"{"name": "***"}"#);
    }
}
