//! What of a message may be kept where people read it (the dead-letter
//! topic, logs): the citizen's name, phone and email masked, the rest as it
//! was, so the message can still be understood and replayed by hand.

use prost::Message;
use whistle_domain::privacy::{mask_contacts, mask_json_contacts, mask_values};
use whistle_proto::v1 as pb;

/// A message's payload with the citizen's contact masked: a ticket event's
/// contact fields, a JSON request's contact fields, and phone numbers and
/// emails in any text. Bytes that are neither keep their length (digit runs
/// become `*`), so a binary frame stays a frame.
pub fn payload(bytes: &[u8]) -> Vec<u8> {
    if let Ok(mut e) = pb::TicketEvent::decode(bytes)
        && let Some(pb::ticket_event::Body::Received(r)) = e.body.as_mut()
        && r.contact.as_ref().is_some_and(|c| !c.name.is_empty() || !c.phone.is_empty() || !c.email.is_empty())
    {
        let mut known = Vec::new();
        if let Some(c) = r.contact.as_mut() {
            for v in [&mut c.name, &mut c.phone, &mut c.email] {
                if !v.is_empty() {
                    known.push(std::mem::replace(v, "***".into()));
                }
            }
        }
        // The citizen may have written their name or number in the text too.
        r.text = mask_contacts(&mask_values(&r.text, &known));
        return e.encode_to_vec();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => mask_json_contacts(text).into_bytes(),
        Err(_) => digits_in_bytes(bytes),
    }
}

/// A reason or log text with contacts masked (it may quote a JSON input,
/// or a phone on its own).
pub fn text(s: &str) -> String {
    mask_contacts(&mask_json_contacts(s))
}

fn digits_in_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < out.len() {
        if out[i].is_ascii_digit() {
            let start = i;
            while i < out.len()
                && (out[i].is_ascii_digit() || (matches!(out[i], b' ' | b'-') && out.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            if out[start..i].iter().filter(|b| b.is_ascii_digit()).count() >= 7 {
                out[start..i].fill(b'*');
            }
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_masked_and_the_rest_kept() {
        let json =
            br#"{"channel":"grid","external_id":"g-1","text":"lamp","citizen_name":"Zhang San","citizen_phone":"13812345678","lat":100}"#;
        let out = String::from_utf8(payload(json)).unwrap();
        assert!(!out.contains("Zhang San") && !out.contains("13812345678") && out.contains(r#""lat":100"#), "{out}");
        let binary = b"\xff\xfe phone 13812345678 \x00";
        let out = payload(binary);
        assert_eq!(out.len(), binary.len());
        assert!(!String::from_utf8_lossy(&out).contains("13812345678"));
        let garbage = b"\x08\x96\x01 this is not a ticket event \xff\xfe";
        assert_eq!(payload(garbage), garbage.to_vec(), "nothing to mask, nothing changed");
        assert_eq!(text("invalid type: integer `13812345678`"), "invalid type: integer `***`");
    }
}
