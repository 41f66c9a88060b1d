//! The registrant's REGISTERs, written with the SIP toolkit's bounded writer, and the facts it reads
//! from a response, with the toolkit's framing and header parsers.

use corereg_sip::client::request::{write_authorization, AuthFields, Writer};
use corereg_sip::client::response::MAX_CHALLENGES;
use corereg_sip::header::{
    parse_contact, parse_cseq, parse_u32, parse_via, split_list, ContactValue,
};
use corereg_sip::parse::{parse_message, HeaderName, ParseLimits, StartLine, MAX_HEADERS};

/// Everything one REGISTER carries.
pub(crate) struct RegisterRequest<'a> {
    pub request_uri: &'a str,
    pub via_sent_by: &'a str,
    pub branch: &'a str,
    pub from: &'a str,
    pub from_tag: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    /// `<uri>params`.
    pub contact: &'a str,
    pub expires: u32,
    /// Other contacts of the same instance, removed with `;expires=0`.
    pub remove: &'a [String],
    pub auth: &'a [AuthFields<'a>],
    pub user_agent: &'a str,
}

/// Writes the REGISTER into `buf`; None when it does not fit.
pub(crate) fn write_register(buf: &mut [u8], r: &RegisterRequest<'_>) -> Option<usize> {
    let mut w = Writer::new(buf);
    w.put(b"REGISTER ")
        .put(r.request_uri.as_bytes())
        .put(b" SIP/2.0\r\nVia: SIP/2.0/UDP ")
        .put(r.via_sent_by.as_bytes())
        .put(b";rport;branch=")
        .put(r.branch.as_bytes())
        .put(b"\r\nMax-Forwards: 70\r\nFrom: <")
        .put(r.from.as_bytes())
        .put(b">;tag=")
        .put(r.from_tag.as_bytes())
        .put(b"\r\nTo: <")
        .put(r.to.as_bytes())
        .put(b">\r\nCall-ID: ")
        .put(r.call_id.as_bytes())
        .put(b"\r\nCSeq: ")
        .put_u64(u64::from(r.cseq))
        .put(b" REGISTER\r\nContact: ")
        .put(r.contact.as_bytes());
    if r.expires == 0 {
        w.put(b";expires=0");
    }
    for uri in r.remove {
        w.put(b", <").put(uri.as_bytes()).put(b">;expires=0");
    }
    w.put(b"\r\nExpires: ")
        .put_u64(u64::from(r.expires))
        .put(b"\r\n");
    for a in r.auth {
        write_authorization(&mut w, a);
    }
    w.put(b"User-Agent: ")
        .put(r.user_agent.as_bytes())
        .put(b"\r\nContent-Length: 0\r\n\r\n");
    w.finish()
}

/// One Contact a 200 lists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListedContact<'a> {
    pub uri: &'a [u8],
    pub expires: Option<u32>,
    /// `+sip.instance`, quotes removed.
    pub instance: Option<&'a [u8]>,
}

/// What the registrant acts on in a response, borrowed from the datagram.
#[derive(Debug, Default)]
pub(crate) struct ResponseFacts<'a> {
    pub status: u16,
    pub branch: Option<&'a [u8]>,
    pub call_id: Option<&'a [u8]>,
    pub cseq: Option<(u32, &'a [u8])>,
    pub expires: Option<u32>,
    pub min_expires: Option<u32>,
    pub retry_after: Option<u32>,
    pub www: Vec<&'a [u8]>,
    pub proxy: Vec<&'a [u8]>,
    pub contacts: Vec<ListedContact<'a>>,
    /// More contacts were listed than were read.
    pub contacts_truncated: bool,
}

