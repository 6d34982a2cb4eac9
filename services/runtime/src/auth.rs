//! Callers of the desks and the revisit queue: every call presents a bearer
//! token bound to a platform, a unit or a revisit agent. Tokens are configured as SHA-256 hashes, so the config never holds
//! them in clear, and nothing here prints them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tonic::Status;
use whistle_domain::access::Caller;
use whistle_domain::{PlatformId, UnitCode};

/// One configured token: who it is bound to and the hex SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// `city`, `county:<code>`, `street:<code>`, `unit:<code>` or `agent:<id>`.
    pub caller: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<[u8; 32], Caller>);

/// The hex SHA-256 of a token, as configured.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_caller(s: &str) -> whistle_domain::Result<Caller> {
    if let Some(u) = s.strip_prefix("unit:") {
        return Ok(Caller::Unit(UnitCode::parse(u)?));
    }
    if let Some(a) = s.strip_prefix("agent:") {
        if a.is_empty() || a.len() > 64 || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Err(whistle_domain::Error::invalid("caller", format!("agent id {a:?}: letters, digits, - _ . only")));
        }
        return Ok(Caller::Agent(a.to_owned()));
    }
    Ok(Caller::Platform(PlatformId::parse(s)?))
}

impl Tokens {
    /// `section` names the config list in errors (`dispatcher.tokens`).
    pub fn new(section: &str, entries: &[TokenEntry]) -> crate::Result<Self> {
        let mut map = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let bad = |what: String| crate::Error::Config(format!("{section}[{i}]{what}"));
            let caller = parse_caller(&e.caller).map_err(|err| bad(format!(".caller: {err}")))?;
            let bytes: Vec<u8> = (0..e.sha256.len())
                .step_by(2)
                .map(|j| e.sha256.get(j..j + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(".sha256: not hex".into()))?;
            let hash: [u8; 32] = bytes.try_into().map_err(|_| bad(".sha256: not 32 bytes of hex".into()))?;
            if map.insert(hash, caller).is_some() {
                return Err(bad(": the same token is configured twice".into()));
            }
        }
        Ok(Tokens(map))
    }

    /// The caller a request's `authorization: Bearer <token>` names.
    pub fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        let header =
            metadata.get("authorization").ok_or_else(|| Status::unauthenticated("no token: send `authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("the authorization header must be `Bearer <token>`"))?;
        let hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        self.0.get(&hash).cloned().ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resolve_to_their_callers_and_never_print() {
        let tokens = Tokens::new(
            "t",
            &[
                TokenEntry { caller: "unit:city-water".into(), sha256: hash_token("s3cret-water") },
                TokenEntry { caller: "street:dc-jingshan".into(), sha256: hash_token("s3cret-street") },
            ],
        )
        .unwrap();
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("authorization", "Bearer s3cret-water".parse().unwrap());
        assert_eq!(tokens.caller(&md).unwrap(), Caller::Unit(UnitCode::parse("city-water").unwrap()));
        md.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(tokens.caller(&md).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(!format!("{tokens:?}").contains("s3cret"));
        assert!(
            Tokens::new("t", &[TokenEntry { caller: "town:x".into(), sha256: hash_token("a") }])
                .unwrap_err()
                .to_string()
                .contains("caller")
        );
    }
}
