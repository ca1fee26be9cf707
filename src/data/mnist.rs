//! MNIST in the original IDX format, gzipped or plain, validated field by field: magic number, dimensions,
//! counts, label range, and (for the vendored copy in `assets/mnist/`) SHA-256 checksums.
//! Pixels are scaled to [0, 1] as in the paper (n = 784).

use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

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
    /// The examples at `indices` [k] (i64).
    pub fn select(&self, indices: &Tensor) -> Mnist {
        Mnist {
            images: self.images.index_select(0, indices),
            labels: self.labels.index_select(0, indices),
        }
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

/// Reads a whole file, un-gzipping it when it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses an IDX3 image file: returns (count, rows, cols, pixels).
pub(crate) fn parse_idx_images(
    path: &Path,
    bytes: &[u8],
) -> Result<(usize, usize, usize, Vec<u8>)> {
    if bytes.len() < 16 {
        return Err(Error::format(
            path,
            format!("IDX image header needs 16 bytes, file has {}", bytes.len()),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        return Err(Error::format(
            path,
            format!("bad magic number {magic:#010x}: expected {IMAGES_MAGIC:#010x} (unsigned-byte images, 3 dimensions); is this a label file or not IDX at all?"),
        ));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if rows != 28 || cols != 28 {
        return Err(Error::format(
            path,
            format!("images are {rows}x{cols}, MNIST images are 28x28"),
        ));
    }
    let want = 16 + n * rows * cols;
    if bytes.len() != want {
        return Err(Error::format(
            path,
            format!(
                "header says {n} images of {rows}x{cols} ({want} bytes in all) but the file has {} bytes: {}",
                bytes.len(),
                if bytes.len() < want { "truncated" } else { "trailing garbage" }
            ),
        ));
    }
    Ok((n, rows, cols, bytes[16..].to_vec()))
}

/// Parses an IDX1 label file with labels in 0..10.
pub(crate) fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.len() < 8 {
        return Err(Error::format(
            path,
            format!("IDX label header needs 8 bytes, file has {}", bytes.len()),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        return Err(Error::format(
            path,
            format!("bad magic number {magic:#010x}: expected {LABELS_MAGIC:#010x} (unsigned-byte labels, 1 dimension); is this an image file?"),
        ));
    }
    let n = be_u32(bytes, 4) as usize;
    if bytes.len() != 8 + n {
        return Err(Error::format(
            path,
            format!(
                "header says {n} labels but the file holds {} ({})",
                bytes.len().saturating_sub(8),
                if bytes.len() < 8 + n {
                    "truncated"
                } else {
                    "trailing garbage"
                }
            ),
        ));
    }
    let labels = bytes[8..].to_vec();
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Error::format(
            path,
            format!("label {l} at index {i} is outside 0..=9"),
        ));
    }
    Ok(labels)
}

/// Verifies the files listed in `dir/SHA256SUMS` (if that file exists). Returns the checked (file, sha) pairs.
pub fn verify_checksums(dir: &Path) -> Result<Vec<(String, String)>> {
    let sums = dir.join("SHA256SUMS");
    if !sums.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&sums).map_err(|e| Error::io(&sums, e))?;
    let mut checked = Vec::new();
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
        let name = name.trim_start_matches('*');
        let file = dir.join(name);
        if !file.exists() {
            continue; // only the files present are checked; missing ones fail when loaded
        }
        let found = crate::fingerprint::sha256_file(&file)?;
        if !found.eq_ignore_ascii_case(hash) {
            return Err(Error::Checksum {
                path: file,
                expected: hash.to_string(),
                found,
                hint: "the file is corrupt or was replaced; restore it from the repository (git checkout assets/mnist) or the original MNIST distribution".into(),
            });
        }
        checked.push((name.to_string(), found));
    }
    Ok(checked)
}

/// Loads one split from `dir`, verifying checksums first.
pub fn load(dir: &Path, split: Split) -> Result<Mnist> {
    verify_checksums(dir)?;
    let (img_stem, lbl_stem) = split.stems();
    let img_path = find_file(dir, img_stem)?;
    let lbl_path = find_file(dir, lbl_stem)?;
    let (n, rows, cols, pixels) = parse_idx_images(&img_path, &read_maybe_gz(&img_path)?)?;
    let labels = parse_idx_labels(&lbl_path, &read_maybe_gz(&lbl_path)?)?;
    if labels.len() != n {
        return Err(Error::format(
            &lbl_path,
            format!(
                "{} labels but {} has {n} images: the pair does not match",
                labels.len(),
                img_path.display()
            ),
        ));
    }
    // [N, 1, 28, 28] in [0, 1]
    let images = Tensor::from_slice(&pixels)
        .to_kind(Kind::Float)
        .divide_scalar(255.0)
        .view([n as i64, 1, rows as i64, cols as i64]);
    let labels = Tensor::from_slice(&labels).to_kind(Kind::Int64); // [N]
    Ok(Mnist { images, labels })
}
