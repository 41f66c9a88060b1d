//! The webhook: POSTs the change events to an HTTP endpoint as `{"events": [ ... ]}`, in order, a batch at
//! a time, each batch retried until the endpoint accepts it.
//!
//! It is one subscriber of the event hub, on a plain thread of its own ([`run`]). While the endpoint is
//! down the events wait in the subscription's bounded queue; when the endpoint stays down longer than that
//! queue lasts, the hub cuts the webhook off, and once the endpoint answers again the webhook resumes after
//! the last event the endpoint accepted, while the hub still holds it. When it no longer does, the webhook
//! goes on with the newest events and logs how many were lost.
//!
//! This build's HTTP client has no TLS: the endpoint is an `http://` URL (put a local TLS proxy in front
//! of an `https://` endpoint).

use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::api::json;
use crate::events::{Event, Message, Request, ResumeError, SubscribeError, Subscription};

/// How often `stop` is checked while the webhook waits (for events, the hub, or a back-off).
pub const STOP_POLL: Duration = Duration::from_millis(200);

/// A failing endpoint is logged on its first failure, then at most once per this interval (with the count).
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// The most of an endpoint's response body read (and ignored); a longer body is cut short.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Largest `batch` accepted: a POST of this many events is a few MiB.
pub const MAX_BATCH: usize = 10_000;

/// Where and how the events are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The endpoint: `http://host[:port]/path`.
    pub url: String,
    /// Events per POST, at most.
    pub batch: usize,
    /// Per request: connecting, sending and reading the answer.
    pub timeout: Duration,
    /// The first wait before a failed batch is sent again; it doubles on each failure...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
}

impl Default for WebhookConfig {
    /// Every default; `url` is empty and must be set.
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            batch: 100,
            timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl WebhookConfig {
    /// The defaults, for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            ..WebhookConfig::default()
        }
    }

    /// Refuses a URL this client cannot reach (not `http://host[:port]/path`) and limits that make no sense.
    pub fn validate(&self) -> Result<(), WebhookError> {
        check_http_url(&self.url).map_err(|reason| WebhookError::Url {
            url: self.url.clone(),
            reason,
        })?;
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(WebhookError::Batch(self.batch));
        }
        if self.timeout.is_zero() {
            return Err(WebhookError::Timeout);
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(WebhookError::Backoff {
                min: self.backoff_min,
                max: self.backoff_max,
            });
        }
        Ok(())
    }
}

/// Why a [`WebhookConfig`] is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("--webhook {url:?}: {reason}")]
    Url { url: String, reason: UrlError },
    #[error("--webhook-batch {0}: must be 1 to {MAX_BATCH} events")]
    Batch(usize),
    #[error("the webhook's request timeout must be more than 0")]
    Timeout,
    #[error("the webhook's back-off must start above 0 and at most at its maximum (got {min:?} to {max:?})")]
    Backoff { min: Duration, max: Duration },
}

/// Why a URL is not one this HTTP client can use.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("https is not supported (this build has no TLS): give an http:// URL, e.g. of a local TLS proxy")]
    Https,
    #[error("not an http:// URL (expected http://host[:port]/path)")]
    Scheme,
    #[error("no host (expected http://host[:port]/path)")]
    NoHost,
    #[error("invalid port {0:?} (1 to 65535)")]
    Port(String),
    #[error("user information (user@host) is not supported")]
    UserInfo,
    #[error("it contains spaces or control characters")]
    Characters,
}

/// Checks that `url` is `http://host[:port][/path]`: the only kind of URL this build's HTTP client reaches.
pub fn check_http_url(url: &str) -> Result<(), UrlError> {
    let scheme_end = url.find("://").ok_or(UrlError::Scheme)?;
    let scheme = &url[..scheme_end];
    if scheme.eq_ignore_ascii_case("https") {
        return Err(UrlError::Https);
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(UrlError::Scheme);
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Characters);
    }
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    // `[v6]:port`, `host:port` or a host alone.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix(':')),
            None => return Err(UrlError::NoHost),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(UrlError::Port(port.to_string())),
        }
    }
    Ok(())
}

/// The webhook's counters, shared with whoever reports them (metrics).
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Events the endpoint accepted.
    pub delivered: AtomicU64,
    /// POSTs that failed (error status, no connection, timeout); each is retried.
    pub failed_attempts: AtomicU64,
    /// Events never sent: the endpoint was down longer than the hub held them.
    pub lost: AtomicU64,
}

