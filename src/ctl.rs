//! `corereg ctl`: the HTTP API (docs/api.md) from a terminal. Readable text by default, the API's JSON with
//! `--json`. Exit status 0 on success, 1 when the API answers an error (its message is printed) or cannot be
//! reached, 2 for a usage error.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use corereg::api::webhook::check_http_url;
use corereg::config::{CtlArgs, CtlCommand, RegistrantsAction};

/// The largest answer read, except the event stream (a page of 1000 AoRs or an AoR's bindings is far less).
const MAX_BODY_BYTES: u64 = 64 << 20;

/// The largest token file read (its first line is the token).
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

/// The longest SSE line accepted, and the largest event (its data lines together): a snapshot event holds
/// one AoR's bindings, a few KiB.
const MAX_SSE_LINE_BYTES: usize = 1 << 20;
const MAX_SSE_EVENT_BYTES: usize = 4 << 20;

/// How long the event stream may stay silent: the API sends a keep-alive comment every 15 s.
const EVENTS_SILENCE: Duration = Duration::from_secs(60);

/// Runs `corereg ctl`; errors are printed here.
pub fn main(args: CtlArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        // `corereg ctl ... | head`: the reader has seen enough.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(args: CtlArgs) -> Result<ExitCode> {
    let client = Client::new(&args)?;
    let mut out = io::stdout().lock();
    match args.command {
        CtlCommand::Lookup {
            aor,
            group_q,
            fields,
        } => {
            let mut query = Vec::new();
            if group_q {
                query.push(("group", "q".to_string()));
            }
            if let Some(fields) = fields {
                query.push(("fields", fields));
            }
            let path = format!("/v1/aors/{}{}", percent_encode(&aor), query_string(&query));
            match client.call("GET", &path)? {
                Ok(body) => print(&mut out, &body, args.json, format_lookup)?,
                Err(e) if e.status == 404 => {
                    eprintln!("no bindings for {}", clean(&aor));
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            }
        }
        CtlCommand::List { prefix, limit, all } => {
            list(&client, &mut out, prefix, limit, all, args.json)?;
        }
        CtlCommand::Delete { aor, binding } => {
            let mut path = format!("/v1/aors/{}", percent_encode(&aor));
            if let Some(id) = binding {
                write!(path, "/bindings/{id}")?;
            }
            let body = client.call("DELETE", &path)??;
            print(&mut out, &body, args.json, format_delete)?;
        }
        CtlCommand::Stats => {
            let body = client.call("GET", "/v1/stats")??;
            print(&mut out, &body, args.json, format_stats)?;
        }
        CtlCommand::Registrants {
            action,
            aor,
            contact,
            registrar,
        } => {
            let mut query = Vec::new();
            for (key, value) in [("aor", aor), ("contact", contact), ("registrar", registrar)] {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let query = query_string(&query);
            let (method, path, format): (&str, String, fn(&Value) -> String) = match action {
                RegistrantsAction::List => {
                    ("GET", format!("/v1/registrants{query}"), format_registrants)
                }
                RegistrantsAction::Reload => (
                    "POST",
                    format!("/v1/registrants/reload{query}"),
                    format_reload,
                ),
                RegistrantsAction::Enable => (
                    "POST",
                    format!("/v1/registrants/enable{query}"),
                    format_enabled,
                ),
                RegistrantsAction::Disable => (
                    "POST",
                    format!("/v1/registrants/disable{query}"),
                    format_enabled,
                ),
            };
            let body = client.call(method, &path)??;
            print(&mut out, &body, args.json, format)?;
        }
        CtlCommand::Events {
            snapshot,
            last_event_id,
        } => {
            events(&client, &mut out, snapshot, last_event_id, args.json)?;
            // The stream only ends on the API's side: that is not a success.
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One answer: compact JSON with `--json`, else `format`'s text.
fn print(
    out: &mut impl Write,
    body: &Value,
    json: bool,
    format: fn(&Value) -> String,
) -> Result<()> {
    if json {
        writeln!(out, "{body}")?;
    } else {
        writeln!(out, "{}", format(body))?;
    }
    Ok(out.flush()?)
}

fn list(
    client: &Client,
    out: &mut impl Write,
    prefix: Option<String>,
    limit: Option<u16>,
    all: bool,
    json: bool,
) -> Result<()> {
    let mut cursor: Option<String> = None;
    loop {
        let mut query = Vec::new();
        if let Some(prefix) = &prefix {
            query.push(("prefix", prefix.clone()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = client.call("GET", &format!("/v1/aors{}", query_string(&query)))??;
        let lines = format_list_page(&page);
        if json {
            writeln!(out, "{page}")?;
        } else if !lines.is_empty() {
            writeln!(out, "{lines}")?;
        }
        out.flush()?;
        let next = match &page["next_cursor"] {
            Value::String(next) => next.clone(),
            Value::Null => return Ok(()),
            other => bail!("the API answered an invalid next_cursor: {other}"),
        };
        if !all {
            eprintln!("(more AoRs follow: add --all to list them all)");
            return Ok(());
        }
        if cursor.as_deref() == Some(next.as_str()) {
            bail!("the API answered the same next_cursor twice ({next:?}): stopping");
        }
        cursor = Some(next);
    }
}

fn events(
    client: &Client,
    out: &mut impl Write,
    snapshot: bool,
    last_event_id: Option<String>,
    json: bool,
) -> Result<()> {
    let path = if snapshot {
        "/v1/events?snapshot=true"
    } else {
        "/v1/events"
    };
    let mut reader = client.stream(path, last_event_id.as_deref())?;
    let mut parser = SseParser::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    let mut cut_off = false;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "the event stream failed (nothing for {}s, or the connection broke){}",
                    EVENTS_SILENCE.as_secs(),
                    resume_hint(parser.last_id())
                )))
            }
        };
        parser.feed(&buf[..n], &mut got)?;
        for event in got.drain(..) {
            cut_off |= event.name == "cut-off";
            let data = serde_json::from_str(&event.data).unwrap_or(Value::String(event.data));
            let line = if json {
                event_json_line(&event.name, data, event.last_event_id.as_deref())
            } else {
                format_event(&event.name, &data)
            };
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    if cut_off {
        bail!(
            "this client fell too far behind and the API ended the stream{}",
            resume_hint(parser.last_id())
        );
    }
    bail!(
        "the API ended the event stream{}",
        resume_hint(parser.last_id())
    )
}

fn resume_hint(last_id: Option<&str>) -> String {
    match last_id {
        Some(id) => format!("; resume with --last-event-id {}", clean(id)),
        None => String::new(),
    }
}

/// An error answer of the API: its status and message.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status}){hint}")]
struct HttpError {
    status: u16,
    message: String,
    hint: &'static str,
}

/// The API's client: base URL, token, timeouts.
struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    stream_agent: ureq::Agent,
}

impl Client {
    fn new(args: &CtlArgs) -> Result<Self> {
        check_http_url(&args.api).map_err(|reason| anyhow!("--api {:?}: {reason}", args.api))?;
        let token = args.token_file.as_deref().map(read_token).transpose()?;
        let timeout = Duration::from_secs(args.timeout);
        let user_agent = concat!("corereg-ctl/", env!("CARGO_PKG_VERSION"));
        Ok(Client {
            base: args.api.trim_end_matches('/').to_string(),
            token,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(timeout)
                .timeout(timeout)
                .redirects(0)
                .user_agent(user_agent)
                .build(),
            stream_agent: ureq::AgentBuilder::new()
                .timeout_connect(timeout)
                .timeout_read(EVENTS_SILENCE)
                .redirects(0)
                .user_agent(user_agent)
                .build(),
        })
    }

    fn request(&self, agent: &ureq::Agent, method: &str, path: &str) -> ureq::Request {
        let request = agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// One request: Ok(Ok(body)) on a 2xx, Ok(Err(..)) on an error status, Err when there is no answer.
    fn call(&self, method: &str, path: &str) -> Result<Result<Value, HttpError>> {
        let response = match self.request(&self.agent, method, path).call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                return Ok(Err(http_error(status, &read_body(response)?)))
            }
            Err(ureq::Error::Transport(t)) => return Err(self.transport_error(path, t)),
        };
        let status = response.status();
        let body = read_body(response)?;
        if !(200..300).contains(&status) {
            return Ok(Err(http_error(status, &body)));
        }
        serde_json::from_slice(&body)
            .map(Ok)
            .with_context(|| format!("the API's answer to {method} {path} is not JSON"))
    }

    /// The event stream's body, once the API answered 200.
    fn stream(&self, path: &str, last_event_id: Option<&str>) -> Result<impl Read> {
        let mut request = self
            .request(&self.stream_agent, "GET", path)
            .set("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.set("Last-Event-ID", id);
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let mut e = http_error(status, &read_body(response)?);
                if status == 410 {
                    e.hint = "; use --snapshot";
                }
                return Err(e.into());
            }
            Err(ureq::Error::Transport(t)) => return Err(self.transport_error(path, t)),
        };
        if response.status() != 200 {
            let status = response.status();
            return Err(http_error(status, &read_body(response)?).into());
        }
        Ok(response.into_reader())
    }

    fn transport_error(&self, path: &str, t: ureq::Transport) -> anyhow::Error {
        match t.kind() {
            ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                // The root cause alone ("Connection refused"): the URL is named here already.
                let detail = std::error::Error::source(&t)
                    .map(ToString::to_string)
                    .or_else(|| t.message().map(str::to_string))
                    .unwrap_or_else(|| t.kind().to_string());
                anyhow!(
                    "cannot reach the API at {}: {detail}; is corereg running with its HTTP API there? Give \
                     its address with --api URL",
                    self.base
                )
            }
            _ => anyhow!("{}{path}: {t}", self.base),
        }
    }
}

