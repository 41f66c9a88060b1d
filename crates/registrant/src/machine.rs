//! One registrant: a sans-IO state machine that keeps one account registered to its upstream registrar.
//!
//! # Use
//! - [`Registrant::new`] takes the [`Account`], the shard's [`Settings`] and a random seed (the Call-ID,
//!   tags, branches and cnonces derive from it). [`Registrant::start`] schedules the first REGISTER at
//!   the account's start-up offset ([`spread`](crate::spread)).
//! - Inputs, each with `now` (milliseconds, wall clock or fake): a response datagram
//!   ([`Registrant::handle_response`]), a timeout ([`Registrant::handle_timeout`], due at
//!   [`Registrant::next_timeout`]), and the commands [`Registrant::enable`] (REGISTER now),
//!   [`Registrant::disable`] and [`Registrant::shutdown`] (unREGISTER now when a binding may exist).
//! - Outputs: [`Effect`]s appended to the caller's vector: datagrams to send and state changes.
//!
//! # Behaviour
//! States and their numbers are OpenSIPS `uac_registrant`'s ([`State`]). Each REGISTER is an RFC 3261
//! non-INVITE client transaction over UDP: retransmitted at T1, doubling up to T2 (T2 after a
//! provisional response), given up after Timer F (64 x T1). Challenges (401 `WWW-Authenticate`, 407
//! `Proxy-Authenticate`) are answered with digest (MD5 or SHA-256, `qop=auth` when offered) and the
//! credentials are sent again, with the nonce count going up, on later requests until the upstream
//! challenges anew. A second challenge with the nonce just answered and no `stale=true` means the
//! password is wrong. A 200 grants an expiry (our Contact's `expires`, else `Expires`, else what was
//! asked); the refresh goes out that long minus a margin later. A 423 is retried at once with its
//! Min-Expires. Failures (timeouts, error replies) are retried after an exponential back-off.

use std::sync::Arc;

use corereg_sip::client::request::AuthFields;
use corereg_sip::digest::{self, nc_hex, Challenge, Ha1, HexDigest};
use corereg_sip::uri::{parse_uri, uri_eq};

use crate::account::{Account, Target, MAX_FIELD_BYTES};
use crate::spread::{mix64, stable_hash, start_offset_ms};
use crate::wire::{read_response, write_register, RegisterRequest, ResponseFacts};

/// The states of OpenSIPS's `uac_registrant`, with its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    NotRegistered = 0,
    Registering = 1,
    Authenticating = 2,
    Registered = 3,
    RegisterTimeout = 4,
    InternalError = 5,
    WrongCredentials = 6,
    RegistrarError = 7,
    Unregistering = 8,
    AuthenticatingUnregister = 9,
}

impl State {
    /// The number, as OpenSIPS shows it.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// OpenSIPS's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            State::NotRegistered => "NOT_REGISTERED_STATE",
            State::Registering => "REGISTERING_STATE",
            State::Authenticating => "AUTHENTICATING_STATE",
            State::Registered => "REGISTERED_STATE",
            State::RegisterTimeout => "REGISTER_TIMEOUT_STATE",
            State::InternalError => "INTERNAL_ERROR_STATE",
            State::WrongCredentials => "WRONG_CREDENTIALS_STATE",
            State::RegistrarError => "REGISTRAR_ERROR_STATE",
            State::Unregistering => "UNREGISTERING_STATE",
            State::AuthenticatingUnregister => "AUTHENTICATING_UNREGISTER_STATE",
        }
    }
}

