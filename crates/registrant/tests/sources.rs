//! The registrant sources: TOML, CSV and SQLite, bad rows reported with their line or id and skipped.

use std::path::Path;

use corereg_registrant::account::RowError;
use corereg_registrant::source::{write_state, LoadLimits, Location, SourceError, Spec};
use rusqlite::Connection;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8").to_owned()
}

#[test]
fn toml_rows_load_and_bad_ones_are_reported_by_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "registrants.toml",
        r#"# trunks
[[registrant]]
registrar = "sip:192.0.2.10"
aor = "sip:trunk1@example.net"
binding_URI = "sip:trunk1@198.51.100.1:5080"
username = "trunk1"
password = "s3cret"
expiry = 600

[[registrant]]
registrar = "sip:192.0.2.10"
aor = "not a uri"
binding_URI = "sip:x@198.51.100.1"

[[registrant]]
registrar = "sip:192.0.2.11"
aor = "sip:trunk2@example.net"
binding_uri = "sip:trunk2@198.51.100.1:5080"
state = 1
proxy = ""

[[registrant]]
registrar = "sip:192.0.2.10"
aor = "sip:trunk3@example.net"
binding_URI = "sip:x@198.51.100.1"
expiry = "soon"

[[registrant]]
registrar = "sip:192.0.2.10"
aor = "sip:trunk1@example.net"
binding_URI = "sip:trunk1@198.51.100.1:5080"

[[registrant]]
registrar = "sip:192.0.2.10"
aor = "sip:trunk4@example.net"
binding_URI = "sip:x@198.51.100.1"
colour = "blue"
"#,
    );
    let spec = Spec::parse(&path).expect("a toml file");
    assert!(matches!(spec, Spec::Toml(_)));
    assert!(!spec.writes_state());
    let loaded = spec.load(&LoadLimits::default()).expect("loads");
    let good: Vec<_> = loaded
        .accounts
        .iter()
        .map(|(at, a)| (*at, a.aor.as_str(), a.enabled))
        .collect();
    assert_eq!(
        good,
        [
            (Location::Line(2), "sip:trunk1@example.net", true),
            (Location::Line(15), "sip:trunk2@example.net", false)
        ]
    );
    assert_eq!(loaded.accounts[0].1.expiry, Some(600));
    assert_eq!(loaded.accounts[1].1.proxy, None, "empty is NULL");
    let bad: Vec<_> = loaded.bad.iter().map(|b| b.at).collect();
    assert_eq!(
        bad,
        [
            Location::Line(10),
            Location::Line(22),
            Location::Line(28),
            Location::Line(33)
        ]
    );
    assert!(matches!(
        loaded.bad[0].error,
        RowError::BadUri { column: "aor", .. }
    ));
    assert_eq!(loaded.bad[2].error, RowError::Duplicate("line 2".into()));
    assert_eq!(
        loaded.bad[2].to_string(),
        "line 28: duplicate of line 2: (aor, binding_URI, registrar) must be unique"
    );
    assert!(loaded.bad[3].to_string().contains("colour"));

    // A file that is not TOML is an error, not a silent empty list.
    let broken = write(dir.path(), "broken.toml", "[[registrant]\n");
    assert!(matches!(
        Spec::parse(&broken)
            .expect("toml")
            .load(&LoadLimits::default()),
        Err(SourceError::Format { .. })
    ));
    let limits = LoadLimits {
        max_rows: 3,
        ..LoadLimits::default()
    };
    assert!(matches!(
        spec.load(&limits),
        Err(SourceError::TooManyRows { max: 3, .. })
    ));
    let limits = LoadLimits {
        max_file_bytes: 100,
        ..LoadLimits::default()
    };
    assert!(matches!(
        spec.load(&limits),
        Err(SourceError::TooLarge { .. })
    ));
}

