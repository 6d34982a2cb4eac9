//! The mail the SMTP sink kept, read back.

use std::time::Duration;

use crate::*;

/// One email the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub raw: String,
}

/// Every email the SMTP server accepted for `to`.
pub fn mails_to(to: &str) -> Vec<Mail> {
    mails_to_since(to, std::time::UNIX_EPOCH)
}

/// The emails the SMTP server accepted for `to` at or after `since`.
pub fn mails_to_since(to: &str, since: std::time::SystemTime) -> Vec<Mail> {
    let since_ns = since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = &infra().maildir;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                // Named <accepted at, ns>-<n>.eml by the server.
                .filter(|p| {
                    let stem = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('-').next()).unwrap_or("0");
                    stem.parse::<u128>().is_ok_and(|ns| ns >= since_ns)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|raw| {
            let (head, body) = raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n"))?;
            let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default();
            let envelope = header("X-Envelope-To:");
            if !envelope.split(", ").any(|r| r == to) {
                return None;
            }
            Some(Mail { to: envelope, subject: header("Subject:"), body: decode_body(head, body), raw: raw.clone() })
        })
        .collect()
}

/// The text of a single-part body (lettre picks quoted-printable or base64 for non-ASCII).
pub(crate) fn decode_body(head: &str, body: &str) -> String {
    let enc =
        head.lines().find_map(|l| l.strip_prefix("Content-Transfer-Encoding:")).map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default();
    match enc.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(compact).unwrap_or_default()).into_owned()
        }
        "quoted-printable" => {
            String::from_utf8_lossy(&quoted_printable::decode(body, quoted_printable::ParseMode::Robust).unwrap_or_default()).into_owned()
        }
        _ => body.to_owned(),
    }
}

/// Waits until at least `n` emails reached `to`.
pub async fn wait_mails(to: &str, n: usize, within: Duration) -> Vec<Mail> {
    wait_mails_since(to, std::time::UNIX_EPOCH, n, within).await
}

/// Waits until at least `n` emails reached `to` at or after `since`.
pub async fn wait_mails_since(to: &str, since: std::time::SystemTime, n: usize, within: Duration) -> Vec<Mail> {
    eventually(&format!("{n} emails to {to}"), within, Duration::from_millis(50), || async move {
        let got = mails_to_since(to, since);
        if got.len() >= n { Ok(got) } else { Err(format!("{} of them", got.len())) }
    })
    .await
}
