//! What a checkpoint archive may hold, member by member: a pure function of the members seen so
//! far (no tar, no I/O), so each rule is tested with plain values.
//!
//! Memory grows with neither the names nor the number of members: names were capped by the
//! walk (`MAX_MEMBER_NAME`), links and the directories above images are kept as keyed 64-bit
//! hashes (at most [`MAX_LINKS`] links), and the images' names at most
//! [`MAX_IMAGE_NAME_BYTES`] bytes in all.

use super::is_image_name;
use crate::error::InputError;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

/// The most links an archive may hold. A checkpoint archive has none outside its nested tars.
pub const MAX_LINKS: usize = 1 << 16;
/// The most bytes of cet image names an archive may hold (each image is listed by name): 40,000
/// images named `checkpoint/cet-<pid>.img`.
pub const MAX_IMAGE_NAME_BYTES: usize = 1 << 20;

/// What kind of member a header describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// A regular file (type `0`, NUL or `7`).
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A hard link.
    HardLink,
    /// A GNU sparse file (type `S`).
    Sparse,
    /// Anything else (device, FIFO, pax global header, an unknown type), named.
    Other(&'static str),
}

impl MemberKind {
    /// Its name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            MemberKind::Regular => "regular file",
            MemberKind::Directory => "directory",
            MemberKind::Symlink => "symbolic link",
            MemberKind::HardLink => "hard link",
            MemberKind::Sparse => "GNU sparse file",
            MemberKind::Other(what) => what,
        }
    }
}

/// One member as the walk read it: its name normalized (no `.`, no empty components), its
/// link target for messages.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its name, normalized, at most `MAX_MEMBER_NAME` bytes.
    pub name: String,
    /// What it is.
    pub kind: MemberKind,
    /// Its data size in bytes.
    pub size: u64,
    /// A link's target, as stored.
    pub link_target: Option<String>,
}

/// What to do with a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Read through and drop it.
    Skip,
    /// A cet image: read it (at most `MAX_ARCHIVED_IMAGE` bytes) and validate it.
    Image,
}

/// The rules, and what they remember of the members seen.
pub struct MemberPolicy {
    path: PathBuf,
    keys: RandomState,
    /// Admitted images, in order.
    pub images: Vec<String>,
    image_name_bytes: usize,
    /// Whether a CRIU inventory.img was seen.
    pub inventory: bool,
    seen_images: HashSet<u64>,
    image_dirs: HashSet<u64>,
    links: HashMap<u64, &'static str>,
}

impl MemberPolicy {
    /// The rules for the archive at `path` (named in refusals).
    pub fn new(path: &Path) -> MemberPolicy {
        MemberPolicy {
            path: path.to_path_buf(),
            keys: RandomState::new(),
            images: Vec::new(),
            image_name_bytes: 0,
            inventory: false,
            seen_images: HashSet::new(),
            image_dirs: HashSet::new(),
            links: HashMap::new(),
        }
    }

