//! The HTTP server: routes, access control, connection limits. It runs on its own tokio threads and reaches
//! the shards only through their request queues ([`ShardClient`]) and the event hub through its request
//! channel: nothing here can block a shard.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::json::{self, Fields};
use super::metrics::ApiMetrics;
use crate::events::{self, Message, ResumeError, SubscribeError, Subscription};
use crate::registrar::bindings::HashSeed;
use crate::registrar::query::owner_of;
use crate::shard::api::{ApiError, Request, ShardClient, ShardStats};
use crate::sip::uri::{canonical_aor, parse_uri, AorBuf};

/// Most AoRs one list request returns.
pub const MAX_LIST_LIMIT: usize = 1000;
const DEFAULT_LIST_LIMIT: usize = 100;
/// AoRs per state page asked of a shard while a snapshot is streamed.
const SNAPSHOT_PAGE: usize = 256;
/// Chunks of SSE text waiting to be written to one client (the subscription's own queue is the real buffer).
const SSE_BUFFER: usize = 16;
/// Bytes of events gathered into one chunk (one write) when a subscriber has several queued.
const SSE_CHUNK_BYTES: usize = 64 * 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a request waits for a shard's answer before it is a 503.
const SHARD_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
pub struct ApiContext {
    /// One client per shard, in shard order.
    pub shards: Vec<ShardClient>,
    pub hub: crossbeam_channel::Sender<events::Request>,
    /// The process's AoR hash seed: picks the shard that owns an AoR.
    pub seed: HashSeed,
    /// Served domains, lower-case (empty: every domain).
    pub domains: Vec<String>,
    /// The bearer token every request must carry (None: open, loopback only).
    pub token: Option<String>,
    /// Changes with every start: the first part of an event id.
    pub run_id: String,
    /// True once every shard serves.
    pub ready: Arc<AtomicBool>,
    pub metrics: ApiMetrics,
    /// The webhook's counters, when it runs.
    pub webhook: Option<Arc<super::webhook::WebhookCounters>>,
    /// Snapshots being streamed at once, at most [`MAX_SNAPSHOTS`] (each holds its AoRs' names a while).
    pub snapshots: Arc<Semaphore>,
    /// The registrants (`--registrants`), when any.
    pub registrants: Option<Arc<crate::registrants::Service>>,
}

/// Event streams that start with a snapshot at once; more get 503 until one ends.
pub const MAX_SNAPSHOTS: usize = 4;

#[derive(Debug, Error)]
pub enum ApiStartError {
    #[error("cannot listen on --http {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP API's threads: {0}")]
    Runtime(std::io::Error),
}

/// The running API: its address, and how to stop it.
pub struct ApiServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Stops accepting, lets requests in flight finish (event streams end), joins the threads.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The API server's limits.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Threads serving the API.
    pub threads: usize,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, waiting idle between requests included;
    /// then its connection is closed, so idle clients cannot hold every connection.
    pub header_timeout: Duration,
}

