//! Digest authentication for REGISTER (RFC 7616, RFC 8760), as pure building blocks.
//!
//! The registrar owns one [`Authenticator`] per shard and calls [`Authenticator::check`] on the shard
//! that owns the AoR (the replay window relies on it). Time comes in as Unix seconds; nothing here does
//! I/O except the explicit file loaders used at start-up and on SIGHUP.
//!
//! - [`crate::sip::digest`] (the SIP toolkit): header parsing, HA1 and response computation, constant-time
//!   verification;
//! - [`nonce`]: stateless HMAC nonces bound to realm and AoR, valid on every shard and process
//!   sharing the key;
//! - [`replay`]: fixed-capacity window of the last nonce-count accepted per nonce;
//! - [`credentials`]: the users file (TOML or CSV; the formats are documented there);
//! - [`guard`]: brute-force cool-downs per user at a source address, and per source address.
//!
//! # Decision order in [`Authenticator::check`]
//!
//! 1. Source address in cool-down: 403. Costs one table probe, so a blocked flood is cheap.
//! 2. No `Digest` credentials for our realm (none, other realm, unparsable): 401.
//! 3. Nonce not ours (bad MAC, unknown key, from the future, other AoR), opaque mismatch, no
//!    `qop=auth`/`nc`/`cnonce`, digest `uri` not the Request-URI: 401, nothing recorded — a flood of
//!    forged credentials creates no state.
//! 4. User in cool-down at this source address: 403. Failures sent from other addresses never count
//!    here, so nobody can lock a user out of an address they do not use.
//! 5. Unknown user or wrong response: a failure for the user at the source, and for the source, then
//!    401 (the attempt that reaches `max_failures` still gets 401; the next ones get 403 until the
//!    cool-down ends). No HA1 for the client's algorithm: 401, not a failure.
//! 6. Right response but stale nonce: 401 with `stale=true` (the UA retries without asking the user).
//! 7. Nonce-count not above the last accepted one for that nonce (a replay), or unknown to a full
//!    window: 401 with `stale=true` (a fresh nonce costs a legitimate UA one round trip).
//! 8. Authenticated user does not own the AoR (user part differs, not in the allow-list): 403.
//! 9. Accept.

pub mod credentials;
pub mod guard;
pub mod log;
pub mod nonce;
pub mod replay;

use std::net::IpAddr;
use std::sync::Arc;

use crate::sip::digest::{self, Algorithm, DigestCredentials, MAX_VALUE_LEN};
use credentials::CredentialStore;
use guard::{Guard, GuardConfig, GuardStats};
use log::Refusal;
use nonce::{NonceCheck, NonceKey};
use replay::{Issuer, ReplayStats, ReplayVerdict, ReplayWindow};

/// Most `Authorization` header values examined per request (the rest are ignored): bounds the
/// parsing work an attacker can force with one datagram.
pub const MAX_AUTHORIZATIONS: usize = 4;

/// Settings for an [`Authenticator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Age after which a nonce is stale (`--nonce-ttl`).
    pub nonce_ttl_s: u64,
    /// Bind nonces to the client's address too (breaks UAs whose NAT mapping changes mid-handshake).
    pub bind_nonce_to_source: bool,
    /// Entries in the per-shard replay window.
    pub replay_capacity: usize,
    /// Brute-force limits (`--auth-max-failures` is `guard.max_failures`).
    pub guard: GuardConfig,
    /// Challenges offered, in order (`--auth-algorithms`). MD5 alone by default: baresip fails on a 401 that
    /// carries a SHA-256 challenge, first or not, and sipsak and SIPp answer only the first challenge, MD5
    /// only. RFC 8760 wants the strongest first where SHA-256 is offered. Never empty:
    /// `AuthConfig::with_algorithms` refuses that.
    pub challenge_algorithms: [Option<Algorithm>; 2],
}

impl AuthConfig {
    /// Set the challenge order; None when the list is empty or names an algorithm twice.
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Option<Self> {
        match algorithms {
            [a] => self.challenge_algorithms = [Some(*a), None],
            [a, b] if a != b => self.challenge_algorithms = [Some(*a), Some(*b)],
            _ => return None,
        }
        Some(self)
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            nonce_ttl_s: 300,
            bind_nonce_to_source: false,
            replay_capacity: replay::DEFAULT_CAPACITY,
            guard: GuardConfig::default(),
            challenge_algorithms: [Some(Algorithm::Md5), None],
        }
    }
}

