//! corereg-loadgen: SIP REGISTER load generator (and a minimal responder to measure it against).
//!
//! No `unsafe` here: batched UDP I/O and its system calls live in the `corereg-udp` crate.

#![forbid(unsafe_code)]

mod capacity;
mod engine;
mod net;
mod passwords;
mod query;
mod report;
mod responder;
mod scenario;
mod scheduler;
mod transaction;
mod worker;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use corereg_sip::client::request::Writer;
use corereg_sip::digest::Algorithm;

use crate::capacity::{Criteria, Search};
use crate::engine::Plan;
use crate::passwords::Passwords;
use crate::scenario::{Mix, Scenario};
use crate::transaction::TimerConfig;
use crate::worker::RunConfig;

#[derive(Parser)]
#[command(name = "corereg-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate REGISTER load against a registrar.
    Run(Box<RunArgs>),
    /// Minimal stateless UDP responder (200 to everything, optional 401 challenge).
    Responder(ResponderArgs),
    /// Ask the registrar for each user's bindings (REGISTER without Contact); exits 2 unless
    /// every user has at least one contact.
    Query(QueryArgs),
}

/// How simulated users are named: AoR `sip:<prefix><first-user + n>@<domain>` (shared by `run` and `query`,
/// so a query finds exactly the AoRs a run registered).
#[derive(Args)]
struct UserNaming {
    /// First user number (AoR sip:<prefix><first-user>@<domain>).
    #[arg(long, default_value_t = 0)]
    first_user: u64,
    #[arg(long, default_value = "u")]
    prefix: String,
    /// Zero-pad user numbers to this many digits (6 gives u000042, as in the SIPp user files).
    #[arg(long, default_value_t = 0)]
    user_width: usize,
    #[arg(long, default_value = "example.com")]
    domain: String,
}

#[derive(Args)]
struct QueryArgs {
    #[arg(long)]
    target: String,
    #[arg(long, default_value_t = 100)]
    users: u64,
    #[command(flatten)]
    naming: UserNaming,
    /// Per-try wait for an answer, milliseconds (three tries per user).
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
}

#[derive(Args)]
struct RunArgs {
    /// Registrar address, host:port (UDP).
    #[arg(long)]
    target: String,
    #[arg(long, value_enum, default_value = "register")]
    scenario: Scenario,
    /// Number of simulated user agents (AoRs).
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    #[command(flatten)]
    naming: UserNaming,
    /// Request-URI (and digest uri); default sip:<domain>.
    #[arg(long)]
    request_uri: Option<String>,
    /// Local IPv4 address to send from (and to put in Via/Contact).
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: std::net::Ipv4Addr,
    /// Expires requested by register/refresh.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Weights register:refresh:unregister for --scenario mixed.
    #[arg(long, default_value = "10:80:10")]
    mix: Mix,
    /// Refreshes between register and unregister in --scenario lifecycle.
    #[arg(long, default_value_t = 2)]
    refreshes: u16,
    /// Open loop: REGISTER operations started per second (total over all threads).
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Open loop: ramp linearly from 0 to --rate over this long (e.g. 5s).
    #[arg(long, value_parser = parse_duration_ns, default_value = "0s")]
    ramp: u64,
    /// Closed loop: operations in flight (default when --rate is not given).
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// Stop starting operations after this many (default: one per user).
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Stop starting operations after this long (e.g. 30s, 2m, 500ms).
    #[arg(long, value_parser = parse_duration_ns)]
    duration: Option<u64>,
    /// Sender threads, each with its own socket and source port.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Datagrams per sendmmsg/recvmmsg call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Idle workers sleep this many microseconds between drains instead of waking per datagram
    /// (0 = wake per datagram: exact latency, more CPU per REGISTER).
    #[arg(long, default_value_t = 0)]
    tick_us: u64,
    /// Send each batch as plain sendmmsg (one entry per datagram) instead of UDP GSO runs of
    /// equal-sized requests. GSO falls back to this by itself where the kernel refuses it.
    #[arg(long)]
    no_gso: bool,
    /// Digest password pattern; `{user}` is replaced by the user name.
    #[arg(long, default_value = "{user}")]
    password_pattern: String,
    /// CSV file of `user,password` lines (overrides --password-pattern).
    #[arg(long)]
    passwords: Option<PathBuf>,
    /// RFC 3261 T1 (first retransmission), milliseconds.
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
    /// RFC 3261 T2 (retransmission interval cap), milliseconds.
    #[arg(long, default_value_t = 4000)]
    t2_ms: u64,
    /// Transaction timeout (timer F), milliseconds; default 64*T1.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Write the final report as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<String>,
    /// Write a per-second time series as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Exit with status 2 when the failure rate exceeds this fraction.
    #[arg(long, default_value_t = 0.0)]
    max_failure_rate: f64,
    /// No live progress and no human report on stderr.
    #[arg(long)]
    quiet: bool,
    /// Search the highest rate held with failures and p99 under bounds (RFC 7502 method).
    #[arg(long)]
    find_capacity: bool,
    /// find-capacity: first trial rate.
    #[arg(long, default_value_t = 5000.0)]
    start_rate: f64,
    /// find-capacity: highest rate tried.
    #[arg(long, default_value_t = 2_000_000.0)]
    max_rate: f64,
    /// find-capacity: how long each trial holds its rate.
    #[arg(long, value_parser = parse_duration_ns, default_value = "10s")]
    trial_duration: u64,
    /// find-capacity: failure-rate bound of a passing trial.
    #[arg(long, default_value_t = 0.001)]
    trial_max_failure_rate: f64,
    /// find-capacity: p99 bound of a passing trial, milliseconds.
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// find-capacity: stop when the pass/fail bracket is within this fraction.
    #[arg(long, default_value_t = 0.03)]
    precision: f64,
}

