//! A CRIU checkpoint's cet images: how a dump makes them part of the checkpoint, and which ones
//! a restore may apply. The plugin and `criu-cet check DIR` follow the same rules.
//!
//! - While CRIU dumps, each image is written as `cet-<id>.img` at once (`criu dump --lazy-pages`
//!   serves pages before it ends, and the images directory, cet images included, is copied to
//!   the target meanwhile), an earlier dump's image of the same name set aside first as
//!   `.cet-<id>.img.previous`. When CRIU reports at exit that the dump succeeded, what was set
//!   aside and every `cet-*.img` this dump did not write (an earlier dump's) is removed; when it
//!   failed, the dump's images are removed and what was set aside is put back, so the
//!   directory's earlier images are exactly as they were.
//! - An image records the id of the CRIU run that dumped it (format 1.3, `criu_run_id`); CRIU
//!   records the same id in the checkpoint's inventory.img (`dump_criu_run_id`), together with
//!   the plugins the dump registered. An image applies only to the checkpoint whose inventory
//!   names the cet plugin and the same run; an image without a run id (older plugins, the CLI)
//!   is applied with a warning.

use crate::criu_images::{self, Inventory};
use criu_cet_format::Metadata;
use std::path::Path;

/// The socket CRIU's `--stream` dump writes its images through (criu/img-streamer.c): images
/// written into the directory beside it never travel with the stream.
pub const STREAMER_CAPTURE_SOCKET: &str = "streamer-capture.sock";

/// The name an earlier dump's `cet-<id>.img` has while a dump that writes a new one is under way.
pub fn previous_name(id: u32) -> String {
    format!(".cet-{id}.img.previous")
}

/// Before a dump writes `cet-<id>.img` in `dir`: sets an earlier one aside as
/// [`previous_name`]. One already set aside (by a dump that CRIU never finished) is kept: it is
/// the last complete dump's; the unfinished dump's image goes.
pub fn set_aside(dir: &Path, id: u32) -> Result<(), String> {
    let (name, previous) = (crate::job::image_name(id), previous_name(id));
    let result = if dir.join(&previous).exists() {
        std::fs::remove_file(dir.join(&name))
    } else {
        std::fs::rename(dir.join(&name), dir.join(&previous))
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("setting {name} aside: {e}")),
        _ => Ok(()),
    }
}

/// The task id of a published image's name `cet-<id>.img` (canonical decimal), else `None`.
pub fn image_id(name: &str) -> Option<u32> {
    let id: u32 = name.strip_prefix("cet-")?.strip_suffix(".img")?.parse().ok()?;
    (name == crate::job::image_name(id)).then_some(id)
}

fn previous_id(name: &str) -> Option<u32> {
    let id: u32 = name.strip_prefix(".cet-")?.strip_suffix(".img.previous")?.parse().ok()?;
    (name == previous_name(id)).then_some(id)
}

/// Whether CRIU is dumping into `dir` through an image streamer (`criu dump --stream`).
pub fn streaming(dir: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(dir.join(STREAMER_CAPTURE_SOCKET)).is_ok_and(|m| m.file_type().is_socket())
}

/// What publishing a dump's images did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Images now in place, by task id.
    pub images: Vec<u32>,
    /// Earlier dumps' images removed, by name.
    pub removed: Vec<String>,
}

/// At the end of a dump that succeeded and wrote the images of tasks `written`: removes what was
/// set aside and every other `cet-*.img` (an earlier dump's).
pub fn publish(dir: &Path, written: &[u32]) -> Result<Published, String> {
    let mut done = Published { images: written.to_vec(), removed: Vec::new() };
    for name in list(dir)? {
        let earlier = image_id(&name).is_some_and(|id| !written.contains(&id));
        if earlier || previous_id(&name).is_some() {
            std::fs::remove_file(dir.join(&name)).map_err(|e| format!("removing {name}: {e}"))?;
            if earlier {
                done.removed.push(name);
            }
        }
    }
    done.images.sort_unstable();
    done.removed.sort_unstable();
    Ok(done)
}

