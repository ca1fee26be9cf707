//! Running a zoo architecture on a flat parameter vector θ [P] (so that full-batch L-BFGS optimises the
//! model directly, §4.2), and PyTorch's initialisation of θ.

use super::arch::{Architecture, Layer, ParamEntry};
use tch::{Device, Kind, Tensor};

/// Views of the flat parameter vector, one (weight, bias) pair per parameterised layer. The views share
/// storage (and autograd history) with `theta` [P].
pub fn param_views(layout: &[ParamEntry], theta: &Tensor) -> Vec<Tensor> {
    layout
        .iter()
        .map(|p| theta.narrow(0, p.offset, p.numel).view(p.shape.as_slice()))
        .collect()
}

/// Runs the architecture on `x` [B, ..input_shape] with parameters `theta` [P]. Returns the output of
/// every layer when `keep` is true (else only the last, in a one-element vector).
pub fn forward_all(
    arch: &Architecture,
    layout: &[ParamEntry],
    theta: &Tensor,
    x: &Tensor,
    train: bool,
    keep: bool,
) -> Vec<Tensor> {
    let views = param_views(layout, theta);
    let mut h = x.shallow_clone();
    let mut outs = Vec::new();
    let mut pi = 0;
    for l in &arch.layers {
        h = match l {
            Layer::Linear { .. } => {
                let (w, b) = (&views[pi], &views[pi + 1]);
                pi += 2;
                h.flatten(1, -1).linear(w, Some(b)) // [B, out]
            }
            Layer::Conv2d {
                stride, padding, ..
            } => {
                let (w, b) = (&views[pi], &views[pi + 1]);
                pi += 2;
                h.conv2d(
                    w,
                    Some(b),
                    [*stride, *stride],
                    [*padding, *padding],
                    [1, 1],
                    1,
                ) // [B, C, H, W]
            }
            Layer::Sigmoid => h.sigmoid(),
            Layer::Relu => h.relu(),
            Layer::MaxPool2d {
                kernel_size,
                stride,
            } => h.max_pool2d(
                [*kernel_size, *kernel_size],
                [*stride, *stride],
                [0, 0],
                [1, 1],
                false,
            ),
            Layer::Flatten => h.flatten(1, -1),
            Layer::Dropout { p } => h.dropout(*p, train),
        };
        if keep {
            outs.push(h.shallow_clone());
        }
    }
    if !keep {
        outs.push(h);
    }
    outs
}

/// Initial parameters as PyTorch initialises `nn.Linear` / `nn.Conv2d`: U(−1/√fan_in, 1/√fan_in) for
/// weights and biases, drawn from libtorch's generator (seed it first).
pub fn init_params(arch: &Architecture, device: Device) -> Tensor {
    let layout = arch.param_layout();
    let parts: Vec<Tensor> = layout
        .iter()
        .map(|p| {
            let fan_in: i64 = if p.is_weight {
                p.shape[1..].iter().product()
            } else {
                // bias: fan_in of the matching weight (the previous entry)
                layout
                    .iter()
                    .find(|q| q.layer == p.layer && q.is_weight)
                    .map(|q| q.shape[1..].iter().product())
                    .unwrap_or(1)
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            Tensor::empty([p.numel], (Kind::Float, device)).uniform_(-bound, bound)
        })
        .collect();
    Tensor::cat(&parts, 0)
}

#[cfg(test)]
mod tests {
    use super::super::presets;
    use super::*;

    #[test]
    fn views_share_theta_and_forward_keeps_every_layer() {
        tch::manual_seed(0);
        let arch = presets::mlp(&[3], Layer::Sigmoid); // flatten, fc1, sigmoid, fc2
        let layout = arch.param_layout();
        let theta = init_params(&arch, Device::Cpu);
        assert_eq!(theta.size(), [arch.num_params()]);
        let views = param_views(&layout, &theta);
        assert_eq!(views[0].size(), [3, 784]);
        let _ = views[1].shallow_clone().fill_(0.25); // fc1.bias, in place
        assert_eq!(theta.double_value(&[layout[1].offset]), 0.25);
        let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        let outs = forward_all(&arch, &layout, &theta, &x, false, true);
        let sizes: Vec<Vec<i64>> = outs.iter().map(|t| t.size()).collect();
        assert_eq!(sizes, [vec![2, 784], vec![2, 3], vec![2, 3], vec![2, 10]]);
        let last = forward_all(&arch, &layout, &theta, &x, false, false);
        assert_eq!(last.len(), 1);
        assert!(last[0].equal(&outs[3]));
    }
}