/// Binds `listen` (errors now, before start-up completes) and serves the API.
pub fn start(
    listen: SocketAddr,
    limits: ServeLimits,
    ctx: ApiContext,
) -> Result<ApiServer, ApiStartError> {
    let bind = |source| ApiStartError::Bind {
        addr: listen,
        source,
    };
    let std_listener = std::net::TcpListener::bind(listen).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let addr = std_listener.local_addr().map_err(bind)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(limits.threads.max(1))
        .thread_name("corereg-api")
        .enable_all()
        .build()
        .map_err(ApiStartError::Runtime)?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = router(Arc::new(ctx));
    let thread = std::thread::Builder::new()
        .name("corereg-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(listener) => accept_loop(listener, app, limits, stopped).await,
                    Err(e) => tracing::error!("HTTP API: cannot use the listening socket: {e}"),
                }
            });
            // Event streams still open are dropped with the runtime.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(ApiStartError::Runtime)?;
    Ok(ApiServer {
        addr,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}

/// Accepts connections, at most `max_connections` open at once (the others wait in the kernel's backlog),
/// until `stopped`; then asks every open connection to finish its request and close.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    mut stopped: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing) = watch::channel(false);
    loop {
        let permit = tokio::select! {
            _ = &mut stopped => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, mostly: wait instead of spinning.
                    tracing::warn!("HTTP API: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = serve_connection(stream, app.clone(), limits.header_timeout, closing.clone());
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    let _ = closing_tx.send(true);
}

/// Serves one connection's requests (HTTP/1.1, keep-alive) until the client closes it, sends no request
/// within `header_timeout`, or `closing` says the server stops.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::trace!("HTTP API connection: {e}");
            }
            return;
        }
        _ = closing.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Every route.
pub fn router(ctx: Arc<ApiContext>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/stats", get(stats))
        .route("/v1/aors", get(list))
        .route("/v1/aors/{aor}", get(lookup).delete(delete_aor))
        .route(
            "/v1/aors/{aor}/bindings/{id}",
            axum::routing::delete(delete_binding),
        )
        .route("/v1/events", get(events_stream))
        .merge(super::registrants::routes())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such resource") })
        .layer(middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx)
}

/// Access control (the bearer token) and the latency histogram.
async fn guard(State(ctx): State<Arc<ApiContext>>, request: HttpRequest, next: Next) -> Response {
    if let Some(token) = &ctx.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            ctx.metrics.refused();
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "this API needs Authorization: Bearer <token>",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"corereg\""),
            );
            return response;
        }
    }
    let started = Instant::now();
    let response = as_json_error(next.run(request).await).await;
    ctx.metrics.observe(response.status(), started.elapsed());
    response
}

/// Most bytes of a framework error message (a rejected path or query) kept in its JSON form.
const MAX_ERROR_TEXT_BYTES: usize = 1024;

/// Every error as JSON: the routes write theirs so, and the framework's own (a path or query that does not
/// parse, a method a route does not allow) are rewritten here.
async fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_ERROR_TEXT_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let text = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.trim().to_string()
    };
    error(status, text)
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for (i, &x) in b.iter().enumerate() {
        diff |= x ^ a.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

/// A JSON error response.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn shard_error(e: ApiError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

async fn ask<T>(
    shard: &ShardClient,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, Response> {
    match tokio::time::timeout(SHARD_TIMEOUT, shard.ask(make)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(shard_error(e)),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("shard {} did not answer in time", shard.shard()),
        )),
    }
}

async fn healthz(State(ctx): State<Arc<ApiContext>>) -> Response {
    if ctx.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

/// An AoR from a path, canonical, with the shard that owns it; or the error response.
fn canonical(ctx: &ApiContext, text: &str) -> Result<(String, usize), Response> {
    let text = text.trim();
    let lower = text.get(..5).unwrap_or("").to_ascii_lowercase();
    let uri_text = if lower.starts_with("sip:") || lower.starts_with("sips:") {
        text.to_string()
    } else {
        format!("sip:{text}")
    };
    let bad = |why: String| {
        error(
            StatusCode::BAD_REQUEST,
            format!("malformed AoR {text:?}: {why}"),
        )
    };
    let uri = parse_uri(uri_text.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let host = String::from_utf8_lossy(uri.host).to_ascii_lowercase();
    if !ctx.domains.is_empty() && !ctx.domains.contains(&host) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("domain {host:?} is not served here"),
        ));
    }
    let mut aor = AorBuf::default();
    canonical_aor(&uri, &mut aor).map_err(|e| bad(e.to_string()))?;
    let owner = owner_of(ctx.seed, aor.as_bytes(), ctx.shards.len());
    Ok((String::from_utf8_lossy(aor.as_bytes()).into_owned(), owner))
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    group: Option<String>,
    fields: Option<String>,
}