#[test]
fn csv_rows_load_and_bad_ones_are_reported_by_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "registrants.csv",
        "id,registrar,proxy,aor,third_party_registrant,username,password,Binding_URI,binding_params,expiry,forced_socket,cluster_shtag,state\n\
1,sip:192.0.2.10,,sip:trunk1@example.net,,trunk1,\"pa,ss\"\"word\",sip:trunk1@198.51.100.1:5080,;reg-id=1;+sip.instance=\"<urn:uuid:1>\",600,udp:127.0.0.1:5080,,0\n\
# a comment\n\
2,sip:192.0.2.10,,sip:trunk2@example.net,,,,sip:trunk2@198.51.100.1:5080,,,,,x\n\
3,sip:192.0.2.10,,sip:trunk3@example.net\n\
4,sip:192.0.2.10,sip:proxy.example.net,sip:trunk4@example.net,sip:admin@example.net,,,sip:trunk4@198.51.100.1:5080,,,,tag1,1\n",
    );
    let loaded = Spec::parse(&path)
        .expect("csv")
        .load(&LoadLimits::default())
        .expect("loads");
    assert_eq!(loaded.accounts.len(), 2);
    let (at, a) = &loaded.accounts[0];
    assert_eq!(*at, Location::Line(2));
    assert_eq!(a.password.as_ref().map(|p| p.expose()), Some("pa,ss\"word"));
    assert_eq!(a.outbound_instance().as_deref(), Some("<urn:uuid:1>"));
    assert_eq!(
        a.forced_socket,
        Some("127.0.0.1:5080".parse().expect("addr"))
    );
    let (at, a) = &loaded.accounts[1];
    assert_eq!(*at, Location::Line(6));
    assert_eq!(
        a.third_party_registrant.as_deref(),
        Some("sip:admin@example.net")
    );
    assert_eq!(a.cluster_shtag.as_deref(), Some("tag1"));
    assert!(!a.enabled);
    let bad: Vec<_> = loaded.bad.iter().map(|b| (b.at, b.to_string())).collect();
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].0, Location::Line(4));
    assert!(bad[0].1.contains("integer"), "{}", bad[0].1);
    assert_eq!(bad[1].0, Location::Line(5));
    assert!(bad[1].1.contains("4 fields"), "{}", bad[1].1);

    for header in [
        "registrar,aor\n",
        "registrar,aor,binding_URI,color\n",
        "registrar,aor,aor,binding_URI\n",
    ] {
        let p = write(dir.path(), "h.csv", header);
        assert!(
            matches!(
                Spec::parse(&p).expect("csv").load(&LoadLimits::default()),
                Err(SourceError::Format { .. })
            ),
            "{header}"
        );
    }
    assert!(matches!(
        Spec::parse("x.json"),
        Err(SourceError::UnknownKind(_))
    ));
    assert!(matches!(
        Spec::parse(&format!("{}/missing.csv", dir.path().display()))
            .expect("csv")
            .load(&LoadLimits::default()),
        Err(SourceError::Io { .. })
    ));
}

/// OpenSIPS's SQLite schema of the `registrant` table (scripts/sqlite/registrant-create.sql, table
/// version 2), with the `state` column later versions add.
const OPENSIPS_SCHEMA: &str = "CREATE TABLE registrant (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    registrar CHAR(255) DEFAULT '' NOT NULL,
    proxy CHAR(255) DEFAULT NULL,
    aor CHAR(255) DEFAULT '' NOT NULL,
    third_party_registrant CHAR(255) DEFAULT NULL,
    username CHAR(64) DEFAULT NULL,
    password CHAR(64) DEFAULT NULL,
    binding_URI CHAR(255) DEFAULT '' NOT NULL,
    binding_params CHAR(64) DEFAULT NULL,
    expiry INTEGER DEFAULT NULL,
    forced_socket CHAR(64) DEFAULT NULL,
    cluster_shtag CHAR(64) DEFAULT NULL,
    state INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT registrant_registrant_idx  UNIQUE (aor, binding_URI, registrar)
);";

