//! The paper's models as architectures (§4.2, Tables 1 and 3; MNIST input [1, 28, 28], 10 classes):
//! the linear softmax classifiers, the fully connected nets (N100-100-10, N200-200-10), the conv net and
//! the AE400-10 autoencoder with its classifier.

use super::arch::{Architecture, Layer};

fn linear(name: &str, i: i64, o: i64) -> Layer {
    Layer::Linear {
        name: name.into(),
        in_features: i,
        out_features: o,
    }
}

/// Fully connected net 784 → hidden… → 10 with `act` after each hidden layer (softmax on top is in
/// the loss). `hidden = []` is the linear softmax classifier (softmax1–3).
pub fn mlp(hidden: &[i64], act: Layer) -> Architecture {
    let mut layers = vec![Layer::Flatten];
    let mut prev = 784;
    for (i, &h) in hidden.iter().enumerate() {
        layers.push(linear(&format!("fc{}", i + 1), prev, h));
        layers.push(act.clone());
        prev = h;
    }
    layers.push(linear(&format!("fc{}", hidden.len() + 1), prev, 10));
    Architecture {
        input_shape: vec![1, 28, 28],
        layers,
    }
}

/// [`mlp`] with dropout: probability `input_p` on the flattened input and `hidden_p` after each hidden
/// activation (a probability of 0 adds no layer, so `mlp_dropout(h, act, 0, 0)` is `mlp(h, act)`).
pub fn mlp_dropout(hidden: &[i64], act: Layer, input_p: f64, hidden_p: f64) -> Architecture {
    let mut arch = mlp(hidden, act);
    let mut layers = Vec::new();
    for l in arch.layers {
        let after = match l {
            Layer::Flatten => input_p,
            Layer::Sigmoid | Layer::Relu => hidden_p,
            _ => 0.0,
        };
        layers.push(l);
        if after > 0.0 {
            layers.push(Layer::Dropout { p: after });
        }
    }
    arch.layers = layers;
    arch
}

/// The Conv net: for each entry of `channels`, conv(k×k, that many channels, ReLU) → max-pool 2×2
/// (`conv1`, `conv2`, …); then FC(`hidden`, ReLU) → dropout → FC(10) (`fc1`, `fc2`).
pub fn conv(channels: &[i64], kernel: i64, hidden: i64, dropout: f64) -> Architecture {
    let mut layers = Vec::new();
    let (mut c, mut side) = (1, 28);
    for (i, &ch) in channels.iter().enumerate() {
        layers.push(Layer::Conv2d {
            name: format!("conv{}", i + 1),
            in_channels: c,
            out_channels: ch,
            kernel_size: kernel,
            stride: 1,
            padding: 0,
        });
        layers.push(Layer::Relu);
        layers.push(Layer::MaxPool2d {
            kernel_size: 2,
            stride: 2,
        });
        c = ch;
        side = (side - kernel + 1) / 2;
    }
    layers.extend([
        Layer::Flatten,
        linear("fc1", c * side * side, hidden),
        Layer::Relu,
        Layer::Dropout { p: dropout },
        linear("fc2", hidden, 10),
    ]);
    Architecture {
        input_shape: vec![1, 28, 28],
        layers,
    }
}

/// AE400-10 as a classifier: the autoencoder's sigmoid encoder `enc` (784 → `code`) and a softmax
/// layer `fc` on the code.
pub fn ae_classifier(code: i64) -> Architecture {
    Architecture {
        input_shape: vec![1, 28, 28],
        layers: vec![
            Layer::Flatten,
            linear("enc", 784, code),
            Layer::Sigmoid,
            linear("fc", code, 10),
        ],
    }
}

/// The autoencoder itself: encoder `enc` 784 → `code` (sigmoid), decoder `dec` → 784 (sigmoid).
pub fn autoencoder(code: i64) -> Architecture {
    Architecture {
        input_shape: vec![1, 28, 28],
        layers: vec![
            Layer::Flatten,
            linear("enc", 784, code),
            Layer::Sigmoid,
            linear("dec", code, 784),
            Layer::Sigmoid,
        ],
    }
}