async fn lookup(
    State(ctx): State<Arc<ApiContext>>,
    Path(aor): Path<String>,
    Query(q): Query<LookupQuery>,
) -> Response {
    let group = match q.group.as_deref() {
        None => false,
        Some("q") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("group={other:?}: only group=q is known"),
            )
        }
    };
    let fields = match q.fields.as_deref().map(Fields::parse) {
        None => Fields::default(),
        Some(Ok(f)) => f,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("fields: {e}")),
    };
    let (aor, owner) = match canonical(&ctx, &aor) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let key = aor.clone().into_bytes();
    match ask(&ctx.shards[owner], |reply| Request::Lookup {
        aor: key,
        reply,
    })
    .await
    {
        Ok(Some(bindings)) => {
            let now_s = crate::shard::now().unix_s();
            Json(json::lookup(&aor, bindings, now_s, fields, group)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no bindings for {aor}")),
        Err(response) => response,
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list(State(ctx): State<Arc<ApiContext>>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be in 1..={MAX_LIST_LIMIT}, got {limit}"),
        );
    }
    let (mut shard, mut from) = match q.cursor.as_deref().map(parse_cursor) {
        None => (0, 0),
        Some(Some((shard, from))) if shard < ctx.shards.len() => (shard, from),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "cursor: not a cursor this API gave",
            )
        }
    };
    let prefix = q.prefix.unwrap_or_default().into_bytes();
    let mut aors = Vec::new();
    let mut next = None;
    while shard < ctx.shards.len() && aors.len() < limit {
        let want = limit - aors.len();
        let prefix = prefix.clone();
        let page = match ask(&ctx.shards[shard], |reply| Request::Page {
            prefix,
            from,
            limit: want,
            reply,
        })
        .await
        {
            Ok(page) => page,
            Err(response) => return response,
        };
        aors.extend(
            page.aors
                .into_iter()
                .map(|(aor, n)| json!({ "aor": aor, "bindings": n })),
        );
        match page.next {
            Some(at) => {
                // This shard has more: the page ends here (each request costs each shard one bounded scan).
                next = Some(format!("{shard}.{at}"));
                break;
            }
            None => {
                shard += 1;
                from = 0;
            }
        }
    }
    if next.is_none() && shard < ctx.shards.len() {
        next = Some(format!("{shard}.{from}"));
    }
    Json(json!({ "aors": aors, "next_cursor": next })).into_response()
}

fn parse_cursor(text: &str) -> Option<(usize, usize)> {
    let (shard, from) = text.split_once('.')?;
    Some((shard.parse().ok()?, from.parse().ok()?))
}

async fn delete_aor(State(ctx): State<Arc<ApiContext>>, Path(aor): Path<String>) -> Response {
    delete(&ctx, &aor, None).await
}

async fn delete_binding(
    State(ctx): State<Arc<ApiContext>>,
    Path((aor, id)): Path<(String, String)>,
) -> Response {
    match id.parse::<u32>() {
        Ok(id) => delete(&ctx, &aor, Some(id)).await,
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            format!("binding id {id:?} is not a number"),
        ),
    }
}

async fn delete(ctx: &ApiContext, aor: &str, binding: Option<u32>) -> Response {
    let (aor, owner) = match canonical(ctx, aor) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let key = aor.clone().into_bytes();
    let deleted = ask(&ctx.shards[owner], |reply| Request::Delete {
        aor: key,
        binding,
        reply,
    })
    .await;
    match deleted {
        Ok(Err(not_written)) => error(StatusCode::SERVICE_UNAVAILABLE, not_written.to_string()),
        Ok(Ok(0)) => error(
            StatusCode::NOT_FOUND,
            match binding {
                Some(id) => format!("{aor} has no binding {id}"),
                None => format!("no bindings for {aor}"),
            },
        ),
        Ok(Ok(n)) => {
            tracing::info!(
                aor,
                ?binding,
                deleted = n,
                "bindings deleted through the API"
            );
            Json(json!({ "aor": aor, "deleted": n })).into_response()
        }
        Err(response) => response,
    }
}