/// The timers and limits of the registrants of one shard. Every bound is here; the defaults follow
/// RFC 3261 and OpenSIPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `sent-by` of the Via: the address (and port) the shard sends from and listens on for responses.
    pub via_sent_by: String,
    /// The `User-Agent` value.
    pub user_agent: String,
    /// RFC 3261 T1, first retransmission interval (500 ms).
    pub t1_ms: u64,
    /// RFC 3261 T2, the longest retransmission interval (4 s).
    pub t2_ms: u64,
    /// RFC 3261 Timer F, the transaction's lifetime (64 x T1 = 32 s).
    pub timer_f_ms: u64,
    /// Expiry asked for when the account's `expiry` is NULL or 0 (3600 s, OpenSIPS's `default_expires`).
    pub default_expiry_s: u32,
    /// Longest expiry asked for or taken from an upstream (a 423's Min-Expires above it is an error).
    pub max_expiry_s: u32,
    /// The refresh goes out this long before the granted expiry (at most half of it).
    pub refresh_margin_s: u32,
    /// First retry delay after a failure; doubles with each further failure in a row.
    pub retry_min_s: u32,
    /// Longest retry delay (a 503's Retry-After too is capped to it).
    pub retry_max_s: u32,
    /// The window over which first REGISTERs are spread at start-up (OpenSIPS's `timer_interval`).
    pub start_spread_s: u32,
    /// Challenges answered within one registration attempt before giving up with WRONG_CREDENTIALS.
    pub max_auth_rounds: u32,
    /// 423s followed within one registration attempt before giving up with REGISTRAR_ERROR.
    pub max_423_rounds: u32,
    /// Larger responses are ignored.
    pub max_response_bytes: usize,
    /// Largest REGISTER written; a larger one is an INTERNAL_ERROR.
    pub max_request_bytes: usize,
    /// Contacts of a 200 examined.
    pub max_contacts_examined: usize,
    /// Contacts of the same instance removed by one REGISTER.
    pub max_stale_removals: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            via_sent_by: "127.0.0.1:5060".into(),
            user_agent: "corereg".into(),
            t1_ms: 500,
            t2_ms: 4_000,
            timer_f_ms: 32_000,
            default_expiry_s: 3600,
            max_expiry_s: 86_400,
            refresh_margin_s: 60,
            retry_min_s: 30,
            retry_max_s: 900,
            start_spread_s: 100,
            max_auth_rounds: 3,
            max_423_rounds: 3,
            max_response_bytes: 16_384,
            max_request_bytes: 8_192,
            max_contacts_examined: 64,
            max_stale_removals: 16,
        }
    }
}

/// What the caller does for a registrant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send `datagram` to `to` (a name: resolve it first).
    Send { to: Target, datagram: Vec<u8> },
    /// The state changed; `status` is the final response that caused it, 408 for a timeout.
    State {
        from: State,
        to: State,
        status: Option<u16>,
    },
}

/// What became of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// It answered the current transaction.
    Handled,
    /// Not a usable response (too large, not SIP, a request).
    NotAResponse,
    /// No transaction is in progress.
    NoTransaction,
    /// Its Call-ID, CSeq or branch is not the current transaction's (late or forged).
    Mismatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Register,
    Unregister,
}

/// One registration (or unregistration) attempt: the transactions of its challenges and 423s.
#[derive(Debug)]
struct Attempt {
    purpose: Purpose,
    expires: u32,
    auth_rounds: u32,
    /// The nonces answered in this attempt (WWW, proxy).
    answered: [Option<Vec<u8>>; 2],
    rounds_423: u32,
    /// Other contacts of our instance, removed by the next request.
    remove: Vec<String>,
    /// The removal of other contacts of our instance was already asked.
    cleanup_done: bool,
    /// `maybe_bound_until_ms` before this attempt: restored when the upstream refuses it (it then
    /// bound nothing).
    bound_before_ms: u64,
}

impl Attempt {
    fn new(purpose: Purpose, expires: u32) -> Self {
        Attempt {
            purpose,
            expires,
            auth_rounds: 0,
            answered: [None, None],
            rounds_423: 0,
            remove: Vec::new(),
            cleanup_done: false,
            bound_before_ms: 0,
        }
    }
}

/// The client transaction in progress.
#[derive(Debug)]
struct Txn {
    branch: String,
    cseq: u32,
    datagram: Vec<u8>,
    started_ms: u64,
    next_retransmit_ms: u64,
    interval_ms: u64,
    proceeding: bool,
}

/// Digest credentials for one challenge, reused with the nonce count going up.
struct Credentials {
    challenge: Challenge,
    ha1: Ha1,
    ha2: HexDigest,
    nc: u32,
}

