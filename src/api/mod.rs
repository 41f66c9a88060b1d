//! The HTTP API (see `docs/api.md`).

pub mod json;
