//! The client side: what a user agent needs to register with a registrar and read its answers.
//!
//! - [`request`]: a bounded writer, REGISTERs (with the `Authorization` answering a challenge) and
//!   binding queries, and a template that writes a run of REGISTERs of one shape fast;
//! - [`response`]: a response's status, top-Via branch, CSeq, challenges and Contacts.
//!
//! Challenges are parsed and answered with [`digest`](crate::digest): [`Challenge`](crate::digest::Challenge),
//! [`ha2`](crate::digest::ha2), [`response_from_ha2`](crate::digest::response_from_ha2).

pub mod request;
pub mod response;
