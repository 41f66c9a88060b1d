//! One sender thread: owns a contiguous range of users and one UDP socket connected to the target,
//! starts their transactions at the pace it is given, matches responses by the branch it wrote,
//! answers digest challenges, retransmits, and reports statistics once per second.
//!
//! Users never move between workers, so no state is shared and nothing is locked on the hot path.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corereg_sip::client::request::parse_branch;
use corereg_sip::client::request::{
    write_register, Action, AuthFields, RegisterParams, RegisterTemplate, Writer,
};
use corereg_sip::client::response::parse_response;
use corereg_sip::digest::{self, Challenge, Ha1, HexDigest};
use corereg_udp::{RecvBatch, SendBatch};
use hdrhistogram::Histogram;

use crate::net;
use crate::passwords::Passwords;
use crate::report::{new_histogram, Counters, Interval};
use crate::scenario::{next_action, Mix, Scenario, UserView};
use crate::scheduler::Pacing;
use crate::transaction::{Fired, TimerConfig, Timers};

/// Everything a run needs, shared read-only by all workers.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: SocketAddr,
    pub local_ip: std::net::Ipv4Addr,
    pub domain: Vec<u8>,
    pub request_uri: Vec<u8>,
    pub user_prefix: Vec<u8>,
    pub user_width: usize,
    pub first_user: u64,
    pub users: u64,
    pub expires_s: u32,
    pub scenario: Scenario,
    pub mix: Mix,
    pub refreshes_per_life: u16,
    pub passwords: Passwords,
    pub timers: TimerConfig,
    pub batch: usize,
    pub run_id: u32,
    /// When non-zero, an idle worker sleeps this long instead of waking on every datagram: fewer
    /// wake-ups and larger batches (less CPU per REGISTER) at the cost of this much latency
    /// resolution and burstier pacing.
    pub tick_ns: u64,
    /// Send runs of equal-sized requests as one UDP GSO send each (falls back to plain sendmmsg
    /// where the kernel refuses it).
    pub gso: bool,
}

/// Limits of one worker's share of the run.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    pub index: usize,
    pub first_user: u32,
    pub users: u32,
    pub pacing: Pacing,
    /// Stop starting operations after this many (count mode).
    pub quota: Option<u64>,
    /// Stop starting operations after this long (duration mode).
    pub duration_ns: Option<u64>,
}

/// The `User-Agent` of every request.
const USER_AGENT: &[u8] = b"corereg-loadgen";

/// How many digest answers one operation may send: one for a fresh challenge, one more when a
/// cached nonce was refused (expired/stale) and a new challenge came back.
const MAX_AUTH_ROUNDS: u8 = 2;
/// Most operations started per loop iteration, so receiving is never starved by a large backlog.
const MAX_STARTS_PER_ITERATION: u64 = 1024;
/// Longest sleep, so reporting and stop checks stay responsive.
const MAX_WAIT_NS: u64 = 100_000_000;
const NS_PER_S: u64 = 1_000_000_000;

struct AuthCache {
    challenge: Challenge,
    proxy: bool,
    ha1: Ha1,
    ha2: HexDigest,
    nc: u32,
    cnonce: Vec<u8>,
    /// Response of the current transaction, kept so a retransmission is byte-identical.
    response: Option<HexDigest>,
}

#[derive(Default)]
struct User {
    cseq: u32,
    /// Bumped on every new transaction and on completion: stale timers/responses never match.
    generation: u32,
    boot: u32,
    in_flight: bool,
    registered: bool,
    refreshes: u16,
    auth_rounds: u8,
    action: Option<Action>,
    op_started_ns: u64,
    tx_started_ns: u64,
    auth: Option<Box<AuthCache>>,
}

pub struct Worker {
    cfg: Arc<RunConfig>,
    share: Share,
    socket: UdpSocket,
    local_host: Vec<u8>,
    local_port: u16,
    users: Vec<User>,
    cursor: usize,
    timers: Timers,
    send: SendBatch,
    recv: RecvBatch,
    started: u64,
    in_flight: usize,
    rng: u64,
    counters: Counters,
    latency_us: Histogram<u64>,
    clock: Instant,
    last_completion_ns: u64,
    /// Why GSO is off although asked for (probe failed), if so.
    gso_unsupported: Option<String>,
    /// Credential-less REGISTERs are copied from this and patched.
    template: RegisterTemplate,
    /// GSO counters of `send` already reported.
    gso_reported: (u64, u64),
}

