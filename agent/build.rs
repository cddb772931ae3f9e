//! Builds the TC programs in ebpf/ for bpfel (nightly and bpf-linker, through aya-build)
//! and embeds them, so a plain `cargo build` always carries programs built from the
//! sources beside it. Without bpf-linker or a nightly toolchain the agent still builds,
//! and `--lb-engine ebpf` falls back to nftables with one clear log line.

use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: &str = "shoal-ebpf";
const BINARY: &str = "shoal-tc";

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join(BINARY);
    println!("cargo:rerun-if-env-changed=PATH");
    match missing_tool() {
        Some(why) => println!(
            "cargo:warning=the eBPF programs are not built ({why}; scripts/setup.sh installs it): the ebpf load balancer will fall back to nftables"
        ),
        None => build(),
    }
    if !out.exists() {
        std::fs::write(&out, []).expect("writing to OUT_DIR");
    }
}

/// What is missing to build for bpfel, if anything.
fn missing_tool() -> Option<&'static str> {
    let runs = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !runs("bpf-linker", &["--version"]) {
        return Some("bpf-linker is not on PATH");
    }
    if !runs("rustup", &["run", "nightly", "rustc", "--version"]) {
        return Some("the nightly toolchain is missing");
    }
    None
}

fn build() {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .expect("reading the workspace's metadata");
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == PROGRAMS)
        .expect("the workspace holds ebpf/");
    let root = package
        .manifest_path
        .parent()
        .expect("a manifest has a directory");
    let programs = aya_build::Package {
        name: PROGRAMS,
        root_dir: root.as_str(),
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([programs], aya_build::Toolchain::default()) {
        panic!("building the eBPF programs in {root}: {e:#}");
    }
}
