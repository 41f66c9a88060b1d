//! The typical REGISTER used by the core's benchmark, the allocation test and the profiling example
//! (included by `#[path]`: benches, tests and examples are separate crates).

/// A SIPp-like REGISTER for AoR `u<user>@example.com` with one UDP contact and `Expires` 3600 as a param.
pub fn sample_register(user: u32, cseq: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{cseq}x{user};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{user}@example.com>;tag=a73kszlfl\r\n\
         To: <sip:u{user}@example.com>\r\n\
         Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.7-{user}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:u{user}@192.0.2.7:5060;transport=udp>;expires=3600\r\n\
         User-Agent: corereg-bench/1.0\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}