#[test]
fn sqlite_opensips_table_with_nulls_loads_and_state_is_written_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("opensips.sqlite");
    let conn = Connection::open(&db).expect("create");
    conn.execute_batch(OPENSIPS_SCHEMA).expect("schema");
    conn.execute_batch(
        "INSERT INTO registrant (registrar, aor, binding_URI) VALUES ('sip:192.0.2.10', 'sip:t1@example.net', 'sip:t1@198.51.100.1');
         INSERT INTO registrant (registrar, proxy, aor, third_party_registrant, username, password, binding_URI, binding_params, expiry, forced_socket, cluster_shtag, state)
           VALUES ('sip:192.0.2.10:5070', 'sip:192.0.2.1', 'sip:t2@example.net', NULL, 't2', 'pw', 'sip:t2@198.51.100.1', NULL, 300, NULL, NULL, 1);
         INSERT INTO registrant (registrar, aor, binding_URI) VALUES ('', 'sip:t3@example.net', 'sip:t3@198.51.100.1');
         INSERT INTO registrant (registrar, aor, binding_URI, expiry) VALUES ('sip:192.0.2.10', 'sip:t4@example.net', 'sip:t4@198.51.100.1', 'abc');
         INSERT INTO registrant (registrar, aor, binding_URI, username) VALUES ('sip:192.0.2.10', 'sip:t5@example.net', 'sip:t5@198.51.100.1', 'u5');",
    )
    .expect("rows");
    drop(conn);
    let spec = Spec::parse(&format!("sqlite:{}", db.display())).expect("sqlite");
    assert!(spec.writes_state());
    let loaded = spec.load(&LoadLimits::default()).expect("loads");
    let good: Vec<_> = loaded
        .accounts
        .iter()
        .map(|(at, a)| (*at, a.aor.as_str(), a.enabled, a.expiry))
        .collect();
    assert_eq!(
        good,
        [
            (Location::Id(1), "sip:t1@example.net", true, None),
            (Location::Id(2), "sip:t2@example.net", false, Some(300)),
        ]
    );
    assert_eq!(loaded.accounts[1].1.proxy.as_deref(), Some("sip:192.0.2.1"));
    let bad: Vec<_> = loaded.bad.iter().map(|b| (b.at, b.error.clone())).collect();
    assert_eq!(bad[0], (Location::Id(3), RowError::Missing("registrar")));
    assert_eq!(bad[1].0, Location::Id(4));
    assert_eq!(bad[2], (Location::Id(5), RowError::UsernameWithoutPassword));
    assert_eq!(bad.len(), 3);

    // enable row 2, disable row 1: written to `state`.
    assert!(write_state(&db, 2, true).expect("written"));
    assert!(write_state(&db, 1, false).expect("written"));
    assert!(!write_state(&db, 99, false).expect("no such row"));
    let loaded = spec.load(&LoadLimits::default()).expect("loads");
    let states: Vec<_> = loaded.accounts.iter().map(|(_, a)| a.enabled).collect();
    assert_eq!(states, [false, true]);
}

#[test]
fn sqlite_older_schemas_and_broken_databases() {
    let dir = tempfile::tempdir().expect("tempdir");
    // OpenSIPS before `state` (and before forced_socket and cluster_shtag): loads, all enabled;
    // writing the state says what to add.
    let db = dir.path().join("old.sqlite");
    let conn = Connection::open(&db).expect("create");
    conn.execute_batch(
        "CREATE TABLE registrant (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, registrar CHAR(255) DEFAULT '' NOT NULL,
           proxy CHAR(255) DEFAULT NULL, aor CHAR(255) DEFAULT '' NOT NULL, third_party_registrant CHAR(255) DEFAULT NULL,
           username CHAR(64) DEFAULT NULL, password CHAR(64) DEFAULT NULL, binding_URI CHAR(255) DEFAULT '' NOT NULL,
           binding_params CHAR(64) DEFAULT NULL, expiry INTEGER DEFAULT NULL);
         INSERT INTO registrant (registrar, aor, binding_URI, expiry) VALUES ('sip:192.0.2.10', 'sip:t1@example.net', 'sip:t1@198.51.100.1', 1200);",
    )
    .expect("old schema");
    drop(conn);
    let spec = Spec::Sqlite(db.clone());
    let loaded = spec.load(&LoadLimits::default()).expect("loads");
    assert_eq!(loaded.accounts.len(), 1);
    assert!(loaded.accounts[0].1.enabled);
    let err = write_state(&db, 1, false).expect_err("no state column");
    assert!(err
        .to_string()
        .contains("ALTER TABLE registrant ADD COLUMN state"));

    // No table; no required column; not a database; missing file.
    let empty = dir.path().join("empty.sqlite");
    Connection::open(&empty)
        .expect("create")
        .execute_batch("CREATE TABLE other (x)")
        .expect("t");
    assert!(Spec::Sqlite(empty).load(&LoadLimits::default()).is_err());
    let partial = dir.path().join("partial.sqlite");
    Connection::open(&partial)
        .expect("create")
        .execute_batch("CREATE TABLE registrant (registrar, aor)")
        .expect("t");
    let err = Spec::Sqlite(partial)
        .load(&LoadLimits::default())
        .expect_err("binding_URI");
    assert!(err.to_string().contains("binding_URI"));
    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, b"this is not a database, not at all, no").expect("write");
    assert!(Spec::Sqlite(garbage).load(&LoadLimits::default()).is_err());
    assert!(matches!(
        Spec::Sqlite(dir.path().join("missing.sqlite")).load(&LoadLimits::default()),
        Err(SourceError::Io { .. })
    ));
}