/// Every shard's counters (in shard order) and the hub's figures.
pub async fn collect(ctx: &ApiContext) -> Result<(Vec<ShardStats>, events::HubStats), Response> {
    let mut shards = Vec::with_capacity(ctx.shards.len());
    for shard in &ctx.shards {
        shards.push(ask(shard, |reply| Request::Stats { reply }).await?);
    }
    let (tx, rx) = oneshot::channel();
    let hub = match ctx.hub.try_send(events::Request::Stats { reply: tx }) {
        Ok(()) => rx.await.unwrap_or_default(),
        Err(_) => events::HubStats::default(),
    };
    Ok((shards, hub))
}

async fn stats(State(ctx): State<Arc<ApiContext>>) -> Response {
    let (shards, hub) = match collect(&ctx).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let shards: Vec<Value> = shards.iter().map(shard_json).collect();
    Json(json!({
        "shards": shards,
        "events": {
            "last_id": hub.last_id,
            "held": hub.held,
            "subscribers": hub.subscribers,
            "lost": hub.lost,
            "cut_off": hub.cut_off,
        },
    }))
    .into_response()
}

fn shard_json(s: &ShardStats) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(s.report.id));
    m.insert("aors".into(), json!(s.aors));
    for (k, v) in s.report.counters() {
        m.insert(k.into(), json!(v));
    }
    if let Some(r) = &s.report.registrar {
        for (k, v) in r.counters() {
            m.insert(format!("registrar_{k}"), json!(v));
        }
    }
    if let Some(a) = &s.report.auth {
        for (k, v) in a.counters() {
            m.insert(format!("auth_{k}"), json!(v));
        }
    }
    Value::Object(m)
}

async fn metrics(State(ctx): State<Arc<ApiContext>>) -> Response {
    let (shards, hub) = match collect(&ctx).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let webhook = ctx.webhook.as_ref().map(|c| c.stats());
    let registrants = ctx.registrants.as_ref().map(|r| r.state_counts());
    match ctx
        .metrics
        .encode_with_registrants(&shards, &hub, webhook.as_ref(), registrants.as_ref())
    {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    snapshot: Option<bool>,
}

async fn events_stream(
    State(ctx): State<Arc<ApiContext>>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let snapshot = q.snapshot.unwrap_or(false);
    let last = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) => match parse_event_id(&ctx.run_id, text) {
            Ok(id) => Some(id),
            Err(response) => return response,
        },
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "Last-Event-ID is not text"),
    };
    if snapshot && last.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "give either ?snapshot=true or Last-Event-ID, not both",
        );
    }
    let permit = if snapshot {
        match ctx.snapshots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{MAX_SNAPSHOTS} snapshots are being streamed; try again shortly"),
                )
            }
        }
    } else {
        None
    };
    let subscription = match subscribe(&ctx, last).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let (tx, rx) = mpsc::channel::<String>(SSE_BUFFER);
    tokio::spawn(produce(ctx.clone(), subscription, permit, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(axum::body::Bytes::from(chunk)), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// `<run>-<n>`: n when run is this run's; else 410 (an id of an earlier run names nothing held now).
fn parse_event_id(run_id: &str, text: &str) -> Result<u64, Response> {
    let gone = || {
        error(
            StatusCode::GONE,
            format!(
                "event {text:?} is not from this run of corereg (it restarted): start again with ?snapshot=true"
            ),
        )
    };
    let (run, n) = text.trim().rsplit_once('-').ok_or_else(gone)?;
    if run != run_id {
        return Err(gone());
    }
    n.parse().map_err(|_| gone())
}

async fn subscribe(ctx: &ApiContext, after: Option<u64>) -> Result<Subscription, Response> {
    let (tx, rx) = oneshot::channel();
    let request = events::Request::Subscribe { after, reply: tx };
    if ctx.hub.try_send(request).is_err() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event hub is busy or stopped",
        ));
    }
    match rx.await {
        Ok(Ok(subscription)) => Ok(subscription),
        Ok(Err(SubscribeError::TooMany(n))) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many event subscribers (at most {n})"),
        )),
        Ok(Err(SubscribeError::Resume(e @ ResumeError::TooOld { .. }))) => Err(error(
            StatusCode::GONE,
            format!("{e}: reconnect with ?snapshot=true"),
        )),
        Ok(Err(SubscribeError::Resume(e @ ResumeError::InFuture { .. }))) => Err(error(
            StatusCode::GONE,
            format!("{e}: reconnect with ?snapshot=true"),
        )),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event hub stopped",
        )),
    }
}

