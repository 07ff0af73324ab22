//! Which protections are in force, and why the others are not: one line
//! each, for `gasbench doctor` and for the run's events (so a results
//! file from a machine that lacked one says so).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One protection and whether it is in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// What it is: `QEMU seccomp`, `QEMU user`, `virtiofsd sandbox`, …
    pub name: String,
    pub active: bool,
    /// How it is set up, or why it could not be.
    pub detail: String,
}

impl Protection {
    pub fn active(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            active: true,
            detail: detail.into(),
        }
    }

    pub fn inactive(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            active: false,
            detail: detail.into(),
        }
    }
}

/// What cgroup v2 offers here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupV2 {
    /// No cgroup2 file system is mounted.
    Absent,
    /// Mounted at `mount`, with these controllers at its root.
    Mounted {
        mount: PathBuf,
        controllers: Vec<String>,
    },
}

/// The controllers a VM's processes would need to be bounded by cgroup.
const NEEDED: &[&str] = &["memory", "cpu", "pids"];

impl CgroupV2 {
    /// The controllers gasbench would need that are missing.
    pub fn missing(&self) -> Vec<&'static str> {
        match self {
            CgroupV2::Absent => NEEDED.to_vec(),
            CgroupV2::Mounted { controllers, .. } => NEEDED
                .iter()
                .copied()
                .filter(|n| !controllers.iter().any(|c| c == n))
                .collect(),
        }
    }

    /// The report line: memory and CPU are bounded by rlimits; this says
    /// why not by cgroup.
    pub fn protection(&self) -> Protection {
        let name = "cgroup v2 limits";
        match self {
            CgroupV2::Absent => Protection::inactive(
                name,
                "no cgroup2 file system is mounted: memory and CPU are bounded by rlimits",
            ),
            CgroupV2::Mounted { mount, controllers } if !self.missing().is_empty() => {
                Protection::inactive(
                    name,
                    format!(
                        "cgroup2 at {} offers {} but not {}: memory and CPU are bounded by rlimits",
                        mount.display(),
                        if controllers.is_empty() {
                            "no controllers".to_string()
                        } else {
                            controllers.join(" ")
                        },
                        self.missing().join(" ")
                    ),
                )
            }
            CgroupV2::Mounted { mount, .. } => Protection::inactive(
                name,
                format!(
                    "cgroup2 at {} has memory, cpu and pids, but gasbench does not place VMs in cgroups yet: memory and CPU are bounded by rlimits",
                    mount.display()
                ),
            ),
        }
    }
}

/// Look at this host's cgroup v2.
pub fn cgroup_v2() -> CgroupV2 {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    cgroup_v2_from(&mountinfo, Path::new("/"))
}

/// [`cgroup_v2`] from a mountinfo text, with mount points under `root`
/// (tests point it at a directory of their own).
pub fn cgroup_v2_from(mountinfo: &str, root: &Path) -> CgroupV2 {
    // Fields: id parent major:minor root mount-point options … - fstype source super-options
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    });
    let Some(mount) = mount else {
        return CgroupV2::Absent;
    };
    let on_disk = root.join(mount.strip_prefix("/").unwrap_or(&mount));
    let controllers = std::fs::read_to_string(on_disk.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    CgroupV2::Mounted { mount, controllers }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 24 0:30 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
44 35 0:39 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_with_only_hugetlb_in_v2_says_rlimits_are_used() {
        let root = tempfile::tempdir().unwrap();
        let unified = root.path().join("sys/fs/cgroup/unified");
        std::fs::create_dir_all(&unified).unwrap();
        std::fs::write(unified.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let v2 = cgroup_v2_from(HYBRID, root.path());
        assert_eq!(
            v2,
            CgroupV2::Mounted {
                mount: "/sys/fs/cgroup/unified".into(),
                controllers: vec!["hugetlb".into()]
            }
        );
        assert_eq!(v2.missing(), ["memory", "cpu", "pids"]);
        let p = v2.protection();
        assert!(!p.active);
        assert!(
            p.detail.contains("offers hugetlb but not memory cpu pids"),
            "{}",
            p.detail
        );
        assert!(p.detail.ends_with("bounded by rlimits"));
    }

    #[test]
    fn a_full_v2_host_and_a_host_without_v2_are_told_apart() {
        let root = tempfile::tempdir().unwrap();
        let cg = root.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        let unified = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let v2 = cgroup_v2_from(unified, root.path());
        assert!(v2.missing().is_empty());
        assert!(v2.protection().detail.contains("has memory, cpu and pids"));
        assert_eq!(cgroup_v2_from("", root.path()), CgroupV2::Absent);
        assert!(
            CgroupV2::Absent
                .protection()
                .detail
                .starts_with("no cgroup2")
        );
    }

    #[test]
    fn this_host_gets_a_line() {
        assert!(!cgroup_v2().protection().detail.is_empty());
    }
}
