//! Result files of Fig 7 (§4.2): the numbers (`fig7.json`) and the images the figure shows
//! (`fig7.safetensors`), written by the attack-side Fig 7 stage; the report draws the grids from them.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Numbers behind one model's Fig 7 panel.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Fig7Panel {
    pub model: String,
    /// The panel's grid (drawn by the report into the stage's folder).
    pub png: PathBuf,
    pub images: usize,
    pub successes: usize,
    /// Mean distortion (stddev of the perturbation) of the shown adversarials.
    pub stddev: f64,
    /// Accuracy on the shown adversarials (paper: 0%).
    pub adversarial_accuracy: f64,
    /// Accuracy of the model on `eval` images with Gaussian noise of the same stddev.
    pub noise_accuracy: f64,
}

/// Fig 7 as a whole (`fig7.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Fig7 {
    pub panels: Vec<Fig7Panel>,
    pub panel_c_png: PathBuf,
    /// Accuracy of the first model on the `eval` images with Gaussian noise of stddev 1 (paper: 51%).
    pub panel_c_accuracy: f64,
    /// The same without clipping to [0, 1] (the paper does not say whether it clipped).
    pub panel_c_accuracy_unclipped: f64,
    pub panel_c_model: String,
    /// How many images the noise accuracies are measured on (absent in files of earlier versions).
    #[serde(default)]
    pub eval_images: Option<usize>,
}

/// The images of Fig 7, all [k, 1, H, W] f32 on the CPU: the shown originals, and per panel its
/// adversarials, the magnified difference and the noisy images; panel (c)'s noisy images.
pub struct Fig7Images {
    pub shown: Tensor,
    /// Per panel (same order as [`Fig7::panels`]): (adversarial, difference, noisy).
    pub panels: Vec<(Tensor, Tensor, Tensor)>,
    pub panel_c_noisy: Tensor,
}

/// Writes `fig7.json` and `fig7.safetensors` into `dir`.
pub fn write(dir: &Path, fig: &Fig7, images: &Fig7Images) -> Result<()> {
    crate::io::write_json(&dir.join("fig7.json"), fig)?;
    let mut named: Vec<(String, &Tensor)> = vec![
        ("shown".into(), &images.shown),
        ("panel_c_noisy".into(), &images.panel_c_noisy),
    ];
    for (i, (adv, diff, noisy)) in images.panels.iter().enumerate() {
        named.push((format!("panel{i}_adversarial"), adv));
        named.push((format!("panel{i}_difference"), diff));
        named.push((format!("panel{i}_noisy"), noisy));
    }
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    crate::io::write_safetensors(&dir.join("fig7.safetensors"), &refs)
}

/// Reads `fig7.json` and `fig7.safetensors` from `dir`.
pub fn read(dir: &Path) -> Result<(Fig7, Fig7Images)> {
    let fig: Fig7 = crate::io::read_json(&dir.join("fig7.json"))?;
    let file = dir.join("fig7.safetensors");
    let mut map: std::collections::HashMap<String, Tensor> =
        crate::io::read_safetensors(&file)?.into_iter().collect();
    let mut take = |k: String| {
        map.remove(&k)
            .ok_or_else(|| Error::format(&file, format!("no `{k}` tensor")))
    };
    let shown = take("shown".into())?;
    let panel_c_noisy = take("panel_c_noisy".into())?;
    let panels = (0..fig.panels.len())
        .map(|i| {
            Ok((
                take(format!("panel{i}_adversarial"))?,
                take(format!("panel{i}_difference"))?,
                take(format!("panel{i}_noisy"))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        fig,
        Fig7Images {
            shown,
            panels,
            panel_c_noisy,
        },
    ))
}
