//! The linear softmax classifier of `tests/fixtures/attack/linear_qp.json` (written by
//! scripts/gen_attack_fixtures.py) with its exact minimal targeted distortions, for the attack tests
//! (tests/attack.rs) and the device suite (tests/device.rs).

use blindspot::models::zoo::{Architecture, Layer, ZooModel};
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub struct LinearFixture {
    /// The classifier, on the requested device.
    pub model: ZooModel,
    /// Inputs [m, 1, 4, 4] on the CPU.
    pub x: Tensor,
    /// [m] on the CPU.
    pub labels: Tensor,
    pub targets: Tensor,
    /// The exact minimal targeted distortion of each example (a QP solved by the script).
    pub min_distortion: Vec<f64>,
}

/// A linear softmax classifier's layout: flatten, then one `fc` layer from the input to `classes`.
pub fn arch(input_shape: &[i64], classes: i64) -> Architecture {
    Architecture {
        input_shape: input_shape.to_vec(),
        layers: vec![
            Layer::Flatten,
            Layer::Linear {
                name: "fc".into(),
                in_features: input_shape.iter().product(),
                out_features: classes,
            },
        ],
    }
}

/// Reads the fixture under `root` (the repository root) with the model on `device`.
pub fn linear_fixture(root: &Path, device: Device) -> LinearFixture {
    let p = root.join("tests/fixtures/attack/linear_qp.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let f = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let i = |k: &str| -> Vec<i64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let k = v["classes"].as_i64().unwrap();
    let arch = arch(&[1, 4, 4], k);
    let mut theta = f("weight");
    theta.extend(f("bias"));
    let theta = Tensor::from_slice(&theta)
        .to_kind(Kind::Float)
        .to_device(device);
    let model = ZooModel::new("linear", arch, theta, serde_json::json!({})).unwrap();
    let x = Tensor::from_slice(&f("x"))
        .to_kind(Kind::Float)
        .view([-1, 1, 4, 4]);
    LinearFixture {
        model,
        x,
        labels: Tensor::from_slice(&i("labels")),
        targets: Tensor::from_slice(&i("targets")),
        min_distortion: f("min_distortion"),
    }
}
