//! Generates the Rust types of the CRIU image entries the engine reads (proto/*.proto) with
//! prost; the .proto files are compiled by protox, in Rust, so no protoc is needed.
//!
//! Renders, from the CLI's own definition (src/cli.rs), the manual pages (gzipped, as Debian
//! policy wants them installed) and the bash, zsh and fish completions into target/PROFILE/man/
//! and target/PROFILE/completions/, where the Debian package takes them from (plugin/Cargo.toml,
//! [package.metadata.deb]). They go beside the binaries rather than into OUT_DIR, whose hashed
//! name a packaging tool cannot know.

use std::path::Path;

#[allow(dead_code)] // the build script renders the definition; it parses no arguments
#[path = "src/cli.rs"]
mod cli;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/pstree.proto", "proto/inventory.proto", "proto/mm.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;

    println!("cargo:rerun-if-changed=src/cli.rs");
    let out_dir = std::env::var("OUT_DIR")?;
    // OUT_DIR is target/PROFILE/build/criu-cet-HASH/out (target/TRIPLE/PROFILE/... when
    // cross-compiling): three levels up is the binaries' directory.
    let profile_dir = Path::new(&out_dir).ancestors().nth(3).ok_or("OUT_DIR has no profile directory")?;
    let pages = Path::new(&out_dir).join("man");
    cli::write_man_pages(&pages)?;
    let man = profile_dir.join("man");
    // Only this build's pages: a renamed subcommand's old page must not be packaged.
    let _ = std::fs::remove_dir_all(&man);
    std::fs::create_dir_all(&man)?;
    for page in std::fs::read_dir(&pages)? {
        let page = page?.path();
        let name = page.file_name().ok_or("a man page without a name")?.to_string_lossy().into_owned();
        // flate2 writes no timestamp in the gzip header: the same page gives the same bytes.
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(man.join(format!("{name}.gz")))?,
            flate2::Compression::best(),
        );
        std::io::copy(&mut std::fs::File::open(&page)?, &mut gz)?;
        gz.finish()?;
    }
    let completions = profile_dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "criu-cet"),
        (clap_complete::Shell::Zsh, "_criu-cet"),
        (clap_complete::Shell::Fish, "criu-cet.fish"),
    ] {
        std::fs::write(completions.join(name), cli::completions(shell))?;
    }
    Ok(())
}