/// What the registrar knows about a REGISTER, all borrowed from the parsed request.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// The request method, e.g. `b"REGISTER"` (it enters the digest).
    pub method: &'a [u8],
    /// The Request-URI as sent. When given, the digest `uri` must equal it byte for byte
    /// (RFC 7616 §3.4); `None` skips the check.
    pub request_uri: Option<&'a [u8]>,
    /// Canonical AoR from To (`b"sip:alice@example.com"`): nonces are bound to it.
    pub aor: &'a [u8],
    /// User part of the To URI: the authenticated user must equal it unless allow-listed.
    pub to_user: &'a [u8],
    /// Realm of the served domain (the registrar maps the To host to it; default the host itself).
    pub realm: &'a [u8],
    /// Source address of the datagram.
    pub source: IpAddr,
    /// Every `Authorization` header value of the request, in order.
    pub authorizations: &'a [&'a [u8]],
}

/// Why a request is refused with 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForbiddenReason {
    /// Authenticated, but the user may not register this AoR.
    NotOwner,
    /// The user or the source address is in a brute-force cool-down.
    TooManyFailures,
}

/// Outcome of [`Authenticator::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum AuthDecision<'a> {
    /// Authenticated and allowed. `user` is the username as it appeared in the header (between the
    /// quotes; `\` escapes, which are rare, left in place).
    Accept { user: &'a [u8] },
    /// Answer 401 with [`Authenticator::write_challenges`], passing `stale` along.
    Challenge { stale: bool },
    /// Answer 403.
    Forbidden(ForbiddenReason),
}

/// Counters, for metrics (one set per shard; sum them: each request is checked on one shard only, the one
/// owning its AoR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// REGISTERs whose credentials were accepted.
    pub accepted: u64,
    /// 401 because no usable credentials for our realm were sent (the normal first round trip).
    pub no_credentials: u64,
    /// Credentials present but unparsable.
    pub malformed: u64,
    /// Nonce not ours / altered / for another AoR, or opaque mismatch.
    pub invalid_nonce: u64,
    /// Parsed, but without qop=auth, nc, cnonce, or with a uri that is not the Request-URI.
    pub unsupported: u64,
    /// A failure: the username is not in the users file for the realm.
    pub unknown_user: u64,
    /// A failure: wrong digest response (wrong password).
    pub bad_response: u64,
    /// The user has no HA1 for the algorithm the UA chose.
    pub no_ha1_for_algorithm: u64,
    /// Right response with a nonce older than `--nonce-ttl`: 401 with `stale=true`.
    pub stale: u64,
    /// Nonce-count not above the last one accepted for the nonce: 401 with `stale=true`.
    pub replayed: u64,
    /// Nonce unknown to a full replay window (re-challenged to be safe).
    pub replay_forgotten: u64,
    /// 403: authenticated, but the user may not register this AoR.
    pub forbidden_not_owner: u64,
    /// 403: the user at this source address, or the address, is in a brute-force cool-down.
    pub forbidden_cooldown: u64,
    /// 401 responses carrying a challenge (one per response, whatever the number of algorithms offered).
    pub challenges_written: u64,
}

impl AuthStats {
    /// Every counter with its name, in declaration order (for `key=value` logs).
    #[must_use]
    pub fn counters(&self) -> [(&'static str, u64); 14] {
        // Destructured without `..`: a new counter does not compile until it is listed here.
        let AuthStats {
            accepted,
            no_credentials,
            malformed,
            invalid_nonce,
            unsupported,
            unknown_user,
            bad_response,
            no_ha1_for_algorithm,
            stale,
            replayed,
            replay_forgotten,
            forbidden_not_owner,
            forbidden_cooldown,
            challenges_written,
        } = *self;
        [
            ("accepted", accepted),
            ("no_credentials", no_credentials),
            ("malformed", malformed),
            ("invalid_nonce", invalid_nonce),
            ("unsupported", unsupported),
            ("unknown_user", unknown_user),
            ("bad_response", bad_response),
            ("no_ha1_for_algorithm", no_ha1_for_algorithm),
            ("stale", stale),
            ("replayed", replayed),
            ("replay_forgotten", replay_forgotten),
            ("forbidden_not_owner", forbidden_not_owner),
            ("forbidden_cooldown", forbidden_cooldown),
            ("challenges_written", challenges_written),
        ]
    }
}

/// Per-shard authentication state: nonce key, credentials, replay window, brute-force guard.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    /// Issues and verifies the nonces; the same key on every shard (and in processes sharing a key file).
    key: NonceKey,
    credentials: Arc<CredentialStore>,
    replay: ReplayWindow,
    guard: Guard,
    /// Uniquifies nonces issued in the same second for the same AoR: the counter of the last nonce issued.
    nonce_counter: u64,
    /// The counter before the first nonce this authenticator issued: a nonce whose counter lies in
    /// `counter_start + 1 ..= nonce_counter` is its own, which the replay window orders exactly.
    counter_start: u64,
    stats: AuthStats,
    refusals: log::RefusalLog,
}