impl Worker {
    pub fn new(cfg: Arc<RunConfig>, share: Share, clock: Instant) -> std::io::Result<Worker> {
        let socket = net::bind_udp(SocketAddr::new(cfg.local_ip.into(), 0), false)?;
        corereg_udp::connect(&socket, cfg.target)?;
        let local_port = socket.local_addr()?.port();
        let users = (0..share.users).map(|_| User::default()).collect();
        let mut send = net::send_batch(cfg.batch);
        let mut gso_unsupported = None;
        if cfg.gso {
            match net::gso_path(&socket) {
                Ok(path) => send.set_path(path),
                Err(e) => gso_unsupported = Some(format!("UDP GSO unsupported ({e})")),
            }
        }
        Ok(Worker {
            local_host: cfg.local_ip.to_string().into_bytes(),
            local_port,
            users,
            cursor: 0,
            timers: Timers::new(cfg.timers),
            send,
            recv: net::recv_batch(cfg.batch),
            started: 0,
            in_flight: 0,
            rng: 0x9e37_79b9_7f4a_7c15 ^ ((share.index as u64 + 1) << 32) ^ cfg.run_id as u64,
            counters: Counters::default(),
            latency_us: new_histogram(),
            clock,
            last_completion_ns: 0,
            gso_unsupported,
            gso_reported: (0, 0),
            template: RegisterTemplate::default(),
            cfg,
            share,
            socket,
        })
    }

    fn now_ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    fn stopping(&self, now_ns: u64) -> bool {
        self.share.quota.is_some_and(|q| self.started >= q)
            || self.share.duration_ns.is_some_and(|d| now_ns >= d)
    }

    /// Runs until the share is done and every transaction finished; streams stats to `tx`.
    pub fn run(mut self, tx: Sender<Interval>) {
        let mut second = 0u64;
        loop {
            let now = self.now_ns();
            let mut busy = self.fire_timers(now);
            // Drain replies first, so the operations they complete are restarted in this same
            // pass and leave in the same batch.
            busy |= self.receive();
            let mut backlog = false;
            if !self.stopping(now) {
                let (started, capped) = self.start_operations(now);
                busy |= started;
                backlog = capped;
            }
            self.flush();

            let now = self.now_ns();
            if now >= (second + 1) * NS_PER_S {
                self.report(&tx, second);
                second = now / NS_PER_S;
            }
            if self.stopping(now) && self.in_flight == 0 {
                break;
            }
            // With a tick, a pass that did some work still sleeps: everything that arrived was
            // drained and everything allowed was started, so looping at once would only make
            // smaller batches (more syscalls per REGISTER). Only a capped start backlog loops.
            let sleep = if self.cfg.tick_ns > 0 {
                !backlog
            } else {
                !busy
            };
            if sleep {
                self.wait(now, second);
            }
        }
        self.report(&tx, second);
    }

    fn report(&mut self, tx: &Sender<Interval>, second: u64) {
        let (sends, datagrams) = self.send.gso_stats();
        self.counters.gso_sends += sends - self.gso_reported.0;
        self.counters.gso_datagrams += datagrams - self.gso_reported.1;
        self.gso_reported = (sends, datagrams);
        let gso_fallback = self
            .gso_unsupported
            .clone()
            .or_else(|| self.send.gso_fallback().map(str::to_owned));
        let iv = Interval {
            gso_fallback,
            worker: self.share.index,
            second,
            counters: std::mem::take(&mut self.counters),
            latency_us: std::mem::replace(&mut self.latency_us, new_histogram()),
            in_flight: self.in_flight as u64,
            last_completion_ns: self.last_completion_ns,
        };
        // The receiver only goes away when the run is being torn down; nothing to do then.
        let _ = tx.send(iv);
    }

