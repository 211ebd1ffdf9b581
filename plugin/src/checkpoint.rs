//! A CRIU checkpoint's cet images: how a dump makes them part of the checkpoint, and which ones
//! a restore may apply. The plugin and `criu-cet check DIR` follow the same rules.
//!
//! - While CRIU dumps, each image is written as `.cet-<id>.img.staged`; when CRIU reports at
//!   exit that the dump succeeded, the staged images become `cet-<id>.img` and every other
//!   `cet-*.img` of the directory (an earlier dump's) is removed. A failed dump removes its
//!   staged images and leaves the directory's earlier images exactly as they were.
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

/// The name an image has while the dump that writes it is under way.
pub fn staged_name(id: u32) -> String {
    format!(".cet-{id}.img.staged")
}

/// The task id of a published image's name `cet-<id>.img` (canonical decimal), else `None`.
pub fn image_id(name: &str) -> Option<u32> {
    let id: u32 = name.strip_prefix("cet-")?.strip_suffix(".img")?.parse().ok()?;
    (name == crate::job::image_name(id)).then_some(id)
}

fn staged_id(name: &str) -> Option<u32> {
    let id: u32 = name.strip_prefix(".cet-")?.strip_suffix(".img.staged")?.parse().ok()?;
    (name == staged_name(id)).then_some(id)
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

/// Publishes the images that the dump which succeeded staged, by task id: each
/// `.cet-<id>.img.staged` becomes `cet-<id>.img`; every other `cet-*.img` (an earlier dump's) and
/// any other staged image (left by a dump that CRIU never finished) is removed.
pub fn publish(dir: &Path, staged: &[u32]) -> Result<Published, String> {
    let mut done = Published::default();
    for &id in staged {
        let (from, to) = (staged_name(id), crate::job::image_name(id));
        std::fs::rename(dir.join(&from), dir.join(&to))
            .map_err(|e| format!("renaming {from} to {to}: {e}"))?;
        done.images.push(id);
    }
    for name in list(dir)? {
        let earlier = image_id(&name).is_some_and(|id| !staged.contains(&id));
        if earlier || staged_id(&name).is_some() {
            std::fs::remove_file(dir.join(&name)).map_err(|e| format!("removing {name}: {e}"))?;
            done.removed.push(name);
        }
    }
    done.images.sort_unstable();
    done.removed.sort_unstable();
    Ok(done)
}

/// Removes staged images (of a failed dump, or left by one that CRIU did not finish); returns
/// their names.
pub fn discard_staged(dir: &Path) -> Result<Vec<String>, String> {
    let mut removed = Vec::new();
    for name in list(dir)?.into_iter().filter(|n| staged_id(n).is_some()) {
        std::fs::remove_file(dir.join(&name)).map_err(|e| format!("removing {name}: {e}"))?;
        removed.push(name);
    }
    Ok(removed)
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

/// What a checkpoint whose inventory names the cet plugin lacks, given the ids of the cet images
/// found in `dir` (shown as `dir_shown`): the image of every task whose CRIU mm-<id>.img shows a
/// mapping with a bitmap's fingerprint (the plugin wrote one for each), and, when `dir` holds no
/// cet image at all, any. `None` when nothing is missing.
pub fn missing_images(dir: &Path, dir_shown: &str, found: &[u32]) -> Option<String> {
    let travel = "cet-*.img must travel with CRIU's images (a page server receives only pages; copy \
                  them with rsync or your transport from the dump's images directory)";
    let tasks: Vec<u32> = criu_images::read_pstree(dir).map(|t| t.into_keys().collect()).unwrap_or_default();
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
    fn publishing_renames_staged_images_and_removes_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        for n in
            [".cet-1.img.staged", ".cet-9.img.staged", "cet-1.img", "cet-5.img", "cet-05.img", "core-1.img"]
        {
            std::fs::write(dir.path().join(n), n).unwrap();
        }
        let done = publish(dir.path(), &[1]).unwrap();
        assert_eq!(done.images, vec![1]);
        assert_eq!(done.removed, vec![".cet-9.img.staged".to_string(), "cet-5.img".to_string()]);
        assert_eq!(std::fs::read_to_string(dir.path().join("cet-1.img")).unwrap(), ".cet-1.img.staged");
        assert!(dir.path().join("cet-05.img").exists() && dir.path().join("core-1.img").exists());
        std::fs::write(dir.path().join(".cet-7.img.staged"), "x").unwrap();
        assert_eq!(discard_staged(dir.path()).unwrap(), vec![".cet-7.img.staged".to_string()]);
        assert!(dir.path().join("cet-1.img").exists());
    }
}
