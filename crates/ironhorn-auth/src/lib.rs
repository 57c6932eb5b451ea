//! Who may do what, without I/O: the roles and what each may call ([`role`]), password hashes
//! ([`password`], argon2id), API tokens and browser sessions, stored only as hashes
//! ([`secret`]), and how fast logins may be tried ([`limit`]). The manager keeps users, tokens
//! and sessions in its store and applies these rules to every request.

pub mod limit;
pub mod password;
pub mod role;
pub mod secret;

pub use role::{requirement, Requirement, Role};