impl WebhookCounters {
    /// The counters' values now.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// A reading of [`WebhookCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    pub delivered: u64,
    pub failed_attempts: u64,
    pub lost: u64,
}

/// Runs the webhook on the calling (plain) thread until `stop()` returns true or the hub is gone.
///
/// `stop` is checked at least every [`STOP_POLL`], except while a POST is under way (at most
/// `cfg.timeout`). A batch the endpoint has not accepted when it stops is not sent. Give it a validated
/// config ([`WebhookConfig::validate`]).
pub fn run(
    cfg: WebhookConfig,
    hub: Sender<Request>,
    counters: Arc<WebhookCounters>,
    stop: impl Fn() -> bool,
) {
    // Waits with a time limit (events, the hub's replies) need a timer: a runtime of the thread's own.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("webhook {}: cannot start: {e}", cfg.url);
            return;
        }
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(cfg.timeout)
        // A redirect is not an acceptance: a 3xx is retried like any other failure.
        .redirects(0)
        .build();
    tracing::info!(
        "webhook: posting events to {} (batch {}, timeout {:?})",
        cfg.url,
        cfg.batch,
        cfg.timeout
    );
    let mut webhook = Webhook {
        cfg,
        hub,
        counters,
        rt,
        agent,
        done_up_to: None,
        gap_after: None,
        failing: None,
    };
    webhook.run(&stop);
    tracing::info!("webhook {}: stopped", webhook.cfg.url);
}

struct Webhook {
    cfg: WebhookConfig,
    hub: Sender<Request>,
    counters: Arc<WebhookCounters>,
    rt: tokio::runtime::Runtime,
    agent: ureq::Agent,
    /// The id of the last event the endpoint accepted (or of the one before the first event received, until
    /// one is accepted): where to resume after a cut-off.
    done_up_to: Option<u64>,
    /// Set when the hub no longer held the events after this id: the next event received tells how many
    /// were lost.
    gap_after: Option<u64>,
    /// The endpoint's current run of failures.
    failing: Option<Failing>,
}

/// A run of failed POSTs, for rate-limited warnings.
struct Failing {
    since: Instant,
    attempts: u64,
    warned_at: Instant,
}

/// What waiting on the subscription gave.
enum Next {
    Message(Message),
    /// Nothing within the wait.
    Nothing,
    /// The subscription ended: the hub is gone.
    Closed,
}

impl Webhook {
    fn run(&mut self, stop: &dyn Fn() -> bool) {
        let Some(mut sub) = self.subscribe(None, stop) else {
            return;
        };
        let mut batch: Vec<Arc<Event>> = Vec::with_capacity(self.cfg.batch.min(1024));
        loop {
            if stop() {
                return;
            }
            let first = match self.next(&mut sub) {
                Next::Message(m) => m,
                Next::Nothing => continue,
                Next::Closed => {
                    // Only a hub that is gone closes a subscription without a cut-off notice; check by asking.
                    drop(sub);
                    match self.subscribe(self.done_up_to, stop) {
                        Some(again) => {
                            sub = again;
                            continue;
                        }
                        None => return,
                    }
                }
            };
            // The first message, then whatever is already queued, up to a batch of events.
            let mut cut_off = false;
            let mut message = Some(first);
            while let Some(m) = message.take() {
                match m {
                    Message::Event(e) => {
                        self.note_received(&e);
                        batch.push(e);
                    }
                    Message::Lost { shard, changes } => tracing::warn!(
                        "webhook {}: {changes} changes of shard {shard} were lost before reaching the event \
                         hub (its queue was full); the endpoint's view of that shard's AoRs may be stale",
                        self.cfg.url
                    ),
                    Message::CutOff => {
                        cut_off = true;
                        break;
                    }
                }
                if batch.len() < self.cfg.batch {
                    message = sub.try_next();
                }
            }
            if !batch.is_empty() {
                if !self.deliver(&batch, stop) {
                    return;
                }
                batch.clear();
            }
            if cut_off {
                drop(sub);
                tracing::debug!(
                    "webhook {}: cut off by the event hub, resuming after event {:?}",
                    self.cfg.url,
                    self.done_up_to
                );
                match self.subscribe(self.done_up_to, stop) {
                    Some(again) => sub = again,
                    None => return,
                }
            }
        }
    }