/// At the end of a dump that failed, or of one image refused: removes the images of tasks
/// `written` and puts back what was set aside for them. Returns how many were removed.
pub fn roll_back(dir: &Path, written: &[u32]) -> Result<usize, String> {
    for &id in written {
        let (name, previous) = (crate::job::image_name(id), previous_name(id));
        match std::fs::remove_file(dir.join(&name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("removing {name}: {e}"))
            }
            _ => {}
        }
        match std::fs::rename(dir.join(&previous), dir.join(&name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("putting {previous} back as {name}: {e}"))
            }
            _ => {}
        }
    }
    Ok(written.len())
}

fn list(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading the image directory: {e}"))?;
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| format!("reading the image directory: {e}"))?;
        if let Ok(name) = e.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Whether an image belongs to the checkpoint whose inventory is `inventory`.
#[derive(Debug, PartialEq, Eq)]
pub enum Belonging {
    /// Written by the dump that wrote this inventory.
    Same,
    /// Cannot be told (no run id on one side); the message says why.
    Unknown(String),
    /// Written by another dump: never applied. The message names both.
    Foreign(String),
}

/// The rule of the module's doc, for image `name` with metadata `meta`.
pub fn belonging(name: &str, meta: &Metadata, inventory: &Inventory) -> Belonging {
    let fix = format!(
        "remove {name}, or restore from the directory of the dump that wrote it (cet images are \
         rewritten by every dump that has the plugin)"
    );
    if !inventory.names_cet() {
        return Belonging::Foreign(format!(
            "{name} is from another dump: this checkpoint's inventory.img does not name the cet plugin, \
             so its dump wrote no cet image (it ran without the plugin, or no task used CET); {fix}"
        ));
    }
    match (&meta.criu_run_id, &inventory.dump_criu_run_id) {
        (Some(ours), Some(theirs)) if ours == theirs => Belonging::Same,
        (Some(ours), Some(theirs)) => Belonging::Foreign(format!(
            "{name} is from another dump: it was written by CRIU run {ours}, but this checkpoint was \
             dumped by CRIU run {theirs} (inventory.img); {fix}"
        )),
        (None, _) => Belonging::Unknown(format!(
            "{name} records no CRIU run (written by a plugin older than image format 1.3, or by \
             `criu-cet dump`): it cannot be checked against this checkpoint's inventory.img"
        )),
        (Some(_), None) => Belonging::Unknown(format!(
            "inventory.img records no CRIU run id (CRIU older than 3.18?): {name} cannot be checked \
             against it"
        )),
    }
}

