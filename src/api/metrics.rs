//! `GET /metrics`: the shards' counters, the event hub's figures and the API's own, in the Prometheus text
//! format (OpenMetrics), written by the `prometheus-client` crate.
//!
//! The shards' counters live in the shards; each scrape asks every shard for them (one bounded request
//! each) and writes them as they are. The API's own metrics (requests by status, latency) are kept here.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::webhook::WebhookStats;
use crate::events::HubStats;
use crate::shard::api::ShardStats;

type Labels = Vec<(&'static str, String)>;

/// The API's own metrics, shared by its threads.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<Labels, Counter>,
    latency: Histogram,
    unauthorized: Counter,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            // 50 µs to ~1.6 s.
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            unauthorized: Counter::default(),
        }
    }
}

impl ApiMetrics {
    /// One request answered.
    pub fn observe(&self, status: StatusCode, took: Duration) {
        self.requests
            .get_or_create(&vec![("code", status.as_u16().to_string())])
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// One request refused for want of the token.
    pub fn refused(&self) {
        self.unauthorized.inc();
    }

    /// Everything, as a scrape returns it.
    pub fn encode(
        &self,
        shards: &[ShardStats],
        hub: &HubStats,
        webhook: Option<&WebhookStats>,
    ) -> Result<String, std::fmt::Error> {
        self.encode_with_registrants(shards, hub, webhook, None)
    }

    /// [`encode`](Self::encode), with the registrants (`--registrants`): how many are in each state
    /// (OpenSIPS's numbers, 0..9).
    pub fn encode_with_registrants(
        &self,
        shards: &[ShardStats],
        hub: &HubStats,
        webhook: Option<&WebhookStats>,
        registrants: Option<&[u64; 10]>,
    ) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix("corereg");
        if let Some(counts) = registrants {
            gauge_family(
                &mut registry,
                "registrants",
                "Registrants (accounts registered upstream) in each state, OpenSIPS uac_registrant's numbers",
                counts
                    .iter()
                    .enumerate()
                    .map(|(state, &n)| (vec![("state", state.to_string())], n as i64)),
            );
        }
        register_shards(&mut registry, shards);
        register_hub(&mut registry, hub);
        if let Some(w) = webhook {
            for (name, help, value) in [
                (
                    "webhook_delivered",
                    "Events the webhook endpoint accepted",
                    w.delivered,
                ),
                (
                    "webhook_failed_attempts",
                    "Webhook POSTs that failed (each is retried)",
                    w.failed_attempts,
                ),
                (
                    "webhook_lost",
                    "Events the webhook never sent (the endpoint was down too long)",
                    w.lost,
                ),
            ] {
                let c = Counter::<u64>::default();
                c.inc_by(value);
                registry.register(name, help, c);
            }
        }
        registry.register(
            "api_requests",
            "HTTP API requests answered, by status code",
            self.requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "HTTP API request latency (event streams: until their headers)",
            self.latency.clone(),
        );
        registry.register(
            "api_unauthorized",
            "HTTP API requests refused for a missing or wrong bearer token",
            self.unauthorized.clone(),
        );
        let mut text = String::new();
        encode(&mut text, &registry)?;
        Ok(text)
    }
}

fn shard_label(id: usize) -> Labels {
    vec![("shard", id.to_string())]
}

fn counter_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).inc_by(value);
    }
    registry.register(name, help, family);
}

fn gauge_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (Labels, i64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    registry.register(name, help, family);
}

