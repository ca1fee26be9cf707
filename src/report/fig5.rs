//! Fig 5 of the paper (§4.2): adversarial examples as triplets, one column each: the original image, the
//! difference between adversarial and original magnified 10× (shifted to mid-grey, i.e. "shifted by 128
//! and clamped" in 8-bit terms), and the adversarial image, all correctly classified before and
//! misclassified after. The paper shows AlexNet on ImageNet (average distortion 0.006508 over 64 examples).

use crate::report::grid::{image_grid, GridOptions, GridRow};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Kind, Tensor};

/// The magnified difference image: clamp(10·(x′ − x) + 0.5, 0, 1), same shape as `x`.
pub fn difference_image(x: &Tensor, adv: &Tensor) -> Result<Tensor> {
    Ok(adv
        .f_sub(x)?
        .f_mul_scalar(10.0)?
        .f_add_scalar(0.5)?
        .f_clamp(0.0, 1.0)?)
}

/// What a drawn Fig 5 shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fig5 {
    pub png: String,
    /// Data indices (positions in the attacked set) of the shown examples.
    pub shown: Vec<i64>,
    /// Mean distortion sqrt(Σ(x′ − x)²/n) of the shown examples.
    pub mean_distortion: f64,
}

/// Draws the first `count` successful examples of an attack's `adversarial.safetensors` as triplets.
pub fn fig5(adversarial_file: &Path, png: &Path, count: usize) -> Result<Fig5> {
    let ex = crate::results::attack::read_adversarials(adversarial_file)?;
    let m = ex.labels.size()[0].min(count as i64);
    let (x, adv) = (
        ex.original.f_narrow(0, 0, m)?,
        ex.adversarial.f_narrow(0, 0, m)?,
    ); // [m, C, H, W]
    let diff = difference_image(&x, &adv)?;
    let d = crate::results::attack::distortions(&adv, &x)?
        .f_mean(Kind::Double)?
        .f_double_value(&[])?;
    let split = |t: &Tensor| (0..m).map(|i| t.get(i)).collect::<Vec<_>>();
    let rows = [
        GridRow::new("original", split(&x)),
        GridRow::new("difference ×10", split(&diff)),
        GridRow::new("adversarial", split(&adv)),
    ];
    image_grid(
        png,
        &rows,
        &GridOptions {
            title: Some(format!(
                "Fig 5: {m} adversarial examples, mean distortion {d:.5}"
            )),
            ..GridOptions::default()
        },
    )?;
    Ok(Fig5 {
        png: png.display().to_string(),
        shown: Vec::try_from(&ex.positions.f_narrow(0, 0, m)?)?,
        mean_distortion: d,
    })
}