/// What a checkpoint whose inventory names the cet plugin lacks, given the tasks of its
/// pstree.img and the ids of the cet images found in `dir` (shown as `dir_shown`): the image of
/// every task whose CRIU mm-<id>.img shows a mapping with a bitmap's fingerprint (the plugin
/// wrote one for each), and, when `dir` holds no cet image at all, any. `None` when nothing is
/// missing.
pub fn missing_images(dir: &Path, dir_shown: &str, tasks: &[u32], found: &[u32]) -> Option<String> {
    let travel = "cet-*.img must travel with CRIU's images (a page server receives only pages; copy \
                  them with rsync or your transport from the dump's images directory)";
    let lacking: Vec<String> = tasks
        .iter()
        .filter(|id| !found.contains(id))
        .filter(|&&id| {
            criu_images::read_mappings(dir, id).is_ok_and(|vmas| vmas.iter().any(crate::find::is_fingerprint))
        })
        .map(|&id| crate::job::image_name(id))
        .collect();
    if !lacking.is_empty() {
        let mut names: Vec<String> = lacking.iter().take(8).cloned().collect();
        if lacking.len() > 8 {
            names.push(format!("and {} more", lacking.len() - 8));
        }
        return Some(format!(
            "{} missing: this checkpoint's inventory.img names the cet plugin and CRIU's mm-<id>.img \
             records a bitmap for {} task(s) without a cet image in {dir_shown}; {travel}",
            names.join(", "),
            lacking.len()
        ));
    }
    found.is_empty().then(|| {
        format!(
            "this checkpoint's inventory.img names the cet plugin, so its dump wrote cet-<id>.img for \
             the tasks that used CET, but {dir_shown} holds none; {travel}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(run: Option<&str>) -> Metadata {
        let doc: criu_cet_format::ImageDoc =
            serde_json::from_str(include_str!("../../tests/vectors/empty-48.json")).unwrap();
        Metadata {
            host: doc.host,
            process: doc.process,
            bitmap: doc.bitmap,
            namespace: doc.namespace,
            criu_run_id: run.map(String::from),
        }
    }

    fn inv(plugins: &[&str], run: Option<&str>) -> Inventory {
        Inventory {
            plugins: Some(plugins.iter().map(|p| p.to_string()).collect()),
            dump_criu_run_id: run.map(String::from),
        }
    }

    #[test]
    fn an_image_belongs_only_to_the_dump_run_that_wrote_it() {
        assert_eq!(belonging("cet-1.img", &meta(Some("a")), &inv(&["cet"], Some("a"))), Belonging::Same);
        assert!(matches!(
            belonging("cet-1.img", &meta(Some("a")), &inv(&["cet"], Some("b"))),
            Belonging::Foreign(m) if m.contains("CRIU run a") && m.contains("CRIU run b")
        ));
        assert!(matches!(
            belonging("cet-1.img", &meta(Some("a")), &inv(&["amdgpu"], Some("a"))),
            Belonging::Foreign(m) if m.contains("does not name the cet plugin")
        ));
        assert!(matches!(
            belonging("cet-1.img", &meta(None), &inv(&["cet"], Some("a"))),
            Belonging::Unknown(_)
        ));
        assert!(matches!(
            belonging("cet-1.img", &meta(Some("a")), &inv(&["cet"], None)),
            Belonging::Unknown(_)
        ));
    }

    #[test]
    fn a_dump_sets_earlier_images_aside_and_success_or_failure_settles_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let put = |n: &str, text: &str| std::fs::write(d.join(n), text).unwrap();
        let read = |n: &str| std::fs::read_to_string(d.join(n)).ok();
        put("cet-1.img", "old 1");
        put("cet-5.img", "old 5");
        put("cet-05.img", "not ours");
        put("core-1.img", "criu");
        // A dump writes task 1 (the old one set aside) and task 2; then it fails.
        set_aside(d, 1).unwrap();
        set_aside(d, 2).unwrap();
        put("cet-1.img", "new 1");
        put("cet-2.img", "new 2");
        assert_eq!(roll_back(d, &[1, 2]).unwrap(), 2);
        assert_eq!(
            (read("cet-1.img"), read("cet-2.img"), read("cet-5.img")),
            (Some("old 1".into()), None, Some("old 5".into()))
        );
        // The same, and it succeeds: the earlier dump's cet-5.img goes, nothing is left aside.
        set_aside(d, 1).unwrap();
        put("cet-1.img", "new 1");
        let done = publish(d, &[1]).unwrap();
        assert_eq!((done.images, done.removed), (vec![1], vec!["cet-5.img".to_string()]));
        assert_eq!(read("cet-1.img").as_deref(), Some("new 1"));
        assert!(
            read(&previous_name(1)).is_none() && read("cet-05.img").is_some() && read("core-1.img").is_some()
        );
        // A dump that CRIU never finished left its image and the one set aside: the next keeps
        // the one set aside (the last complete dump's) and rolls back to it.
        set_aside(d, 1).unwrap();
        put("cet-1.img", "unfinished");
        set_aside(d, 1).unwrap();
        assert_eq!(read("cet-1.img"), None);
        roll_back(d, &[1]).unwrap();
        assert_eq!(read("cet-1.img").as_deref(), Some("new 1"));
    }
}
