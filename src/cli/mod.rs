//! The command-line client (STUB, being written).
