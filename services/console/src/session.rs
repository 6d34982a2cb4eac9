//! Sign-in sessions. The browser holds a random session id in an
//! `HttpOnly`, `SameSite=Strict` cookie; Redis holds, under the id's SHA-256
//! and for the session's lifetime, the operator's token (every backend call
//! is made with it), who it is bound to, and the CSRF token every form must
//! carry. Sessions live in Redis so any console replica serves any browser;
//! losing them only signs people out.

use axum::http::HeaderMap;
use rand::RngCore;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "whistle_session";
/// Before sign-in, the sign-in form's CSRF token lives in its own cookie.
pub const SIGNIN_COOKIE: &str = "whistle_signin";
pub const LANG_COOKIE: &str = "whistle_lang";

/// Who is signed in, with the token the backends are called with.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub token: String,
    /// platform | unit | agent
    pub kind: String,
    /// `city`, `county:<code>`, `street:<code>`, or the unit code.
    pub id: String,
    /// The platform whose desk serves this caller.
    pub platform: String,
    pub csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("kind", &self.kind).field("id", &self.id).field("platform", &self.platform).finish()
    }
}

impl Session {
    pub fn is_unit(&self) -> bool {
        self.kind == "unit"
    }

    /// A hotline agent: registers calls, has no desk.
    pub fn is_agent(&self) -> bool {
        self.kind == "agent"
    }

    /// `desk:<platform>` or `unit:<code>`, as logs and the page header name it.
    pub fn caller(&self) -> String {
        match self.kind.as_str() {
            "unit" => format!("unit:{}", self.id),
            "agent" => format!("agent:{}", self.id),
            _ => format!("desk:{}", self.id),
        }
    }
}

/// A fresh random token (session ids, CSRF tokens): 32 bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    whistle_runtime::config::same_secret(a.as_bytes(), b.as_bytes())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, the whole site;
/// `Secure` when the console is served over HTTPS.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

#[derive(Clone)]
pub struct Sessions {
    redis: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
}

impl Sessions {
    pub fn new(redis: ConnectionManager, prefix: &str, ttl_secs: u64) -> Self {
        Sessions { redis, prefix: format!("{prefix}console:session:"), ttl_secs }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    fn key(&self, id: &str) -> String {
        let h: String = Sha256::digest(id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{h}", self.prefix)
    }

    /// Starts a session; returns its id (for the cookie).
    pub async fn create(&self, session: &Session) -> redis::RedisResult<String> {
        let id = random_token();
        let json = serde_json::to_string(session).expect("a session serializes");
        let _: () = self.redis.clone().set_ex(self.key(&id), json, self.ttl_secs).await?;
        Ok(id)
    }

    pub async fn get(&self, id: &str) -> redis::RedisResult<Option<Session>> {
        let raw: Option<String> = self.redis.clone().get(self.key(id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    pub async fn end(&self, id: &str) -> redis::RedisResult<()> {
        self.redis.clone().del(self.key(id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_set_http_only_and_strict() {
        let mut h = HeaderMap::new();
        h.append(axum::http::header::COOKIE, "a=1; whistle_session=abc".parse().unwrap());
        h.append(axum::http::header::COOKIE, "whistle_lang=en".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, LANG_COOKIE).as_deref(), Some("en"));
        assert_eq!(cookie(&h, "nope"), None);
        let c = set_cookie(SESSION_COOKIE, "abc", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"), "{c}");
        assert_ne!(random_token(), random_token());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        let s = Session { token: "s3cret".into(), kind: "unit".into(), id: "u".into(), platform: "city".into(), csrf: "c".into() };
        assert!(!format!("{s:?}").contains("s3cret"), "the token never prints");
    }
}
