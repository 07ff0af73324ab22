//! `--shard K/N`: a deterministic slice of the run's matrix, scenario ×
//! profile, so a CI system can spread one run over N machines and join
//! the run directories again with `gasbench merge`.
//!
//! The matrix is enumerated profile by profile, scenarios in suite order
//! (files sorted by path), and cell `i` (from 0) belongs to shard
//! `i % N + 1`: every shard gets a share of every profile, and the same
//! suite gives the same slices on every machine. Today there is one
//! profile (`default`); a profile axis adds cells, not a new scheme.

use std::str::FromStr;

/// One slice: `k` of `n`, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: u32,
    pub n: u32,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not K/N (e.g. 2/3)"))?;
        let k: u32 = k
            .trim()
            .parse()
            .map_err(|_| format!("{k:?} is not a number"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a number"))?;
        if n == 0 || k == 0 || k > n {
            return Err(format!(
                "shard {k}/{n}: K must be from 1 to N, and N at least 1"
            ));
        }
        Ok(Shard { k, n })
    }
}

/// One cell of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub profile: String,
    pub scenario: String,
}

/// The cells of `profiles` × `scenarios` that belong to `shard` (all of
/// them without one), in matrix order.
pub fn cells(profiles: &[&str], scenarios: &[&str], shard: Option<Shard>) -> Vec<Cell> {
    let mut out = Vec::new();
    let mut i = 0u32;
    for p in profiles {
        for s in scenarios {
            if shard.is_none_or(|sh| i % sh.n + 1 == sh.k) {
                out.push(Cell {
                    profile: p.to_string(),
                    scenario: s.to_string(),
                });
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_cover_the_matrix_and_are_stable() {
        let scenarios = ["a", "b", "c", "d", "e", "f", "g"];
        let all = cells(&["default"], &scenarios, None);
        assert_eq!(all.len(), 7);
        let mut seen = Vec::new();
        for k in 1..=3 {
            let part = cells(&["default"], &scenarios, Some(Shard { k, n: 3 }));
            assert!(!part.is_empty());
            seen.extend(part);
        }
        seen.sort_by(|a, b| a.scenario.cmp(&b.scenario));
        assert_eq!(seen, all);
        assert_eq!(
            cells(&["default"], &scenarios, Some(Shard { k: 2, n: 3 })),
            cells(&["default"], &scenarios, Some(Shard { k: 2, n: 3 }))
        );
        // A second profile adds cells to every shard.
        let two = cells(
            &["default", "kasan"],
            &scenarios,
            Some(Shard { k: 1, n: 3 }),
        );
        assert!(two.iter().any(|c| c.profile == "kasan"));
        for bad in ["0/3", "4/3", "1/0", "x", "1/x"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { k: 2, n: 3 }));
    }

    /// The default suite, loaded as `run` loads it, in three shards.
    #[test]
    fn the_default_suite_in_three_shards() {
        let files =
            crate::cmd::scenario::expand(&[
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
            ]);
        let suite = crate::cmd::scenario::load_all(&files).unwrap_or_else(|n| panic!("{n} bad"));
        let names: Vec<String> = suite.iter().map(|c| c.plan.scenario.clone()).collect();
        assert!(names.len() >= 9, "{names:?}");
        let mut seen: Vec<String> = Vec::new();
        let mut sizes = Vec::new();
        for k in 1..=3 {
            let vm = VmArgsForTest::with_shard(Shard { k, n: 3 });
            let part: Vec<String> = vm
                .shard_of(suite.clone())
                .into_iter()
                .map(|c| c.plan.scenario)
                .collect();
            sizes.push(part.len());
            for n in part {
                assert!(!seen.contains(&n), "{n} in two shards");
                seen.push(n);
            }
        }
        seen.sort();
        let mut all = names.clone();
        all.sort();
        assert_eq!(seen, all, "every scenario in exactly one shard");
        // Balanced to within one.
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
    }

    /// `VmArgs` as clap makes it with `--shard K/N`.
    struct VmArgsForTest;
    impl VmArgsForTest {
        fn with_shard(s: Shard) -> crate::cmd::headless::VmArgs {
            use clap::Parser;
            #[derive(clap::Parser)]
            struct P {
                #[command(flatten)]
                vm: crate::cmd::headless::VmArgs,
            }
            P::parse_from(["x", "--shard", &format!("{}/{}", s.k, s.n)]).vm
        }
    }
}