/// The API's `{"error": ...}` message (or the body's text) and the status.
fn http_error(status: u16, body: &[u8]) -> HttpError {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if m.get("error").is_some_and(Value::is_string) => {
            m["error"].as_str().unwrap_or_default().to_string()
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "the API answered an error".to_string()
            } else {
                text.chars().take(200).collect()
            }
        }
    };
    HttpError {
        status,
        message: clean(&message).into_owned(),
        hint: if status == 401 {
            "; give the API's token with --token-file FILE"
        } else {
            ""
        },
    }
}

/// A response's body, at most [`MAX_BODY_BYTES`].
fn read_body(response: ureq::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)
        .context("cannot read the API's answer")?;
    if body.len() as u64 > MAX_BODY_BYTES {
        bail!("the API's answer is larger than {MAX_BODY_BYTES} bytes");
    }
    Ok(body)
}

/// The token: the file's first line, trimmed.
fn read_token(path: &Path) -> Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES).read_to_string(&mut text))
        .with_context(|| format!("cannot read --token-file {}", path.display()))?;
    token_of(&text).map_err(|why| anyhow!("--token-file {}: {why}", path.display()))
}

/// The first line of a token file, trimmed, if it is a token an HTTP header can carry.
fn token_of(text: &str) -> Result<String, &'static str> {
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err("the first line is empty (it must hold the API's token)");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err("the token holds characters an HTTP header cannot carry");
    }
    Ok(token.to_string())
}

