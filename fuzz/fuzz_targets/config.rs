//! The TOML configuration file (`--config FILE`) on arbitrary text: `FileConfig::parse` (what
//! `FileConfig::load` runs on the file's contents), then the merge with an empty command line and the
//! validation, then everything the server derives from a valid configuration. Nothing may panic: a bad
//! file is an error.

#![no_main]

use corereg::config::{Args, Config, FileConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = match FileConfig::parse(&text) {
        Ok(file) => file,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let config = match Config::merge(Args::default(), file) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // Validation is idempotent: what passed once passes again.
    config.validate().expect("a merged configuration validates");
    let limits = config.parse_limits();
    assert!(limits.max_headers <= corereg::sip::parse::MAX_HEADERS);
    let _ = config.auth_config();
    let (realms, _open) = config.auth_realms();
    if let Some(realm) = config.default_credentials_realm() {
        assert!(realms.contains(&realm));
    }
    for shards in [1, 2, 3, 64] {
        let per_shard = config.registrar_configs(shards);
        assert_eq!(per_shard.len(), shards);
        assert!(per_shard
            .iter()
            .all(|c| c.hash_seed == per_shard[0].hash_seed));
        let total: u128 = per_shard.iter().map(|c| c.max_bindings as u128).sum();
        assert!(
            total >= config.max_bindings as u128,
            "the shards hold at least --max-bindings"
        );
    }
    for usable in [&[0usize][..], &[0, 1], &[2, 3, 4, 5, 6, 7, 8, 9]] {
        if let Ok(cpus) = config.shard_cpus(usable) {
            assert!(!cpus.is_empty());
            assert!(cpus.iter().all(|c| usable.contains(c)));
        }
    }
});