    fn wait(&self, now: u64, second: u64) {
        let mut until = (second + 1) * NS_PER_S;
        if let Some(t) = self.timers.next_due_ns() {
            until = until.min(t);
        }
        if !self.stopping(now) && self.users_idle() {
            if let Some(t) = self.share.pacing.next_due_ns(self.started) {
                until = until.min(t);
            }
        }
        if let Some(d) = self.share.duration_ns {
            if now < d {
                until = until.min(d);
            }
        }
        let wait = until.saturating_sub(now).min(MAX_WAIT_NS);
        if self.cfg.tick_ns > 0 {
            std::thread::sleep(std::time::Duration::from_nanos(
                self.cfg.tick_ns.min(MAX_WAIT_NS),
            ));
        } else if wait > 0 {
            corereg_udp::wait_readable(&self.socket, Duration::from_nanos(wait));
        }
    }

    fn users_idle(&self) -> bool {
        self.in_flight < self.users.len()
    }

    fn fire_timers(&mut self, now: u64) -> bool {
        let mut busy = false;
        while let Some(d) = self.timers.pop_due(now) {
            let Some(idx) = self.local_index(d.user) else {
                continue;
            };
            let u = &self.users[idx];
            if !u.in_flight || u.generation != d.generation {
                continue;
            }
            let tx_started_ns = u.tx_started_ns;
            busy = true;
            match self.timers.classify(now, tx_started_ns) {
                Fired::Timeout => {
                    self.counters.timeouts += 1;
                    self.finish(idx, now, None);
                }
                Fired::Retransmit => {
                    self.counters.retransmissions += 1;
                    self.queue_request(idx);
                    let deadline = self.timers.deadline_ns(tx_started_ns);
                    self.timers.rearm(now, &d, deadline);
                }
            }
        }
        busy
    }

    fn local_index(&self, user: u32) -> Option<usize> {
        let idx = user.checked_sub(self.share.first_user)? as usize;
        (idx < self.users.len()).then_some(idx)
    }

    /// Starts what pacing allows; returns (started any, stopped by the per-pass cap with more
    /// allowed).
    fn start_operations(&mut self, now: u64) -> (bool, bool) {
        let mut allowed = self.share.pacing.allowed(now, self.started, self.in_flight);
        if let Some(q) = self.share.quota {
            allowed = allowed.min(q.saturating_sub(self.started));
        }
        let capped = allowed > MAX_STARTS_PER_ITERATION;
        allowed = allowed.min(MAX_STARTS_PER_ITERATION);
        let n = self.users.len();
        let mut started_any = false;
        while allowed > 0 && self.in_flight < n {
            // Round-robin over users, skipping those with a transaction in flight.
            let mut idx = self.cursor;
            while self.users[idx].in_flight {
                idx = if idx + 1 == n { 0 } else { idx + 1 };
            }
            self.cursor = if idx + 1 == n { 0 } else { idx + 1 };
            self.start_operation(idx, now);
            allowed -= 1;
            started_any = true;
        }
        (started_any, capped && self.in_flight < n)
    }

    fn start_operation(&mut self, idx: usize, now: u64) {
        let u = &mut self.users[idx];
        let view = UserView {
            registered: u.registered,
            refreshes: u.refreshes,
        };
        let action = next_action(
            self.cfg.scenario,
            self.cfg.mix,
            self.cfg.refreshes_per_life,
            view,
            &mut self.rng,
        );
        u.action = Some(action);
        u.op_started_ns = now;
        u.auth_rounds = 0;
        u.in_flight = true;
        self.in_flight += 1;
        self.started += 1;
        self.counters.attempted += 1;
        self.begin_transaction(idx, now);
    }

    /// A new client transaction for the user's current operation: new branch, next CSeq, and the
    /// cached credentials (next nonce count) if the registrar challenged this user before.
    fn begin_transaction(&mut self, idx: usize, now: u64) {
        let u = &mut self.users[idx];
        u.generation = u.generation.wrapping_add(1);
        u.cseq = u.cseq.wrapping_add(1);
        u.tx_started_ns = now;
        if let Some(a) = u.auth.as_deref_mut() {
            a.nc = a.nc.wrapping_add(1);
            compute_response(a);
        }
        let generation = u.generation;
        self.queue_request(idx);
        let user = self.share.first_user + idx as u32;
        self.timers.arm(now, user, generation);
    }

