//! The service catalogue: for now the APEx snapshot compiled in by `build.rs`
//! ([`bundled`]).

pub mod bundled;
