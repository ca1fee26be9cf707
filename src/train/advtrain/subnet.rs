//! The sub-network above one layer (§4.2: "adversarial examples are generated for each layer output and
//! are used to train all the layers above"): where a zoo architecture splits at a named layer output, the
//! box that layer's values live in, the values themselves, and the upper layers as a [`Classifier`] whose
//! inputs are that layer's values, so the project's batched attack ([`crate::attack::attack_batch`])
//! runs on it unchanged.

use crate::models::zoo::{forward_all, Architecture, Layer, ZooModel};
use crate::models::{Classifier, Wrapper};
use crate::Result;
use tch::Tensor;

/// Where an architecture splits for a pool: below = `layers[..index]`, above = `layers[index..]`.
#[derive(Debug, Clone)]
pub struct Split {
    /// The layer output's name (`input`, `fc1.sigmoid`, …).
    pub layer: String,
    /// First layer of the upper sub-network (0 for `input`).
    pub index: usize,
    /// Shape of one example at the split: [..] (e.g. [1, 28, 28] for `input`, [100] for `fc1.sigmoid`).
    pub shape: Vec<i64>,
    /// The box the values live in: (0, 1) for the input and sigmoid outputs, (0, ∞) for ReLU outputs.
    pub bounds: (f64, f64),
    /// Offset of the upper sub-network's parameters in the flat θ [P] (they are its tail).
    pub offset: i64,
    /// The upper sub-network (input shape = `shape`).
    pub upper: Architecture,
}

impl Split {
    /// The split of `arch` at output `layer`: `input`, or the output of a sigmoid or ReLU layer below
    /// the top layer. Err: a message naming the valid layers.
    pub fn of(arch: &Architecture, layer: &str) -> std::result::Result<Split, String> {
        let names = arch.output_names();
        let valid: Vec<String> = std::iter::once("input".to_string())
            .chain(
                names
                    .iter()
                    .zip(&arch.layers)
                    .take(arch.layers.len().saturating_sub(1))
                    .filter(|(_, l)| matches!(l, Layer::Sigmoid | Layer::Relu))
                    .map(|(n, _)| n.clone()),
            )
            .collect();
        let shapes = arch.shapes().map_err(|e| e.to_string())?;
        let (index, shape, bounds) = if layer == "input" {
            (0, arch.input_shape.clone(), (0.0, 1.0))
        } else {
            let i = names
                .iter()
                .position(|n| n == layer)
                .filter(|_| valid.iter().any(|v| v == layer))
                .ok_or_else(|| {
                    format!(
                        "`{layer}` is not a layer that can carry a pool: use one of {}",
                        valid.join(", ")
                    )
                })?;
            let bounds = match arch.layers[i] {
                Layer::Sigmoid => (0.0, 1.0),
                _ => (0.0, f64::INFINITY),
            };
            (i + 1, shapes[i].clone(), bounds)
        };
        let below = Architecture {
            input_shape: arch.input_shape.clone(),
            layers: arch.layers[..index].to_vec(),
        };
        Ok(Split {
            layer: layer.to_string(),
            index,
            shape: shape.clone(),
            bounds,
            offset: below.num_params(),
            upper: Architecture {
                input_shape: shape,
                layers: arch.layers[index..].to_vec(),
            },
        })
    }

    /// The values at the split for `x` [B, ..input_shape] under the full model's θ [P], no gradients:
    /// [B, ..shape].
    pub fn values(&self, arch: &Architecture, theta: &Tensor, x: &Tensor) -> Tensor {
        if self.index == 0 {
            return x.shallow_clone();
        }
        let below = Architecture {
            input_shape: arch.input_shape.clone(),
            layers: arch.layers[..self.index].to_vec(),
        };
        let layout = below.param_layout();
        tch::no_grad(|| {
            forward_all(
                &below,
                &layout,
                &theta.narrow(0, 0, self.offset),
                x,
                false,
                false,
            )
            .pop()
            .expect("layers") // [B, ..shape]
        })
    }

    /// The upper layers' logits on `h` [B, ..shape] with the full θ [P] (differentiable in θ's tail
    /// only): [B, classes].
    pub fn upper_logits(&self, theta: &Tensor, h: &Tensor, train: bool) -> Tensor {
        let layout = self.upper.param_layout();
        let p = self.upper.num_params();
        forward_all(
            &self.upper,
            &layout,
            &theta.narrow(0, self.offset, p),
            h,
            train,
            false,
        )
        .pop()
        .expect("layers")
    }

    /// The upper sub-network at θ [P] (detached) as a classifier of this layer's values, in its box.
    pub fn subnet(&self, name: &str, theta: &Tensor) -> Result<SubNet> {
        let p = self.upper.num_params();
        let tail = theta.detach().narrow(0, self.offset, p).copy(); // [P_upper]
        Ok(SubNet {
            inner: ZooModel::new(
                &format!("{name}@{}", self.layer),
                self.upper.clone(),
                tail,
                serde_json::json!({}),
            )?,
            bounds: self.bounds,
        })
    }
}

/// The layers above a split as a [`Classifier`] of that layer's values (inputs in `bounds`).
pub struct SubNet {
    inner: ZooModel,
    bounds: (f64, f64),
}

impl Wrapper for SubNet {
    fn inner(&self) -> &dyn Classifier {
        &self.inner
    }
    fn input_bounds(&self) -> (f64, f64) {
        self.bounds
    }
}
