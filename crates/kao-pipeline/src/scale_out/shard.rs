//! One task's share of a long list of videos (docs/scale-out.md).
//!
//! The rule is fixed: the video at position `p` of the expanded input list (0-based, in the
//! order the list gives) belongs to shard `p mod N`. Every task of an array job reads the same
//! list and keeps its own videos, so no coordinator is needed and a retried task takes exactly
//! the videos it had.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

/// Shard `index` of `count` (0 ≤ index < count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This task's shard, from 0.
    pub index: u32,
    /// How many shards the list is split into.
    pub count: u32,
}

impl Shard {
    /// A shard, or an error when `index` is not below `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 {
            bail!("the shard count must be at least 1");
        }
        if index >= count {
            bail!("shard {index} of {count} does not exist: shards are numbered 0 to {count} - 1");
        }
        Ok(Shard { index, count })
    }

    /// Whether the video at `position` of the list is this shard's.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count as usize == self.index as usize
    }

    /// This shard's videos of `videos`, in list order.
    pub fn select<T: Clone>(&self, videos: &[T]) -> Vec<T> {
        videos
            .iter()
            .enumerate()
            .filter(|(p, _)| self.takes(*p))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The shard a scheduler gave this task, read through `env`: a Slurm array task
    /// (`SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN`, of
    /// `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed Job's pod (`JOB_COMPLETION_INDEX`,
    /// of `count`, which Kubernetes does not pass: `--shard-count`). `None` outside both.
    pub fn from_scheduler(
        env: &dyn Fn(&str) -> Option<String>,
        count: Option<u32>,
    ) -> Result<Option<(Shard, &'static str)>> {
        let number = |name: &str| -> Result<Option<u32>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .with_context(|| format!("{name}={v} is not a whole number"))
                })
                .transpose()
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let Some(tasks) = count.or(number("SLURM_ARRAY_TASK_COUNT")?) else {
                bail!(
                    "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT; give --shard I/N"
                );
            };
            let index = id.checked_sub(min).with_context(|| {
                format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")
            })?;
            return Ok(Some((Shard::new(index, tasks)?, "Slurm")));
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let Some(count) = count else {
                bail!(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give --shard-count, the Job's completions"
                );
            };
            return Ok(Some((Shard::new(index, count)?, "Kubernetes")));
        }
        Ok(None)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N`, e.g. `0/4` for the first of four shards.
    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not I/N (e.g. 0/4)"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{s}` is not I/N (e.g. 0/4)"))
        };
        Shard::new(parse(i)?, parse(n)?).map_err(|e| e.to_string())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn every_video_falls_to_exactly_one_shard() {
        let videos: Vec<usize> = (0..10).collect();
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|i| Shard::new(i, 3).unwrap().select(&videos))
            .collect();
        seen.sort();
        assert_eq!(seen, videos);
        assert_eq!(Shard::new(1, 3).unwrap().select(&videos), vec![1, 4, 7]);
        // More shards than videos: some shards are empty.
        assert!(Shard::new(5, 8).unwrap().select(&[0, 1]).is_empty());
    }

    #[test]
    fn shards_parse_and_bad_ones_are_one_line() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard::new(2, 4).unwrap());
        assert_eq!(Shard::new(2, 4).unwrap().to_string(), "2/4");
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{bad}: {e}");
        }
    }

    #[test]
    fn schedulers_name_the_shard() {
        let none = Shard::from_scheduler(&env(&[]), None).unwrap();
        assert_eq!(none, None);
        // Slurm arrays may start at 1 (`--array=1-4`).
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let (shard, by) = Shard::from_scheduler(&slurm, None).unwrap().unwrap();
        assert_eq!((shard, by), (Shard::new(2, 4).unwrap(), "Slurm"));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "5")]);
        let (shard, by) = Shard::from_scheduler(&k8s, Some(6)).unwrap().unwrap();
        assert_eq!((shard, by), (Shard::new(5, 6).unwrap(), "Kubernetes"));
        let e = Shard::from_scheduler(&k8s, None).unwrap_err().to_string();
        assert!(e.contains("--shard-count"), "{e}");
        let e = Shard::from_scheduler(&k8s, Some(5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let bad = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        assert!(Shard::from_scheduler(&bad, None).is_err());
    }
}