    fn queue_request(&mut self, idx: usize) {
        if self.send.is_full() {
            self.flush();
        }
        let u = &self.users[idx];
        let user_index = self.share.first_user + idx as u32;
        let user_number = self.cfg.first_user + user_index as u64;
        let mut username = [0u8; 128];
        let uname_len = user_name(&self.cfg, user_number, &mut username);
        let auth = u.auth.as_deref().map(|a| AuthFields {
            proxy: a.proxy,
            username: &username[..uname_len],
            realm: &a.challenge.realm,
            nonce: &a.challenge.nonce,
            uri: &self.cfg.request_uri,
            response: a.response.as_ref().map_or(&[][..], HexDigest::as_bytes),
            algorithm: a.challenge.algorithm,
            opaque: a.challenge.opaque.as_deref(),
            qop: a.challenge.qop_auth.then_some((a.nc, a.cnonce.as_slice())),
        });
        let params = RegisterParams {
            request_uri: &self.cfg.request_uri,
            domain: &self.cfg.domain,
            user_prefix: &self.cfg.user_prefix,
            user_number,
            user_width: self.cfg.user_width,
            local_host: &self.local_host,
            local_port: self.local_port,
            run_id: self.cfg.run_id,
            user_index,
            generation: u.generation,
            boot: u.boot,
            cseq: u.cseq,
            action: u.action.unwrap_or(Action::Register),
            expires_s: self.cfg.expires_s,
            user_agent: USER_AGENT,
            auth,
        };
        // A request that does not fit a datagram buffer (absurd nonce) is not sent; timer F
        // then counts it as a timeout rather than hanging.
        if params.auth.is_some() {
            let _ = self
                .send
                .push_with(None, |buf| write_register(buf, &params));
        } else {
            let template = &mut self.template;
            let _ = self
                .send
                .push_with(None, |buf| template.write(buf, &params));
        }
    }

    fn flush(&mut self) {
        if !self.send.is_empty() {
            let out = self.send.send_all(&self.socket);
            self.counters.datagrams_sent += out.sent as u64;
            self.counters.send_drops += out.dropped as u64;
        }
    }

    fn receive(&mut self) -> bool {
        let mut any = false;
        loop {
            // Nothing queued (EAGAIN), or an ICMP error from the target: nothing to read.
            let n = self.recv.recv(&self.socket).unwrap_or(0);
            if n == 0 {
                break;
            }
            any = true;
            let now = self.now_ns();
            // Take the batch out so responses can borrow it while `self` is mutated.
            let batch = std::mem::take(&mut self.recv);
            for received in batch.iter() {
                self.on_datagram(received.datagram, now);
            }
            self.recv = batch;
            if n < self.recv.capacity() {
                break;
            }
        }
        any
    }

    fn on_datagram(&mut self, data: &[u8], now: u64) {
        let Ok(resp) = parse_response(data) else {
            self.counters.garbage += 1;
            return;
        };
        let matched = resp
            .branch
            .and_then(parse_branch)
            .filter(|(run, _, _)| *run == self.cfg.run_id)
            .and_then(|(_, user, generation)| {
                let idx = self.local_index(user)?;
                let u = &self.users[idx];
                (u.in_flight && u.generation == generation).then_some(idx)
            });
        let Some(idx) = matched else {
            self.counters.unmatched += 1;
            return;
        };
        match resp.status {
            100..=199 => {}
            200..=299 => self.finish(idx, now, Some(resp.status)),
            401 | 407 => {
                if self.users[idx].auth_rounds >= MAX_AUTH_ROUNDS {
                    self.finish(idx, now, Some(resp.status));
                    return;
                }
                let Some(challenge) = Challenge::pick_strongest(resp.challenges().iter().copied())
                else {
                    self.finish(idx, now, Some(resp.status));
                    return;
                };
                self.counters.challenges += 1;
                self.answer_challenge(idx, challenge, resp.status == 407);
                self.users[idx].auth_rounds += 1;
                self.begin_transaction(idx, now);
            }
            status => self.finish(idx, now, Some(status)),
        }
    }

