//! Which scenarios concern a series.
//!
//! A scenario says what the guest must provide (`requires = ["goldfish"]`,
//! `["mkdirat2"]`). A series provides what its patches add: the goldfish
//! address space driver (a file named `goldfish_address_space*`), the
//! mkdirat2 syscall (a syscall table line naming it). A review of one
//! series boots a kernel with that series alone, so a scenario concerns it
//! when it requires something and the series provides all of it.

use gasbench_kbuild::KbuildError;
use gasbench_kbuild::layout::KernelDir;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concerns {
    /// The series adds the goldfish address space driver.
    pub goldfish: bool,
    /// The series adds the mkdirat2 syscall.
    pub mkdirat2: bool,
}

impl Concerns {
    /// From the text of the series' patch files.
    pub fn of_patches<'a>(patches: impl IntoIterator<Item = &'a str>) -> Concerns {
        let mut c = Concerns::default();
        for text in patches {
            let mut file = "";
            for line in text.lines() {
                if let Some(p) = line.strip_prefix("+++ ") {
                    file = p.trim();
                    if file.contains("goldfish_address_space") {
                        c.goldfish = true;
                    }
                    continue;
                }
                if file.ends_with(".tbl")
                    && line.starts_with('+')
                    && line.split_whitespace().any(|w| w == "mkdirat2")
                {
                    c.mkdirat2 = true;
                }
            }
        }
        c
    }

    /// The series `name` in `kdir`, from its patch files.
    pub fn of_series(kdir: &KernelDir, name: &str) -> Result<Concerns, KbuildError> {
        let m = kdir.series(name)?;
        let dir = kdir.series_dir(name);
        let mut texts = Vec::new();
        for p in &m.patches {
            let path = dir.join(&p.file);
            texts.push(
                std::fs::read_to_string(&path).map_err(|e| KbuildError::io("read", &path, e))?,
            );
        }
        Ok(Concerns::of_patches(texts.iter().map(String::as_str)))
    }

    /// Whether a scenario requiring these concerns this series: it needs
    /// something, and the series provides all it needs.
    pub fn selects(&self, goldfish: bool, mkdirat2: bool) -> bool {
        (goldfish || mkdirat2) && (!goldfish || self.goldfish) && (!mkdirat2 || self.mkdirat2)
    }

    /// `goldfish`, `mkdirat2`, `goldfish, mkdirat2` or `nothing the suite tests`.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if self.goldfish {
            v.push("goldfish");
        }
        if self.mkdirat2 {
            v.push("mkdirat2");
        }
        if v.is_empty() {
            "nothing the scenario suite tests".into()
        } else {
            v.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_patches_add_decides() {
        let mk = "+++ b/arch/x86/entry/syscalls/syscall_64.tbl\n@@ -1 +1,2 @@\n+472\tcommon\tmkdirat2\t\tsys_mkdirat2\n";
        let gf = "+++ b/drivers/platform/goldfish/goldfish_address_space.rs\n@@ -0,0 +1 @@\n+x\n";
        let neither = "+++ b/fs/namei.c\n@@ -1 +1 @@\n+// mkdirat2 in a comment\n";
        let c = Concerns::of_patches([mk]);
        assert_eq!(
            c,
            Concerns {
                goldfish: false,
                mkdirat2: true
            }
        );
        assert!(Concerns::of_patches([gf]).goldfish);
        assert_eq!(Concerns::of_patches([neither]), Concerns::default());

        assert!(c.selects(false, true));
        assert!(!c.selects(true, false));
        assert!(!c.selects(true, true), "the kernel would lack goldfish");
        assert!(
            !c.selects(false, false),
            "a scenario needing nothing concerns no series"
        );
        let both = Concerns {
            goldfish: true,
            mkdirat2: true,
        };
        assert!(both.selects(true, true));
    }

    #[test]
    fn the_known_series_concern_what_their_scenarios_require() {
        let kdir =
            KernelDir::open(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel"))
                .unwrap();
        assert_eq!(
            Concerns::of_series(&kdir, "mkdirat2-v2").unwrap(),
            Concerns {
                goldfish: false,
                mkdirat2: true
            }
        );
        assert_eq!(
            Concerns::of_series(&kdir, "goldfish-address-space-v3").unwrap(),
            Concerns {
                goldfish: true,
                mkdirat2: false
            }
        );
    }
}
