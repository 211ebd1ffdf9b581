//! Generates the Rust types of the CRIU image entries the engine reads (proto/*.proto) with
//! prost; the .proto files are compiled by protox, in Rust, so no protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/pstree.proto", "proto/inventory.proto", "proto/mm.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
