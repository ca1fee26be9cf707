//! The empirical side of §4.3: the largest Lipschitz ratio `‖φ(x + r) − φ(x)‖ / ‖r‖` of the whole network
//! found by gradient ascent, to set beside the product of the per-layer bounds (how loose is the bound?).

use super::network::Network;
use crate::results::spectral::Empirical;
use crate::Result;
use tch::{Kind, Tensor};

/// Gradient ascent on the Lipschitz ratio of the whole network (φ = logits, eval mode).
pub fn empirical_ratio(
    net: &Network,
    steps: usize,
    starts: i64,
    seed: i64,
    device: tch::Device,
) -> Result<Empirical> {
    tch::manual_seed(seed);
    let mut shape = vec![starts];
    shape.extend_from_slice(&net.input_shape);
    let n: i64 = net.input_shape.iter().product();
    let radius = 0.01 * (n as f64).sqrt();
    let opts = (Kind::Float, device);
    let x = Tensor::rand(shape.as_slice(), opts).set_requires_grad(true);
    let u = Tensor::randn(shape.as_slice(), opts).set_requires_grad(true);
    let vars = [&x, &u];
    let mut m: Vec<Tensor> = vars.iter().map(|v| v.zeros_like()).collect();
    let mut v2: Vec<Tensor> = vars.iter().map(|v| v.zeros_like()).collect();
    let (b1, b2, lr, eps) = (0.9f64, 0.999f64, 0.01f64, 1e-8f64);
    let mut best = 0.0f64;
    let dims: Vec<i64> = (1..shape.len() as i64).collect();
    for t in 1..=steps.max(1) {
        for v in vars {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        let un = u.norm_scalaropt_dim(2, dims.as_slice(), true); // [B, 1, ..]
        let r = &u / &un * radius;
        let d = net.forward(&(&x + &r))? - net.forward(&x)?; // [B, classes]
        let ratio = d
            .flatten(1, -1)
            .norm_scalaropt_dim(2, [1].as_slice(), false)
            / radius; // [B]
        best = best.max(ratio.max().double_value(&[]));
        if steps == 0 {
            break;
        }
        let loss = -(ratio + 1e-30).log().sum(Kind::Float);
        loss.backward();
        tch::no_grad(|| {
            for (i, v) in vars.iter().enumerate() {
                let g = v.grad();
                m[i] = &m[i] * b1 + &g * (1.0 - b1);
                v2[i] = &v2[i] * b2 + g.square() * (1.0 - b2);
                let mh = &m[i] / (1.0 - b1.powi(t as i32));
                let vh = &v2[i] / (1.0 - b2.powi(t as i32));
                let step = mh / (vh.sqrt() + eps) * lr;
                let mut vv = (*v).shallow_clone();
                let _ = vv.f_sub_(&step);
            }
        });
    }
    Ok(Empirical {
        ratio: best,
        radius,
        steps,
        starts,
    })
}
