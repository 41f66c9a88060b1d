//! Link step only: keep hot and cold code apart in the binary.
//!
//! With a profile (`scripts/build-pgo.sh`), LLVM puts the functions the profile found hot in `.text.hot.*`
//! sections and the cold ones in `.text.unlikely.*`; `-z keep-text-section-prefix` makes the linker (lld,
//! GNU ld) gather each kind into one output section, so the request path spans a few contiguous pages. A
//! shard that sleeps between datagrams starts each one with cold instruction caches and TLB: fewer pages
//! and lines to fetch. (Hand-placed `link_section` attributes measured no gain over this; see
//! benches/results/2026-12-05-shared-toolkit.md.)
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-z,keep-text-section-prefix");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
