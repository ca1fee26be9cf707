//! Data sources that an analysis streams over (paper §3: the MNIST test set for Figs 1–2, the ImageNet
//! validation set for Figs 3–4): one [`Dataset`] trait over in-memory MNIST ([`TensorData`]) and image
//! folders decoded on the fly ([`ImageFolder`]), and [`open`], which turns a data spec (`mnist-test`,
//! `mnist-train` or a folder path) into one. Data knows nothing of models: a folder is preprocessed for
//! the input shape it is given.

use crate::data::images::{ImageBatch, ImageFolder, ImageFolderOptions, OnBadImage};
use crate::data::mnist::{self, Mnist, Split};
use crate::data::DataError;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// A batch of examples: `images` [b, ..example_shape] on the CPU, their data indices, and the undecodable
/// ones (index, message). The same type an image folder yields.
pub type DataBatch = ImageBatch;

/// A data set an analysis can stream over: MNIST (in memory) or an image folder (decoded on the fly).
pub trait Dataset {
    /// A short description for reports (e.g. `mnist-test`, a folder path).
    fn describe(&self) -> String;
    /// Number of examples (including any that turn out to be undecodable).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one example, e.g. [1, 28, 28].
    fn example_shape(&self) -> Vec<i64>;
    /// Labels by data index, if the data set is labelled.
    fn labels(&self) -> Option<Vec<i64>>;
    /// Class names by label (may be empty).
    fn class_names(&self) -> Vec<String>;
    /// All examples in order, in batches of about `batch`.
    fn batches<'a>(&'a self, batch: usize) -> Box<dyn Iterator<Item = Result<DataBatch>> + 'a>;
    /// The examples at `indices`: [k, ..example_shape] on the CPU (for figures).
    fn fetch(&self, indices: &[usize]) -> Result<Tensor>;
}

/// MNIST (or any in-memory labelled image tensor) as a [`Dataset`].
pub struct TensorData {
    pub name: String,
    pub data: Mnist,
}

impl Dataset for TensorData {
    fn describe(&self) -> String {
        self.name.clone()
    }
    fn len(&self) -> usize {
        self.data.len() as usize
    }
    fn example_shape(&self) -> Vec<i64> {
        self.data.images.size()[1..].to_vec()
    }
    fn labels(&self) -> Option<Vec<i64>> {
        Vec::<i64>::try_from(&self.data.labels.to_kind(Kind::Int64)).ok()
    }
    fn class_names(&self) -> Vec<String> {
        (0..10).map(|d| d.to_string()).collect()
    }
    fn batches<'a>(&'a self, batch: usize) -> Box<dyn Iterator<Item = Result<DataBatch>> + 'a> {
        let n = self.len();
        let b = batch.max(1);
        Box::new((0..n).step_by(b).map(move |s| {
            let len = b.min(n - s);
            Ok(DataBatch {
                images: self.data.images.narrow(0, s as i64, len as i64), // [len, 1, 28, 28]
                indices: (s..s + len).collect(),
                bad: Vec::new(),
            })
        }))
    }
    fn fetch(&self, indices: &[usize]) -> Result<Tensor> {
        if let Some(&index) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::IndexOutOfRange {
                data: self.describe(),
                index: index as i64,
                len: self.len(),
            }
            .into());
        }
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        Ok(self.data.images.index_select(0, &Tensor::from_slice(&idx))) // [k, 1, 28, 28]
    }
}

impl Dataset for ImageFolder {
    fn describe(&self) -> String {
        self.root().display().to_string()
    }
    fn len(&self) -> usize {
        ImageFolder::len(self)
    }
    fn example_shape(&self) -> Vec<i64> {
        ImageFolder::example_shape(self).to_vec()
    }
    fn labels(&self) -> Option<Vec<i64>> {
        ImageFolder::labels(self)
    }
    fn class_names(&self) -> Vec<String> {
        ImageFolder::class_names(self).to_vec()
    }
    fn batches<'a>(&'a self, batch: usize) -> Box<dyn Iterator<Item = Result<DataBatch>> + 'a> {
        Box::new(ImageFolder::batches(self, batch))
    }
    fn fetch(&self, indices: &[usize]) -> Result<Tensor> {
        let shape = ImageFolder::example_shape(self); // [C, S, S]
        let mut v = Vec::new();
        for &i in indices {
            v.push(Tensor::from_slice(&self.decode(i)?).view(shape));
        }
        if v.is_empty() {
            let mut s = vec![0i64];
            s.extend(shape);
            return Ok(Tensor::zeros(s.as_slice(), (Kind::Float, Device::Cpu)));
        }
        Ok(Tensor::stack(&v, 0)) // [k, C, S, S]
    }
}

/// How an image folder is read (ignored for MNIST).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FolderReading {
    /// What to do with an image file that cannot be decoded.
    pub on_bad_image: OnBadImage,
    /// Label file for a flat folder (`<file> <label>` lines, or one label a line in file order).
    pub labels: Option<PathBuf>,
    /// Resize the shorter side to this before the centre crop (default: input size · 256/224).
    pub resize: Option<u32>,
}

/// Opens a data spec: `mnist-test`, `mnist-train` (from [`mnist::default_dir`]), or an image folder
/// preprocessed for examples of `input_shape` ([C, S, S]).
pub fn open(spec: &str, input_shape: &[i64], reading: &FolderReading) -> Result<Box<dyn Dataset>> {
    match spec {
        "mnist-test" | "mnist-train" => {
            let split = if spec == "mnist-test" {
                Split::Test
            } else {
                Split::Train
            };
            Ok(Box::new(TensorData {
                name: spec.to_string(),
                data: mnist::load(&mnist::default_dir(), split)?,
            }))
        }
        path => {
            let p = Path::new(path);
            if !p.is_dir() {
                return Err(DataError::UnknownSource {
                    spec: path.to_string(),
                }
                .into());
            }
            let mut opts = ImageFolderOptions::for_input(input_shape)?;
            opts.on_bad = reading.on_bad_image;
            opts.labels_file = reading.labels.clone();
            if let Some(r) = reading.resize {
                opts.resize = r;
            }
            Ok(Box::new(ImageFolder::open(p, opts)?))
        }
    }
}
