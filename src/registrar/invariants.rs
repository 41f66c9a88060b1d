//! Self-checks of the registrar's state, for tests and the fuzz harness (`fuzz/`): never on the request
//! path (they walk every binding and every wheel slot).
//!
//! What holds after every `handle` and every `handle_timeout` call, whatever came in:
//! - the binding table is well formed (see `BindingStore::check_invariants`) and so is the wheel
//!   (`TimerWheel::check_invariants`);
//! - no AoR holds more bindings than `max_contacts_per_aor`;
//! - the wheel and the table agree: every live binding is armed, at or before its expiry (bindings are
//!   re-armed lazily, so an entry may fire early, never late), and nothing else is armed;
//! - `next_timeout()` is no later than the earliest expiry, so no expired binding waits for a timer that
//!   never comes.
//!
//! Expiry is swept lazily: between two `handle_timeout` calls a binding may be past its expiry and still
//! stored (requests never see it: `register::purge_expired`). What is checked at `now` is that every
//! such binding is already due in the wheel, so that `handle_timeout(now)`, called until it returns
//! false, removes it; the fuzz harness checks that it did.

use super::register::MAX_CONTACTS_PER_AOR;
use super::{Now, Registrar};

impl Registrar {
    /// Checks the invariants listed in this module's docs at time `now` (the time of the last
    /// `handle`/`handle_timeout` call). `Err` describes the first violation found.
    #[doc(hidden)]
    pub fn check_invariants(&self, now: Now) -> Result<(), String> {
        self.store.check_invariants()?;
        self.wheel.check_invariants()?;
        let now_s = now.unix_s();
        let max_contacts = self.cfg.max_contacts_per_aor.min(MAX_CONTACTS_PER_AOR);
        for rec in self.store.aors() {
            let count = self.store.binding_count_of(rec);
            if count > max_contacts {
                let name = self.store.aor_name(rec).unwrap_or_default();
                return Err(format!(
                    "AoR {:?} holds {count} bindings, over the limit of {max_contacts}",
                    String::from_utf8_lossy(name)
                ));
            }
        }
        if self.wheel.len() != self.store.len() {
            return Err(format!(
                "{} timers armed for {} live bindings",
                self.wheel.len(),
                self.store.len()
            ));
        }
        let mut earliest = None::<u64>;
        for (idx, b) in self.store.iter() {
            let contact = || String::from_utf8_lossy(b.contact()).into_owned();
            let Some(deadline_s) = self.wheel.deadline(idx) else {
                return Err(format!(
                    "binding {idx} ({}) expires at {} but is not armed: it would never be swept",
                    contact(),
                    b.expires_at_s
                ));
            };
            if deadline_s > b.expires_at_s {
                return Err(format!(
                    "binding {idx} ({}) expires at {} but is armed for {deadline_s}: it would be swept late",
                    contact(),
                    b.expires_at_s
                ));
            }
            if b.expires_at_s <= now_s && deadline_s > now_s {
                return Err(format!(
                    "binding {idx} ({}) expired at {} (now {now_s}) but is not due until {deadline_s}",
                    contact(),
                    b.expires_at_s
                ));
            }
            earliest = Some(earliest.map_or(deadline_s, |e| e.min(deadline_s)));
        }
        match (self.next_timeout(), earliest) {
            (None, None) => {}
            (Some(next), Some(earliest)) if next <= earliest => {}
            (next, earliest) => {
                return Err(format!(
                    "next_timeout() is {next:?}, the earliest armed deadline {earliest:?}"
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::bindings::HashSeed;
    use crate::registrar::{Outcome, RegistrarConfig};
    use std::net::SocketAddr;

    const T0: u64 = 1_700_000_000;

    fn register(user: &str, contact: &str, cseq: u32) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f\r\nTo: <sip:{user}@example.com>\r\n\
             Call-ID: inv-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn send(reg: &mut Registrar, bytes: &[u8], now_s: u64) -> u16 {
        let source: SocketAddr = "192.0.2.10:5062".parse().expect("addr");
        let mut out = Vec::new();
        match reg.handle(bytes, source, Now::from_secs(now_s), &mut out) {
            Outcome::Reply { status, .. } => status,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn hold_through_registration_refresh_lazy_expiry_and_sweep() {
        let cfg = RegistrarConfig {
            hash_seed: HashSeed([1, 2, 3, 4]),
            max_contacts_per_aor: 2,
            ..RegistrarConfig::default()
        };
        let mut reg = Registrar::new(cfg, Now::from_secs(T0));
        let check = |reg: &Registrar, now_s: u64| {
            reg.check_invariants(Now::from_secs(now_s))
                .unwrap_or_else(|e| panic!("at {now_s}: {e}"))
        };
        check(&reg, T0);
        assert_eq!(
            send(&mut reg, &register("a", "<sip:a@1>;expires=60", 1), T0),
            200
        );
        assert_eq!(
            send(&mut reg, &register("a", "<sip:a@2>;expires=120", 2), T0),
            200
        );
        assert_eq!(
            send(&mut reg, &register("b", "<sip:b@1>;expires=90", 1), T0),
            200
        );
        check(&reg, T0);
        // A refresh to a later expiry leaves the timer early (lazy re-arming): still consistent.
        assert_eq!(
            send(
                &mut reg,
                &register("a", "<sip:a@1>;expires=600", 3),
                T0 + 10
            ),
            200
        );
        check(&reg, T0 + 10);
        // Over the limit: refused, nothing changes.
        assert_eq!(send(&mut reg, &register("a", "<sip:a@3>", 4), T0 + 10), 503);
        check(&reg, T0 + 10);
        // b is past its expiry but not swept yet: allowed, because it is due in the wheel.
        check(&reg, T0 + 200);
        while reg.handle_timeout(Now::from_secs(T0 + 200)) {}
        check(&reg, T0 + 200);
        assert_eq!(reg.binding_count(), 1, "only the refreshed binding is left");
        assert!(reg.store().iter().all(|(_, b)| b.expires_at_s > T0 + 200));
    }

    #[test]
    fn report_a_binding_the_wheel_lost() {
        let cfg = RegistrarConfig {
            hash_seed: HashSeed([1, 2, 3, 4]),
            ..RegistrarConfig::default()
        };
        let mut reg = Registrar::new(cfg, Now::from_secs(T0));
        assert_eq!(
            send(&mut reg, &register("a", "<sip:a@1>;expires=60", 1), T0),
            200
        );
        let (idx, _) = reg.store().iter().next().expect("a binding");
        // Corrupt the state as a bug would: the binding's timer is gone.
        reg.wheel.cancel(idx);
        let err = reg
            .check_invariants(Now::from_secs(T0))
            .expect_err("a lost timer is reported");
        assert!(err.contains("armed"), "{err}");
        // Armed after the expiry: the binding would outlive it.
        reg.wheel.schedule(idx, T0 + 61);
        let err = reg
            .check_invariants(Now::from_secs(T0))
            .expect_err("a late timer is reported");
        assert!(err.contains("late"), "{err}");
        // Put back where it belongs: consistent again.
        reg.wheel.schedule(idx, T0 + 60);
        reg.check_invariants(Now::from_secs(T0))
            .expect("consistent");
    }
}
