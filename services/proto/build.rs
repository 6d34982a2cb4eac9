fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The vendored protoc, so no system protoc is needed.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // build scripts run single-threaded; setting the variable here is the documented way
    unsafe_env(&protoc);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto").canonicalize()?;
    let files = [
        "whistle/v1/events.proto",
        "whistle/v1/intake.proto",
        "whistle/v1/desk.proto",
        "whistle/v1/revisit.proto",
        "whistle/v1/classifier.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // For server reflection (grpcurl list).
        .file_descriptor_set_path(out.join("whistle_descriptor.bin"))
        .build_server(true)
        .build_client(true)
        .compile_protos(&files.map(|f| root.join(f)), &[root.clone(), include])?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_env(protoc: &std::path::Path) {
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("PROTOC", protoc) };
}
