//! Parser cost per REGISTER: framing alone (`parse_message_into`), and the registrar's whole per-request parsing
//! work (framing + top Via + From/To + CSeq + Expires + every Contact with its URI and params + the
//! canonical AoR of To).
//!
//! Run: `cargo bench --bench parse`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use corereg::sip::header::{
    parse_contact, parse_cseq, parse_name_addr, parse_u32, parse_via, split_list, ContactValue,
};
use std::mem::MaybeUninit;

use corereg::sip::parse::{parse_message_into, HeaderName, ParseLimits};
use corereg::sip::uri::{canonical_aor, parse_uri, AorBuf};

/// The SIPp scenario's REGISTER (benches/peers/sipp-register.xml): 10 headers, ~400 bytes.
const SIPP: &[u8] = b"REGISTER sip:192.0.2.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-24189-1-0\r\n\
Max-Forwards: 70\r\n\
From: <sip:user000123@example.com>;tag=24189SIPpTag001\r\n\
To: <sip:user000123@example.com>\r\n\
Call-ID: 1-24189@192.0.2.20\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:user000123@192.0.2.20:5061;transport=UDP>\r\n\
Expires: 3600\r\n\
User-Agent: sipp-reg-bench\r\n\
Content-Length: 0\r\n\r\n";

/// A softphone's REGISTER with outbound parameters: 12 headers, ~600 bytes.
const SOFTPHONE: &[u8] = b"REGISTER sip:registrar.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-524287-1---a5fc1f5b7b0c3d2e;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.20:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:7b0c3d2e-a5fc-4f5b-9b0c-3d2ea5fc1f5b>\"\r\n\
To: \"Alice\" <sip:alice@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=8a5c3f1e\r\n\
Call-ID: 9f3ZmE2YjQ1NDc0ZTk4Mjk5YTU1NmM3MmQ\r\n\
CSeq: 2 REGISTER\r\n\
Expires: 3600\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
User-Agent: Zoiper rv2.10.19.5\r\n\
Supported: path, outbound\r\n\
Content-Length: 0\r\n\r\n";

/// What the registrar extracts from one REGISTER; returns something derived from every part so nothing
/// is optimised away.
fn registrar_parsing_work(buf: &[u8], limits: &ParseLimits, aor: &mut AorBuf) -> usize {
    // Built in this frame, as the registrar does (no move of the ~1.6 KiB Message).
    let mut slot = MaybeUninit::uninit();
    let Ok(m) = parse_message_into(buf, limits, &mut slot) else {
        return 0;
    };
    let via = parse_via(
        split_list(m.first(HeaderName::Via).unwrap())
            .next()
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let from = parse_name_addr(m.first(HeaderName::From).unwrap()).unwrap();
    let to = parse_name_addr(m.first(HeaderName::To).unwrap()).unwrap();
    let to_uri = parse_uri(to.uri).unwrap();
    canonical_aor(&to_uri, aor).unwrap();
    let (cseq, _) = parse_cseq(m.first(HeaderName::CSeq).unwrap()).unwrap();
    let expires = parse_u32(m.first(HeaderName::Expires).unwrap()).unwrap();
    let mut work = via.branch().unwrap().len() + from.params.get(b"tag").flatten().unwrap().len();
    for value in m.all(HeaderName::Contact) {
        for element in split_list(value) {
            if let ContactValue::Addr(na) = parse_contact(element.unwrap()).unwrap() {
                let uri = parse_uri(na.uri).unwrap();
                let exp = na
                    .params
                    .get(b"expires")
                    .flatten()
                    .map(|e| parse_u32(e).unwrap())
                    .unwrap_or(expires);
                let instance = na
                    .params
                    .get(b"+sip.instance")
                    .flatten()
                    .map_or(0, <[u8]>::len);
                work += uri.host.len() + exp as usize + instance;
            }
        }
    }
    work + aor.as_bytes().len() + cseq as usize
}

fn benches(c: &mut Criterion) {
    let limits = ParseLimits::default();
    let mut aor = AorBuf::default();
    for (name, msg) in [("sipp", SIPP), ("softphone", SOFTPHONE)] {
        let mut group = c.benchmark_group("register");
        group.throughput(Throughput::Bytes(msg.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_message", name), msg, |b, msg| {
            b.iter(|| {
                let mut slot = MaybeUninit::uninit();
                let parsed = parse_message_into(black_box(msg), &limits, &mut slot);
                black_box(parsed.map_or(0, |m| m.headers().len()))
            })
        });
        group.bench_with_input(
            BenchmarkId::new("parse_message+contact+canonical_aor", name),
            msg,
            |b, msg| {
                b.iter(|| black_box(registrar_parsing_work(black_box(msg), &limits, &mut aor)))
            },
        );
        group.finish();
    }
}

criterion_group!(parse, benches);
criterion_main!(parse);