/// Percent-encodes everything but the unreserved characters (RFC 3986: letters, digits, `-._~`).
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// `?k=v&...`, each value percent-encoded; empty without pairs.
fn query_string(pairs: &[(&str, String)]) -> String {
    let mut query = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        query.push(if i == 0 { '?' } else { '&' });
        query.push_str(key);
        query.push('=');
        query.push_str(&percent_encode(value));
    }
    query
}

/// A text of the API's (a User-Agent, a contact: what a phone sent) made safe for a terminal: control
/// characters escaped.
fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A JSON value as a `key=value` value: strings bare (cleaned), the rest as JSON.
fn plain(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => clean(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// A non-empty string field.
fn text<'a>(b: &'a Value, key: &str) -> Option<&'a str> {
    b.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `udp:192.0.2.10:5062` (`udp:[2001:db8::1]:5062`).
fn source(b: &Value) -> Option<String> {
    let s = b.get("source")?;
    let address = s.get("address")?.as_str()?;
    let port = s.get("port")?.as_u64()?;
    let transport = s.get("transport").and_then(Value::as_str).unwrap_or("udp");
    let address = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    Some(clean(&format!("{transport}:{address}:{port}")).into_owned())
}

/// One binding: `q=1.0 expires=3587s contact=<...> source=udp:... path=<...> instance=... reg-id=1
/// ua="..." id=17`, without the fields it does not have (or has empty).
pub fn format_binding(b: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(q) = b.get("q").filter(|q| q.is_number()) {
        parts.push(format!("q={q}"));
    }
    if let Some(expires) = b.get("expires").and_then(Value::as_u64) {
        parts.push(format!("expires={expires}s"));
    }
    if let Some(contact) = text(b, "contact") {
        parts.push(format!("contact=<{}>", clean(contact)));
    }
    if let Some(source) = source(b) {
        parts.push(format!("source={source}"));
    }
    if let Some(path) = text(b, "path") {
        parts.push(format!("path={}", clean(path)));
    }
    if let Some(instance) = text(b, "instance") {
        parts.push(format!("instance={}", clean(instance)));
    }
    if let Some(reg_id) = b.get("reg_id").and_then(Value::as_u64) {
        parts.push(format!("reg-id={reg_id}"));
    }
    if let Some(ua) = text(b, "user_agent") {
        parts.push(format!("ua={ua:?}"));
    }
    if let Some(id) = b.get("id").and_then(Value::as_u64) {
        parts.push(format!("id={id}"));
    }
    parts.join(" ")
}

fn bindings(v: &Value) -> &[Value] {
    v.get("bindings")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A lookup's answer: the AoR, then one line per binding (under a line per q with `--group-q`).
pub fn format_lookup(v: &Value) -> String {
    let aor = v.get("aor").map(plain).unwrap_or_default();
    let mut out = aor.into_owned();
    if let Some(groups) = v.get("groups").and_then(Value::as_array) {
        for group in groups {
            let q = group.get("q").filter(|q| !q.is_null());
            let q = q.map_or_else(|| "-".to_string(), |q| q.to_string());
            let _ = write!(out, "\n  group q={q}");
            for b in bindings(group) {
                let _ = write!(out, "\n    {}", format_binding(b));
            }
        }
        return out;
    }
    let list = bindings(v);
    if list.is_empty() {
        out.push_str(" (no bindings)");
    }
    for b in list {
        let _ = write!(out, "\n  {}", format_binding(b));
    }
    out
}

/// A page of AoRs: `sip:alice@example.com bindings=2` per line.
pub fn format_list_page(v: &Value) -> String {
    let aors = v.get("aors").and_then(Value::as_array);
    aors.map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|a| {
            let aor = a.get("aor").map(plain).unwrap_or_default();
            let count = a.get("bindings").map(plain).unwrap_or(Cow::Borrowed("?"));
            format!("{aor} bindings={count}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `deleted 2 binding(s) of sip:alice@example.com`.
/// One line per registrant: AoR, state, last status, next REGISTER, registrar and contact.
pub fn format_registrants(v: &Value) -> String {
    let Some(list) = v.get("registrants").and_then(Value::as_array) else {
        return plain(v).into_owned();
    };
    if list.is_empty() {
        return "no registrants".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    list.iter()
        .map(|r| {
            let field = |k: &str| r.get(k).map(plain).unwrap_or_default();
            let next = match r.get("next_register").and_then(Value::as_u64) {
                Some(t) => format!("in {}s", t.saturating_sub(now)),
                None => "-".into(),
            };
            format!(
                "{} state={} ({}) last={} next={} enabled={} registrar={} contact={} [{}, shard {}]",
                field("aor"),
                field("state"),
                field("state_name"),
                r.get("last_status")
                    .filter(|s| !s.is_null())
                    .map(plain)
                    .unwrap_or(Cow::Borrowed("-")),
                next,
                field("enabled"),
                field("registrar"),
                field("binding_uri"),
                field("source"),
                field("shard"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A reload's counts, then the rows it left out.
pub fn format_reload(v: &Value) -> String {
    let n = |k: &str| v.get(k).map(plain).unwrap_or(Cow::Borrowed("?"));
    let mut text = format!(
        "reloaded: {} rows, {} added, {} changed, {} removed",
        n("loaded"),
        n("added"),
        n("changed"),
        n("removed")
    );
    for bad in v
        .get("bad_rows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        text += &format!("\nskipped {}", plain(bad));
    }
    text
}

/// The registrants an enable or disable reached.
pub fn format_enabled(v: &Value) -> String {
    let enabled = v.get("enabled").and_then(Value::as_bool).unwrap_or(false);
    let keys = v
        .get("registrants")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    format!(
        "{} {keys} registrant(s)",
        if enabled { "enabled" } else { "disabled" }
    )
}

pub fn format_delete(v: &Value) -> String {
    let aor = v.get("aor").map(plain).unwrap_or_default();
    let deleted = v.get("deleted").map(plain).unwrap_or(Cow::Borrowed("?"));
    format!("deleted {deleted} binding(s) of {aor}")
}

/// `key=value` for every member of `m` but `skip`.
fn key_values(m: &Map<String, Value>, skip: &str) -> String {
    m.iter()
        .filter(|(k, _)| k.as_str() != skip)
        .map(|(k, v)| format!("{}={}", clean(k), plain(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/v1/stats`: `shard N key=value ...` per shard; any other part as `name key=value ...`.
pub fn format_stats(v: &Value) -> String {
    let mut lines = Vec::new();
    let Some(top) = v.as_object() else {
        return plain(v).into_owned();
    };
    // The shards first, then the rest (the event hub's figures).
    let (shards, rest): (Vec<_>, Vec<_>) = top.iter().partition(|(key, _)| *key == "shards");
    for (key, value) in shards.into_iter().chain(rest) {
        match (key.as_str(), value) {
            ("shards", Value::Array(shards)) => {
                for shard in shards {
                    let id = shard.get("id").map(plain).unwrap_or(Cow::Borrowed("?"));
                    match shard.as_object() {
                        Some(m) => lines.push(format!("shard {id} {}", key_values(m, "id"))),
                        None => lines.push(format!("shard {}", plain(shard))),
                    }
                }
            }
            (_, Value::Object(m)) => lines.push(format!("{} {}", clean(key), key_values(m, ""))),
            (_, other) => lines.push(format!("{}={}", clean(key), plain(other))),
        }
    }
    lines.join("\n")
}

/// One stream event: `<at> <kind> <aor> <contact> expires=<n>s seq=<seq>`; a snapshot event as one line per
/// binding; the stream's notices as sentences.
pub fn format_event(name: &str, data: &Value) -> String {
    let field = |key: &str| data.get(key).map(plain).unwrap_or_default();
    match name {
        "snapshot" => {
            let aor = field("aor");
            let list = bindings(data);
            if list.is_empty() {
                return format!("snapshot {aor} (no bindings)");
            }
            list.iter()
                .map(|b| {
                    let contact = b.get("contact").map(plain).unwrap_or_default();
                    let expires = b.get("expires").map(plain).unwrap_or_default();
                    format!("snapshot {aor} {contact} expires={expires}s")
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        "snapshot-end" => format!(
            "snapshot-end aors={}: the changes since the snapshot follow",
            field("aors")
        ),
        "lost" => format!(
            "lost shard={} changes={}: what this stream said of that shard's AoRs may be stale",
            field("shard"),
            field("changes")
        ),
        "cut-off" => "cut-off: this client fell too far behind; the stream ends".to_string(),
        "error" => format!("error: {}", field("error")),
        _ if data.get("kind").is_some() => {
            let at = data
                .get("at")
                .and_then(Value::as_u64)
                .map_or_else(|| "?".to_string(), rfc3339);
            let b = data.get("binding").unwrap_or(&Value::Null);
            let contact = b.get("contact").map(plain).unwrap_or_default();
            let expires = b.get("expires").map(plain).unwrap_or_default();
            format!(
                "{at} {} {} {contact} expires={expires}s seq={}",
                field("kind"),
                field("aor"),
                field("seq")
            )
        }
        _ => format!("{} {}", clean(name), plain(data)),
    }
}

/// `--json` for one stream event: its data with `"event": name` added (a data that is not an object is put
/// under "data").
pub fn event_json_line(name: &str, data: Value, last_event_id: Option<&str>) -> String {
    let mut m = match data {
        Value::Object(m) => m,
        Value::String(s) if s.is_empty() => Map::new(),
        other => {
            let mut m = Map::new();
            m.insert("data".into(), other);
            m
        }
    };
    m.insert("event".into(), Value::String(name.to_string()));
    if let Some(id) = last_event_id {
        // What `--last-event-id` takes to resume after this line.
        m.insert("last_event_id".into(), Value::String(id.to_string()));
    }
    Value::Object(m).to_string()
}

/// Unix seconds as RFC 3339 UTC, `2026-12-05T23:00:13Z` (years past 9999 are shown as 9999-12-31T23:59:59Z).
pub fn rfc3339(unix_s: u64) -> String {
    const MAX_S: u64 = 253_402_300_799;
    let s = unix_s.min(MAX_S);
    let (days, rem) = (s / 86_400, s % 86_400);
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's `civil_from_days`; no negatives:
    // the epoch is day 719_468 of an era count starting 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One Server-Sent Event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` name (`message` when it has none).
    pub name: String,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
    /// The stream's last event id when it came (its own, or an earlier event's): what to resume after.
    pub last_event_id: Option<String>,
}

/// Reads Server-Sent Events from a byte stream fed in pieces of any size: lines end with LF, CRLF or CR;
/// a blank line ends an event; lines starting with `:` are comments; `id:` sets the id to resume from.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte fed was a CR: an LF right after it ends no further line.
    after_cr: bool,
    name: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

/// Why an event stream cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("an event stream line is longer than {MAX_SSE_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("an event is larger than {MAX_SSE_EVENT_BYTES} bytes")]
    EventTooLarge,
}

impl SseParser {
    /// Takes the next bytes of the stream; the events they complete are appended to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.take_line(&line, out)?;
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_SSE_LINE_BYTES {
                        return Err(SseError::LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    /// The id of the last event that had one: where a reconnecting client resumes (None after an empty
    /// `id:`, which resets it).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref().filter(|id| !id.is_empty())
    }

    fn take_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data || !self.name.is_empty() {
                let name = std::mem::take(&mut self.name);
                out.push(SseEvent {
                    name: if name.is_empty() {
                        "message".to_string()
                    } else {
                        name
                    },
                    data: std::mem::take(&mut self.data),
                    last_event_id: self.last_id.clone(),
                });
            }
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.name = value.to_string(),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_SSE_EVENT_BYTES {
                    return Err(SseError::EventTooLarge);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            // `retry:` and unknown fields: nothing for this client.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use corereg::config::{Args, Command};
    use serde_json::json;

    /// A binding as docs/api.md shows it.
    fn alice_binding() -> Value {
        json!({
            "id": 17,
            "contact": "sip:alice@192.0.2.10:5062;transport=udp",
            "q": 1.0,
            "expires": 3587,
            "expires_at": 1796515200u64,
            "path": "<sip:edge.example.net;lr>",
            "source": { "address": "192.0.2.10", "port": 5062, "transport": "udp" },
            "instance": "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
            "reg_id": 1,
            "call_id": "a84b4c76e66710",
            "cseq": 3,
            "user_agent": "baresip v3",
            "updated_at": 1796511613u64
        })
    }

    #[test]
    fn a_binding_is_one_line_with_the_fields_it_has() {
        assert_eq!(
            format_binding(&alice_binding()),
            "q=1.0 expires=3587s contact=<sip:alice@192.0.2.10:5062;transport=udp> \
             source=udp:192.0.2.10:5062 path=<sip:edge.example.net;lr> \
             instance=<urn:uuid:00000000-0000-1000-8000-000A95A0E128> reg-id=1 ua=\"baresip v3\" id=17"
        );
        let bare = json!({
            "id": 3, "contact": "sip:bob@[2001:db8::1]", "q": null, "expires": 60, "path": "",
            "source": { "address": "2001:db8::1", "port": 5060, "transport": "udp" },
            "instance": "", "reg_id": null, "user_agent": "say \"hi\"\u{1b}[2J"
        });
        assert_eq!(
            format_binding(&bare),
            "expires=60s contact=<sip:bob@[2001:db8::1]> source=udp:[2001:db8::1]:5060 \
             ua=\"say \\\"hi\\\"\\u{1b}[2J\" id=3"
        );
        // `--fields contact,path`: only those.
        assert_eq!(
            format_binding(&json!({"contact": "sip:a@x", "path": ""})),
            "contact=<sip:a@x>"
        );
    }

    #[test]
    fn a_lookup_prints_the_aor_then_its_bindings_or_its_q_groups() {
        let mut half = alice_binding();
        half["q"] = json!(0.5);
        half["id"] = json!(18);
        let flat =
            json!({"aor": "sip:alice@example.com", "bindings": [alice_binding(), half.clone()]});
        let text = format_lookup(&flat);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "sip:alice@example.com");
        assert!(lines[1].starts_with("  q=1.0 expires=3587s") && lines[1].ends_with("id=17"));
        assert!(lines[2].starts_with("  q=0.5 ") && lines[2].ends_with("id=18"));
        let grouped = json!({"aor": "sip:alice@example.com", "groups": [
            {"q": 1.0, "bindings": [alice_binding()]},
            {"q": 0.5, "bindings": [half]},
        ]});
        let text = format_lookup(&grouped);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "sip:alice@example.com");
        assert_eq!(lines[1], "  group q=1.0");
        assert!(lines[2].starts_with("    q=1.0 ") && lines[2].ends_with("id=17"));
        assert_eq!(lines[3], "  group q=0.5");
        assert!(lines[4].ends_with("id=18"));
        assert_eq!(
            format_lookup(&json!({"aor": "sip:a@x", "bindings": []})),
            "sip:a@x (no bindings)"
        );
    }

    #[test]
    fn list_delete_and_stats_are_readable_lines() {
        let page = json!({"aors": [
            {"aor": "sip:alice@example.com", "bindings": 2},
            {"aor": "sip:bob@example.com", "bindings": 1}
        ], "next_cursor": "1.4096"});
        assert_eq!(
            format_list_page(&page),
            "sip:alice@example.com bindings=2\nsip:bob@example.com bindings=1"
        );
        assert_eq!(
            format_list_page(&json!({"aors": [], "next_cursor": null})),
            ""
        );
        assert_eq!(
            format_delete(&json!({"aor": "sip:alice@example.com", "deleted": 2})),
            "deleted 2 binding(s) of sip:alice@example.com"
        );
        let stats = json!({"shards": [
            {"id": 0, "bindings": 3, "aors": 2, "registers": 10},
            {"id": 1, "bindings": 0, "aors": 0, "registers": 1}
        ]});
        assert_eq!(
            format_stats(&stats),
            "shard 0 aors=2 bindings=3 registers=10\nshard 1 aors=0 bindings=0 registers=1"
        );
        assert_eq!(
            format_stats(
                &json!({"shards": [{"id": 0, "bindings": 1}], "events": {"subscribers": 1, "lost": 0}})
            ),
            "shard 0 bindings=1\nevents lost=0 subscribers=1"
        );
    }

    #[test]
    fn events_are_one_line_each_and_snapshots_one_per_binding() {
        let registered = json!({
            "id": 42, "kind": "registered", "shard": 0, "seq": 17, "at": 1796511613u64,
            "aor": "sip:alice@example.com", "user": "alice", "host": "example.com",
            "binding": alice_binding()
        });
        assert_eq!(
            format_event("registered", &registered),
            "2026-12-05T23:00:13Z registered sip:alice@example.com sip:alice@192.0.2.10:5062;transport=udp \
             expires=3587s seq=17"
        );
        let snapshot = json!({"aor": "sip:alice@example.com", "shard": 0, "bindings": [
            alice_binding(), {"contact": "sip:alice@192.0.2.11", "expires": 12}
        ]});
        assert_eq!(
            format_event("snapshot", &snapshot),
            "snapshot sip:alice@example.com sip:alice@192.0.2.10:5062;transport=udp expires=3587s\n\
             snapshot sip:alice@example.com sip:alice@192.0.2.11 expires=12s"
        );
        assert!(
            format_event("snapshot-end", &json!({"aors": 5})).starts_with("snapshot-end aors=5")
        );
        assert!(format_event("lost", &json!({"shard": 1, "changes": 12}))
            .starts_with("lost shard=1 changes=12"));
        assert!(format_event("cut-off", &json!({})).starts_with("cut-off"));
        assert_eq!(
            format_event(
                "error",
                &json!({"error": "shard 1 did not answer the snapshot"})
            ),
            "error: shard 1 did not answer the snapshot"
        );
        assert_eq!(
            event_json_line("lost", json!({"shard": 1, "changes": 12}), None),
            r#"{"changes":12,"event":"lost","shard":1}"#
        );
        assert_eq!(
            event_json_line("cut-off", Value::String(String::new()), Some("ab-7")),
            r#"{"event":"cut-off","last_event_id":"ab-7"}"#
        );
        assert_eq!(
            event_json_line("odd", Value::String("text".into()), None),
            r#"{"data":"text","event":"odd"}"#
        );
    }

    #[test]
    fn unix_seconds_are_rfc_3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_511_613), "2026-12-05T23:00:13Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(
            percent_encode("sip:alice@example.com"),
            "sip%3Aalice%40example.com"
        );
        assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(
            percent_encode("a b/c?d#e%f&g=h+;"),
            "a%20b%2Fc%3Fd%23e%25f%26g%3Dh%2B%3B"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(
            query_string(&[("prefix", "sip:a".into()), ("limit", "5".into())]),
            "?prefix=sip%3Aa&limit=5"
        );
        assert_eq!(query_string(&[]), "");
    }

    fn parse_in_pieces(stream: &[u8], piece: usize) -> (Vec<SseEvent>, Option<String>) {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in stream.chunks(piece) {
            parser.feed(chunk, &mut out).expect("valid stream");
        }
        (out, parser.last_id().map(str::to_string))
    }

    #[test]
    fn sse_events_are_read_across_any_split_with_comments_and_multi_line_data() {
        let stream = b": keep-alive\n\
            event: registered\nid: 5f3a9c1e-42\ndata: {\"id\":42}\n\n\
            : keep-alive\r\n\r\n\
            event: snapshot\r\ndata:{\"a\":1,\r\ndata:  \"b\":2}\r\n\r\n\
            data: plain\rdata: two\r\r\
            event: cut-off\n\n\
            id\nevent: half";
        let want = vec![
            SseEvent {
                name: "registered".into(),
                data: "{\"id\":42}".into(),
                last_event_id: Some("5f3a9c1e-42".into()),
            },
            SseEvent {
                name: "snapshot".into(),
                data: "{\"a\":1,\n \"b\":2}".into(),
                last_event_id: Some("5f3a9c1e-42".into()),
            },
            SseEvent {
                name: "message".into(),
                data: "plain\ntwo".into(),
                last_event_id: Some("5f3a9c1e-42".into()),
            },
            SseEvent {
                name: "cut-off".into(),
                data: String::new(),
                last_event_id: Some("5f3a9c1e-42".into()),
            },
        ];
        for piece in [1, 2, 3, 7, stream.len()] {
            let (got, last_id) = parse_in_pieces(stream, piece);
            assert_eq!(got, want, "in pieces of {piece}");
            // A bare `id` line resets the id: nothing to resume from.
            assert_eq!(last_id, None, "in pieces of {piece}");
        }
        let (_, last_id) = parse_in_pieces(b"id: 7-1\ndata: x\n\n", 4);
        assert_eq!(last_id.as_deref(), Some("7-1"));
    }

    #[test]
    fn sse_lines_and_events_are_bounded() {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        let long = vec![b'x'; MAX_SSE_LINE_BYTES + 1];
        assert_eq!(parser.feed(&long, &mut out), Err(SseError::LineTooLong));
        let mut parser = SseParser::default();
        let line = format!("data: {}\n", "y".repeat(MAX_SSE_LINE_BYTES - 10));
        let mut result = Ok(());
        for _ in 0..(MAX_SSE_EVENT_BYTES / MAX_SSE_LINE_BYTES + 1) {
            result = result.and_then(|()| parser.feed(line.as_bytes(), &mut out));
        }
        assert_eq!(result, Err(SseError::EventTooLarge));
        assert!(out.is_empty());
    }

    #[test]
    fn token_files_give_their_first_line_trimmed() {
        assert_eq!(token_of("  s3cret \nignored\n"), Ok("s3cret".to_string()));
        assert_eq!(token_of("tok\r\n"), Ok("tok".to_string()));
        assert!(token_of("").is_err());
        assert!(token_of("\nsecond line\n").is_err());
        assert!(token_of("a\u{7}b").is_err());
        let dir = std::env::temp_dir().join(format!("corereg-ctl-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let e = read_token(&empty).expect_err("empty").to_string();
        assert!(e.contains("--token-file") && e.contains("empty"), "{e}");
        let e = format!(
            "{:#}",
            read_token(&dir.join("missing")).expect_err("missing")
        );
        assert!(e.contains("--token-file") && e.contains("missing"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn api_errors_carry_the_api_message_and_status() {
        let e = http_error(400, br#"{"error": "unknown field \"nope\""}"#);
        assert_eq!(e.to_string(), "unknown field \"nope\" (HTTP 400)");
        let e = http_error(401, b"");
        assert!(e.to_string().contains("HTTP 401") && e.to_string().contains("--token-file"));
        assert_eq!(
            http_error(502, b"Bad Gateway\n").to_string(),
            "Bad Gateway (HTTP 502)"
        );
    }

    #[test]
    fn https_and_unreachable_apis_are_refused_with_the_flag_named() {
        let ctl = |line: &[&str]| -> CtlArgs {
            let mut argv = vec!["corereg", "ctl"];
            argv.extend(line);
            match Args::try_parse_from(argv).expect("parses").command {
                Some(Command::Ctl(args)) => args,
                other => panic!("not ctl: {other:?}"),
            }
        };
        let e = Client::new(&ctl(&["--api", "https://127.0.0.1:8080", "stats"]))
            .err()
            .expect("no TLS")
            .to_string();
        assert!(e.contains("--api") && e.contains("https"), "{e}");
        // Nothing listens on a port just let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let api = format!("http://127.0.0.1:{port}");
        let e = run(ctl(&["--api", &api, "stats"]))
            .expect_err("refused")
            .to_string();
        assert!(e.contains(&api) && e.contains("--api"), "{e}");
    }

    #[test]
    fn ctl_command_lines_parse() {
        let ctl = |line: &[&str]| {
            let mut argv = vec!["corereg", "ctl"];
            argv.extend(line);
            Args::try_parse_from(argv).map(|a| match a.command {
                Some(Command::Ctl(args)) => args,
                other => panic!("not ctl: {other:?}"),
            })
        };
        let a = ctl(&["lookup", "sip:alice@example.com", "--group-q", "--json"]).expect("lookup");
        assert_eq!(a.api, "http://127.0.0.1:8080");
        assert!(a.json);
        assert!(matches!(
            a.command,
            CtlCommand::Lookup { ref aor, group_q: true, fields: None } if aor == "sip:alice@example.com"
        ));
        let a = ctl(&[
            "--api",
            "http://10.0.0.1:9000",
            "list",
            "--prefix",
            "sip:a",
            "--all",
            "--limit",
            "5",
        ])
        .expect("list");
        assert_eq!(a.api, "http://10.0.0.1:9000");
        assert!(matches!(
            a.command,
            CtlCommand::List {
                prefix: Some(_),
                limit: Some(5),
                all: true
            }
        ));
        assert!(ctl(&["list", "--limit", "0"]).is_err());
        assert!(ctl(&["list", "--limit", "1001"]).is_err());
        assert!(matches!(
            ctl(&["delete", "alice@example.com", "--binding", "17"])
                .expect("delete")
                .command,
            CtlCommand::Delete {
                binding: Some(17),
                ..
            }
        ));
        assert!(matches!(
            ctl(&["events", "--last-event-id", "5f3a-42"])
                .expect("events")
                .command,
            CtlCommand::Events {
                snapshot: false,
                last_event_id: Some(_)
            }
        ));
        assert!(ctl(&["events", "--snapshot", "--last-event-id", "x"]).is_err());
        assert!(matches!(
            ctl(&["stats"]).expect("stats").command,
            CtlCommand::Stats
        ));
        assert!(ctl(&[]).is_err(), "a ctl command is required");
    }
}