    /// Waits up to [`STOP_POLL`] for the subscription's next message.
    fn next(&self, sub: &mut Subscription) -> Next {
        match self
            .rt
            .block_on(async { tokio::time::timeout(STOP_POLL, sub.next()).await })
        {
            Ok(Some(m)) => Next::Message(m),
            Ok(None) => Next::Closed,
            Err(_) => Next::Nothing,
        }
    }

    fn note_received(&mut self, e: &Event) {
        if self.done_up_to.is_none() {
            self.done_up_to = Some(e.id.saturating_sub(1));
        }
        if let Some(after) = self.gap_after.take() {
            let lost = e.id.saturating_sub(after).saturating_sub(1);
            self.counters.lost.fetch_add(lost, Ordering::Relaxed);
            tracing::warn!(
                "webhook {}: {lost} events (after event {after}) were lost: the endpoint was unavailable \
                 longer than the event hub held them; going on with the newest",
                self.cfg.url
            );
        }
    }

    /// A subscription after `after` (the newest events when None), or the newest events when the hub no
    /// longer holds those. None when stopped or the hub is gone.
    fn subscribe(
        &mut self,
        mut after: Option<u64>,
        stop: &dyn Fn() -> bool,
    ) -> Option<Subscription> {
        let mut backoff = self.cfg.backoff_min;
        let mut refused: Option<Instant> = None;
        loop {
            match self.request_subscription(after, stop)? {
                Ok(sub) => return Some(sub),
                Err(SubscribeError::Resume(ResumeError::TooOld { .. })) => {
                    match after {
                        Some(id) => self.gap_after = Some(id),
                        None => tracing::warn!(
                            "webhook {}: some events were lost: the endpoint was unavailable longer than the \
                             event hub held them; going on with the newest",
                            self.cfg.url
                        ),
                    }
                    after = None;
                }
                Err(SubscribeError::Resume(e @ ResumeError::InFuture { .. })) => {
                    tracing::warn!("webhook {}: {e}; going on with the newest", self.cfg.url);
                    after = None;
                }
                Err(e @ SubscribeError::TooMany(_)) => {
                    if refused.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(
                            "webhook {}: the event hub refuses the subscription ({e}); retrying",
                            self.cfg.url
                        );
                        refused = Some(Instant::now());
                    }
                    if !sleep(backoff, stop) {
                        return None;
                    }
                    backoff = (backoff * 2).min(self.cfg.backoff_max);
                }
            }
        }
    }

    /// Asks the hub for a subscription and waits for its answer. None when stopped or the hub is gone.
    fn request_subscription(
        &self,
        after: Option<u64>,
        stop: &dyn Fn() -> bool,
    ) -> Option<Result<Subscription, SubscribeError>> {
        let (reply, mut answer) = oneshot::channel();
        let mut request = Request::Subscribe { after, reply };
        loop {
            if stop() {
                return None;
            }
            match self.hub.send_timeout(request, STOP_POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(r)) => request = r,
                Err(SendTimeoutError::Disconnected(_)) => return None,
            }
        }
        loop {
            if stop() {
                return None;
            }
            let waited = self
                .rt
                .block_on(async { tokio::time::timeout(STOP_POLL, &mut answer).await });
            match waited {
                Ok(Ok(result)) => return Some(result),
                // The hub dropped the request: it is gone.
                Ok(Err(_)) => return None,
                Err(_) => {}
            }
        }
    }

    /// POSTs `batch` until the endpoint accepts it; false when stopped first.
    fn deliver(&mut self, batch: &[Arc<Event>], stop: &dyn Fn() -> bool) -> bool {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            events: Vec<json::EventJson<'a>>,
        }
        let events = batch.iter().map(|e| json::EventJson(e)).collect();
        let body = serde_json::to_string(&Body { events }).unwrap_or_default();
        let mut backoff = self.cfg.backoff_min;
        loop {
            match self.post(&body) {
                Ok(()) => {
                    self.counters
                        .delivered
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.done_up_to = batch.last().map(|e| e.id).or(self.done_up_to);
                    if let Some(f) = self.failing.take() {
                        tracing::info!(
                            "webhook {}: the endpoint accepts events again, after {} failed attempts over {}s",
                            self.cfg.url,
                            f.attempts,
                            f.since.elapsed().as_secs()
                        );
                    }
                    return true;
                }
                Err(reason) => {
                    self.counters
                        .failed_attempts
                        .fetch_add(1, Ordering::Relaxed);
                    self.note_failure(&reason);
                    if !sleep(backoff, stop) {
                        return false;
                    }
                    backoff = (backoff * 2).min(self.cfg.backoff_max);
                }
            }
        }
    }

    /// Logs the first failure of a run, then at most once per [`WARN_EVERY`].
    fn note_failure(&mut self, reason: &str) {
        let now = Instant::now();
        match &mut self.failing {
            None => {
                tracing::warn!(
                    "webhook {}: delivery failed ({reason}); retrying with back-off up to {:?}, the events wait \
                     meanwhile",
                    self.cfg.url,
                    self.cfg.backoff_max
                );
                self.failing = Some(Failing {
                    since: now,
                    attempts: 1,
                    warned_at: now,
                });
            }
            Some(f) => {
                f.attempts += 1;
                if now.duration_since(f.warned_at) >= WARN_EVERY {
                    f.warned_at = now;
                    tracing::warn!(
                        "webhook {}: still failing ({reason}): {} failed attempts over {}s",
                        self.cfg.url,
                        f.attempts,
                        now.duration_since(f.since).as_secs()
                    );
                }
            }
        }
    }

    /// One POST; any 2xx accepts it, anything else is the reason it failed.
    fn post(&self, body: &str) -> Result<(), String> {
        let answer = self
            .agent
            .post(&self.cfg.url)
            .set("Content-Type", "application/json")
            .send_string(body);
        let response = match answer {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                discard_body(response);
                return Err(format!("HTTP status {status}"));
            }
            Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
        };
        let status = response.status();
        discard_body(response);
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP status {status}"))
        }
    }
}

