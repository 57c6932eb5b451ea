//! Password hashes: argon2id (version 0x13, 19 MiB, 2 passes, 1 lane: OWASP's first choice)
//! in the PHC string form, so the parameters travel with each hash and can be raised later
//! without breaking stored ones.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::secret::random_bytes;

/// The shortest password accepted.
pub const MIN_LEN: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password: at least {MIN_LEN} characters, please (a passphrase is best)")]
    TooShort,
    #[error("password: longer than 1024 bytes")]
    TooLong,
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Whether `password` may be set.
pub fn check(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > 1024 {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check(password)?;
    let salt_bytes: [u8; 16] = random_bytes().map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` is the one `phc` was made from; a damaged hash matches nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        // Salted: the same password hashes differently each time.
        assert_ne!(phc, hash("correct horse battery").unwrap());
    }

    #[test]
    fn weak_or_damaged_input_is_refused_without_panicking() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(check(&"x".repeat(2000)), Err(PasswordError::TooLong));
        for damaged in [
            "",
            "$argon2id$",
            "not a hash",
            "$argon2id$v=19$m=1,t=1,p=1$$",
        ] {
            assert!(!verify("whatever password", damaged), "{damaged}");
        }
    }
}