#[derive(Args)]
struct ResponderArgs {
    #[arg(long, default_value = "127.0.0.1:5060")]
    listen: String,
    /// Threads, each with its own SO_REUSEPORT socket.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Answer requests without Authorization with a 401 digest challenge.
    #[arg(long)]
    challenge: bool,
    /// Algorithms offered in the challenge (one WWW-Authenticate each), in order.
    #[arg(long, value_delimiter = ',', default_value = "SHA-256,MD5")]
    algorithms: Vec<String>,
    #[arg(long, default_value = "loadgen")]
    realm: String,
    /// Verify digest answers against this password pattern (`{user}` = user name); 403 on mismatch.
    #[arg(long)]
    verify_password: Option<String>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

/// Parses `30s`, `500ms`, `2m`, `1h` or plain seconds (`1.5`) into nanoseconds.
fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e9)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e9)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e9)
    } else {
        (s, 1e9)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (use e.g. 30s, 500ms, 2m)"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok((v * mult) as u64)
}

fn resolve(target: &str) -> Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{target} has no IPv4 address"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run(*a),
        Command::Responder(a) => responder(a),
        Command::Query(a) => query_bindings(a),
    }
}

fn run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (std::process::id() as u64) << 20) as u32
}

fn run(a: RunArgs) -> Result<()> {
    if a.users == 0 || a.users > u32::MAX as u64 {
        bail!("--users must be between 1 and {}", u32::MAX);
    }
    let passwords = match &a.passwords {
        Some(p) => Passwords::from_csv(p)?,
        None => Passwords::Pattern(a.password_pattern.clone()),
    };
    let t1_ns = a.t1_ms.max(1) * 1_000_000;
    let cfg = RunConfig {
        target: resolve(&a.target)?,
        local_ip: a.local_ip,
        request_uri: a
            .request_uri
            .clone()
            .unwrap_or_else(|| format!("sip:{}", a.naming.domain))
            .into_bytes(),
        domain: a.naming.domain.clone().into_bytes(),
        user_prefix: a.naming.prefix.clone().into_bytes(),
        user_width: a.naming.user_width,
        first_user: a.naming.first_user,
        users: a.users,
        expires_s: a.expires,
        scenario: a.scenario,
        mix: a.mix,
        refreshes_per_life: a.refreshes,
        passwords,
        timers: TimerConfig {
            t1_ns,
            t2_ns: a.t2_ms.max(1) * 1_000_000,
            timeout_ns: a.timeout_ms.map_or(64 * t1_ns, |t| t.max(1) * 1_000_000),
        },
        batch: a.batch.clamp(1, 1024),
        run_id: run_id(),
        tick_ns: a.tick_us * 1000,
        gso: !a.no_gso,
    };
    let progress = !a.quiet && std::io::stderr().is_terminal();
    let plan = Plan {
        threads: a.threads.max(1),
        rate_per_s: a.rate,
        ramp_ns: a.ramp,
        concurrency: a.concurrency.max(1),
        count: if a.duration.is_none() {
            Some(a.count.unwrap_or(a.users))
        } else {
            None
        },
        duration_ns: a.duration,
        progress,
    };

    if a.find_capacity {
        return find_capacity(&a, cfg, plan);
    }

    let outcome = engine::run(&cfg, &plan)?;
    let r = &outcome.report;
    if !a.quiet {
        report::print_human(r, &mut std::io::stderr().lock())?;
    }
    write_outputs(&a, &serde_json::to_value(r)?, &outcome.aggregate)?;
    if r.failure_rate > a.max_failure_rate {
        if !a.quiet {
            eprintln!(
                "failure rate {:.4} exceeds --max-failure-rate {}",
                r.failure_rate, a.max_failure_rate
            );
        }
        std::process::exit(2);
    }
    Ok(())
}