/// Reads (a bounded part of) a response's body, so that its connection can serve the next request.
fn discard_body(response: ureq::Response) {
    let _ = std::io::copy(
        &mut response.into_reader().take(MAX_RESPONSE_BYTES),
        &mut std::io::sink(),
    );
}

/// Sleeps `total`, checking `stop` every [`STOP_POLL`]; false when stopped.
fn sleep(total: Duration, stop: &dyn Fn() -> bool) -> bool {
    let until = Instant::now() + total;
    loop {
        if stop() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(STOP_POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use std::thread::JoinHandle;

    use crossbeam_channel::Receiver;

    use crate::events::{self, Hub, HubConfig, HubStats};
    use crate::registrar::testing::TestShard as Shard;

    /// The longest a test waits for something that should happen.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// One request the test endpoint received, and the status it answered.
    #[derive(Debug)]
    struct Posted {
        status: u16,
        request_line: String,
        content_type: String,
        body: Value,
    }

    impl Posted {
        fn events(&self) -> &[Value] {
            self.body["events"].as_array().map_or(&[], Vec::as_slice)
        }
    }

    /// The statuses the test endpoint answers: `next` in turn, then `then`.
    struct Script {
        next: VecDeque<u16>,
        then: u16,
    }

    /// A tiny HTTP endpoint on a thread: one request per connection, answered as scripted.
    struct Endpoint {
        posted: Receiver<Posted>,
        script: Arc<Mutex<Script>>,
    }

    impl Endpoint {
        fn start(listener: TcpListener, next: &[u16], then: u16) -> Self {
            let script = Arc::new(Mutex::new(Script {
                next: next.iter().copied().collect(),
                then,
            }));
            let (tx, posted) = crossbeam_channel::unbounded();
            let answers = script.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let Some((request_line, content_type, body)) = read_request(&stream) else {
                        continue;
                    };
                    let status = {
                        let mut s = answers.lock().expect("script");
                        let then = s.then;
                        s.next.pop_front().unwrap_or(then)
                    };
                    let _ = (&stream).write_all(
                        format!(
                            "HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        )
                        .as_bytes(),
                    );
                    let posted = Posted {
                        status,
                        request_line,
                        content_type,
                        body,
                    };
                    if tx.send(posted).is_err() {
                        return;
                    }
                }
            });
            Endpoint { posted, script }
        }

        fn answer_from_now_on(&self, status: u16) {
            self.script.lock().expect("script").then = status;
        }

        /// Every request until the accepted ones hold `n` events.
        fn until_accepted(&self, n: usize) -> Vec<Posted> {
            let mut all = Vec::new();
            while accepted(&all).len() < n {
                match self.posted.recv_timeout(PATIENCE) {
                    Ok(p) => all.push(p),
                    Err(_) => panic!(
                        "{n} events were not accepted in time; got {:?}",
                        accepted(&all)
                    ),
                }
            }
            all
        }

        /// Whatever else arrives within a short while.
        fn more(&self) -> Vec<Posted> {
            std::iter::from_fn(|| self.posted.recv_timeout(Duration::from_millis(100)).ok())
                .collect()
        }
    }

    /// The request line, the Content-Type and the JSON body of one request.
    fn read_request(stream: &std::net::TcpStream) -> Option<(String, String, Value)> {
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let (mut length, mut content_type) = (0, String::new());
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body).ok()?;
        Some((
            request_line.trim_end().to_string(),
            content_type,
            serde_json::from_slice(&body).ok()?,
        ))
    }

    /// The events of the accepted requests, in order: (id, kind, aor).
    fn accepted(posts: &[Posted]) -> Vec<(u64, String, String)> {
        posts
            .iter()
            .filter(|p| (200..300).contains(&p.status))
            .flat_map(Posted::events)
            .map(|e| {
                (
                    e["id"].as_u64().expect("id"),
                    e["kind"].as_str().expect("kind").to_string(),
                    e["aor"].as_str().expect("aor").to_string(),
                )
            })
            .collect()
    }

    fn ids(posts: &[Posted]) -> Vec<u64> {
        accepted(posts).into_iter().map(|(id, _, _)| id).collect()
    }

    /// A hub on its thread, fed by one shard, and the webhook on its own.
    struct Running {
        shard: Shard,
        requests: Sender<Request>,
        counters: Arc<WebhookCounters>,
        stop: Arc<AtomicBool>,
        webhook: JoinHandle<()>,
        hub: JoinHandle<()>,
    }

    impl Running {
        fn start(addr: SocketAddr, hub: HubConfig, backoff_max: Duration) -> Self {
            let (changes_tx, changes_rx) = crossbeam_channel::bounded(64);
            let (requests, requests_rx) = crossbeam_channel::bounded(8);
            let hub =
                std::thread::spawn(move || events::run(Hub::new(hub, 1), changes_rx, requests_rx));
            let cfg = WebhookConfig {
                url: format!("http://{addr}/hook"),
                batch: 3,
                timeout: Duration::from_secs(2),
                backoff_min: Duration::from_millis(2),
                backoff_max,
            };
            cfg.validate().expect("valid config");
            let counters = Arc::new(WebhookCounters::default());
            let stop = Arc::new(AtomicBool::new(false));
            let webhook = {
                let (requests, counters, stop) = (requests.clone(), counters.clone(), stop.clone());
                std::thread::spawn(move || {
                    run(cfg, requests, counters, move || {
                        stop.load(Ordering::Relaxed)
                    })
                })
            };
            let running = Running {
                shard: Shard::new(0, changes_tx),
                requests,
                counters,
                stop,
                webhook,
                hub,
            };
            running.until(|r| r.hub_stats().subscribers == 1, "the webhook subscribed");
            running
        }

        fn hub_stats(&self) -> HubStats {
            let (reply, answer) = oneshot::channel();
            self.requests
                .send(Request::Stats { reply })
                .expect("hub running");
            answer.blocking_recv().expect("hub answers")
        }

        /// Returns once the hub has taken every change sent so far.
        fn barrier(&self) {
            let (reply, answer) = oneshot::channel();
            self.requests
                .send(Request::Barrier { reply })
                .expect("hub running");
            answer.blocking_recv().expect("hub answers");
        }

        fn until(&self, what: impl Fn(&Self) -> bool, said: &str) {
            let give_up = Instant::now() + PATIENCE;
            while !what(self) {
                assert!(Instant::now() < give_up, "timed out waiting: {said}");
                std::thread::sleep(Duration::from_millis(2));
            }
        }

        /// Stops the webhook, then the hub; returns how long the webhook took to stop.
        fn stop(self) -> (WebhookStats, Duration) {
            let asked = Instant::now();
            self.stop.store(true, Ordering::Relaxed);
            self.webhook.join().expect("webhook thread");
            let took = asked.elapsed();
            drop(self.shard);
            self.hub.join().expect("hub thread");
            (self.counters.stats(), took)
        }
    }

    fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").expect("bind")
    }

    fn small_queue() -> HubConfig {
        HubConfig {
            window: 100,
            subscriber_queue: 4,
            max_subscribers: 2,
            ..HubConfig::default()
        }
    }

    fn aor(user: &str) -> String {
        format!("sip:{user}@example.com")
    }

    #[test]
    fn events_arrive_in_order_as_json_in_batches() {
        let l = listener();
        let addr = l.local_addr().expect("addr");
        let endpoint = Endpoint::start(l, &[], 200);
        let mut r = Running::start(addr, HubConfig::default(), Duration::from_millis(20));
        r.shard.register("alice", 60);
        r.shard.register("bob", 60);
        r.shard.register("alice", 61);
        r.shard.register("alice", 0);
        r.shard.register("carol", 60);
        let posts = endpoint.until_accepted(5);
        let kind = |k: &str, u: &str| (k.to_string(), aor(u));
        let got: Vec<_> = accepted(&posts)
            .into_iter()
            .map(|(_, k, a)| (k, a))
            .collect();
        assert_eq!(
            got,
            [
                kind("registered", "alice"),
                kind("registered", "bob"),
                kind("refreshed", "alice"),
                kind("unregistered", "alice"),
                kind("registered", "carol"),
            ]
        );
        assert_eq!(ids(&posts), [1, 2, 3, 4, 5]);
        for p in &posts {
            assert_eq!(p.request_line, "POST /hook HTTP/1.1");
            assert_eq!(p.content_type, "application/json");
            assert!((1..=3).contains(&p.events().len()), "{p:?}");
        }
        let first = &posts[0].events()[0];
        assert_eq!(first["user"], "alice");
        assert_eq!(first["host"], "example.com");
        assert_eq!(first["binding"]["contact"], "sip:alice@192.0.2.1");
        assert_eq!(first["binding"]["expires"], 60);
        assert!(endpoint.more().is_empty());
        let (stats, _) = r.stop();
        assert_eq!(
            stats,
            WebhookStats {
                delivered: 5,
                failed_attempts: 0,
                lost: 0
            }
        );
    }

    #[test]
    fn a_refused_batch_is_sent_again_until_accepted() {
        let l = listener();
        let addr = l.local_addr().expect("addr");
        let endpoint = Endpoint::start(l, &[500, 503], 200);
        let mut r = Running::start(addr, HubConfig::default(), Duration::from_millis(20));
        for user in ["u1", "u2", "u3", "u4"] {
            r.shard.register(user, 60);
        }
        let mut posts = endpoint.until_accepted(4);
        assert_eq!(
            posts.iter().map(|p| p.status).take(3).collect::<Vec<_>>(),
            [500, 503, 200]
        );
        assert_eq!(posts[0].body, posts[1].body, "the same batch, again");
        assert_eq!(posts[1].body, posts[2].body, "the same batch, again");
        r.shard.register("u5", 60);
        posts.extend(endpoint.until_accepted(1));
        assert_eq!(ids(&posts), [1, 2, 3, 4, 5], "no loss, no duplicate");
        let (stats, _) = r.stop();
        assert_eq!(
            stats,
            WebhookStats {
                delivered: 5,
                failed_attempts: 2,
                lost: 0
            }
        );
    }

    #[test]
    fn an_endpoint_that_was_down_gets_everything_once_it_is_up() {
        // A port with nothing listening: connections are refused until the endpoint starts.
        let addr = listener().local_addr().expect("addr");
        let mut r = Running::start(addr, HubConfig::default(), Duration::from_millis(20));
        for user in ["u1", "u2", "u3", "u4"] {
            r.shard.register(user, 60);
        }
        r.until(
            |r| r.counters.failed_attempts.load(Ordering::Relaxed) >= 3,
            "refused connections",
        );
        let endpoint = Endpoint::start(TcpListener::bind(addr).expect("rebind"), &[], 200);
        let posts = endpoint.until_accepted(4);
        assert_eq!(ids(&posts), [1, 2, 3, 4]);
        assert!(endpoint.more().is_empty());
        let (stats, _) = r.stop();
        assert_eq!((stats.delivered, stats.lost), (4, 0));
        assert!(stats.failed_attempts >= 3);
    }

    #[test]
    fn after_a_cut_off_it_resumes_after_the_last_accepted_event() {
        let l = listener();
        let addr = l.local_addr().expect("addr");
        let endpoint = Endpoint::start(l, &[], 503);
        let mut r = Running::start(addr, small_queue(), Duration::from_millis(10));
        r.shard.register("u1", 60);
        r.until(
            |r| r.counters.failed_attempts.load(Ordering::Relaxed) >= 1,
            "the first batch refused",
        );
        // The queue holds 2, 3 and 4, then the notice: 5 and 6 reach the webhook only from the hub's window.
        for user in ["u2", "u3", "u4", "u5", "u6"] {
            r.shard.register(user, 60);
        }
        r.barrier();
        assert_eq!(r.hub_stats().cut_off, 1);
        endpoint.answer_from_now_on(200);
        let posts = endpoint.until_accepted(6);
        assert_eq!(ids(&posts), [1, 2, 3, 4, 5, 6]);
        let (stats, _) = r.stop();
        assert_eq!((stats.delivered, stats.lost), (6, 0));
    }

    #[test]
    fn when_the_hub_no_longer_holds_the_missed_events_it_goes_on_and_counts_them_lost() {
        let l = listener();
        let addr = l.local_addr().expect("addr");
        let endpoint = Endpoint::start(l, &[], 503);
        let mut r = Running::start(addr, small_queue(), Duration::from_millis(10));
        r.shard.register("u1", 60);
        r.until(
            |r| r.counters.failed_attempts.load(Ordering::Relaxed) >= 1,
            "the first batch refused",
        );
        // 2, 3 and 4 are queued; 5 to 12 are more than a resumed subscription may replay.
        for n in 2..=12 {
            r.shard.register(&format!("u{n}"), 60);
        }
        r.barrier();
        endpoint.answer_from_now_on(200);
        let mut posts = endpoint.until_accepted(4);
        r.until(
            |r| r.hub_stats().subscribers == 1,
            "the webhook subscribed again",
        );
        r.shard.register("u13", 60);
        posts.extend(endpoint.until_accepted(1));
        assert_eq!(ids(&posts), [1, 2, 3, 4, 13]);
        assert!(endpoint.more().is_empty());
        let (stats, _) = r.stop();
        assert_eq!((stats.delivered, stats.lost), (5, 8));
    }

    #[test]
    fn it_stops_promptly_even_while_backing_off() {
        let addr = listener().local_addr().expect("addr");
        let mut r = Running::start(addr, HubConfig::default(), Duration::from_secs(30));
        r.shard.register("u1", 60);
        r.until(
            |r| r.counters.failed_attempts.load(Ordering::Relaxed) >= 8,
            "the back-off grew",
        );
        let (_, took) = r.stop();
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn validate_refuses_urls_this_client_cannot_reach_and_empty_batches() {
        let ok = |url: &str| WebhookConfig::new(url).validate();
        for good in [
            "http://127.0.0.1:8080/events",
            "http://hooks.example.net/kazoo?x=1",
            "HTTP://host",
            "http://[2001:db8::1]:8080/",
        ] {
            assert_eq!(ok(good), Ok(()), "{good}");
        }
        let https = ok("https://hooks.example.net/events").expect_err("no TLS");
        assert!(matches!(
            https,
            WebhookError::Url {
                reason: UrlError::Https,
                ..
            }
        ));
        let text = https.to_string();
        assert!(
            text.contains("--webhook") && text.contains("https") && text.contains("http://"),
            "{text}"
        );
        for (bad, why) in [
            ("hooks.example.net/events", UrlError::Scheme),
            ("ftp://hooks.example.net/", UrlError::Scheme),
            ("http:///events", UrlError::NoHost),
            ("http://:8080/events", UrlError::NoHost),
            ("http://host:0/", UrlError::Port("0".into())),
            ("http://host:99999/", UrlError::Port("99999".into())),
            ("http://host:+80/", UrlError::Port("+80".into())),
            ("http://user:pw@host/", UrlError::UserInfo),
            ("http://host/a b", UrlError::Characters),
        ] {
            assert_eq!(
                check_http_url(bad),
                Err(why.clone()),
                "{bad} should be refused"
            );
        }
        let zero = WebhookConfig {
            batch: 0,
            ..WebhookConfig::new("http://host/")
        };
        assert_eq!(zero.validate(), Err(WebhookError::Batch(0)));
        assert!(zero
            .validate()
            .expect_err("0")
            .to_string()
            .contains("--webhook-batch"));
        let backwards = WebhookConfig {
            backoff_min: Duration::from_secs(60),
            ..WebhookConfig::new("http://host/")
        };
        assert!(matches!(
            backwards.validate(),
            Err(WebhookError::Backoff { .. })
        ));
    }
}
