//! API tokens and browser sessions: random secrets handed out once and stored only as their
//! SHA-256, compared in constant time. A token reads `ih_<id>_<secret>`: the id finds the
//! stored hash (and names the token in listings and the audit log), the secret proves it.
//! A session cookie has the same shape with `ihs_`; each session also carries a CSRF token
//! that mutating calls must echo in a header.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a secret.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` is the one `stored` (a [`digest`]) was made from, in constant time.
pub fn matches(secret: &str, stored: &str) -> bool {
    digest(secret).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Constant-time equality of two strings a client sends and the server holds (CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The credentials of an `Authorization: Bearer <credentials>` header value.
pub fn bearer(header_value: &str) -> Option<&str> {
    header_value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// What a token or session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Token,
    Session,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Token => "ih",
            Kind::Session => "ihs",
        }
    }
}

/// A secret just made: `text` goes to its holder once; `id` and `hash` are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub id: String,
    pub text: String,
    pub hash: String,
}

/// A new token or session: a 48-bit id and a 256-bit secret.
pub fn issue(kind: Kind) -> Result<Issued, getrandom::Error> {
    let id = hex(&random_bytes::<6>()?);
    let secret = hex(&random_bytes::<32>()?);
    Ok(Issued {
        text: format!("{}_{id}_{secret}", kind.prefix()),
        hash: digest(&secret),
        id,
    })
}

/// 256 random bits as 64 hex digits (the cluster secret).
pub fn new_secret() -> Result<String, getrandom::Error> {
    Ok(hex(&random_bytes::<32>()?))
}

/// A random CSRF token (not secret from its holder: it proves the request came from a page
/// that could read it).
pub fn csrf_token() -> Result<String, getrandom::Error> {
    new_secret()
}

/// The (id, secret) of a token or session text of `kind`; None when it is not one.
pub fn parse(kind: Kind, text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    let (id, secret) = rest.split_once('_')?;
    let hexish = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(id, 12) && hexish(secret, 64)).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_issued_token_parses_and_matches_its_stored_hash_only() {
        let t = issue(Kind::Token).unwrap();
        assert!(t.text.starts_with("ih_"));
        let (id, secret) = parse(Kind::Token, &t.text).unwrap();
        assert_eq!(id, t.id);
        assert!(matches(secret, &t.hash));
        assert!(!t.hash.contains(secret), "only the hash is kept");
        let other = issue(Kind::Token).unwrap();
        assert_ne!(other.text, t.text);
        assert!(!matches(secret, &other.hash));
        // A session is not a token, and the reverse.
        let s = issue(Kind::Session).unwrap();
        assert!(parse(Kind::Token, &s.text).is_none());
        assert!(parse(Kind::Session, &t.text).is_none());
        assert!(parse(Kind::Session, &s.text).is_some());
        assert_eq!(csrf_token().unwrap().len(), 64);
        assert_eq!(bearer("Bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,100}") {
            for kind in [Kind::Token, Kind::Session] {
                if let Some((id, secret)) = parse(kind, &text) {
                    prop_assert_eq!((id.len(), secret.len()), (12, 64));
                }
            }
            // A secret never matches a hash of something else.
            let other = digest(&format!("{}x", text));
            prop_assert!(!matches(&text, &other));
        }
    }
}
