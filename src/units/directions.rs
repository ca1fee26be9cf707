//! The directions of §3: units (natural basis vectors e_i of a layer, all or K drawn at random) and random
//! directions (Gaussian, normalised; optionally a random orthonormal set), seeded and machine-independent.

use crate::results::units::DirectionKind;
use crate::units::UnitsError;
use crate::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Kind, Tensor};

/// How many units to take from a layer: a number (`64`, `"64"`) or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CountRepr", into = "CountRepr")]
pub enum Count {
    All,
    N(usize),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CountRepr {
    N(usize),
    Text(String),
}

impl TryFrom<CountRepr> for Count {
    type Error = UnitsError;
    fn try_from(r: CountRepr) -> std::result::Result<Self, UnitsError> {
        match r {
            CountRepr::N(k) => Ok(Count::N(k)),
            CountRepr::Text(s) => s.parse(),
        }
    }
}

impl From<Count> for CountRepr {
    fn from(c: Count) -> Self {
        match c {
            Count::All => CountRepr::Text("all".into()),
            Count::N(k) => CountRepr::N(k),
        }
    }
}

impl std::str::FromStr for Count {
    type Err = UnitsError;
    fn from_str(s: &str) -> std::result::Result<Self, UnitsError> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Count::All);
        }
        s.parse::<usize>()
            .map(Count::N)
            .map_err(|_| UnitsError::BadCount {
                value: s.to_string(),
            })
    }
}

/// The directions of one analysis, in the layer's flattened coordinates (dimension D).
#[derive(Debug)]
pub struct Directions {
    /// Shape of the layer's activations for one example (e.g. [4, 12, 12]); D is its product.
    pub layer_shape: Vec<i64>,
    /// Flat indices of the chosen units, sorted [Ku].
    pub units: Vec<i64>,
    /// Random unit-length directions as columns, [D, Kr] f32 on the CPU.
    pub random: Tensor,
    /// Random orthonormal directions as columns, [D, Ko] f32 on the CPU (Ko may be 0).
    pub orthogonal: Tensor,
}

impl Directions {
    pub fn dim(&self) -> i64 {
        self.layer_shape.iter().product()
    }
    /// Number of directions of each kind, in column order: units, random, orthogonal.
    pub fn counts(&self) -> [usize; 3] {
        [
            self.units.len(),
            self.random.size()[1] as usize,
            self.orthogonal.size()[1] as usize,
        ]
    }
    pub fn total(&self) -> usize {
        self.counts().iter().sum()
    }
    /// Kind and index within its kind of column `j` of the score matrix.
    pub fn column(&self, j: usize) -> (DirectionKind, usize) {
        let [u, r, _] = self.counts();
        if j < u {
            (DirectionKind::Unit, j)
        } else if j < u + r {
            (DirectionKind::Random, j - u)
        } else {
            (DirectionKind::Orthogonal, j - u - r)
        }
    }
    /// "c=3 y=5 x=7"-style position of flat unit index `flat` in the layer.
    pub fn unit_position(&self, flat: i64) -> String {
        let mut rem = flat;
        let mut coords = vec![0i64; self.layer_shape.len()];
        for (k, &d) in self.layer_shape.iter().enumerate().rev() {
            coords[k] = rem % d.max(1);
            rem /= d.max(1);
        }
        let names: &[&str] = match self.layer_shape.len() {
            3 => &["c", "y", "x"],
            2 => &["c", "t"],
            _ => &[],
        };
        if names.len() == coords.len() && coords.len() > 1 {
            coords
                .iter()
                .zip(names)
                .map(|(c, n)| format!("{n}={c}"))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            format!("{flat}")
        }
    }

    /// Saves the directions as `directions.safetensors` (see [`crate::results::units::write_directions`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::results::units::write_directions(
            path,
            &self.layer_shape,
            &self.units,
            &self.random,
            &self.orthogonal,
        )
    }
}

