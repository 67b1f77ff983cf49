//! Link options of the C library: free and malloc first in `.text`, at the
//! start of a page of their own (`hot-symbols.txt`, `-z separate-code`).
//! Where the linker left them otherwise they moved with every change to other
//! code, and the same machine code ran `mixed` up to 5 % slower at some
//! offsets (docs/experiments.md). Those are LLD options: rustc links with its
//! own LLD on x86-64 Linux since 1.90, so they are given only there.

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
    ] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
}
