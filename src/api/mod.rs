//! The HTTP API (see `docs/api.md`): lookup, change events, management and metrics, served on threads of
//! its own. [`server`] holds the routes; [`json`] the JSON shapes; [`metrics`] the Prometheus exposition.

pub mod json;
pub mod metrics;
pub mod registrants;
pub mod server;
pub mod webhook;
