//! The attack on an image folder (§4.2, Fig 5: AlexNet on ImageNet images): the images are decoded and
//! preprocessed to the model's input like torchvision, each labelled by the model's own prediction (a
//! folder's class order need not be the model's), and attacked as a data set; `images.txt` names the file
//! behind each attacked index. Fig 5 itself is drawn by the report from `adversarial.safetensors`.

use super::{attack_dataset_of, AttackError, AttackSpec};
use crate::data::images::{ImageFolder, ImageFolderOptions, OnBadImage};
use crate::results::attack::AttackSummary;
use crate::{Error, Result};
use std::path::Path;
use tch::Device;

/// Attacks the first `spec.first` images (default all) of an image folder, labelled by the model's own
/// predictions; writes `images.txt` beside the usual outputs.
pub fn attack_folder(
    model_path: &Path,
    dir: &Path,
    mut spec: AttackSpec,
    out_dir: &Path,
    device: Device,
) -> Result<AttackSummary> {
    spec.validate()?;
    let model = crate::models::torchscript::load_classifier(model_path, device)?;
    let mut opts = ImageFolderOptions::for_input(&model.input_shape())?;
    opts.on_bad = OnBadImage::Fail;
    let folder = ImageFolder::open(dir, opts)?;
    let n = spec.first.unwrap_or(folder.len());
    if n == 0 || n > folder.len() {
        return Err(AttackError::FolderFirst {
            first: n,
            dir: dir.to_path_buf(),
            len: folder.len(),
        }
        .into());
    }
    let idx: Vec<usize> = (0..n).collect();
    let batch = folder.load(&idx)?; // images [n, C, S, S] in [0, 1]
    let labels = crate::models::classifier::predict(model.as_ref(), &batch.images, spec.batch)?; // [n]
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let list: String = folder.entries()[..n]
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{i}\t{}\n", e.path.display()))
        .collect();
    crate::io::write_atomic(&out_dir.join("images.txt"), list.as_bytes())?;
    spec.split = format!("{} (labels: the model's predictions)", dir.display());
    spec.first = None;
    attack_dataset_of(
        model.as_ref(),
        Some(model_path),
        &batch.images,
        &labels,
        &spec,
        out_dir,
    )
}
