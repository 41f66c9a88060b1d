//! The header slots of a [`Message`], written one by one as the framer meets the lines and never
//! zero-filled first (1.5 KiB a datagram), and the reads that rely on it: everything that touches the
//! uninitialised part of a `Message` is here.

use std::mem::MaybeUninit;

use super::{parse_message_into, FramingError, Message, ParseLimits, Slot, MAX_HEADERS, NO_HEADER};

impl Message<'_> {
    /// The initialised slots.
    #[inline]
    pub(super) fn slots(&self) -> &[Slot] {
        let init = &self.headers[..self.header_count.min(MAX_HEADERS)];
        // SAFETY: `push` writes `headers[header_count]` before incrementing `header_count`, and nothing
        // else changes either, so every slot below `header_count` is initialised. `MaybeUninit<Slot>` has
        // the same layout as `Slot`, so a slice of initialised ones can be viewed as `[Slot]`.
        unsafe { &*(init as *const [MaybeUninit<Slot>] as *const [Slot]) }
    }

    #[inline]
    pub(super) fn push(&mut self, slot: Slot, max_headers: usize) -> Result<(), FramingError> {
        let i = self.header_count;
        if i >= max_headers || i >= MAX_HEADERS {
            return Err(FramingError::TooManyHeaders);
        }
        let n = slot.name as usize;
        if self.first_index[n] == NO_HEADER {
            self.first_index[n] = i as u8;
        }
        self.name_count[n] += 1;
        self.headers[i] = MaybeUninit::new(slot);
        self.header_count = i + 1;
        Ok(())
    }

    /// Replace the end of the last header's value (it grew by a continuation line).
    pub(super) fn set_last_value(&mut self, value_start: usize, value_end: usize) {
        debug_assert!(self.header_count > 0);
        if let Some(h) = self
            .header_count
            .checked_sub(1)
            .and_then(|i| self.headers.get_mut(i))
        {
            // SAFETY: slot `header_count - 1` was initialised by `push` (see `slots`).
            let h = unsafe { h.assume_init_mut() };
            h.value_start = value_start as u32;
            h.value_end = value_end as u32;
        }
    }
}

/// Frames a datagram (see the [module documentation](super) for what a [`Message`] holds). Never
/// allocates, never panics.
///
/// - CRLFs before the start line are skipped (RFC 3261 §7.5); a datagram of nothing else is `Empty`.
/// - The header section ends at the first empty line, or at the end of the datagram when there is none
///   (then the body is empty), so a REGISTER whose sender left out the final CRLF is still answered.
/// - A header line that is not `name: value` (or a continuation line with no header before it) is not
///   kept; a request carrying one becomes `StartLine::Invalid(Malformed)` so it is answered with 400.
/// - A status line that cannot be parsed (`SIP/...` with a bad version or code, RFC 4475 bigcode) is
///   `Err(Garbage)`: a response is never answered, so a malformed one can only be dropped, and
///   `StartLine::Invalid` would make it look like a request to answer with 400/505.
/// - Several Content-Length headers make `body_error` = BadContentLength (RFC 4475 mcl01).
/// - A datagram longer than u32::MAX bytes is `TooLarge` whatever the limits (offsets are stored as u32).
#[inline]
pub fn parse_message<'a>(buf: &'a [u8], limits: &ParseLimits) -> Result<Message<'a>, FramingError> {
    let mut slot = MaybeUninit::uninit();
    parse_message_into(buf, limits, &mut slot)?;
    // SAFETY: `parse_message_into` returned Ok, so it wrote a whole `Message` into `slot` (`slot.write`).
    Ok(unsafe { slot.assume_init() })
}
