//! Writing the registrar's responses: the dialog headers every reply copies, and the 200 OK that lists an
//! AoR's bindings (RFC 3261 §10.3 step 8).

use super::register::Refusal;
use super::{bindings, Exchange, Outcome, Registrar, ALLOW, SUPPORTED};
use crate::sip::header::has_option_tag;
use crate::sip::parse::{HeaderName, Message};
use crate::sip::response::ResponseWriter;
use crate::sip::scan::opaque;

impl Registrar {
    /// Cold: the error answers are rare, and a call to a cold function marks its branch unlikely, so the
    /// compiler lays the blocks that every REGISTER runs out together, in fewer cache lines.
    #[cold]
    #[inline(never)]
    pub(super) fn refuse(
        &mut self,
        refusal: Refusal,
        ex: Exchange<'_, '_>,
        out: &mut Vec<u8>,
        aor: &[u8],
    ) -> Outcome {
        let source = ex.source;
        tracing::debug!(%source, ?refusal, aor = %String::from_utf8_lossy(aor), "REGISTER refused");
        let status = match refusal {
            Refusal::BadRequest(_) | Refusal::OutOfOrder | Refusal::Retransmission => 400,
            Refusal::IntervalTooBrief => 423,
            Refusal::TooManyContacts403 => 403,
            Refusal::TooManyContacts503 | Refusal::StoreFull | Refusal::Unavailable => 503,
            Refusal::FirstHopLacksOutbound => 439,
            Refusal::BindingTooLarge => 413,
        };
        let min_expires = self.cfg.min_expires_s;
        let retry_after = self.cfg.retry_after_s;
        let mut w = self.writer(status, ex, out);
        match status {
            423 => {
                w.header_u64(b"Min-Expires", u64::from(min_expires));
            }
            503 => {
                w.header_u64(b"Retry-After", u64::from(retry_after));
            }
            _ => {}
        }
        w.finish();
        Outcome::Reply {
            status,
            bindings_changed: false,
        }
    }

    /// 200 OK listing every current binding of the AoR (`rec`) with its remaining expiry (§10.3 step 8).
    pub(super) fn write_ok(
        &mut self,
        ex: Exchange<'_, '_>,
        out: &mut Vec<u8>,
        rec: Option<bindings::AorIdx>,
        outbound: bool,
    ) {
        let Exchange {
            msg, source, now, ..
        } = ex;
        let now_s = now.unix_s();
        let echo_path = msg
            .all(HeaderName::Supported)
            .any(|v| has_option_tag(v, b"path"));
        let to_tag = self.to_tag(msg);
        let date = self.date.get(now_s);
        let mut w = ResponseWriter::start(out, 200);
        w.dialog_headers(msg, source, &to_tag, ex.top_via);
        if let Some(rec) = rec {
            // Current bindings only: one expired but not yet swept may still be stored (the paths that
            // answer from state without `register::purge_expired`, e.g. an authenticated retransmission).
            for (_, b) in self.store.bindings_of(rec) {
                if b.expires_at_s > now_s {
                    write_contact(w.buf(), b, now_s);
                }
            }
        }
        if echo_path {
            for p in msg.all(HeaderName::Path) {
                w.header(b"Path", p);
            }
        }
        if outbound {
            w.header(b"Require", b"outbound");
        }
        w.header(b"Date", date);
        w.header(b"Supported", SUPPORTED);
        if !self.cfg.server_name.is_empty() {
            w.header(b"Server", self.cfg.server_name.as_bytes());
        }
        w.finish();
    }

    pub(super) fn to_tag(&self, msg: &Message<'_>) -> [u8; 16] {
        let h = self
            .tag_hasher
            .hash_one(msg.first(HeaderName::CallId).unwrap_or(b""));
        hex16(h)
    }

    pub(super) fn writer<'o>(
        &mut self,
        status: u16,
        ex: Exchange<'_, '_>,
        out: &'o mut Vec<u8>,
    ) -> ResponseWriter<'o> {
        let Exchange {
            msg, source, now, ..
        } = ex;
        let to_tag = self.to_tag(msg);
        let mut w = ResponseWriter::start(out, status);
        w.dialog_headers(msg, source, &to_tag, ex.top_via);
        w.header(b"Date", self.date.get(now.unix_s()));
        if !self.cfg.server_name.is_empty() {
            w.header(b"Server", self.cfg.server_name.as_bytes());
        }
        w
    }

    /// A reply without bindings (errors, OPTIONS). Cold and out of line, like [`Registrar::refuse`].
    #[cold]
    #[inline(never)]
    pub(super) fn reply(
        &mut self,
        status: u16,
        ex: Exchange<'_, '_>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.writer(status, ex, out).finish();
        Outcome::Reply {
            status,
            bindings_changed: false,
        }
    }

    /// A reply carrying `Allow` (and `Supported`): OPTIONS' 200, 405 and 501.
    pub(super) fn reply_allow(
        &mut self,
        status: u16,
        ex: Exchange<'_, '_>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let mut w = self.writer(status, ex, out);
        w.header(b"Allow", ALLOW);
        w.header(b"Supported", SUPPORTED);
        w.finish();
        Outcome::Reply {
            status,
            bindings_changed: false,
        }
    }
}