    fn hash(&self, name: &str) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(name.as_bytes());
        h.finish()
    }

    /// The hashes of the directories above `name` (`a/b/c`: `a`, `a/b`), in linear time.
    fn ancestor_hashes<'a>(&'a self, name: &'a str) -> impl Iterator<Item = u64> + 'a {
        let mut h = self.keys.build_hasher();
        let mut done = 0;
        name.match_indices('/').map(move |(i, _)| {
            h.write(&name.as_bytes()[done..i]);
            done = i;
            h.clone().finish()
        })
    }

    /// Decides on `m`, given every member before it.
    pub fn admit(&mut self, m: &Member) -> Result<Admit, InputError> {
        let path = || self.path.clone();
        let file_name = m.name.rsplit('/').next().unwrap_or("");
        self.inventory |= file_name == "inventory.img";
        let not_regular = || InputError::NotRegular {
            path: path(),
            member: m.name.clone(),
            kind: m.kind.describe().into(),
        };
        if m.kind == MemberKind::Sparse {
            // Sparse members can claim holes far beyond their stored bytes; no checkpoint
            // writer produces them.
            return Err(not_regular());
        }
        let is_image = is_image_name(file_name);
        if let MemberKind::Symlink | MemberKind::HardLink = m.kind {
            let kind = m.kind.describe();
            if is_image {
                let target = m.link_target.as_ref().map(|t| format!(" to {t:?}")).unwrap_or_default();
                return Err(InputError::LinkedImage { path: path(), member: m.name.clone(), kind, target });
            }
            let h = self.hash(&m.name);
            if self.image_dirs.contains(&h) {
                let image = self
                    .images
                    .iter()
                    .find(|i| {
                        i.len() > m.name.len() && i.starts_with(&m.name) && i.as_bytes()[m.name.len()] == b'/'
                    })
                    .cloned()
                    .unwrap_or_default();
                return Err(InputError::LinkedDirectory { path: path(), link: m.name.clone(), kind, image });
            }
            if self.links.len() >= MAX_LINKS {
                return Err(InputError::TooManyLinks { path: path(), cap: MAX_LINKS });
            }
            self.links.insert(h, kind);
        }
        if !is_image {
            return Ok(Admit::Skip);
        }
        if m.kind != MemberKind::Regular {
            return Err(not_regular());
        }
        let ancestors: Vec<u64> = self.ancestor_hashes(&m.name).collect();
        let slashes = m.name.match_indices('/').map(|(i, _)| i);
        if let Some((i, kind)) = slashes.zip(&ancestors).find_map(|(i, a)| self.links.get(a).map(|k| (i, *k)))
        {
            let link = m.name[..i].to_string();
            return Err(InputError::LinkedDirectory { path: path(), link, kind, image: m.name.clone() });
        }
        if m.size > super::MAX_ARCHIVED_IMAGE {
            return Err(InputError::TooLarge {
                path: path(),
                member: m.name.clone(),
                size: m.size,
                cap: super::MAX_ARCHIVED_IMAGE,
            });
        }
        if !self.seen_images.insert(self.hash(&m.name)) {
            return Err(InputError::Duplicate { path: path(), member: m.name.clone() });
        }
        self.image_name_bytes += m.name.len();
        if self.image_name_bytes > MAX_IMAGE_NAME_BYTES {
            return Err(InputError::TooManyImages {
                path: path(),
                cap: MAX_IMAGE_NAME_BYTES,
                what: "bytes of cet image names",
            });
        }
        self.image_dirs.extend(ancestors);
        self.images.push(m.name.clone());
        Ok(Admit::Image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, kind: MemberKind) -> Member {
        Member { name: name.into(), kind, size: 100, link_target: None }
    }

    fn refusal(members: &[Member]) -> String {
        let mut p = MemberPolicy::new(Path::new("a.tar"));
        for m in members {
            if let Err(e) = p.admit(m) {
                return e.to_string();
            }
        }
        panic!("every member admitted")
    }

    #[test]
    fn images_are_admitted_once_and_others_skipped() {
        let mut p = MemberPolicy::new(Path::new("a.tar"));
        assert_eq!(p.admit(&member("checkpoint/inventory.img", MemberKind::Regular)).unwrap(), Admit::Skip);
        assert_eq!(p.admit(&member("checkpoint/cet-1.img", MemberKind::Regular)).unwrap(), Admit::Image);
        assert_eq!(p.admit(&member("rootfs/etc", MemberKind::Symlink)).unwrap(), Admit::Skip);
        assert!(p.inventory);
        assert_eq!(p.images, ["checkpoint/cet-1.img"]);
        let e = refusal(&[
            member("c/cet-1.img", MemberKind::Regular),
            member("c/cet-1.img", MemberKind::Regular),
        ]);
        assert!(e.contains("in the archive twice"), "{e}");
    }

    #[test]
    fn links_where_images_or_their_directories_belong_are_refused() {
        let img = member("checkpoint/sub/cet-1.img", MemberKind::Regular);
        let link = member("checkpoint/sub", MemberKind::Symlink);
        let e = refusal(&[link.clone(), img.clone()]);
        assert!(e.contains("member checkpoint/sub is a symbolic link where the directory holding checkpoint/sub/cet-1.img"), "{e}");
        let e = refusal(&[img.clone(), member("checkpoint", MemberKind::HardLink)]);
        assert!(
            e.contains(
                "member checkpoint is a hard link where the directory holding checkpoint/sub/cet-1.img"
            ),
            "{e}"
        );
        let e = refusal(&[Member {
            link_target: Some("/etc/shadow".into()),
            ..member("cet-2.img", MemberKind::Symlink)
        }]);
        assert!(e.contains("cet-2.img is a symbolic link to \"/etc/shadow\""), "{e}");
        let e = refusal(&[member("cet-2.img", MemberKind::Other("FIFO"))]);
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        let e = refusal(&[Member { size: super::super::MAX_ARCHIVED_IMAGE + 1, ..img }]);
        assert!(e.contains("more than the"), "{e}");
    }

    #[test]
    fn memory_does_not_grow_with_names() {
        // The quadratic case: one image under 2,000 nested directories keeps 2,000 hashes.
        let mut p = MemberPolicy::new(Path::new("a.tar"));
        let deep = "a/".repeat(2000) + "cet-1.img";
        p.admit(&member(&deep, MemberKind::Regular)).unwrap();
        assert_eq!(p.image_dirs.len(), 2000);
        // Hashes of prefixes, built incrementally, equal the hashes of the names themselves.
        let name = "a/bc/d/cet-1.img";
        let inc: Vec<u64> = p.ancestor_hashes(name).collect();
        assert_eq!(inc, ["a", "a/bc", "a/bc/d"].map(|s| p.hash(s)));
        let e = refusal(
            &(0..MAX_IMAGE_NAME_BYTES / 20 + 1)
                .map(|i| member(&format!("checkpoint/x/cet-{i}.img"), MemberKind::Regular))
                .collect::<Vec<_>>(),
        );
        assert!(e.contains("bytes of cet image names"), "{e}");
    }
}
