//! MNIST in the original IDX format, gzipped or plain, validated field by field ([`idx`]: magic number,
//! dimensions, counts, label range, read no further than the header implies), and the SHA-256 of every
//! file, always computed (the fingerprint of the data) and checked where `SHA256SUMS` lists it (as for the
//! vendored copy in `assets/mnist/`). Pixels are scaled to [0, 1] as in the paper (n = 784).

use crate::data::{idx, DataError};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Which MNIST file pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn stems(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
    pub fn expected_len(self) -> i64 {
        match self {
            Split::Train => 60_000,
            Split::Test => 10_000,
        }
    }
}

/// Images [N, 1, 28, 28] (f32 in [0, 1]) and labels [N] (i64 in 0..10), on the CPU.
#[derive(Debug)]
pub struct Mnist {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Mnist {
    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The examples at `indices`; an index outside `0..len` is a [`DataError::IndexOutOfRange`].
    pub fn select(&self, indices: &[i64]) -> Result<Mnist> {
        let len = self.len();
        if let Some(&i) = indices.iter().find(|&&i| i < 0 || i >= len) {
            return Err(DataError::IndexOutOfRange {
                data: "an MNIST set".into(),
                index: i,
                len: len as usize,
            }
            .into());
        }
        let idx = Tensor::from_slice(indices); // [k]
        Ok(Mnist {
            images: self.images.index_select(0, &idx),
            labels: self.labels.index_select(0, &idx),
        })
    }
}

/// The folder of the vendored MNIST: `$BLINDSPOT_MNIST`, else `assets/mnist` of this source tree.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BLINDSPOT_MNIST") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("assets/mnist");
    if here.join("SHA256SUMS").exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mnist")
}

/// Finds `stem.gz` or `stem` in `dir`.
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for cand in [dir.join(format!("{stem}.gz")), dir.join(stem)] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    Err(Error::format(
        dir.join(format!("{stem}.gz")),
        format!(
            "MNIST file missing (looked for {stem}.gz and {stem} in {}); point `data.mnist_dir` or BLINDSPOT_MNIST at a folder with the four IDX files",
            dir.display()
        ),
    ))
}

/// The expected SHA-256 of each file named in `dir/SHA256SUMS`, or `None` when there is no such file.
pub(crate) fn read_sums(dir: &Path) -> Result<Option<BTreeMap<String, String>>> {
    let sums = dir.join("SHA256SUMS");
    if !sums.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&sums).map_err(|e| Error::io(&sums, e))?;
    let mut out = BTreeMap::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(hash), Some(name)) = (parts.next(), parts.next()) else {
            return Err(Error::format(
                &sums,
                format!("line {}: expected `<sha256>  <file>`", lineno + 1),
            ));
        };
        out.insert(name.trim_start_matches('*').to_string(), hash.to_string());
    }
    Ok(Some(out))
}

/// The file name of `path` (as `SHA256SUMS` and the checksums name it).
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The hash `SHA256SUMS` gives for `path`, if any (a warning when `SHA256SUMS` exists but leaves it out).
fn expected<'a>(sums: Option<&'a BTreeMap<String, String>>, path: &Path) -> Option<&'a str> {
    let sums = sums?;
    let found = sums.get(&file_name(path)).map(|s| s.as_str());
    if found.is_none() {
        log::warn!(
            "{}: not listed in SHA256SUMS, so not verified (only hashed)",
            path.display()
        );
    }
    found
}

/// The SHA-256 of each of the four MNIST files in `dir` (`.gz` or plain, as found), as
/// (file name, lower-case hex) sorted by name, whether or not `dir/SHA256SUMS` exists; a file that
/// `SHA256SUMS` lists with another hash is an [`Error::Checksum`]. Each file is read once.
pub fn verify_checksums(dir: &Path) -> Result<Vec<(String, String)>> {
    let sums = read_sums(dir)?;
    let mut out = Vec::new();
    for split in [Split::Train, Split::Test] {
        let (img, lbl) = split.stems();
        for stem in [img, lbl] {
            let path = find_file(dir, stem)?;
            let found = crate::fingerprint::sha256_file(&path)?;
            if let Some(want) = expected(sums.as_ref(), &path) {
                if !found.eq_ignore_ascii_case(want) {
                    return Err(Error::Checksum {
                        path,
                        expected: want.to_string(),
                        found,
                        hint: "the file is corrupt or was replaced; restore it from the repository (git checkout assets/mnist) or the original MNIST distribution".into(),
                    });
                }
            }
            out.push((file_name(&path), found));
        }
    }
    out.sort();
    Ok(out)
}

/// Loads one split from `dir` (see [`load_checked`]).
pub fn load(dir: &Path, split: Split) -> Result<Mnist> {
    load_checked(dir, split).map(|(m, _)| m)
}

/// Loads one split from `dir` and returns it with the SHA-256 of its two files (file name, hex), sorted by
/// name. Each file is read once: hashed as stored while it is decompressed, checked against
/// `dir/SHA256SUMS` where that lists it, and read only as far as its header implies
/// ([`idx`](crate::data::idx)).
pub fn load_checked(dir: &Path, split: Split) -> Result<(Mnist, Vec<(String, String)>)> {
    let sums = read_sums(dir)?;
    load_split(dir, split, sums.as_ref())
}

/// [`load_checked`] with `SHA256SUMS` already read.
pub(crate) fn load_split(
    dir: &Path,
    split: Split,
    sums: Option<&BTreeMap<String, String>>,
) -> Result<(Mnist, Vec<(String, String)>)> {
    let (img_stem, lbl_stem) = split.stems();
    let img_path = find_file(dir, img_stem)?;
    let lbl_path = find_file(dir, lbl_stem)?;
    let (img, img_sha) = idx::read_file(&img_path, expected(sums, &img_path), |p, r| {
        idx::read_images(p, r)
    })?;
    let (labels, lbl_sha) = idx::read_file(&lbl_path, expected(sums, &lbl_path), |p, r| {
        idx::read_labels(p, r)
    })?;
    let n = img.n;
    if labels.len() != n {
        return Err(Error::format(
            &lbl_path,
            format!(
                "{} labels but {} has {n} images: the pair does not match; use the label file of those images",
                labels.len(),
                img_path.display()
            ),
        ));
    }
    // [N, 1, 28, 28] in [0, 1]
    let images = Tensor::from_slice(&img.pixels)
        .to_kind(Kind::Float)
        .divide_scalar(255.0)
        .view([n as i64, 1, img.rows as i64, img.cols as i64]);
    let labels = Tensor::from_slice(&labels).to_kind(Kind::Int64); // [N]
    let mut checksums = vec![
        (file_name(&img_path), img_sha),
        (file_name(&lbl_path), lbl_sha),
    ];
    checksums.sort();
    Ok((Mnist { images, labels }, checksums))
}
