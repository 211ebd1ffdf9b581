//! Why restore init refuses a checkpoint: one typed reason per problem, each naming the file,
//! logged as CRIU errors before any task is forked. Tests match on the variants; the messages
//! (docs/PLUGIN.md lists them) are for people.

use criu_cet::criu_images::Task;
use criu_cet::{check, job};
use criu_cet_format::Metadata;
use std::collections::BTreeMap;
use std::fmt;

/// One reason restore init refuses.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// CRIU did not give the plugin what it needs (its image directory), or a CRIU image the
    /// rules need cannot be read; the message says which.
    Criu(String),
    /// A file named like a cet image that this plugin never writes (`cet-01.img`).
    NotOurName {
        /// The file.
        name: String,
        /// The task id its name gives.
        id: u32,
    },
    /// The image cannot be read: damaged, a link, not a regular file.
    Unreadable {
        /// The file.
        name: String,
        /// The engine's error, naming the file.
        error: String,
    },
    /// The image records another task than its name gives.
    WrongTask {
        /// The file.
        name: String,
        /// The task the image records.
        recorded: u32,
        /// The task its name gives.
        id: u32,
    },
    /// This host cannot take the image (check::check's errors).
    Host(check::Finding),
    /// The image is from another dump (criu_cet::checkpoint::belonging).
    Foreign(String),
    /// The dump wrote cet images that are not here (criu_cet::checkpoint::missing_images).
    Missing(String),
    /// CRIU's pstree.img has no task of the image's id.
    NoSuchTask {
        /// The file.
        name: String,
        /// The image's task.
        id: u32,
        /// The tasks CRIU restores.
        known: Vec<u32>,
        /// The image predates namespace ids (format 1.2): a hint to dump again.
        older: bool,
    },
    /// The task has other threads in pstree.img than in the image.
    Threads {
        /// The file.
        name: String,
        /// The task.
        id: u32,
        /// Its threads in pstree.img, sorted.
        pstree: Vec<u32>,
        /// Its threads in the image, sorted.
        image: Vec<u32>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Criu(m) | Refusal::Foreign(m) | Refusal::Missing(m) => f.write_str(m),
            Refusal::NotOurName { name, id } => write!(
                f,
                "{name}: not a name this plugin writes (it would be {}); a second image for task {id}? \
                 remove the one that does not belong",
                job::image_name(*id)
            ),
            Refusal::Unreadable { error, .. } => f.write_str(error),
            Refusal::WrongTask { name, recorded, id } => write!(
                f,
                "{name}: the image records task {recorded}, not {id}; refusing an image under another \
                 task's name"
            ),
            Refusal::Host(finding) => f.write_str(&finding.message),
            Refusal::NoSuchTask { name, id, known, older } => {
                write!(
                    f,
                    "{name}: CRIU's pstree.img has no task {id} (it restores tasks {}), so this image \
                     would never be used; it does not belong to this checkpoint: remove it, or restore \
                     from the directory it was dumped to.",
                    crate::list(known)
                )?;
                if *older {
                    f.write_str(
                        " It was written by a plugin older than format 1.2, which named images by host \
                         pid: if the tree ran in its own pid namespace, dump it again with this plugin.",
                    )?;
                }
                Ok(())
            }
            Refusal::Threads { name, id, pstree, image } => write!(
                f,
                "{name}: task {id} has threads [{}] in CRIU's pstree.img but [{}] in the cet image: the \
                 two come from different dumps; restore from one checkpoint's directory",
                crate::list(pstree),
                crate::list(image)
            ),
        }
    }
}

/// Every image (task id, file name, metadata) must name a task of pstree.img, with the same
/// threads.
pub fn match_tasks<'a>(
    images: impl IntoIterator<Item = (u32, &'a str, &'a Metadata)>,
    tasks: &BTreeMap<u32, Task>,
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for (id, name, meta) in images {
        let Some(task) = tasks.get(&id) else {
            refusals.push(Refusal::NoSuchTask {
                name: name.to_string(),
                id,
                known: tasks.keys().copied().collect(),
                older: meta.namespace.is_none(),
            });
            continue;
        };
        let mut image: Vec<u32> = match &meta.namespace {
            Some(ns) => ns.tids.clone(),
            None => meta.process.threads.iter().map(|t| t.tid).collect(),
        };
        let mut pstree = task.threads.clone();
        image.sort_unstable();
        pstree.sort_unstable();
        if image != pstree {
            refusals.push(Refusal::Threads { name: name.to_string(), id, pstree, image });
        }
    }
    refusals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(vector: &[u8]) -> Metadata {
        let r = criu_cet_format::ImageReader::open(std::io::Cursor::new(vector.to_vec())).unwrap();
        r.metadata().clone()
    }

    fn tasks(list: &[(u32, &[u32])]) -> BTreeMap<u32, Task> {
        list.iter().map(|&(pid, t)| (pid, Task { pid, threads: t.to_vec() })).collect()
    }

    #[test]
    fn an_image_matches_its_task_by_namespace_ids_whatever_the_thread_order() {
        // threads-cet: task 1 of its namespace, threads 1 to 4.
        let m = meta(include_bytes!("../../../tests/vectors/threads-cet.cetimg"));
        assert_eq!(match_tasks([(1, "cet-1.img", &m)], &tasks(&[(1, &[4, 3, 2, 1]), (9, &[9])])), vec![]);
    }

    #[test]
    fn an_image_of_no_task_or_of_other_threads_is_refused_by_variant() {
        let m = meta(include_bytes!("../../../tests/vectors/threads-cet.cetimg"));
        let got = match_tasks([(1, "cet-1.img", &m)], &tasks(&[(2, &[2])]));
        assert!(
            matches!(&got[..], [Refusal::NoSuchTask { id: 1, known, older: false, .. }] if known == &[2]),
            "{got:?}"
        );
        let got = match_tasks([(1, "cet-1.img", &m)], &tasks(&[(1, &[1, 2, 3])]));
        assert!(
            matches!(&got[..], [Refusal::Threads { id: 1, pstree, image, .. }]
                if pstree == &[1, 2, 3] && image == &[1, 2, 3, 4]),
            "{got:?}"
        );
        // An image from before namespace ids (empty-48: pid 100) gets the hint to dump again.
        let old = meta(include_bytes!("../../../tests/vectors/empty-48.cetimg"));
        let got = match_tasks([(100, "cet-100.img", &old)], &tasks(&[(1, &[1])]));
        assert!(matches!(&got[..], [Refusal::NoSuchTask { older: true, .. }]), "{got:?}");
        assert!(got[0].to_string().contains("older than format 1.2"));
    }

    #[test]
    fn long_lists_in_a_refusal_are_summarised() {
        let r = Refusal::Threads {
            name: "cet-1.img".into(),
            id: 1,
            pstree: (1..=2001).collect(),
            image: vec![1],
        };
        let text = r.to_string();
        assert!(text.contains("and 1993 more") && text.len() < 400, "{text}");
    }
}
