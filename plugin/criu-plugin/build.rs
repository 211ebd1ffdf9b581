//! Generates the Rust types of CRIU's pstree.img entries (proto/pstree.proto) with prost; the
//! .proto is compiled by protox, in Rust, so no protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/pstree.proto");
    let descriptors = protox::compile(["proto/pstree.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