/// Reads a response; None for anything that is not a SIP response within `max_bytes`. At most
/// `max_contacts` Contacts and [`MAX_CHALLENGES`] challenges of each kind are kept: the work and the
/// memory are bounded whatever the upstream sends.
pub(crate) fn read_response(
    datagram: &[u8],
    max_bytes: usize,
    max_contacts: usize,
) -> Option<ResponseFacts<'_>> {
    if datagram.len() > max_bytes {
        return None;
    }
    let limits = ParseLimits {
        max_message_bytes: max_bytes,
        max_headers: MAX_HEADERS,
        max_line_bytes: max_bytes,
    };
    let msg = parse_message(datagram, &limits).ok()?;
    let StartLine::Response { code } = msg.start else {
        return None;
    };
    let mut facts = ResponseFacts {
        status: code,
        branch: msg.first(HeaderName::Via).and_then(|v| {
            let first = split_list(v).next()?.ok()?;
            parse_via(first).ok()?.branch()
        }),
        call_id: msg.first(HeaderName::CallId).map(trim),
        cseq: msg.first(HeaderName::CSeq).and_then(|v| parse_cseq(v).ok()),
        expires: msg
            .first(HeaderName::Expires)
            .and_then(|v| parse_u32(v).ok()),
        ..ResponseFacts::default()
    };
    for h in msg.headers().filter(|h| h.name == HeaderName::Other) {
        let name = h.raw_name;
        if name.eq_ignore_ascii_case(b"WWW-Authenticate") {
            if facts.www.len() < MAX_CHALLENGES {
                facts.www.push(h.value);
            }
        } else if name.eq_ignore_ascii_case(b"Proxy-Authenticate") {
            if facts.proxy.len() < MAX_CHALLENGES {
                facts.proxy.push(h.value);
            }
        } else if name.eq_ignore_ascii_case(b"Min-Expires") {
            facts.min_expires = facts.min_expires.or(parse_u32(h.value).ok());
        } else if name.eq_ignore_ascii_case(b"Retry-After") {
            // `Retry-After: 120 (comment);duration=..`: the leading number.
            let digits: &[u8] = {
                let v = trim(h.value);
                let n = v.iter().take_while(|b| b.is_ascii_digit()).count();
                &v[..n]
            };
            facts.retry_after = facts.retry_after.or(parse_u32(digits).ok());
        }
    }
    'outer: for value in msg.all(HeaderName::Contact) {
        for element in split_list(value) {
            let Ok(element) = element else { break };
            let Ok(ContactValue::Addr(na)) = parse_contact(element) else {
                continue;
            };
            if facts.contacts.len() >= max_contacts {
                facts.contacts_truncated = true;
                break 'outer;
            }
            facts.contacts.push(ListedContact {
                uri: na.uri,
                expires: na
                    .params
                    .get(b"expires")
                    .flatten()
                    .and_then(|v| parse_u32(v).ok()),
                instance: na.params.get(b"+sip.instance").flatten(),
            });
        }
    }
    Some(facts)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_facts_of_a_200() {
        let msg = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5080;rport=5080;branch=z9hG4bK1\r\n\
Call-ID: abc@x \r\nCSeq: 7 REGISTER\r\nContact: <sip:a@h:1>;expires=60;+sip.instance=\"<urn:x>\", <sip:b@h>;expires=30\r\n\
Expires: 90\r\nMin-Expires: 20\r\nRetry-After: 5 (soon)\r\n\r\n";
        let f = read_response(msg, 8192, 16).expect("a response");
        assert_eq!(f.status, 200);
        assert_eq!(f.branch, Some(&b"z9hG4bK1"[..]));
        assert_eq!(f.call_id, Some(&b"abc@x"[..]));
        assert_eq!(f.cseq, Some((7, &b"REGISTER"[..])));
        assert_eq!(
            (f.expires, f.min_expires, f.retry_after),
            (Some(90), Some(20), Some(5))
        );
        assert_eq!(f.contacts.len(), 2);
        assert_eq!(f.contacts[0].instance, Some(&b"<urn:x>"[..]));
        assert_eq!(f.contacts[1].expires, Some(30));
        let f = read_response(msg, 8192, 1).expect("a response");
        assert!(f.contacts_truncated && f.contacts.len() == 1);
        assert!(read_response(msg, 50, 16).is_none());
        assert!(read_response(b"REGISTER sip:x SIP/2.0\r\n\r\n", 8192, 16).is_none());
    }
}