fn register_shards(registry: &mut Registry, shards: &[ShardStats]) {
    gauge_family(
        registry,
        "bindings",
        "Bindings held, per shard",
        shards
            .iter()
            .map(|s| (shard_label(s.report.id), s.report.bindings as i64)),
    );
    gauge_family(
        registry,
        "aors",
        "Addresses-of-record with at least one binding, per shard",
        shards
            .iter()
            .map(|s| (shard_label(s.report.id), s.aors as i64)),
    );
    // The registrar's replies by status code: the REGISTERs' outcomes (200: applied).
    counter_family(
        registry,
        "sip_replies",
        "SIP replies written by the registrar, by status code (200: a REGISTER applied)",
        shards.iter().flat_map(|s| {
            let replies = s
                .report
                .registrar
                .as_ref()
                .map(|r| r.replies)
                .unwrap_or_default();
            let id = s.report.id;
            let counts: Vec<_> = replies.iter().collect();
            counts
                .into_iter()
                .filter(|&(_, v)| v > 0)
                .map(move |(code, v)| {
                    let code = code.map_or_else(|| "other".to_string(), |c| c.to_string());
                    (vec![("shard", id.to_string()), ("status", code)], v)
                })
        }),
    );
    let registrar = shards
        .iter()
        .filter_map(|s| s.report.registrar.clone().map(|r| (s.report.id, r)));
    let registrar: Vec<_> = registrar.collect();
    if let Some((_, first)) = registrar.first() {
        for (i, (name, _)) in first.counters().iter().enumerate() {
            counter_family(
                registry,
                &format!("registrar_{name}"),
                &format!("Registrar counter {name}, per shard"),
                registrar
                    .iter()
                    .map(|(id, r)| (shard_label(*id), r.counters()[i].1)),
            );
        }
    }
    // The shard's own counters (bindings is a gauge, above).
    let shard_counters = ShardStats::default().report.counters();
    for (i, (name, _)) in shard_counters.iter().enumerate() {
        if *name == "bindings" {
            continue;
        }
        counter_family(
            registry,
            &format!("shard_{name}"),
            &format!("Shard counter {name} (handoffs, back-pressure 503s, datagrams, changes)"),
            shards
                .iter()
                .map(|s| (shard_label(s.report.id), s.report.counters()[i].1)),
        );
    }
    let auth: Vec<_> = shards
        .iter()
        .filter_map(|s| s.report.auth.map(|a| (s.report.id, a)))
        .collect();
    if let Some((_, first)) = auth.first() {
        for (i, (name, _)) in first.counters().iter().enumerate() {
            counter_family(
                registry,
                &format!("auth_{name}"),
                &format!("Digest authentication counter {name} (forbidden_cooldown: refused while cooling down), per shard"),
                auth.iter()
                    .map(|(id, a)| (shard_label(*id), a.counters()[i].1)),
            );
        }
    }
    let journal: Vec<_> = shards
        .iter()
        .filter_map(|s| s.report.journal.clone().map(|j| (s.report.id, j)))
        .collect();
    if let Some((_, first)) = journal.first() {
        for (i, (name, _)) in first.counters().iter().enumerate() {
            counter_family(
                registry,
                &format!("journal_{name}"),
                &format!("Journal counter {name} (see docs/persistence.md), per shard"),
                journal
                    .iter()
                    .map(|(id, j)| (shard_label(*id), j.counters()[i].1)),
            );
        }
    }
}

fn register_hub(registry: &mut Registry, hub: &HubStats) {
    let gauge = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    registry.register(
        "events",
        "Binding change events numbered by the event hub",
        counter(hub.last_id),
    );
    registry.register(
        "events_held",
        "Events held for subscribers that reconnect",
        gauge(hub.held as i64),
    );
    registry.register(
        "events_subscribers",
        "Event subscribers (streams and the webhook)",
        gauge(hub.subscribers as i64),
    );
    registry.register(
        "events_lost",
        "Binding changes dropped before the event hub saw them",
        counter(hub.lost),
    );
    registry.register(
        "events_cut_off",
        "Event subscribers cut off for falling behind",
        counter(hub.cut_off),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::Stats;
    use crate::shard::ShardReport;

    #[test]
    fn a_scrape_holds_every_family_with_shard_labels() {
        let shard = |id, bindings| ShardStats {
            report: ShardReport {
                id,
                bindings,
                handed_off: 7,
                overloaded_503: 2,
                registrar: Some({
                    let mut stats = Stats {
                        registers_ok: 11,
                        replies_4xx: 3,
                        expired: 4,
                        ..Stats::default()
                    };
                    for status in [200, 200, 404, 599] {
                        stats.replies.count(status);
                    }
                    stats
                }),
                ..ShardReport::default()
            },
            aors: bindings / 2,
        };
        let metrics = ApiMetrics::default();
        metrics.observe(StatusCode::OK, Duration::from_micros(300));
        metrics.refused();
        let hub = HubStats {
            last_id: 9,
            subscribers: 2,
            ..HubStats::default()
        };
        let text = metrics
            .encode(
                &[shard(0, 10), shard(1, 4)],
                &hub,
                Some(&WebhookStats {
                    delivered: 5,
                    ..WebhookStats::default()
                }),
            )
            .expect("encodes");
        for line in [
            "corereg_bindings{shard=\"0\"} 10",
            "corereg_bindings{shard=\"1\"} 4",
            "corereg_aors{shard=\"1\"} 2",
            "corereg_sip_replies_total{shard=\"0\",status=\"200\"} 2",
            "corereg_sip_replies_total{shard=\"1\",status=\"404\"} 1",
            "corereg_sip_replies_total{shard=\"1\",status=\"other\"} 1",
            "corereg_registrar_expired_total{shard=\"1\"} 4",
            "corereg_shard_handed_off_total{shard=\"0\"} 7",
            "corereg_shard_overloaded_503_total{shard=\"1\"} 2",
            "corereg_events_total 9",
            "corereg_events_subscribers 2",
            "corereg_api_requests_total{code=\"200\"} 1",
            "corereg_api_unauthorized_total 1",
            "corereg_api_request_duration_seconds_count 1",
            "corereg_webhook_delivered_total 5",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
