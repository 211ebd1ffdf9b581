//! `criu-cet demo`: the whole job on a fixture process, narrated, in a few seconds.

use crate::show;
use criu_cet::capture::CaptureOptions;
use criu_cet::check::{self, CoveragePolicy};
use criu_cet::fixture::Fixture;
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
    let exe =
        std::env::current_exe().map_err(|source| EngineError::Io { path: "criu-cet".into(), source })?;
    let bin = exe.with_file_name("cet-fixture");
    say!("== criu-cet demo ==");
    say!("this host: {}", show::host_line(&host::probe()));

    say!("\n1. start a CET-style runtime: a 48-bit legacy bitmap (8 GiB NORESERVE) at 0x600000000000, below the");
    say!("   mmap area so that a fresh process can take it back; 3 threads; legacy marks for its non-IBT code;");
    say!("   4 all-ones and 6 mixed pages of synthetic patterns (for code ranges nothing maps, so the dump");
    say!("   counts them as stale legacy bits)");
    let source = Fixture::start(
        &bin,
        dir.path(),
        "source",
        &["--bits", "48", "--base", "0x600000000000", "--threads", "3", "--ones", "4", "--mixed", "6"],
    )?;
    let before = source.ask()?;
    say!("   fixture {}: {}", source.pid, before.0);

    say!("\n2. dump it (seize, read CET state of every thread, PAGEMAP_SCAN the bitmap, detach)");
    let t = Instant::now();
    let report = crate::dump(source.pid, &img, &CaptureOptions::default())?;
    say!("   {} ({:.1} ms)", report, t.elapsed().as_secs_f64() * 1e3);

    say!("\n3. show the image");
    for line in show::image(&img, &mut image::open(&img)?).lines() {
        say!("   {line}");
    }

    let r = image::open(&img)?;
    let name = img.display().to_string();
    say!("\n4. check it against this host");
    let here =
        check::check(&name, r.metadata(), r.summary(), &host::probe(), "this host", CoveragePolicy::Warn);
    here.iter().for_each(|f| say!("   {f}"));
    say!("   -> {}", if check::has_errors(&here) { "refused" } else { "restorable here" });

    say!("\n5. check it against a built-in 5-level host profile (56-bit user space), coverage strict");
    let there = check::check(
        &name,
        r.metadata(),
        r.summary(),
        &five_level_example(),
        "the 5-level example host",
        CoveragePolicy::Strict,
    );
    there.iter().for_each(|f| say!("   {f}"));
    say!("   -> {}", if check::has_errors(&there) { "refused, as it should be" } else { "accepted" });

    say!("\n6. start a fresh fixture without any bitmap and restore the image into it");
    let target = Fixture::start(&bin, dir.path(), "target", &["--no-bitmap", "--threads", "3"])?;
    say!("   fixture {}: {}", target.pid, target.ask()?.0);
    let restored = crate::restore_file(target.pid, &img)?;
    say!("   {restored}");

    say!("\n7. ask the restored fixture what bitmap it sees now");
    let after = target.ask()?;
    say!("   fixture {}: {}", target.pid, after.0);
    let same = before.bitmap_view() == after.bitmap_view();
    let refused_elsewhere = check::has_errors(&there) && !check::has_errors(&here);
    if same && refused_elsewhere {
        say!(
            "\nverdict: PASS - the fresh process sees the same bitmap (digest {}), and the check refused the image for a host it cannot serve",
            after.get("digest")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        say!("\nverdict: FAIL - bitmaps match: {same}; check verdicts as expected: {refused_elsewhere}");
        Ok(ExitCode::FAILURE)
    }
}