/// Standard normal matrix [dim, k] (f64, CPU) from a ChaCha8 stream (Box-Muller): the same numbers on
/// every machine and libtorch version, and libtorch's global generator is left alone.
pub fn gaussian(dim: i64, k: usize, seed: u64) -> Tensor {
    let n = (dim.max(0) as usize) * k;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        v.push(r * t.cos());
        v.push(r * t.sin());
    }
    v.truncate(n);
    Tensor::from_slice(&v).view([dim, k as i64])
}

/// `k` random unit-length directions in R^dim as columns, [dim, k] f32 (CPU, from `seed`).
pub fn random_directions(dim: i64, k: usize, seed: u64) -> Tensor {
    let _g = tch::no_grad_guard();
    let g = gaussian(dim, k, seed).to_kind(Kind::Float); // [D, k]
    let norms = g.norm_scalaropt_dim(2.0, [0], true).clamp_min(1e-12); // [1, k]
    g / norms
}

/// `k ≤ dim` random orthonormal directions as columns, [dim, k] f32: Q of the QR decomposition of a
/// Gaussian matrix with the signs of diag(R) moved into Q (so that Q is Haar distributed).
pub fn random_orthonormal(dim: i64, k: usize, seed: u64) -> Result<Tensor> {
    if k as i64 > dim {
        return Err(UnitsError::TooManyOrthogonal { count: k, dim }.into());
    }
    let _g = tch::no_grad_guard();
    let g = gaussian(dim, k, seed); // [D, k] f64
    let (q, r) = Tensor::f_linalg_qr(&g, "reduced")?; // q [D, k], r [k, k]
    let d = r.diagonal(0, 0, 1).sign(); // [k]
    let d = d.where_self(&d.ne(0.0), &d.ones_like());
    Ok((q * d.unsqueeze(0)).to_kind(Kind::Float))
}

/// Chooses units and draws random directions for a layer of shape `layer_shape`.
pub fn make_directions(
    layer_shape: &[i64],
    units: Count,
    random: usize,
    orthogonal: usize,
    seed: u64,
) -> Result<Directions> {
    let dim: i64 = layer_shape.iter().product();
    if dim < 1 {
        return Err(UnitsError::EmptyLayer {
            shape: layer_shape.to_vec(),
        }
        .into());
    }
    let units: Vec<i64> = match units {
        Count::All => (0..dim).collect(),
        Count::N(k) if k as i64 >= dim => (0..dim).collect(),
        Count::N(k) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x756e_6974);
            let mut v: Vec<i64> = rand::seq::index::sample(&mut rng, dim as usize, k)
                .into_iter()
                .map(|i| i as i64)
                .collect();
            v.sort_unstable();
            v
        }
    };
    Ok(Directions {
        layer_shape: layer_shape.to_vec(),
        units,
        random: random_directions(dim, random, seed.wrapping_add(1)),
        orthogonal: random_orthonormal(dim, orthogonal, seed.wrapping_add(2))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_parses_numbers_and_all() {
        assert_eq!("all".parse::<Count>().unwrap(), Count::All);
        assert_eq!("ALL".parse::<Count>().unwrap(), Count::All);
        assert_eq!("12".parse::<Count>().unwrap(), Count::N(12));
        let err = "twelve".parse::<Count>().unwrap_err().to_string();
        assert_eq!(err, "`twelve`: expected a number or `all`");
        let n: Count = serde_json::from_str("7").unwrap();
        let s: Count = serde_json::from_str("\"7\"").unwrap();
        assert_eq!((n, s), (Count::N(7), Count::N(7)));
        assert_eq!(serde_json::to_string(&Count::All).unwrap(), "\"all\"");
        assert_eq!(serde_json::to_string(&Count::N(3)).unwrap(), "3");
    }

    #[test]
    fn columns_are_units_then_random_then_orthogonal() {
        let d = make_directions(&[2, 3], Count::N(4), 2, 1, 0).unwrap();
        assert_eq!(d.counts(), [4, 2, 1]);
        assert_eq!(d.column(3), (DirectionKind::Unit, 3));
        assert_eq!(d.column(5), (DirectionKind::Random, 1));
        assert_eq!(d.column(6), (DirectionKind::Orthogonal, 0));
        assert_eq!(d.unit_position(4), "c=1 t=1");
    }
}
