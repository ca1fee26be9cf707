//! The MNIST sets of the paper's experiments (§4.2) in one value: the 60,000 training and 10,000 test
//! images, the seeded P1/P2 halves of Table 3, and the checksums that fingerprint them.

use crate::data::mnist::{self, Mnist, Split};
use crate::data::split::HalfSplit;
use crate::data::DataError;
use crate::Result;
use std::path::{Path, PathBuf};

/// MNIST train and test sets plus the P1/P2 split, with the checksums that fingerprint them.
pub struct MnistData {
    pub train: Mnist,
    pub test: Mnist,
    pub split: HalfSplit,
    /// SHA-256 of each of the four files as stored (file name, hex), sorted by name; always computed.
    pub checksums: Vec<(String, String)>,
    pub dir: PathBuf,
}

impl MnistData {
    pub fn load(dir: &Path, split_seed: u64) -> Result<Self> {
        // Each of the four files read once: hashed as stored while decompressed, checked against
        // SHA256SUMS where it lists them; the hashes fingerprint the data whether or not it exists.
        let sums = mnist::read_sums(dir)?;
        let (train, mut checksums) = mnist::load_split(dir, Split::Train, sums.as_ref())?;
        let (test, test_sums) = mnist::load_split(dir, Split::Test, sums.as_ref())?;
        checksums.extend(test_sums);
        checksums.sort();
        let split = HalfSplit::new(train.len() as usize, split_seed);
        Ok(MnistData {
            train,
            test,
            split,
            checksums,
            dir: dir.to_path_buf(),
        })
    }

    /// The examples of a named set: `train`, `test`, `p1`, `p2`.
    pub fn set(&self, name: &str) -> Result<Mnist> {
        Ok(match name {
            "train" => Mnist {
                images: self.train.images.shallow_clone(),
                labels: self.train.labels.shallow_clone(),
            },
            "test" => Mnist {
                images: self.test.images.shallow_clone(),
                labels: self.test.labels.shallow_clone(),
            },
            "p1" => self.train.select(&self.split.p1)?,
            "p2" => self.train.select(&self.split.p2)?,
            other => return Err(DataError::UnknownSet(other.to_string()).into()),
        })
    }

    /// One named set (`train`, `test`, `p1`, `p2`) read from `dir`, decompressing only the files it
    /// needs (the test set alone: 8 MB instead of 55 MB; what a short `blindspot attack` waits for).
    pub fn load_set(dir: &Path, name: &str, split_seed: u64) -> Result<Mnist> {
        let split = match name {
            "train" => Split::Train,
            "test" => Split::Test,
            "p1" | "p2" => return Self::load(dir, split_seed)?.set(name),
            other => return Err(DataError::UnknownSet(other.to_string()).into()),
        };
        let sums = mnist::read_sums(dir)?;
        Ok(mnist::load_split(dir, split, sums.as_ref())?.0)
    }

    /// What identifies these sets in a stage fingerprint: the files' checksums and the split seed.
    pub fn fingerprint_json(&self) -> serde_json::Value {
        serde_json::json!({ "mnist": self.checksums, "split_seed": self.split.seed })
    }
}
