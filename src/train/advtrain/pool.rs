//! One pool of adversarial examples (§4.2: "keeping a pool of adversarial examples a random subset of
//! which is continuously replaced by newly generated adversarial examples"): fixed capacity, the values
//! of one layer with their true labels. A refresh first fills every empty slot, then replaces a uniformly
//! random subset of the filled ones; training steps draw rows uniformly (with replacement) from the
//! filled slots.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A pool of `capacity` examples of one layer.
pub struct Pool {
    pub layer: String,
    /// [capacity, ..shape] f32
    x: Tensor,
    /// [capacity] i64: the true label of the example each adversarial was made from.
    y: Tensor,
    filled: Vec<bool>,
    /// How many times each slot was written (for the replacement statistics).
    pub writes: Vec<u64>,
}

impl Pool {
    /// An empty pool of `capacity` rows of `shape` on `device`.
    pub fn new(layer: &str, capacity: usize, shape: &[i64], device: Device) -> Pool {
        let mut s = vec![capacity as i64];
        s.extend_from_slice(shape);
        Pool {
            layer: layer.to_string(),
            x: Tensor::zeros(s.as_slice(), (Kind::Float, device)),
            y: Tensor::zeros([capacity as i64], (Kind::Int64, device)),
            filled: vec![false; capacity],
            writes: vec![0; capacity],
        }
    }

    pub fn capacity(&self) -> usize {
        self.filled.len()
    }

    /// Filled slots.
    pub fn len(&self) -> usize {
        self.filled.iter().filter(|f| **f).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slots the next refresh writes: every empty slot while there are any, else
    /// round(`fraction`·capacity) (at least 1) distinct slots drawn uniformly.
    pub fn slots_to_refresh(&self, fraction: f64, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let empty: Vec<usize> = (0..self.capacity()).filter(|&i| !self.filled[i]).collect();
        if !empty.is_empty() {
            return empty;
        }
        let k = ((fraction * self.capacity() as f64).round() as usize).clamp(1, self.capacity());
        rand::seq::index::sample(rng, self.capacity(), k).into_vec()
    }

    /// Writes rows `x` [k, ..shape] with labels `y` [k] into `slots` (k of them), only where `ok[i]`
    /// (a failed attack leaves its slot as it was).
    pub fn put(&mut self, slots: &[usize], x: &Tensor, y: &Tensor, ok: &[bool]) {
        let keep: Vec<i64> = (0..slots.len())
            .filter(|&i| ok[i])
            .map(|i| i as i64)
            .collect();
        if keep.is_empty() {
            return;
        }
        let dev = self.x.device();
        let src = Tensor::from_slice(&keep).to_device(x.device()); // [k']
        let to: Vec<i64> = keep.iter().map(|&i| slots[i as usize] as i64).collect();
        let to_t = Tensor::from_slice(&to).to_device(dev); // [k']
        let rows = x.index_select(0, &src).to_device(dev).to_kind(Kind::Float); // [k', ..shape]
        let labels = y.index_select(0, &src.to_device(y.device())).to_device(dev); // [k']
        tch::no_grad(|| {
            let _ = self.x.index_copy_(0, &to_t, &rows);
            let _ = self.y.index_copy_(0, &to_t, &labels);
        });
        for &s in &to {
            self.filled[s as usize] = true;
            self.writes[s as usize] += 1;
        }
    }

    /// `n` rows drawn uniformly with replacement from the filled slots: ([n, ..shape], [n]); None when
    /// the pool is empty.
    pub fn sample(&self, n: usize, rng: &mut ChaCha8Rng) -> Option<(Tensor, Tensor)> {
        let filled: Vec<i64> = (0..self.capacity())
            .filter(|&i| self.filled[i])
            .map(|i| i as i64)
            .collect();
        if filled.is_empty() || n == 0 {
            return None;
        }
        let pick: Vec<i64> = (0..n)
            .map(|_| filled[rng.gen_range(0..filled.len())])
            .collect();
        let idx = Tensor::from_slice(&pick).to_device(self.x.device()); // [n]
        Some((self.x.index_select(0, &idx), self.y.index_select(0, &idx)))
    }
}