    fn answer_challenge(&mut self, idx: usize, challenge: Challenge, proxy: bool) {
        let user_number = self.cfg.first_user + (self.share.first_user as u64) + idx as u64;
        let mut username = [0u8; 128];
        let n = user_name(&self.cfg, user_number, &mut username);
        let username = &username[..n];
        let u = &mut self.users[idx];
        // Reuse HA1 when the realm and algorithm did not change (only the nonce expired).
        let reuse = u.auth.as_deref().is_some_and(|a| {
            a.challenge.realm == challenge.realm && a.challenge.algorithm == challenge.algorithm
        });
        let ha1 = match (reuse, u.auth.take()) {
            (true, Some(old)) => old.ha1,
            _ => {
                let password = self.cfg.passwords.lookup(username);
                Ha1::from_password(challenge.algorithm, username, &challenge.realm, &password)
            }
        };
        let ha2 = digest::ha2(challenge.algorithm, b"REGISTER", &self.cfg.request_uri);
        let mut cnonce = Vec::with_capacity(24);
        cnonce.extend_from_slice(format!("{:08x}{:08x}", self.cfg.run_id, idx).as_bytes());
        // nc starts at 0: begin_transaction increments it to 1 for the first answer.
        u.auth = Some(Box::new(AuthCache {
            challenge,
            proxy,
            ha1,
            ha2,
            nc: 0,
            cnonce,
            response: None,
        }));
    }

    /// Ends the user's operation: `status` is the final response, None for a timeout.
    fn finish(&mut self, idx: usize, now: u64, status: Option<u16>) {
        let u = &mut self.users[idx];
        if !u.in_flight {
            return;
        }
        u.in_flight = false;
        u.generation = u.generation.wrapping_add(1);
        self.in_flight -= 1;
        self.last_completion_ns = now;
        let action = u.action.unwrap_or(Action::Register);
        let counts = match action {
            Action::Register => &mut self.counters.register,
            Action::Refresh => &mut self.counters.refresh,
            Action::Unregister => &mut self.counters.unregister,
        };
        match status {
            Some(s) if (200..300).contains(&s) => {
                counts.succeeded += 1;
                self.counters.succeeded += 1;
                let latency_us = now.saturating_sub(u.op_started_ns) / 1000;
                self.latency_us.saturating_record(latency_us.max(1));
                match action {
                    Action::Register => {
                        u.registered = true;
                        u.refreshes = 0;
                    }
                    Action::Refresh => u.refreshes = u.refreshes.saturating_add(1),
                    Action::Unregister => {
                        u.registered = false;
                        u.refreshes = 0;
                        u.boot = u.boot.wrapping_add(1);
                    }
                }
            }
            Some(s) => {
                counts.failed += 1;
                *self.counters.failed_by_status.entry(s).or_default() += 1;
                if s == 401 || s == 407 || s == 403 {
                    // The cached credentials were refused: start from a fresh challenge.
                    u.auth = None;
                }
            }
            None => counts.failed += 1,
        }
    }
}

fn compute_response(a: &mut AuthCache) {
    let nc = digest::nc_hex(a.nc);
    let qop = a
        .challenge
        .qop_auth
        .then_some((&nc[..], a.cnonce.as_slice()));
    a.response = Some(digest::response_from_ha2(
        a.challenge.algorithm,
        a.ha1.expose_hex(),
        &a.challenge.nonce,
        qop,
        &a.ha2,
    ));
}

/// Writes `<prefix><number>` into `buf`, returning its length (0 if it does not fit).
pub fn user_name(cfg: &RunConfig, number: u64, buf: &mut [u8]) -> usize {
    let mut w = Writer::new(buf);
    w.put(&cfg.user_prefix)
        .put_u64_padded(number, cfg.user_width);
    w.finish().unwrap_or(0)
}
