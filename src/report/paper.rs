//! The paper's numbers (Tables 1, 3; see shared/paper/DIGEST.md) and the accuracy targets of the
//! reproduction, keyed by model name, so every report row shows the paper's value beside ours.

/// Paper values for one MNIST model (fractions, not percent); `None` where the paper gives none.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaperModel {
    pub train_err: Option<f64>,
    pub test_err: Option<f64>,
    pub p1_err: Option<f64>,
    pub p2_err: Option<f64>,
    pub distortion: Option<f64>,
}

/// Table 1 and Table 3 rows.
pub fn paper_model(name: &str) -> Option<PaperModel> {
    let m = |train, test, dist| PaperModel {
        train_err: Some(train),
        test_err: Some(test),
        distortion: Some(dist),
        ..Default::default()
    };
    let t3 = |p1, p2, test, dist| PaperModel {
        train_err: None,
        test_err: Some(test),
        p1_err: Some(p1),
        p2_err: Some(p2),
        distortion: Some(dist),
    };
    Some(match name {
        "softmax1" => m(0.067, 0.074, 0.062),
        "softmax2" => m(0.10, 0.094, 0.1),
        "softmax3" => m(0.212, 0.20, 0.14),
        "N100-100-10" => m(0.0, 0.0164, 0.058),
        "N200-200-10" => m(0.0, 0.0154, 0.065),
        "AE400-10" => m(0.0057, 0.019, 0.086),
        "M1" => t3(0.0, 0.024, 0.02, 0.062),
        "M1'" | "M1p" => t3(0.0, 0.025, 0.021, 0.059),
        "M2" => t3(0.023, 0.0, 0.021, 0.058),
        _ => return None,
    })
}

/// The reproduction's accuracy target for a model, as (description, check on (train/own-half err, test err)).
/// Check of (own-set error, test error).
pub type TargetCheck = fn(f64, f64) -> bool;

pub fn target(name: &str) -> Option<(&'static str, TargetCheck)> {
    Some(match name {
        "N100-100-10" | "N200-200-10" => ("train ≤ 0.1%, test ≤ 2.0%", |tr, te| {
            tr <= 0.001 && te <= 0.020
        }),
        "M1" | "M1'" | "M1p" | "M2" => ("own half ≤ 0.1%, test ≤ 2.5%", |tr, te| {
            tr <= 0.001 && te <= 0.025
        }),
        "AE400-10" => ("test ≤ 2.5%", |_, te| te <= 0.025),
        "softmax1" => ("test within 3 points of 7.4%", |_, te| {
            (te - 0.074).abs() <= 0.03
        }),
        "softmax2" => ("test within 3 points of 9.4%", |_, te| {
            (te - 0.094).abs() <= 0.03
        }),
        "softmax3" => ("test within 3 points of 20%", |_, te| {
            (te - 0.20).abs() <= 0.03
        }),
        "Conv" => ("test ≤ 1.0%", |_, te| te <= 0.010),
        _ => return None,
    })
}
