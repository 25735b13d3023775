//! [`CpuLevel`]: the instructions the kernels run on, chosen once when a model is loaded.

use std::fmt;

/// The environment variable that overrides the detected level: `scalar`, `avx2` or
/// `avx512`.
pub const ENV: &str = "KAO_CPU";

/// The instructions the kernels run on. A value is proof that this CPU has them: the
/// only ways to get one are [`CpuLevel::detect`], [`CpuLevel::available`],
/// [`CpuLevel::named`] and [`CpuLevel::from_env`], which check, and [`CpuLevel::SCALAR`],
/// which every CPU runs. So the kernels take a level and stay safe to call.
///
/// * `scalar`: portable Rust, what non-x86 CPUs (ARM) run. The direct convolutions give
///   way to im2col and the matrix product, the depthwise convolution runs its generic
///   loops without fused multiply-adds.
/// * `avx2`: AVX2 and FMA (x86-64 since 2013–2015).
/// * `avx512`: AVX-512F (with AVX2 and FMA).
///
/// The matrix products go through the `gemm` crate, which picks its own instructions at
/// run time and has no way to be told (gemm 0.19): at `scalar` it still uses FMA or
/// AVX-512 where the CPU has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuLevel(Level);

/// The levels, narrowest first (private, so that no other crate can make a level the CPU
/// lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Level {
    Scalar,
    Avx2,
    Avx512,
}

/// Every level by name, narrowest first.
const NAMES: [(&str, Level); 3] = [
    ("scalar", Level::Scalar),
    ("avx2", Level::Avx2),
    ("avx512", Level::Avx512),
];

/// A `KAO_CPU` value that names no level, or one this CPU cannot run. One line, naming
/// the variable and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuLevelError {
    /// Not `scalar`, `avx2` or `avx512`.
    #[error("{ENV}={value}: unknown CPU level (expected scalar, avx2 or avx512)")]
    Unknown {
        /// The value given.
        value: String,
    },
    /// A level whose instructions this CPU does not have.
    #[error("{ENV}={value}: this CPU cannot run it (it has: {available})")]
    Unavailable {
        /// The value given.
        value: String,
        /// The levels this CPU runs, comma-separated.
        available: String,
    },
}

impl CpuLevel {
    /// The portable level, which every CPU runs.
    pub const SCALAR: CpuLevel = CpuLevel(Level::Scalar);

    /// The widest level this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                if has!("avx512f") {
                    return CpuLevel(Level::Avx512);
                }
                return CpuLevel(Level::Avx2);
            }
        }
        Self::SCALAR
    }

    /// Every level this CPU runs, narrowest (scalar) first: what the tests loop over.
    pub fn available() -> Vec<Self> {
        let widest = Self::detect();
        NAMES
            .iter()
            .map(|&(_, level)| CpuLevel(level))
            .filter(|&level| level <= widest)
            .collect()
    }

    /// The level called `name` (`scalar`, `avx2`, `avx512`), if this CPU runs it.
    pub fn named(name: &str) -> Result<Self, CpuLevelError> {
        let Some(&(_, level)) = NAMES.iter().find(|(n, _)| *n == name) else {
            return Err(CpuLevelError::Unknown {
                value: name.to_string(),
            });
        };
        let level = CpuLevel(level);
        if level > Self::detect() {
            let available: Vec<&str> = Self::available().iter().map(|l| l.name()).collect();
            return Err(CpuLevelError::Unavailable {
                value: name.to_string(),
                available: available.join(", "),
            });
        }
        Ok(level)
    }

    /// The level `KAO_CPU` names, or [`CpuLevel::detect`]'s when it is unset or empty.
    /// Called once per model load; the model keeps the level.
    pub fn from_env() -> Result<Self, CpuLevelError> {
        match std::env::var_os(ENV) {
            None => Ok(Self::detect()),
            Some(v) if v.is_empty() => Ok(Self::detect()),
            Some(v) => match v.to_str() {
                Some(name) => Self::named(name),
                None => Err(CpuLevelError::Unknown {
                    value: v.to_string_lossy().into_owned(),
                }),
            },
        }
    }

    /// `scalar`, `avx2` or `avx512`, as `KAO_CPU` takes it.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|&&(_, level)| level == self.0)
            .map(|(name, _)| *name)
            .expect("every level is named")
    }

    /// Whether this is the portable level (no kernels of our own with vector
    /// instructions).
    pub fn is_scalar(self) -> bool {
        self.0 == Level::Scalar
    }

    pub(crate) fn level(self) -> Level {
        self.0
    }
}

impl fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_named_and_checked() {
        let available = CpuLevel::available();
        assert_eq!(available[0], CpuLevel::SCALAR);
        assert_eq!(*available.last().unwrap(), CpuLevel::detect());
        for level in &available {
            assert_eq!(CpuLevel::named(level.name()).unwrap(), *level);
            assert_eq!(level.to_string(), level.name());
        }
        for (name, _) in NAMES {
            let got = CpuLevel::named(name);
            let runs = available.iter().any(|l| l.name() == name);
            assert_eq!(got.is_ok(), runs, "{name}: {got:?}");
            if let Err(e) = got {
                let msg = e.to_string();
                assert!(msg.starts_with(&format!("KAO_CPU={name}: ")), "{msg}");
                assert!(msg.contains("scalar") && !msg.contains('\n'), "{msg}");
            }
        }
        let msg = CpuLevel::named("bogus").unwrap_err().to_string();
        assert_eq!(
            msg,
            "KAO_CPU=bogus: unknown CPU level (expected scalar, avx2 or avx512)"
        );
        assert!(CpuLevel::named("AVX2").is_err(), "names are lower case");
    }
}
