//! The P1/P2 split of Table 3: the 60,000 training images into two disjoint halves of 30,000, decided by a
//! seed (ChaCha8, so the same on every machine) and recorded in the run folder.

use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Indices of the two halves, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HalfSplit {
    pub seed: u64,
    pub total: usize,
    pub p1: Vec<i64>,
    pub p2: Vec<i64>,
}

impl HalfSplit {
    /// Splits `0..total` into two halves (the first `total / 2` of a seeded permutation, and the rest).
    pub fn new(total: usize, seed: u64) -> Self {
        let mut idx: Vec<i64> = (0..total as i64).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        idx.shuffle(&mut rng);
        let mut p1 = idx[..total / 2].to_vec();
        let mut p2 = idx[total / 2..].to_vec();
        p1.sort_unstable();
        p2.sort_unstable();
        HalfSplit {
            seed,
            total,
            p1,
            p2,
        }
    }

    /// Reads a recorded split and checks that it is what its seed gives.
    pub fn load(path: &Path) -> Result<Self> {
        let s: HalfSplit = crate::io::read_json(path)?;
        if s.total > crate::data::idx::MAX_EXAMPLES {
            return Err(Error::format(
                path,
                format!(
                    "field `total` is {}, more than the {} examples MNIST has: the file was edited; delete it to rebuild the split from its seed",
                    s.total,
                    crate::data::idx::MAX_EXAMPLES
                ),
            ));
        }
        if s != HalfSplit::new(s.total, s.seed) {
            return Err(Error::format(
                path,
                "recorded split does not match its seed: the file was edited",
            ));
        }
        Ok(s)
    }
}