/// Lower-case hex of `h`, most significant nibble first, without a table (a 512-byte pair table touched up to
/// 8 random cache lines per reply, and a shard's caches are cold between datagrams at a moderate rate) and
/// without a loop: the nibbles are spread one per byte with shifts and masks, and each byte becomes its digit
/// with one add for all eight (`'0'` plus 39 more where the nibble is above 9, `'a' - '0' - 10`).
fn hex16(h: u64) -> [u8; 16] {
    let mut tag = [0u8; 16];
    // Cannot truncate: the halves of a u64.
    let (hi, lo) = ((h >> 32) as u32, h as u32);
    tag[..8].copy_from_slice(&hex8(hi));
    tag[8..].copy_from_slice(&hex8(lo));
    tag
}

/// The 8 hex digits of `x`, most significant first.
///
/// `opaque` keeps the two calls of `to_tag` scalar: as two identical chains of word operations they were
/// merged into SSE code whose constants came from three scattered lines of the constant pool, fetched by
/// every REGISTER that starts with cold caches (see `sip::scan`).
#[inline(always)]
fn hex8(x: u32) -> [u8; 8] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = u64::from(x);
    // Nibble i of x (from the least significant) into byte i of v.
    let mut v = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    v = opaque(((v & 0x0000_ff00_0000_ff00) << 8) | (v & 0x0000_00ff_0000_00ff));
    v = opaque(((v & 0x00f0_00f0_00f0_00f0) << 4) | (v & 0x000f_000f_000f_000f));
    // 1 in each byte whose nibble is 10 or more (nibble + 6 carries into bit 4); no byte overflows.
    let letters = ((v + 6 * ONES) >> 4) & ONES;
    (v + u64::from(b'0') * ONES + letters * 39).to_be_bytes()
}

/// `Contact: <uri>;expires=N[;q=..][;+sip.instance=".."][;reg-id=N]`
fn write_contact(buf: &mut Vec<u8>, b: &bindings::Binding, now_s: u64) {
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(b"Contact: <");
    buf.extend_from_slice(b.contact());
    buf.extend_from_slice(b">;expires=");
    buf.extend_from_slice(num.format(b.expires_at_s.saturating_sub(now_s)).as_bytes());
    if let Some(q) = b.q {
        buf.extend_from_slice(b";q=");
        write_qvalue(buf, q);
    }
    if !b.instance().is_empty() {
        buf.extend_from_slice(b";+sip.instance=\"");
        buf.extend_from_slice(b.instance());
        buf.push(b'"');
    }
    if let Some(reg_id) = b.reg_id {
        buf.extend_from_slice(b";reg-id=");
        buf.extend_from_slice(num.format(reg_id.get()).as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
}

/// q in thousandths as the qvalue grammar writes it: `1`, `0.5`, `0.125`, `0`.
pub(super) fn write_qvalue(buf: &mut Vec<u8>, q: u16) {
    if q >= 1000 {
        buf.push(b'1');
        return;
    }
    buf.extend_from_slice(b"0");
    if q == 0 {
        return;
    }
    let digits = [
        b'0' + (q / 100) as u8,
        b'0' + (q / 10 % 10) as u8,
        b'0' + (q % 10) as u8,
    ];
    let len = if digits[2] != b'0' {
        3
    } else if digits[1] != b'0' {
        2
    } else {
        1
    };
    buf.push(b'.');
    buf.extend_from_slice(&digits[..len]);
}

#[cfg(test)]
mod tests {
    use super::hex16;

    #[test]
    fn hex16_spells_the_tag_like_format() {
        for h in [
            0u64,
            1,
            9,
            10,
            15,
            0xdead_beef,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            0x9a9a_a9a9_0f0f_f0f0,
        ] {
            assert_eq!(hex16(h), *format!("{h:016x}").as_bytes());
        }
        // Every nibble value in every position, over many values (xorshift).
        let mut h = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            assert_eq!(hex16(h), *format!("{h:016x}").as_bytes(), "{h:#x}");
        }
    }
}
