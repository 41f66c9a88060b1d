//! Flags and TOML configuration.
