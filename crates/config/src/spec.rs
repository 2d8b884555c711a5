//! TOML schema types.