fn write_outputs(a: &RunArgs, json: &serde_json::Value, agg: &report::Aggregate) -> Result<()> {
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(json)?;
        if path == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n").with_context(|| format!("writing {path}"))?;
        }
    }
    if let Some(path) = &a.csv {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        report::write_csv(&agg.rows(), &mut f)?;
        f.flush()?;
    }
    Ok(())
}

fn find_capacity(a: &RunArgs, cfg: RunConfig, mut plan: Plan) -> Result<()> {
    let criteria = Criteria {
        max_failure_rate: a.trial_max_failure_rate,
        max_p99_us: (a.max_p99_ms * 1000.0) as u64,
        min_achieved_fraction: 0.97,
    };
    let mut search = Search::new(a.precision, a.max_rate);
    let mut trials = Vec::new();
    let mut rate = Some(a.start_rate.max(1.0));
    plan.count = None;
    plan.duration_ns = Some(a.trial_duration.max(1_000_000_000));
    plan.progress = false;
    let mut last_agg = report::Aggregate::default();
    while let Some(r) = rate {
        plan.rate_per_s = Some(r);
        let mut cfg_trial = cfg.clone();
        cfg_trial.run_id = run_id();
        let outcome = engine::run(&cfg_trial, &plan)?;
        let rep = &outcome.report;
        // Achieved rate over the trial's holding time, not including the drain at the end.
        let hold_s = plan.duration_ns.unwrap_or(1) as f64 / 1e9;
        let achieved = rep.succeeded as f64 / hold_s.max(rep.elapsed_s);
        let trial = criteria.judge(r, achieved, rep.failure_rate, rep.latency_us.p99);
        if !a.quiet {
            eprintln!(
                "trial {:>10.0}/s: achieved {:>10.0}/s  failure rate {:.5}  p99 {} us  -> {}",
                r,
                achieved,
                rep.failure_rate,
                rep.latency_us.p99,
                if trial.passed { "pass" } else { "fail" }
            );
        }
        trials.push(trial);
        rate = search.next(&trial);
        last_agg = outcome.aggregate;
    }
    let capacity = search.best_pass.unwrap_or(0.0);
    if !a.quiet {
        eprintln!("capacity: {capacity:.0} REGISTER/s");
    }
    let json = serde_json::json!({
        "target": cfg.target.to_string(),
        "scenario": cfg.scenario.name(),
        "capacity_per_s": capacity,
        "trial_duration_s": plan.duration_ns.unwrap_or(0) as f64 / 1e9,
        "max_failure_rate": criteria.max_failure_rate,
        "max_p99_us": criteria.max_p99_us,
        "trials": trials,
    });
    write_outputs(a, &json, &last_agg)?;
    if capacity == 0.0 {
        std::process::exit(2);
    }
    Ok(())
}

fn responder(a: ResponderArgs) -> Result<()> {
    let listen = responder::parse_listen(&a.listen)
        .with_context(|| format!("--listen {} is not an IPv4 host:port", a.listen))?;
    let challenge = if a.challenge {
        let mut algs = Vec::new();
        for name in &a.algorithms {
            algs.push(match name.to_ascii_uppercase().as_str() {
                "MD5" => Algorithm::Md5,
                "SHA-256" | "SHA256" => Algorithm::Sha256,
                other => bail!("unsupported algorithm {other}"),
            });
        }
        Some(algs)
    } else {
        None
    };
    let cfg = responder::ResponderConfig {
        listen,
        threads: a.threads.max(1),
        challenge,
        realm: a.realm,
        verify_password: a.verify_password,
        batch: a.batch.clamp(1, 1024),
    };
    let stats = Arc::new(responder::ResponderStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    responder::serve(&cfg, stats, stop).context("binding the responder socket")?;
    Ok(())
}

fn query_bindings(a: QueryArgs) -> Result<()> {
    let target = resolve(&a.target)?;
    let naming = &a.naming;
    let names = (naming.first_user..naming.first_user + a.users).map(|n| {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        w.put(naming.prefix.as_bytes())
            .put_u64_padded(n, naming.user_width);
        let len = w.finish().unwrap_or(0);
        buf[..len].to_vec()
    });
    let r = query::query(
        target,
        naming.domain.as_bytes(),
        names,
        std::time::Duration::from_millis(a.timeout_ms.max(1)),
    )?;
    println!(
        "{{\"users\": {}, \"bound\": {}, \"contacts\": {}, \"unanswered\": {}}}",
        r.users, r.bound, r.contacts, r.unanswered
    );
    if r.bound < r.users {
        std::process::exit(2);
    }
    Ok(())
}
