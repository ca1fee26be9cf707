//! Batched L-BFGS-B (Byrd, Lu, Nocedal, Zhu 1995) over tensors [B, n]. (Interface placeholder while the
//! engine is written on its own branch; replaced at merge.)

use crate::Result;
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct LbfgsbSettings {
    pub history: usize,
    pub max_iter: usize,
    pub max_evals: usize,
    pub pgtol: f64,
    pub factr: f64,
}
impl Default for LbfgsbSettings {
    fn default() -> Self {
        LbfgsbSettings {
            history: 10,
            max_iter: 15000,
            max_evals: 15000,
            pgtol: 1e-5,
            factr: 1e7,
        }
    }
}
pub trait BatchObjective {
    fn eval(&mut self, x: &Tensor, idx: &Tensor) -> Result<(Tensor, Tensor)>;
}
pub enum Bounds {
    None,
    Scalar { lower: f64, upper: f64 },
    Tensors { lower: Tensor, upper: Tensor },
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Termination {
    Pgtol,
    Factr,
    MaxIter,
    MaxEvals,
    LineSearchFailed,
    NonFinite,
    Stopped,
}
pub struct Solution {
    pub x: Tensor,
    pub f: Tensor,
    pub iterations: Vec<usize>,
    pub evaluations: Vec<usize>,
    pub termination: Vec<Termination>,
}
pub struct IterInfo<'a> {
    pub iter: usize,
    pub active: usize,
    pub f: &'a Tensor,
    pub pg_norm: &'a Tensor,
    pub evals_total: usize,
}
pub trait Observer {
    fn observe(&mut self, info: &IterInfo) -> bool;
}
pub fn minimize(
    _obj: &mut dyn BatchObjective,
    _x0: &Tensor,
    _bounds: &Bounds,
    _settings: &LbfgsbSettings,
    _observer: Option<&mut dyn Observer>,
) -> Result<Solution> {
    Err(crate::Error::Other("engine not merged yet".into()))
}
