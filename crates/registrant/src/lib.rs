//! corereg's registrant: corereg registers accounts (trunks, gateways) to upstream registrars, with
//! OpenSIPS's `uac_registrant` model.
//!
//! - [`account`]: a row with OpenSIPS's `registrant` columns, checked into an [`Account`];
//! - [`source`]: the rows from a TOML or CSV file or a SQLite table; bad rows reported and skipped;
//! - [`machine`]: one [`Registrant`] per account, a sans-IO state machine with `uac_registrant`'s
//!   states: responses, timeouts and commands in (with the time), datagrams, the next timer and state
//!   changes out;
//! - [`spread`]: when each registrant first registers, a pure function of its key.
//!
//! Nothing here does I/O (the SQLite source aside), reads a clock or starts a thread.

#![forbid(unsafe_code)]

pub mod account;
pub mod machine;
pub mod source;
pub mod spread;
mod wire;

pub use account::{Account, Password, RawRow, RowError, Target};
pub use machine::{Disposition, Effect, Registrant, Settings, State};
