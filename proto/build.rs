fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build independent of the host's packages.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        // Secret data and the cluster's keys (CA key, gossip keys, unlock key) never reach
        // a log through `{:?}`: objects.rs writes their Debug.
        .skip_debug([".shoal.v1.SecretSpec", ".shoal.v1.Cluster"])
        .compile_protos(&["proto/shoal.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/shoal.proto");
    Ok(())
}
