//! The API's JSON: bindings, lookups and events, as `docs/api.md` shows them.

use serde_json::{json, Map, Value};

use crate::events::{BindingView, Event};

/// A binding field a client can ask for (`?fields=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    Contact,
    Q,
    Expires,
    ExpiresAt,
    Path,
    Source,
    Instance,
    RegId,
    CallId,
    CSeq,
    UserAgent,
    UpdatedAt,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::Id,
        Field::Contact,
        Field::Q,
        Field::Expires,
        Field::ExpiresAt,
        Field::Path,
        Field::Source,
        Field::Instance,
        Field::RegId,
        Field::CallId,
        Field::CSeq,
        Field::UserAgent,
        Field::UpdatedAt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Contact => "contact",
            Field::Q => "q",
            Field::Expires => "expires",
            Field::ExpiresAt => "expires_at",
            Field::Path => "path",
            Field::Source => "source",
            Field::Instance => "instance",
            Field::RegId => "reg_id",
            Field::CallId => "call_id",
            Field::CSeq => "cseq",
            Field::UserAgent => "user_agent",
            Field::UpdatedAt => "updated_at",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Which fields to write (all by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields(u16);

impl Default for Fields {
    fn default() -> Self {
        Fields(Field::ALL.iter().fold(0, |acc, f| acc | f.bit()))
    }
}

impl Fields {
    /// Parses `contact,path,...`; an unknown name is the error, named.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut set = 0;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let field = Field::ALL
                .iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| format!("unknown field {name:?}"))?;
            set |= field.bit();
        }
        if set == 0 {
            return Err("no field named".into());
        }
        Ok(Fields(set))
    }

    pub fn has(self, f: Field) -> bool {
        self.0 & f.bit() != 0
    }
}

/// q as a number (1.0 = 1000 thousandths), None when the REGISTER gave none.
pub fn q_value(q: Option<u16>) -> Value {
    q.map_or(Value::Null, |q| json!(f64::from(q) / 1000.0))
}

/// One binding, with the lifetime it has left at `now_s`.
pub fn binding(b: &BindingView, now_s: u64, fields: Fields) -> Value {
    let mut m = Map::new();
    let mut put = |f: Field, v: Value| {
        if fields.has(f) {
            m.insert(f.name().into(), v);
        }
    };
    put(Field::Id, json!(b.id));
    put(Field::Contact, json!(b.contact));
    put(Field::Q, q_value(b.q));
    put(Field::Expires, json!(b.expires_at_s.saturating_sub(now_s)));
    put(Field::ExpiresAt, json!(b.expires_at_s));
    put(Field::Path, json!(b.path));
    put(
        Field::Source,
        json!({
            "address": b.source.ip().to_string(),
            "port": b.source.port(),
            "transport": "udp",
        }),
    );
    put(Field::Instance, json!(b.instance));
    put(Field::RegId, json!(b.reg_id.map(|r| r.get())));
    put(Field::CallId, json!(b.call_id));
    put(Field::CSeq, json!(b.cseq));
    put(Field::UserAgent, json!(b.user_agent));
    put(Field::UpdatedAt, json!(b.updated_at_s));
    Value::Object(m)
}

/// Orders bindings for forking: highest q first (none counts as 1.0), then the most recently updated.
pub fn sort_for_forking(bindings: &mut [BindingView]) {
    bindings.sort_by(|a, b| {
        let q = |x: &BindingView| x.q.unwrap_or(1000);
        q(b).cmp(&q(a))
            .then(b.updated_at_s.cmp(&a.updated_at_s))
            .then(a.id.cmp(&b.id))
    });
}