/// One account's registration.
pub struct Registrant {
    account: Account,
    settings: Arc<Settings>,
    target: Target,
    /// `+sip.instance` when the binding is kept unique for it.
    instance: Option<String>,
    state: State,
    enabled: bool,
    shutting_down: bool,
    call_id: String,
    from_tag: String,
    seed: u64,
    counter: u64,
    cseq: u32,
    ask_expiry: u32,
    attempt: Option<Attempt>,
    txn: Option<Txn>,
    /// The next REGISTER (first, refresh or retry).
    wake_ms: Option<u64>,
    /// WWW and proxy credentials.
    credentials: [Option<Credentials>; 2],
    last_status: Option<u16>,
    registered_until_ms: Option<u64>,
    /// Until when the upstream may hold a binding of ours (a REGISTER with an expiry went out).
    maybe_bound_until_ms: u64,
    failures: u32,
}

impl std::fmt::Debug for Registrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrant")
            .field("aor", &self.account.aor)
            .field("state", &self.state)
            .field("enabled", &self.enabled)
            .field("last_status", &self.last_status)
            .finish_non_exhaustive()
    }
}

impl Registrant {
    /// A registrant for `account`, idle until [`start`](Self::start) or [`enable`](Self::enable).
    pub fn new(account: Account, settings: Arc<Settings>, seed: u64) -> Self {
        let key = stable_hash(account.key().as_bytes());
        let ask_expiry = account
            .expiry
            .unwrap_or(settings.default_expiry_s)
            .min(settings.max_expiry_s)
            .max(1);
        let mut r = Registrant {
            target: account.target(),
            instance: account.outbound_instance(),
            enabled: account.enabled,
            account,
            settings,
            state: State::NotRegistered,
            shutting_down: false,
            call_id: String::new(),
            from_tag: String::new(),
            seed: mix64(seed ^ key ^ 0x5eed),
            counter: 0,
            cseq: 0,
            ask_expiry,
            attempt: None,
            txn: None,
            wake_ms: None,
            credentials: [None, None],
            last_status: None,
            registered_until_ms: None,
            maybe_bound_until_ms: 0,
            failures: 0,
        };
        r.call_id = format!("{:016x}{:016x}@corereg", r.token(), r.token());
        r.from_tag = format!("{:012x}", r.token() & 0xffff_ffff_ffff);
        r
    }

    pub fn account(&self) -> &Account {
        &self.account
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    /// The last final status received (408: the last transaction timed out).
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }
    /// When the next REGISTER (first, refresh or retry) goes out, if one is scheduled.
    pub fn next_register_ms(&self) -> Option<u64> {
        self.wake_ms
    }
    /// When the binding granted by the last 200 expires.
    pub fn registered_until_ms(&self) -> Option<u64> {
        self.registered_until_ms
    }
    /// Where the REGISTERs go.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// No transaction in progress (after a shutdown: nothing more will be sent).
    pub fn is_idle(&self) -> bool {
        self.txn.is_none()
    }

    /// Schedules the first REGISTER at the account's start-up offset within `start_spread_s`
    /// (when enabled).
    pub fn start(&mut self, now_ms: u64) {
        if self.enabled && !self.shutting_down && self.txn.is_none() {
            let window = u64::from(self.settings.start_spread_s) * 1000;
            self.wake_ms = Some(now_ms + start_offset_ms(self.account.key().as_bytes(), window));
        }
    }

    /// Enables the account and REGISTERs now (unless a REGISTER is already in progress).
    pub fn enable(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.enabled = true;
        self.account.enabled = true;
        if self.shutting_down {
            return;
        }
        if self.attempt.as_ref().map(|a| a.purpose) == Some(Purpose::Register) && self.txn.is_some()
        {
            return;
        }
        self.failures = 0;
        self.begin(Purpose::Register, now_ms, out);
    }

    /// Disables the account: unREGISTERs now when the upstream may hold a binding, else stops.
    pub fn disable(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.enabled = false;
        self.account.enabled = false;
        self.stop(now_ms, out);
    }

    /// Stops for good (the process is ending): unREGISTERs when the upstream may hold a binding. The
    /// account stays enabled; [`is_idle`](Self::is_idle) says when nothing is left in flight.
    pub fn shutdown(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.shutting_down = true;
        self.stop(now_ms, out);
    }