impl Authenticator {
    /// `key` is shared by every shard (and by processes using the same key file); `now_s` starts
    /// the replay window (nonces issued before it are re-challenged once, see [`replay`]).
    #[must_use]
    pub fn new(
        config: AuthConfig,
        key: NonceKey,
        credentials: Arc<CredentialStore>,
        now_s: u64,
    ) -> Self {
        let mut seed = [0u8; 8];
        // A random start keeps counters of different shards and processes apart; if the OS
        // source fails, uniqueness within this shard (all that replay needs) still holds.
        let nonce_counter = match getrandom::getrandom(&mut seed) {
            Ok(()) => u64::from_ne_bytes(seed),
            Err(_) => now_s,
        };
        Self {
            config,
            key,
            credentials,
            replay: ReplayWindow::new(config.replay_capacity, now_s),
            guard: Guard::new(config.guard),
            nonce_counter,
            counter_start: nonce_counter,
            refusals: log::RefusalLog::default(),
            stats: AuthStats::default(),
        }
    }

    /// Replaces the credentials (SIGHUP reload). Bindings, nonces and counters are unaffected.
    pub fn set_credentials(&mut self, credentials: Arc<CredentialStore>) {
        self.credentials = credentials;
    }

    #[must_use]
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    #[must_use]
    pub fn stats(&self) -> AuthStats {
        self.stats
    }

    #[must_use]
    pub fn guard_stats(&self) -> GuardStats {
        self.guard.stats()
    }

    #[must_use]
    pub fn replay_stats(&self) -> ReplayStats {
        self.replay.stats()
    }

    /// Who issued the nonce with this counter, for the replay window.
    fn issuer(&self, counter: u64) -> Issuer {
        let seq = counter.wrapping_sub(self.counter_start);
        let issued = self.nonce_counter.wrapping_sub(self.counter_start);
        if seq >= 1 && seq <= issued {
            Issuer::Own { seq }
        } else {
            Issuer::Foreign
        }
    }

    fn nonce_source(&self, source: IpAddr) -> Option<IpAddr> {
        self.config.bind_nonce_to_source.then_some(source)
    }

    /// A failed attempt: counted by the guard (which may start a cool-down) and logged, rate-limited.
    fn failed(&mut self, why: Refusal, req: &AuthRequest<'_>, username: &[u8], now_s: u64) {
        let blocked = self
            .guard
            .record_failure(req.realm, username, req.source, now_s);
        let cooldown = blocked.then_some(self.config.guard.cooldown_s);
        self.refusals
            .refused(why, username, req.source, cooldown, now_s);
    }

