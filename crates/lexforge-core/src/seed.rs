//! Seeds: one number from the user, independent deterministic streams for every consumer.

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::Device;

/// The seed of a run.
///
/// Every random choice in a run (weight init, data shuffling, holdout split, sampling) takes its
/// own stream from [`Seed::derive`], named by purpose, so adding a consumer never shifts the
/// numbers another one sees, and the same seed always reproduces the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seed(pub u64);

/// SplitMix64 finalizer: a bijective, well-mixing map on `u64`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Seed {
    /// The seed of the stream named `purpose` (FNV-1a of the name, mixed with the seed).
    pub fn derive(self, purpose: &str) -> Seed {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in purpose.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Seed(mix(self.0 ^ mix(h)))
    }

    /// A host-side RNG for the stream named `purpose`.
    pub fn rng(self, purpose: &str) -> StdRng {
        StdRng::seed_from_u64(self.derive(purpose).0)
    }

    /// Seeds the backend RNG of `device` (parameter init, dropout) from the stream
    /// `"device"`. Some backends seed globally rather than per device; see burn's
    /// `Device::seed`.
    pub fn apply_to(self, device: &Device) {
        device.seed(self.derive("device").0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_deterministic_and_independent() {
        let s = Seed(42);
        assert_eq!(s.derive("shuffle"), Seed(42).derive("shuffle"));
        assert_ne!(s.derive("shuffle"), s.derive("init"));
        assert_ne!(s.derive("shuffle"), Seed(43).derive("shuffle"));
        let a: Vec<u32> = (0..4).map(|_| 0).collect::<Vec<_>>();
        let mut r1 = s.rng("holdout");
        let mut r2 = s.rng("holdout");
        let x: Vec<u32> = a.iter().map(|_| r1.random()).collect();
        let y: Vec<u32> = a.iter().map(|_| r2.random()).collect();
        assert_eq!(x, y);
    }
}