/// A lookup's answer: the bindings in forking order, or grouped by q.
pub fn lookup(
    aor: &str,
    mut bindings: Vec<BindingView>,
    now_s: u64,
    fields: Fields,
    group: bool,
) -> Value {
    sort_for_forking(&mut bindings);
    if !group {
        let list: Vec<Value> = bindings.iter().map(|b| binding(b, now_s, fields)).collect();
        return json!({ "aor": aor, "bindings": list });
    }
    let mut groups: Vec<(Option<u16>, Vec<Value>)> = Vec::new();
    for b in &bindings {
        let q = Some(b.q.unwrap_or(1000));
        match groups.last_mut() {
            Some((last, list)) if *last == q => list.push(binding(b, now_s, fields)),
            _ => groups.push((q, vec![binding(b, now_s, fields)])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(q, list)| json!({ "q": q_value(q), "bindings": list }))
        .collect();
    json!({ "aor": aor, "groups": groups })
}

/// The user and host parts of a canonical AoR (`sip:user@host:port`): Kazoo's From-User and From-Host.
pub fn user_and_host(aor: &str) -> (&str, &str) {
    let rest = aor
        .strip_prefix("sips:")
        .or_else(|| aor.strip_prefix("sip:"))
        .unwrap_or(aor);
    match rest.rsplit_once('@') {
        Some((user, host)) => (user, host),
        None => ("", rest),
    }
}

/// [`event`] as text, made once per event however many subscribers write it.
pub fn event_text(e: &Event) -> &str {
    e.json.get_or_init(|| event(e).to_string())
}

/// One change event's data, as the stream and the webhook send it.
pub fn event(e: &Event) -> Value {
    let (user, host) = user_and_host(&e.aor);
    json!({
        "id": e.id,
        "kind": e.kind.as_str(),
        "shard": e.shard,
        "seq": e.seq,
        "at": e.at_s,
        "aor": e.aor,
        "user": user,
        "host": host,
        "binding": binding(&e.binding, e.at_s, Fields::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn view(id: u32, q: Option<u16>, updated: u64) -> BindingView {
        BindingView {
            id,
            contact: format!("sip:a@192.0.2.{id}"),
            q,
            expires_at_s: 1600,
            updated_at_s: updated,
            call_id: "c".into(),
            cseq: 1,
            path: "<sip:edge;lr>".into(),
            instance: String::new(),
            reg_id: NonZeroU32::new(2),
            user_agent: "ua".into(),
            source: "192.0.2.9:5070".parse().expect("addr"),
        }
    }

    #[test]
    fn every_field_is_written_and_selection_keeps_only_the_named() {
        let all = binding(&view(1, Some(500), 1000), 1100, Fields::default());
        let obj = all.as_object().expect("object");
        assert_eq!(obj.len(), Field::ALL.len());
        assert_eq!(all["expires"], 500);
        assert_eq!(all["q"], 0.5);
        assert_eq!(all["reg_id"], 2);
        assert_eq!(all["source"]["address"], "192.0.2.9");
        assert_eq!(all["source"]["port"], 5070);
        assert_eq!(all["source"]["transport"], "udp");
        let some = Fields::parse("contact, path").expect("fields");
        let picked = binding(&view(1, None, 1000), 1100, some);
        let keys: Vec<&String> = picked.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["contact", "path"]);
        assert_eq!(
            Fields::parse("contact,nope"),
            Err("unknown field \"nope\"".into())
        );
        assert!(Fields::parse(",").is_err());
    }

    #[test]
    fn lookups_are_ordered_by_q_and_grouped() {
        let list = vec![
            view(1, Some(500), 1000),
            view(2, None, 900),
            view(3, Some(500), 1001),
        ];
        let flat = lookup("sip:a@x", list.clone(), 1000, Fields::default(), false);
        let ids: Vec<u64> = flat["bindings"]
            .as_array()
            .expect("array")
            .iter()
            .map(|b| b["id"].as_u64().expect("id"))
            .collect();
        assert_eq!(ids, [2, 3, 1]);
        let grouped = lookup("sip:a@x", list, 1000, Fields::default(), true);
        let groups = grouped["groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0]["q"], 1.0);
        assert_eq!(groups[1]["q"], 0.5);
        assert_eq!(groups[1]["bindings"].as_array().expect("array").len(), 2);
    }

    #[test]
    fn user_and_host_of_an_aor() {
        assert_eq!(
            user_and_host("sip:alice@example.com"),
            ("alice", "example.com")
        );
        assert_eq!(
            user_and_host("sips:a@b@example.com:5061"),
            ("a@b", "example.com:5061")
        );
        assert_eq!(user_and_host("sip:example.com"), ("", "example.com"));
    }
}