    fn stop(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.wake_ms = None;
        if self.attempt.as_ref().map(|a| a.purpose) == Some(Purpose::Unregister)
            && self.txn.is_some()
        {
            return;
        }
        let registering = self.txn.is_some();
        if registering || self.maybe_bound_until_ms > now_ms {
            self.begin(Purpose::Unregister, now_ms, out);
        } else {
            self.txn = None;
            self.attempt = None;
            self.set_state(State::NotRegistered, None, out);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn next_timeout(&self) -> Option<u64> {
        match &self.txn {
            Some(t) => Some(
                t.next_retransmit_ms
                    .min(t.started_ms + self.settings.timer_f_ms),
            ),
            None => self.wake_ms,
        }
    }

    /// Retransmits, gives up a transaction after Timer F, or sends the scheduled REGISTER, as due.
    pub fn handle_timeout(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if let Some(t) = &mut self.txn {
            if now_ms >= t.started_ms + self.settings.timer_f_ms {
                self.txn = None;
                self.last_status = Some(408);
                let purpose = self.attempt.take().map(|a| a.purpose);
                tracing::debug!(aor = %self.account.aor, "REGISTER timed out");
                match purpose {
                    Some(Purpose::Unregister) => {
                        self.set_state(State::RegisterTimeout, Some(408), out)
                    }
                    _ => self.fail(State::RegisterTimeout, Some(408), None, now_ms, out),
                }
            } else if now_ms >= t.next_retransmit_ms {
                // At least 1 ms: settings of 0 cannot make the caller spin.
                t.interval_ms = if t.proceeding {
                    self.settings.t2_ms
                } else {
                    (t.interval_ms * 2).min(self.settings.t2_ms)
                }
                .max(1);
                t.next_retransmit_ms = now_ms + t.interval_ms;
                out.push(Effect::Send {
                    to: self.target.clone(),
                    datagram: t.datagram.clone(),
                });
            }
            return;
        }
        if let Some(w) = self.wake_ms {
            if now_ms >= w {
                self.wake_ms = None;
                if self.enabled && !self.shutting_down {
                    self.begin(Purpose::Register, now_ms, out);
                }
            }
        }
    }

    /// Takes a datagram that may answer the current transaction.
    pub fn handle_response(
        &mut self,
        datagram: &[u8],
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Disposition {
        let Some(facts) = read_response(
            datagram,
            self.settings.max_response_bytes,
            self.settings.max_contacts_examined,
        ) else {
            return Disposition::NotAResponse;
        };
        let Some(txn) = &mut self.txn else {
            return Disposition::NoTransaction;
        };
        let matches = facts.branch == Some(txn.branch.as_bytes())
            && facts.call_id == Some(self.call_id.as_bytes())
            && facts
                .cseq
                .is_some_and(|(n, m)| n == txn.cseq && m.eq_ignore_ascii_case(b"REGISTER"));
        if !matches {
            return Disposition::Mismatch;
        }
        if facts.status < 200 {
            // Proceeding: retransmit at T2 from now on (RFC 3261 §17.1.2.2).
            if !txn.proceeding {
                txn.proceeding = true;
                txn.interval_ms = self.settings.t2_ms.max(1);
                txn.next_retransmit_ms = now_ms + txn.interval_ms;
            }
            return Disposition::Handled;
        }
        self.txn = None;
        self.last_status = Some(facts.status);
        let Some(attempt) = self.attempt.take() else {
            return Disposition::Handled;
        };
        if facts.status >= 300 && attempt.purpose == Purpose::Register {
            // Refused: this attempt bound nothing (a challenge answered raises it again).
            self.maybe_bound_until_ms = attempt.bound_before_ms;
        }
        match facts.status {
            200..=299 => self.on_success(attempt, &facts, now_ms, out),
            401 | 407 => self.on_challenge(attempt, &facts, now_ms, out),
            423 if attempt.purpose == Purpose::Register => {
                self.on_interval_too_brief(attempt, &facts, now_ms, out)
            }
            status => {
                tracing::debug!(aor = %self.account.aor, status, "REGISTER refused");
                self.finish_failed(
                    attempt.purpose,
                    State::RegistrarError,
                    status,
                    facts.retry_after,
                    now_ms,
                    out,
                );
            }
        }
        Disposition::Handled
    }

    fn on_success(
        &mut self,
        mut attempt: Attempt,
        facts: &ResponseFacts<'_>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        if attempt.purpose == Purpose::Unregister {
            self.maybe_bound_until_ms = 0;
            self.registered_until_ms = None;
            self.set_state(State::NotRegistered, Some(facts.status), out);
            return;
        }
        let binding_uri = self.account.binding_uri.clone();
        let ours = parse_uri(binding_uri.as_bytes()).ok();
        let same = |uri: &[u8]| match (&ours, parse_uri(uri)) {
            (Some(a), Ok(b)) => uri_eq(a, &b),
            _ => uri == binding_uri.as_bytes(),
        };
        let listed = facts
            .contacts
            .iter()
            .find(|c| same(c.uri))
            .and_then(|c| c.expires);
        let granted = listed
            .or(facts.expires)
            .unwrap_or(attempt.expires)
            .min(self.settings.max_expiry_s);
        if granted == 0 {
            // Our binding was not kept: the upstream did not register us.
            self.finish_failed(
                Purpose::Register,
                State::RegistrarError,
                facts.status,
                None,
                now_ms,
                out,
            );
            return;
        }
        self.failures = 0;
        self.registered_until_ms = Some(now_ms + u64::from(granted) * 1000);
        self.maybe_bound_until_ms = now_ms + u64::from(granted) * 1000;
        let margin = self.settings.refresh_margin_s.min(granted / 2);
        self.wake_ms = Some(now_ms + u64::from(granted - margin) * 1000);
        self.set_state(State::Registered, Some(facts.status), out);
        if let (Some(instance), false) = (&self.instance, attempt.cleanup_done) {
            let stale: Vec<String> = facts
                .contacts
                .iter()
                .filter(|c| {
                    c.expires != Some(0)
                        && c.instance
                            .is_some_and(|i| same_instance(i, instance.as_bytes()))
                        && !same(c.uri)
                        && c.uri.len() <= MAX_FIELD_BYTES
                })
                .take(self.settings.max_stale_removals)
                .map(|c| String::from_utf8_lossy(c.uri).into_owned())
                .collect();
            if !stale.is_empty() {
                tracing::info!(aor = %self.account.aor, removed = stale.len(), "removing other bindings of this instance");
                attempt.remove = stale;
                attempt.cleanup_done = true;
                attempt.auth_rounds = 0;
                attempt.answered = [None, None];
                self.attempt = Some(attempt);
                self.send_request(now_ms, out);
            }
        }
    }

    fn on_challenge(
        &mut self,
        mut attempt: Attempt,
        facts: &ResponseFacts<'_>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let proxy = facts.status == 407;
        let values = if proxy { &facts.proxy } else { &facts.www };
        let Some(challenge) = Challenge::pick_strongest(values.iter().copied()) else {
            tracing::debug!(aor = %self.account.aor, status = facts.status, "no usable challenge");
            self.finish_failed(
                attempt.purpose,
                State::RegistrarError,
                facts.status,
                None,
                now_ms,
                out,
            );
            return;
        };
        let slot = usize::from(proxy);
        let (Some(user), Some(password)) = (&self.account.username, &self.account.password) else {
            self.credentials_refused(attempt.purpose, facts.status, now_ms, out);
            return;
        };
        let repeated =
            attempt.answered[slot].as_deref() == Some(&challenge.nonce[..]) && !challenge.stale;
        if repeated || attempt.auth_rounds >= self.settings.max_auth_rounds {
            tracing::info!(aor = %self.account.aor, "credentials refused");
            self.credentials_refused(attempt.purpose, facts.status, now_ms, out);
            return;
        }
        attempt.auth_rounds += 1;
        attempt.answered[slot] = Some(challenge.nonce.clone());
        let alg = challenge.algorithm;
        self.credentials[slot] = Some(Credentials {
            ha1: Ha1::from_password(
                alg,
                user.as_bytes(),
                &challenge.realm,
                password.expose().as_bytes(),
            ),
            ha2: digest::ha2(alg, b"REGISTER", self.account.registrar.as_bytes()),
            challenge,
            nc: 0,
        });
        let purpose = attempt.purpose;
        self.attempt = Some(attempt);
        if self.send_request(now_ms, out) {
            self.set_state(
                if purpose == Purpose::Register {
                    State::Authenticating
                } else {
                    State::AuthenticatingUnregister
                },
                Some(facts.status),
                out,
            );
        }
    }

    fn on_interval_too_brief(
        &mut self,
        mut attempt: Attempt,
        facts: &ResponseFacts<'_>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        match facts.min_expires {
            Some(min)
                if min > attempt.expires
                    && min <= self.settings.max_expiry_s
                    && attempt.rounds_423 < self.settings.max_423_rounds =>
            {
                tracing::info!(aor = %self.account.aor, min_expires = min, "423: asking for Min-Expires");
                attempt.rounds_423 += 1;
                attempt.expires = min;
                self.ask_expiry = min;
                self.attempt = Some(attempt);
                self.send_request(now_ms, out);
            }
            _ => self.finish_failed(
                Purpose::Register,
                State::RegistrarError,
                423,
                None,
                now_ms,
                out,
            ),
        }
    }

    /// A failed attempt: a registration is retried later, an unregistration is not.
    /// The upstream refused our credentials (or we have none to give): forget them, WRONG_CREDENTIALS.
    fn credentials_refused(
        &mut self,
        purpose: Purpose,
        status: u16,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        self.credentials = [None, None];
        self.finish_failed(purpose, State::WrongCredentials, status, None, now_ms, out);
    }

    fn finish_failed(
        &mut self,
        purpose: Purpose,
        state: State,
        status: u16,
        retry_after: Option<u32>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        match purpose {
            Purpose::Register => self.fail(state, Some(status), retry_after, now_ms, out),
            Purpose::Unregister => self.set_state(state, Some(status), out),
        }
    }

    /// Enters a failure state and schedules the retry with back-off.
    fn fail(
        &mut self,
        state: State,
        status: Option<u16>,
        retry_after: Option<u32>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        self.failures = self.failures.saturating_add(1);
        self.registered_until_ms = self.registered_until_ms.filter(|&u| u > now_ms);
        self.set_state(state, status, out);
        if self.enabled && !self.shutting_down {
            let mut delay = self.retry_delay_ms(retry_after);
            // A refresh that failed while the binding still runs: retry within half the time left (at
            // least 1 s apart), so that the binding is renewed before it expires if the upstream recovers.
            if let Some(until) = self.registered_until_ms {
                delay = delay.min(((until - now_ms) / 2).max(1000));
            }
            self.wake_ms = Some(now_ms + delay);
        }
    }

    /// The delay before the next try after `self.failures` failures in a row: `retry_min_s` doubled
    /// per failure after the first, at most `retry_max_s`; a Retry-After lengthens it (still capped).
    pub fn retry_delay_ms(&self, retry_after: Option<u32>) -> u64 {
        let s = &self.settings;
        let doublings = self.failures.saturating_sub(1).min(20);
        let backoff = (u64::from(s.retry_min_s) << doublings).min(u64::from(s.retry_max_s));
        let wanted = backoff.max(u64::from(retry_after.unwrap_or(0)));
        wanted.min(u64::from(s.retry_max_s)).max(1) * 1000
    }

    fn begin(&mut self, purpose: Purpose, now_ms: u64, out: &mut Vec<Effect>) {
        let expires = match purpose {
            Purpose::Register => self.ask_expiry,
            Purpose::Unregister => 0,
        };
        self.txn = None;
        let mut attempt = Attempt::new(purpose, expires);
        attempt.bound_before_ms = self.maybe_bound_until_ms;
        self.attempt = Some(attempt);
        if self.send_request(now_ms, out) {
            self.set_state(
                match purpose {
                    Purpose::Register => State::Registering,
                    Purpose::Unregister => State::Unregistering,
                },
                None,
                out,
            );
        }
    }

    /// The next branch or cnonce token: SHA-256 of the registrant's secret seed and a counter, so that
    /// one token seen on the wire tells nothing of the next.
    fn token(&mut self) -> u64 {
        use sha2::{Digest, Sha256};
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(self.counter.to_le_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        u64::from_le_bytes(first)
    }

    /// Sends the current attempt's next request as a new transaction; false (and INTERNAL_ERROR) when
    /// it cannot be written.
    fn send_request(&mut self, now_ms: u64, out: &mut Vec<Effect>) -> bool {
        let Some((purpose, expires)) = self.attempt.as_ref().map(|a| (a.purpose, a.expires)) else {
            return false;
        };
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let branch = format!("z9hG4bK-cr{:016x}", self.token());
        // Digest answers: each cached challenge with its next nonce count and a new cnonce.
        let mut answers: Vec<(bool, [u8; 8], String, HexDigest)> = Vec::new();
        for slot in 0..2 {
            let cnonce = format!("{:016x}", self.token());
            if let Some(c) = &mut self.credentials[slot] {
                c.nc = c.nc.wrapping_add(1);
                let nc = nc_hex(c.nc);
                let qop = c.challenge.qop_auth.then_some((&nc[..], cnonce.as_bytes()));
                let response = digest::response_from_ha2(
                    c.challenge.algorithm,
                    c.ha1.expose_hex(),
                    &c.challenge.nonce,
                    qop,
                    &c.ha2,
                );
                answers.push((slot == 1, nc, cnonce, response));
            }
        }
        let username = self.account.username.as_deref().unwrap_or("");
        let auth: Vec<AuthFields<'_>> = answers
            .iter()
            .filter_map(|(proxy, _, cnonce, response)| {
                let c = self.credentials[usize::from(*proxy)].as_ref()?;
                Some(AuthFields {
                    proxy: *proxy,
                    username: username.as_bytes(),
                    realm: &c.challenge.realm,
                    nonce: &c.challenge.nonce,
                    uri: self.account.registrar.as_bytes(),
                    response: response.as_bytes(),
                    algorithm: c.challenge.algorithm,
                    opaque: c.challenge.opaque.as_deref(),
                    qop: c.challenge.qop_auth.then_some((c.nc, cnonce.as_bytes())),
                })
            })
            .collect();
        let contact = self.account.contact();
        let no_removals = Vec::new();
        let remove = self.attempt.as_ref().map_or(&no_removals, |a| &a.remove);
        let request = RegisterRequest {
            request_uri: &self.account.registrar,
            via_sent_by: &self.settings.via_sent_by,
            branch: &branch,
            from: self
                .account
                .third_party_registrant
                .as_deref()
                .unwrap_or(&self.account.aor),
            from_tag: &self.from_tag,
            to: &self.account.aor,
            call_id: &self.call_id,
            cseq: self.cseq,
            contact: &contact,
            expires,
            remove,
            auth: &auth,
            user_agent: &self.settings.user_agent,
        };
        let mut buf = vec![0u8; self.settings.max_request_bytes];
        let written = write_register(&mut buf, &request);
        drop(auth);
        let Some(n) = written else {
            tracing::warn!(aor = %self.account.aor, max = self.settings.max_request_bytes, "REGISTER does not fit");
            self.attempt = None;
            self.fail(State::InternalError, None, None, now_ms, out);
            return false;
        };
        buf.truncate(n);
        if purpose == Purpose::Register && expires > 0 {
            self.maybe_bound_until_ms = self
                .maybe_bound_until_ms
                .max(now_ms + u64::from(expires) * 1000);
        }
        out.push(Effect::Send {
            to: self.target.clone(),
            datagram: buf.clone(),
        });
        self.txn = Some(Txn {
            branch,
            cseq: self.cseq,
            datagram: buf,
            started_ms: now_ms,
            next_retransmit_ms: now_ms + self.settings.t1_ms.max(1),
            interval_ms: self.settings.t1_ms.max(1),
            proceeding: false,
        });
        true
    }

    fn set_state(&mut self, to: State, status: Option<u16>, out: &mut Vec<Effect>) {
        if self.state != to {
            let from = self.state;
            self.state = to;
            tracing::debug!(aor = %self.account.aor, from = from.code(), to = to.code(), ?status, "registrant state");
            out.push(Effect::State { from, to, status });
        }
    }
}

/// Two `+sip.instance` values name the same instance (angle brackets and case aside: URNs compare
/// case-insensitively in their prefix, and UUIDs are hex).
fn same_instance(a: &[u8], b: &[u8]) -> bool {
    let strip = |v: &[u8]| -> Vec<u8> {
        v.iter()
            .copied()
            .filter(|c| !matches!(c, b'<' | b'>' | b'"'))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    strip(a) == strip(b)
}