    /// Decides what to do with a REGISTER. See the module docs for the order of the checks.
    pub fn check<'a>(&mut self, req: AuthRequest<'a>, now_s: u64) -> AuthDecision<'a> {
        if self.guard.source_blocked(req.source, now_s) {
            self.stats.forbidden_cooldown += 1;
            self.refusals
                .refused(Refusal::CoolingDown, b"", req.source, None, now_s);
            return AuthDecision::Forbidden(ForbiddenReason::TooManyFailures);
        }
        match self.select_credentials(&req) {
            Some(creds) => self.authenticate(&req, &creds, now_s),
            None => AuthDecision::Challenge { stale: false },
        }
    }

    /// The first `Digest` credentials for our realm, counting why there are none.
    fn select_credentials<'a>(&mut self, req: &AuthRequest<'a>) -> Option<DigestCredentials<'a>> {
        let mut malformed = false;
        for value in req.authorizations.iter().take(MAX_AUTHORIZATIONS) {
            match digest::parse_authorization(value) {
                Ok(c) if c.realm.eq_unescaped(req.realm) => return Some(c),
                Ok(_) | Err(digest::DigestParseError::NotDigest) => {}
                Err(_) => malformed = true,
            }
        }
        if malformed {
            self.stats.malformed += 1;
        } else {
            self.stats.no_credentials += 1;
        }
        None
    }

    /// Steps 3 to 9 of the module docs.
    fn authenticate<'a>(
        &mut self,
        req: &AuthRequest<'a>,
        creds: &DigestCredentials<'a>,
        now_s: u64,
    ) -> AuthDecision<'a> {
        let challenge = |stale| AuthDecision::Challenge { stale };

        // Step 3: is it our nonce, for this realm and AoR? Nothing is recorded on failure.
        let nonce_check = self.key.check(
            creds.nonce.raw(),
            now_s,
            req.realm,
            req.aor,
            self.nonce_source(req.source),
            self.config.nonce_ttl_s,
        );
        let (issued_s, counter) = match nonce_check {
            NonceCheck::Fresh { issued_s, counter } | NonceCheck::Stale { issued_s, counter }
                if creds.opaque.is_none_or(|o| o.raw() == self.key.opaque()) =>
            {
                (issued_s, counter)
            }
            _ => {
                self.stats.invalid_nonce += 1;
                return challenge(false);
            }
        };
        let nc = match (creds.is_qop_auth(), creds.nonce_count(), creds.cnonce) {
            (true, Some(nc), Some(_)) => nc,
            _ => {
                self.stats.unsupported += 1;
                return challenge(false);
            }
        };
        if let Some(request_uri) = req.request_uri {
            if !creds.uri.eq_unescaped(request_uri) {
                self.stats.unsupported += 1;
                return challenge(false);
            }
        }

        // Step 4.
        let mut user_buf = [0u8; MAX_VALUE_LEN];
        let username = creds.username.unescape(&mut user_buf);
        if self
            .guard
            .user_blocked(req.realm, username, req.source, now_s)
        {
            self.stats.forbidden_cooldown += 1;
            self.refusals
                .refused(Refusal::CoolingDown, username, req.source, None, now_s);
            return AuthDecision::Forbidden(ForbiddenReason::TooManyFailures);
        }

        // Step 5.
        let Some(entry) = self.credentials.lookup(req.realm, username) else {
            self.stats.unknown_user += 1;
            self.failed(Refusal::UnknownUser, req, username, now_s);
            return challenge(false);
        };
        let Some(ha1) = entry.ha1(creds.algorithm) else {
            self.stats.no_ha1_for_algorithm += 1;
            return challenge(false);
        };
        if !digest::verify(ha1, creds, req.method) {
            self.stats.bad_response += 1;
            self.failed(Refusal::BadPassword, req, username, now_s);
            return challenge(false);
        }

        // Step 6: the password was right, the nonce is just old.
        if matches!(nonce_check, NonceCheck::Stale { .. }) {
            self.stats.stale += 1;
            return challenge(true);
        }

        // Step 7.
        let issuer = self.issuer(counter);
        match self.replay.accept(creds.nonce.raw(), issued_s, issuer, nc) {
            ReplayVerdict::Accepted => {}
            ReplayVerdict::Replayed => {
                self.stats.replayed += 1;
                return challenge(true);
            }
            ReplayVerdict::Forgotten => {
                self.stats.replay_forgotten += 1;
                return challenge(true);
            }
        }
        self.guard.record_success(req.realm, username, req.source);

        // Step 8: the AoR is the user's own, or allow-listed for it (third-party registration).
        if username != req.to_user && !entry.allows_aor(req.aor) {
            self.stats.forbidden_not_owner += 1;
            self.refusals
                .refused(Refusal::NotOwner, username, req.source, None, now_s);
            return AuthDecision::Forbidden(ForbiddenReason::NotOwner);
        }
        self.stats.accepted += 1;
        AuthDecision::Accept {
            user: creds.username.raw(),
        }
    }

    /// Appends the `WWW-Authenticate` header lines of a 401: one per configured algorithm, in the configured
    /// order (RFC 8760 §2.4: clients use the first they support), sharing one nonce.
    pub fn write_challenges(
        &mut self,
        realm: &[u8],
        aor: &[u8],
        source: IpAddr,
        now_s: u64,
        stale: bool,
        out: &mut Vec<u8>,
    ) {
        self.nonce_counter = self.nonce_counter.wrapping_add(1);
        let key = &self.key;
        let nonce = key.issue(
            now_s,
            realm,
            aor,
            self.nonce_source(source),
            self.nonce_counter,
        );
        for alg in self.config.challenge_algorithms.into_iter().flatten() {
            out.extend_from_slice(b"WWW-Authenticate: Digest realm=\"");
            digest::push_quoted_content(out, realm);
            out.extend_from_slice(b"\", nonce=\"");
            out.extend_from_slice(nonce.as_bytes());
            out.extend_from_slice(b"\", opaque=\"");
            out.extend_from_slice(key.opaque());
            out.extend_from_slice(b"\", algorithm=");
            out.extend_from_slice(alg.name().as_bytes());
            out.extend_from_slice(b", qop=\"auth\"");
            if stale {
                out.extend_from_slice(b", stale=true");
            }
            out.extend_from_slice(b"\r\n");
        }
        self.stats.challenges_written += 1;
    }
}

#[cfg(test)]
mod tests;