/// One event as SSE text (the data is one line of JSON).
fn sse(name: &str, id: Option<&str>, data: &str) -> String {
    let mut text = String::with_capacity(data.len() + 48);
    text.push_str("event: ");
    text.push_str(name);
    if let Some(id) = id {
        text.push_str("\nid: ");
        text.push_str(id);
    }
    text.push_str("\ndata: ");
    text.push_str(data);
    text.push_str("\n\n");
    text
}

/// What a snapshot read: the sequence number each AoR (by shard) was read at, and the last event id that
/// may repeat a change already in it.
type SnapshotRead = (HashMap<(usize, String), u64>, u64);

/// Writes one subscriber's stream: the snapshot when asked (holding `snapshot`, a permit, meanwhile), then
/// the events, as many as are queued in one chunk (one write for the lot). Ends when the client goes (its
/// end of `tx` is dropped), when it is cut off, or when the hub stops.
async fn produce(
    ctx: Arc<ApiContext>,
    mut sub: Subscription,
    snapshot: Option<OwnedSemaphorePermit>,
    tx: mpsc::Sender<String>,
) {
    if let Some(permit) = snapshot {
        let (read, barrier) = match send_snapshot(&ctx, &tx).await {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(message) => {
                let error = json!({ "error": message }).to_string();
                let _ = tx.send(sse("error", None, &error)).await;
                return;
            }
        };
        // Every event up to the barrier was queued to this subscription before the barrier was answered:
        // those whose change the snapshot already holds are dropped, then the names are let go.
        let mut chunk = String::new();
        while let Some(message) = sub.try_next() {
            let repeated = matches!(&message, Message::Event(e) if e.id <= barrier
                && read.get(&(e.shard, e.aor.clone())).is_some_and(|&seq| e.seq <= seq));
            if !repeated {
                let going = append(&ctx, &mut chunk, message);
                let full = !going || chunk.len() >= SSE_CHUNK_BYTES;
                if full && (tx.send(std::mem::take(&mut chunk)).await.is_err() || !going) {
                    return;
                }
            }
        }
        drop((read, permit));
        if !chunk.is_empty() && tx.send(chunk).await.is_err() {
            return;
        }
    }
    // The registrants' state changes join the stream as they come (unnumbered: they are not replayed).
    let mut registrants = ctx.registrants.as_ref().map(|r| r.follow());
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(KEEP_ALIVE, sub.next()) => next,
            change = registrant_change(&mut registrants) => {
                if tx.send(change).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let first = match next {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(_) => {
                if tx.send(": keep-alive\n\n".to_string()).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let mut chunk = String::new();
        let mut going = append(&ctx, &mut chunk, first);
        while going && chunk.len() < SSE_CHUNK_BYTES {
            match sub.try_next() {
                Some(message) => going = append(&ctx, &mut chunk, message),
                None => break,
            }
        }
        if tx.send(chunk).await.is_err() || !going {
            return;
        }
    }
}

/// The next registrant state change as SSE text (`event: registrant`, or `event: registrant-lost` when
/// this stream fell behind them); never ready without registrants.
async fn registrant_change(
    follow: &mut Option<tokio::sync::broadcast::Receiver<Arc<crate::registrants::StateEvent>>>,
) -> String {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let Some(rx) = follow.as_mut() else {
            return std::future::pending().await;
        };
        match rx.recv().await {
            Ok(change) => {
                let data = serde_json::to_string(&*change).unwrap_or_default();
                return sse("registrant", None, &data);
            }
            Err(RecvError::Lagged(missed)) => {
                return sse(
                    "registrant-lost",
                    None,
                    &json!({ "missed": missed }).to_string(),
                );
            }
            Err(RecvError::Closed) => *follow = None,
        }
    }
}

/// Appends one message to a chunk of the stream; false when the stream ends with it (cut off).
fn append(ctx: &ApiContext, chunk: &mut String, message: Message) -> bool {
    match message {
        Message::Event(e) => {
            let frame = e.sse.get_or_init(|| {
                let id = format!("{}-{}", ctx.run_id, e.id);
                let data = serde_json::to_string(&json::EventJson(&e)).unwrap_or_default();
                sse(e.kind.as_str(), Some(&id), &data)
            });
            chunk.push_str(frame);
            true
        }
        Message::Lost { shard, changes } => {
            let data = json!({ "shard": shard, "changes": changes }).to_string();
            chunk.push_str(&sse("lost", None, &data));
            true
        }
        Message::CutOff => {
            let notice =
                json!({ "reason": "the subscriber fell behind; reconnect with Last-Event-ID" });
            chunk.push_str(&sse("cut-off", None, &notice.to_string()));
            false
        }
    }
}

/// Streams every shard's state page by page. Returns what was read (for the no-duplicate filter) and the
/// last event id that can hold a change already in it; None when the client went away.
async fn send_snapshot(
    ctx: &ApiContext,
    tx: &mpsc::Sender<String>,
) -> Result<Option<SnapshotRead>, String> {
    let mut read = HashMap::new();
    let mut chunk = String::new();
    let now_s = crate::shard::now().unix_s();
    for shard in &ctx.shards {
        let mut from = Some(0);
        while let Some(at) = from {
            let page = ask(shard, |reply| Request::State {
                from: at,
                limit: SNAPSHOT_PAGE,
                reply,
            })
            .await
            .map_err(|_| format!("shard {} did not answer the snapshot", shard.shard()))?;
            for (aor, bindings) in page.aors {
                let data = json!({
                    "aor": aor,
                    "shard": shard.shard(),
                    "seq": page.seq,
                    "bindings": bindings
                        .iter()
                        .map(|b| json::binding(b, now_s, Fields::default()))
                        .collect::<Vec<_>>(),
                });
                chunk.push_str(&sse("snapshot", None, &data.to_string()));
                read.insert((shard.shard(), aor), page.seq);
            }
            if tx.send(std::mem::take(&mut chunk)).await.is_err() {
                return Ok(None);
            }
            from = page.next;
        }
    }
    // Every change a shard published before answering its last page is now in the hub: events after
    // this id are all newer than the snapshot.
    let (reply, answer) = oneshot::channel();
    ctx.hub
        .try_send(events::Request::Barrier { reply })
        .map_err(|_| "the event hub is busy or stopped".to_string())?;
    let barrier = answer
        .await
        .map_err(|_| "the event hub stopped".to_string())?;
    let end = sse(
        "snapshot-end",
        None,
        &json!({ "aors": read.len() }).to_string(),
    );
    if tx.send(end).await.is_err() {
        return Ok(None);
    }
    Ok(Some((read, barrier)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"secrets", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn event_ids_of_another_run_are_gone() {
        assert_eq!(parse_event_id("abc", "abc-42").ok(), Some(42));
        for bad in ["abd-42", "42", "abc-x", "abc-", ""] {
            let response = parse_event_id("abc", bad).expect_err(bad);
            assert_eq!(response.status(), StatusCode::GONE, "{bad}");
        }
    }

    #[test]
    fn cursors_are_shard_dot_slot() {
        assert_eq!(parse_cursor("1.4096"), Some((1, 4096)));
        assert_eq!(parse_cursor("1"), None);
        assert_eq!(parse_cursor("a.b"), None);
    }
}
