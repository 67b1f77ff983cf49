//! Link options of the C library.
//!
//! * free and malloc first in `.text`, at the start of a page of their own
//!   (`hot-symbols.txt`, `-z separate-code`). Where the linker left them
//!   otherwise they moved with every change to other code, and the same
//!   machine code ran `mixed` up to 5 % slower at some offsets
//!   (docs/experiments.md).
//! * The code that runs only on request (functions marked
//!   `#[link_section = ".text_cold"]`: reports, profile dumps, the live
//!   view, error messages; about 45 KiB) last, after the PLT (`cold.ld`),
//!   and the code segment aligned to 64 KiB (its first section, `.init`,
//!   in `cold.ld`). The kernel maps a file's pages around a fault in
//!   aligned 64 KiB windows (`fault_around_bytes`), so a process that runs
//!   only the allocator's code maps that one window of text instead of all
//!   of it (expr: 112 -> 64 KiB of the library's text resident). glibc >=
//!   2.35 loads a library at an address aligned to its segments' largest
//!   alignment. The other segments keep 4 KiB pages
//!   (`-z max-page-size=4096`): aligned to 64 KiB too (as they were until
//!   the twentieth session), they left three holes that ld.so maps
//!   `PROT_NONE` one call each, and every process paid 3-6 us more to load
//!   and tear them down; now one hole is left, before the code.
//! * The small statics first in the writable segment, then the page map's
//!   tables (`.bss.map`, the page-region table first), then the large
//!   arrays (`.bss.big`: the zones, the starter heap's region, the
//!   reclaimer's stack; `cold.ld`, `#[link_section]` on each). Left to the
//!   linker they lay between the small ones, which then spread over five
//!   pages: a process that only starts up touched each (`sed`: 5 page
//!   faults more; docs/experiments.md).
//!
//! Those are LLD options: rustc links with its own LLD on x86-64 Linux since
//! 1.90, so they are given only there.

use std::process::Command;

fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").ok()?;
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let v = String::from_utf8(out.stdout).ok()?;
    // "rustc 1.95.0 (...)"
    v.split_whitespace().nth(1)?.split('.').nth(1)?.parse().ok()
}

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-changed=cold.ld");
    println!("cargo:rerun-if-env-changed=SLABALLOC_NO_HOT_LINK");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target = std::env::var("TARGET").unwrap_or_default();
    let lld = target == "x86_64-unknown-linux-gnu" && rustc_minor().is_some_and(|m| m >= 90);
    if !lld || std::env::var_os("SLABALLOC_NO_HOT_LINK").is_some() {
        return;
    }
    for arg in [
        format!("-Wl,--symbol-ordering-file={dir}/hot-symbols.txt"),
        "-Wl,--no-warn-symbol-ordering".to_string(),
        "-Wl,-z,separate-code".to_string(),
        "-Wl,-z,max-page-size=4096".to_string(),
        format!("-Wl,-T,{dir}/cold.ld"),
    ] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
}
