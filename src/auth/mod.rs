//! Backend authentication: where backend login tokens (refresh tokens) are kept.
//!
//! [`tokens`] is the token store over the OS keyring (Secret Service), with an opt-in
//! 0600 file store for machines without one.

pub mod tokens;
