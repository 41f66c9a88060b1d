//! The typical REGISTER used by the core's benchmark, the allocation test and the profiling example
//! (included by `#[path]`: benches, tests and examples are separate crates).

/// A SIPp-like REGISTER for AoR `u<user>@example.com` with one UDP contact and `Expires` 3600 as a param.
pub fn sample_register(user: u32, cseq: u32) -> Vec<u8> {
    device_register(user, 0, cseq)
}

/// The same REGISTER sent by device number `device` of the user (0 is [`sample_register`]'s): its own
/// contact port and Call-ID, so for the registrar it is another binding of the AoR.
#[allow(dead_code)] // not every including crate uses it
pub fn device_register(user: u32, device: u32, cseq: u32) -> Vec<u8> {
    let port = 5060 + device;
    let call_id_prefix = if device == 0 {
        String::new()
    } else {
        format!("d{device}-")
    };
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{cseq}x{user};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{user}@example.com>;tag=a73kszlfl\r\n\
         To: <sip:u{user}@example.com>\r\n\
         Call-ID: {call_id_prefix}1j9FpLxk3uxtm8tn@192.0.2.7-{user}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:u{user}@192.0.2.7:{port};transport=udp>;expires=3600\r\n\
         User-Agent: corereg-bench/1.0\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}
