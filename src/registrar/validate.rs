//! Checks every request must pass before its method is looked at (RFC 3261 §8.2, RFC 4475 §3.1.2).
//!
//! The registrar is strict where a liberal reading could change meaning: duplicated singleton headers,
//! unparseable Via/From/To/CSeq, a CSeq method that is not the request's method, a body that does not fit
//! the datagram. Each failure is a 400 with a reason the operator can read in the logs.

use crate::sip::header::{
    parse_cseq, parse_name_addr, parse_u32, parse_via, sole_element, split_list, NameAddr,
};
use crate::sip::parse::{HeaderName, Message};
use crate::sip::response::ViaFacts;

/// The headers every request carries, parsed.
#[derive(Clone, Copy, Debug)]
pub struct Basics<'a> {
    pub call_id: &'a [u8],
    pub cseq: u32,
    /// The first via-parm's sent-by host and `received`, for the response's top Via.
    pub top_via: ViaFacts<'a>,
    /// The first via-parm as sent (its branch with it): part of the request's transaction key.
    pub top_via_parm: &'a [u8],
}

/// Why a request is malformed (logged; the answer is 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    DuplicateHeader(HeaderName),
    MissingHeader(HeaderName),
    BadHeader(HeaderName),
    CSeqMethodMismatch,
    Body,
}

/// Singleton headers: more than one of each is ambiguous (RFC 4475 multi01, mcl01).
const SINGLETONS: [HeaderName; 7] = [
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::Expires,
];

/// Validation in three steps, so that a caller can start work between them (the registrar starts its
/// AoR lookup once To is parsed, and its next memory loads once the Vias are checked): [`Checks::begin`],
/// [`Checks::vias`], [`Checks::finish`]. Errors come in the order the checks are listed (duplicates and
/// the body, Via, Call-ID, CSeq, From, To, Max-Forwards) whatever the caller does between the steps.
pub struct Checks<'m, 'a> {
    msg: &'m Message<'a>,
    to: Result<NameAddr<'a>, Malformed>,
}

/// The first via-parm's facts and text, from [`Checks::vias`].
pub struct TopVia<'a> {
    facts: ViaFacts<'a>,
    parm: &'a [u8],
}

impl<'m, 'a> Checks<'m, 'a> {
    /// Singleton headers and the body, and To parsed (its error, if any, is reported by [`Checks::finish`]).
    pub fn begin(msg: &'m Message<'a>) -> Result<Self, Malformed> {
        for name in SINGLETONS {
            if msg.count(name) > 1 {
                return Err(Malformed::DuplicateHeader(name));
            }
        }
        if msg.body_error.is_some() {
            return Err(Malformed::Body);
        }
        let to = required(msg, HeaderName::To)
            .and_then(|v| parse_name_addr(v).map_err(|_| Malformed::BadHeader(HeaderName::To)));
        Ok(Checks { msg, to })
    }

    /// The parsed To, when it parsed.
    pub fn to(&self) -> Option<&NameAddr<'a>> {
        self.to.as_ref().ok()
    }

    /// Every Via.
    pub fn vias(&self) -> Result<TopVia<'a>, Malformed> {
        validate_vias(self.msg).map(|(facts, parm)| TopVia { facts, parm })
    }

    /// The rest: Call-ID, CSeq (its method must be `method_raw`), From, To, Max-Forwards.
    pub fn finish(self, top: TopVia<'a>, method_raw: &[u8]) -> Result<Basics<'a>, Malformed> {
        let msg = self.msg;
        let call_id = required(msg, HeaderName::CallId)?;
        let (cseq, cseq_method) = parse_cseq(required(msg, HeaderName::CSeq)?)
            .map_err(|_| Malformed::BadHeader(HeaderName::CSeq))?;
        if cseq_method != method_raw {
            return Err(Malformed::CSeqMethodMismatch);
        }
        parse_name_addr(required(msg, HeaderName::From)?)
            .map_err(|_| Malformed::BadHeader(HeaderName::From))?;
        self.to?;
        if let Some(mf) = msg.first(HeaderName::MaxForwards) {
            parse_u32(mf).map_err(|_| Malformed::BadHeader(HeaderName::MaxForwards))?;
        }
        Ok(Basics {
            call_id,
            cseq,
            top_via: top.facts,
            top_via_parm: top.parm,
        })
    }
}

fn required<'a>(msg: &Message<'a>, name: HeaderName) -> Result<&'a [u8], Malformed> {
    match msg.first(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Malformed::MissingHeader(name)),
    }
}

/// Every via-parm must parse, with no empty list elements or empty parameters (RFC 4475 badinv01).
/// Returns the first via-parm's facts and text.
fn validate_vias<'a>(msg: &Message<'a>) -> Result<(ViaFacts<'a>, &'a [u8]), Malformed> {
    let bad = Malformed::BadHeader(HeaderName::Via);
    let mut seen = 0usize;
    let mut top = None;
    for value in msg.all(HeaderName::Via) {
        if let Some(element) = sole_element(value) {
            let via = parse_via(element).map_err(|_| bad)?;
            if top.is_none() {
                top = Some((ViaFacts::of_top(&via, element, value), element));
            }
            seen += 1;
            continue;
        }
        for element in split_list(value) {
            let element = element.map_err(|_| bad)?;
            if element.is_empty() {
                return Err(bad);
            }
            // `parse_via` checks every parameter (an empty one, `;;` or `;=x`, is an error there).
            let via = parse_via(element).map_err(|_| bad)?;
            if top.is_none() {
                top = Some((ViaFacts::of_top(&via, element, value), element));
            }
            seen += 1;
        }
    }
    match top {
        Some(facts) if seen > 0 => Ok(facts),
        _ => Err(Malformed::MissingHeader(HeaderName::Via)),
    }
}
