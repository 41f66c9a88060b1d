//! Link step only: keep the request path's functions together in the binary.
//!
//! The functions every REGISTER runs carry `#[link_section = ".text.hot.corereg"]`; with
//! `-z keep-text-section-prefix` the linker (lld, GNU ld) gathers all `.text.hot.*` input sections into
//! one `.text.hot` output section, so the request path spans a few contiguous pages instead of being
//! spread between rarely used code. A shard that sleeps between datagrams starts each one with cold
//! instruction caches and TLB: fewer pages and lines to fetch (see benches/README.md).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-z,keep-text-section-prefix");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
