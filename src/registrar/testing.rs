//! REGISTERs for unit tests of the registrar's consumers (the change feed, the event hub, the webhook, the
//! queries): one request builder and one registrar-plus-feed "shard", instead of a copy in each test module.

use crossbeam_channel::Sender;

use super::{Now, Registrar, RegistrarConfig};
use crate::shard::changes::{ChangeFeed, ShardChanges};

/// The time every test registrar runs at.
pub const NOW_S: u64 = 1000;

/// A REGISTER for `sip:{user}@example.com` with `Contact: {contact}` (a header value, parameters allowed),
/// `Expires: {expires}` and `extra` header lines (each ending in CRLF).
pub fn register_message(user: &str, cseq: u32, contact: &str, expires: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-{user}-{cseq}\r\n\
         From: <sip:{user}@example.com>;tag=1\r\nTo: <sip:{user}@example.com>\r\nCall-ID: c-{user}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Hands `msg` to `reg` from 192.0.2.1:5060 at [`NOW_S`]; returns the reply.
pub fn handle(reg: &mut Registrar, msg: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let source = "192.0.2.1:5060".parse().expect("addr");
    let _ = reg.handle(msg.as_bytes(), source, Now::from_secs(NOW_S), &mut out);
    out
}

/// A registrar and its change feed into a channel, as a shard has them.
pub struct TestShard {
    pub reg: Registrar,
    pub feed: ChangeFeed,
    cseq: u32,
}

impl TestShard {
    pub fn new(id: usize, changes: Sender<ShardChanges>) -> Self {
        TestShard {
            reg: Registrar::new(RegistrarConfig::default(), Now::from_secs(NOW_S)),
            feed: ChangeFeed::new(id, Some(changes)),
            cseq: 0,
        }
    }

    /// Registers `<sip:{user}@192.0.2.1>` for `expires` seconds (0: unregisters it) and publishes the change.
    pub fn register(&mut self, user: &str, expires: u32) {
        self.register_unpublished(user, expires);
        self.publish();
    }

    /// Registers without publishing: the change waits in the registrar, to go out in one batch with others.
    pub fn register_unpublished(&mut self, user: &str, expires: u32) {
        self.cseq += 1;
        let contact = format!("<sip:{user}@192.0.2.1>");
        let msg = register_message(user, self.cseq, &contact, expires, "");
        let reply = handle(&mut self.reg, &msg);
        assert!(
            reply.starts_with(b"SIP/2.0 200"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }

    /// Hands the registrar's pending changes to the channel.
    pub fn publish(&mut self) {
        self.feed.publish(&mut self.reg);
    }
}
