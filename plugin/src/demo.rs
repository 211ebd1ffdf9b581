//! `criu-cet demo`: the whole job on a fixture process, narrated, in a few seconds.

use crate::fixture::{field, Fixture};
use crate::show;
use criu_cet::capture::CaptureOptions;
use criu_cet::check::{self, Coverage};
use criu_cet::host::{self, HostProfile};
use criu_cet::{image, EngineError};
use criu_cet_format::CetSupport;
use std::process::ExitCode;
use std::time::Instant;

/// A host with 5-level paging and CET, whose code may live anywhere below 2^56: a bitmap
/// covering fewer bits cannot protect it.
fn five_level_example() -> HostProfile {
    HostProfile {
        kernel_release: "example-5-level".into(),
        user_address_bits: 56,
        cpu_virtual_bits: 57,
        la57: true,
        cet: CetSupport { cpu_shstk: true, cpu_ibt: true, kernel_shstk: true, kernel_ibt: true },
    }
}

pub fn run() -> Result<ExitCode, EngineError> {
    let dir = tempfile::tempdir()
        .map_err(|source| EngineError::Io { path: "temporary directory".into(), source })?;
    let img = dir.path().join("cet-demo.img");
    println!("== criu-cet demo ==");
    println!("this host: {}", show::host_line(&host::probe()));

    println!(
        "\n1. start a CET-style runtime: 48-bit legacy bitmap (8 GiB NORESERVE), 3 threads, legacy marks for"
    );
    println!("   its non-IBT code, 4 all-ones pages and 6 mixed pages");
    let source = Fixture::start(
        dir.path(),
        "source",
        &["--bits", "48", "--base", "0x600000000000", "--threads", "3", "--ones", "4", "--mixed", "6"],
    )?;
    let before = source.ask()?;
    println!("   fixture {}: {before}", source.pid());

    println!("\n2. dump it (seize, read CET state of every thread, PAGEMAP_SCAN the bitmap, detach)");
    let t = Instant::now();
    let report = crate::dump(source.pid(), &img, &CaptureOptions::default())?;
    println!(
        "   {} ({:.1} ms)",
        show::capture_line(source.pid(), &img, &report),
        t.elapsed().as_secs_f64() * 1e3
    );

    println!("\n3. show the image");
    for line in show::image(&img, &mut image::open(&img)?).lines() {
        println!("   {line}");
    }

    let r = image::open(&img)?;
    let name = img.display().to_string();
    println!("\n4. check it against this host");
    let here = check::check(&name, r.metadata(), r.summary(), &host::probe(), "this host", Coverage::Warn);
    here.iter().for_each(|f| println!("   {f}"));
    println!("   -> {}", if check::has_errors(&here) { "refused" } else { "restorable here" });

    println!("\n5. check it against a built-in 5-level host profile (56-bit user space), coverage strict");
    let there = check::check(
        &name,
        r.metadata(),
        r.summary(),
        &five_level_example(),
        "the 5-level example host",
        Coverage::Strict,
    );
    there.iter().for_each(|f| println!("   {f}"));
    println!("   -> {}", if check::has_errors(&there) { "refused, as it should be" } else { "accepted" });

    println!("\n6. start a fresh fixture without any bitmap and restore the image into it");
    let target = Fixture::start(dir.path(), "target", &["--no-bitmap", "--threads", "3"])?;
    println!("   fixture {}: {}", target.pid(), target.ask()?);
    let restored = crate::restore_file(target.pid(), &img)?;
    println!("   {}", show::restore_line(target.pid(), &img, &restored));

    println!("\n7. ask the restored fixture what bitmap it sees now");
    let after = target.ask()?;
    println!("   fixture {}: {after}", target.pid());
    let same =
        ["bitmap", "pages", "ones", "mixed", "digest"].iter().all(|k| field(&before, k) == field(&after, k));
    let refused_elsewhere = check::has_errors(&there) && !check::has_errors(&here);
    if same && refused_elsewhere {
        println!(
            "\nverdict: PASS - the fresh process sees the same bitmap (digest {}), and the check refused the image for a host it cannot serve",
            field(&after, "digest")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nverdict: FAIL - bitmaps match: {same}; check verdicts as expected: {refused_elsewhere}");
        Ok(ExitCode::FAILURE)
    }
}
