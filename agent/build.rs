//! Embeds the TC programs built from ebpf/ (scripts/build-ebpf.sh) into the agent. When
//! they are not built the agent still builds, and `--lb-engine ebpf` falls back to
//! nftables with one clear log line.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let object = manifest.join("../ebpf/target/bpfel-unknown-none/release/shoal-tc");
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("shoal-tc.o");
    let bytes = std::fs::read(&object).unwrap_or_else(|_| {
        println!(
            "cargo:warning=ebpf/ is not built (run scripts/build-ebpf.sh): the ebpf load balancer will fall back to nftables"
        );
        Vec::new()
    });
    std::fs::write(&out, bytes).expect("writing to OUT_DIR");
}
