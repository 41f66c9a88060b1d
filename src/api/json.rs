//! The API's JSON: bindings, lookups and events, as `docs/api.md` shows them.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

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

fn q_number(q: Option<u16>) -> Option<f64> {
    q.map(|q| f64::from(q) / 1000.0)
}

/// One binding as JSON, with the lifetime it has left at `now_s`: serialised straight into the answer's
/// text (no intermediate map), field by field as `fields` selects.
#[derive(Clone, Copy, Debug)]
pub struct BindingJson<'a> {
    pub b: &'a BindingView,
    pub now_s: u64,
    pub fields: Fields,
}

/// A binding's source: address, port, transport.
struct SourceJson(std::net::SocketAddr);

impl Serialize for SourceJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("address", &DisplayJson(self.0.ip()))?;
        m.serialize_entry("port", &self.0.port())?;
        m.serialize_entry("transport", "udp")?;
        m.end()
    }
}

/// A value written as the string its `Display` gives, without an intermediate `String`.
struct DisplayJson<T>(T);

impl<T: std::fmt::Display> Serialize for DisplayJson<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Serialize for BindingJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.b;
        let mut m = s.serialize_map(None)?;
        for f in Field::ALL.into_iter().filter(|&f| self.fields.has(f)) {
            let name = f.name();
            match f {
                Field::Id => m.serialize_entry(name, &b.id)?,
                Field::Contact => m.serialize_entry(name, &b.contact)?,
                Field::Q => m.serialize_entry(name, &q_number(b.q))?,
                Field::Expires => {
                    m.serialize_entry(name, &b.expires_at_s.saturating_sub(self.now_s))?
                }
                Field::ExpiresAt => m.serialize_entry(name, &b.expires_at_s)?,
                Field::Path => m.serialize_entry(name, &b.path)?,
                Field::Source => m.serialize_entry(name, &SourceJson(b.source))?,
                Field::Instance => m.serialize_entry(name, &b.instance)?,
                Field::RegId => m.serialize_entry(name, &b.reg_id.map(|r| r.get()))?,
                Field::CallId => m.serialize_entry(name, &b.call_id)?,
                Field::CSeq => m.serialize_entry(name, &b.cseq)?,
                Field::UserAgent => m.serialize_entry(name, &b.user_agent)?,
                Field::UpdatedAt => m.serialize_entry(name, &b.updated_at_s)?,
            }
        }
        m.end()
    }
}

/// One binding, with the lifetime it has left at `now_s`, as a JSON value.
pub fn binding(b: &BindingView, now_s: u64, fields: Fields) -> Value {
    serde_json::to_value(BindingJson { b, now_s, fields }).unwrap_or(Value::Null)
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
#[derive(Debug)]
pub struct Lookup<'a> {
    aor: &'a str,
    /// In forking order.
    bindings: Vec<BindingView>,
    now_s: u64,
    fields: Fields,
    group: bool,
}

/// Orders the bindings for forking and answers with them (grouped by q when `group`).
pub fn lookup(
    aor: &str,
    mut bindings: Vec<BindingView>,
    now_s: u64,
    fields: Fields,
    group: bool,
) -> Lookup<'_> {
    sort_for_forking(&mut bindings);
    Lookup {
        aor,
        bindings,
        now_s,
        fields,
        group,
    }
}

impl Lookup<'_> {
    fn json<'b>(&self, bindings: &'b [BindingView]) -> impl Serialize + 'b {
        let (now_s, fields) = (self.now_s, self.fields);
        SeqJson(bindings, move |b: &'b BindingView| BindingJson {
            b,
            now_s,
            fields,
        })
    }
}

/// A slice written as a JSON array, each element through `F`.
struct SeqJson<'b, T, F>(&'b [T], F);

impl<'b, T, F, J> Serialize for SeqJson<'b, T, F>
where
    F: Fn(&'b T) -> J,
    J: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

impl Serialize for Lookup<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("aor", self.aor)?;
        if !self.group {
            m.serialize_entry("bindings", &self.json(&self.bindings))?;
            return m.end();
        }
        let q = |b: &BindingView| b.q.unwrap_or(1000);
        let groups: Vec<_> = self
            .bindings
            .chunk_by(|a, b| q(a) == q(b))
            .map(|group| GroupJson(q_number(Some(q(&group[0]))), self.json(group)))
            .collect();
        m.serialize_entry("groups", &groups)?;
        m.end()
    }
}

/// One q group of a lookup: its q and its bindings.
struct GroupJson<B>(Option<f64>, B);

impl<B: Serialize> Serialize for GroupJson<B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("q", &self.0)?;
        m.serialize_entry("bindings", &self.1)?;
        m.end()
    }
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

/// One change event's data, as the stream and the webhook send it.
#[derive(Clone, Copy, Debug)]
pub struct EventJson<'a>(pub &'a Event);

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let (user, host) = user_and_host(&e.aor);
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("id", &e.id)?;
        m.serialize_entry("kind", e.kind.as_str())?;
        m.serialize_entry("shard", &e.shard)?;
        m.serialize_entry("seq", &e.seq)?;
        m.serialize_entry("at", &e.at_s)?;
        m.serialize_entry("aor", &e.aor)?;
        m.serialize_entry("user", user)?;
        m.serialize_entry("host", host)?;
        let binding = BindingJson {
            b: &e.binding,
            now_s: e.at_s,
            fields: Fields::default(),
        };
        m.serialize_entry("binding", &binding)?;
        m.end()
    }
}

/// One change event's data as a JSON value.
pub fn event(e: &Event) -> Value {
    serde_json::to_value(EventJson(e)).unwrap_or(Value::Null)
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
        let flat = serde_json::to_value(lookup(
            "sip:a@x",
            list.clone(),
            1000,
            Fields::default(),
            false,
        ))
        .expect("json");
        let ids: Vec<u64> = flat["bindings"]
            .as_array()
            .expect("array")
            .iter()
            .map(|b| b["id"].as_u64().expect("id"))
            .collect();
        assert_eq!(ids, [2, 3, 1]);
        let grouped = serde_json::to_value(lookup("sip:a@x", list, 1000, Fields::default(), true))
            .expect("json");
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
