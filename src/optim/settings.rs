//! Settings of the L-BFGS-B engine (paper §4.1 attack, §3 full-batch training): scipy's `fmin_l_bfgs_b`
//! defaults, validated by every builder method so that a bad value fails where it is set.

use super::line_search::WolfeSettings;
use super::OptimError;
use crate::Result;

/// Settings of [`super::minimize`]. Defaults are scipy's `fmin_l_bfgs_b` defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LbfgsbSettings {
    /// Memory m: number of (s, y) pairs kept. Default 10.
    pub history: usize,
    /// Most iterations per problem. Default 15000.
    pub max_iter: usize,
    /// Most objective evaluations per problem (the start point included). Default 15000.
    pub max_evals: usize,
    /// Stop when ‖P(x - g) - x‖_∞ <= pgtol. Default 1e-5.
    pub pgtol: f64,
    /// Stop when (f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= factr · 2.2e-16. Default 1e7.
    pub factr: f64,
    /// Strong-Wolfe line search constants.
    pub line_search: WolfeSettings,
    /// Problems per chunk in the two-loop recursion (cache blocking; 0 = all at once). Default 256.
    pub chunk: usize,
}

impl Default for LbfgsbSettings {
    fn default() -> Self {
        LbfgsbSettings {
            history: 10,
            max_iter: 15000,
            max_evals: 15000,
            pgtol: 1e-5,
            factr: 1e7,
            line_search: WolfeSettings {
                max_evals: 20,
                ..WolfeSettings::default()
            },
            chunk: 256,
        }
    }
}

/// `v` is finite and >= 0.
fn finite_nonnegative(v: f64) -> bool {
    v >= 0.0 && v.is_finite()
}

impl LbfgsbSettings {
    /// Check every field; [`OptimError::Setting`] (or the line search's error) names the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.history == 0 {
            return Err(OptimError::lbfgsb("history", self.history, ">= 1").into());
        }
        if self.max_evals == 0 {
            return Err(OptimError::lbfgsb("max_evals", self.max_evals, ">= 1").into());
        }
        if !finite_nonnegative(self.pgtol) {
            return Err(OptimError::lbfgsb("pgtol", self.pgtol, "finite and >= 0").into());
        }
        if !finite_nonnegative(self.factr) {
            return Err(OptimError::lbfgsb("factr", self.factr, "finite and >= 0").into());
        }
        self.line_search.validate()
    }
    /// Set the memory m (>= 1).
    pub fn with_history(mut self, m: usize) -> Result<Self> {
        self.history = m;
        self.validate().map(|_| self)
    }
    /// Set the iteration budget per problem.
    pub fn with_max_iter(mut self, n: usize) -> Result<Self> {
        self.max_iter = n;
        self.validate().map(|_| self)
    }
    /// Set the evaluation budget per problem (>= 1).
    pub fn with_max_evals(mut self, n: usize) -> Result<Self> {
        self.max_evals = n;
        self.validate().map(|_| self)
    }
    /// Set pgtol (>= 0).
    pub fn with_pgtol(mut self, pgtol: f64) -> Result<Self> {
        self.pgtol = pgtol;
        self.validate().map(|_| self)
    }
    /// Set factr (>= 0).
    pub fn with_factr(mut self, factr: f64) -> Result<Self> {
        self.factr = factr;
        self.validate().map(|_| self)
    }
    /// Set the line-search constants.
    pub fn with_line_search(mut self, ls: WolfeSettings) -> Result<Self> {
        self.line_search = ls;
        self.validate().map(|_| self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn setting_name(r: Result<LbfgsbSettings>) -> &'static str {
        match r {
            Err(Error::Optim(OptimError::Setting { name, .. })) => name,
            other => panic!("expected a setting error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_builders_name_the_bad_field() {
        let s = LbfgsbSettings::default();
        s.validate().unwrap();
        assert_eq!(setting_name(s.with_history(0)), "history");
        assert_eq!(setting_name(s.with_max_evals(0)), "max_evals");
        assert_eq!(setting_name(s.with_pgtol(f64::INFINITY)), "pgtol");
        assert_eq!(setting_name(s.with_factr(-1.0)), "factr");
        assert_eq!(s.with_max_iter(0).unwrap().max_iter, 0);
        let ls = WolfeSettings {
            c1: 0.95,
            ..WolfeSettings::default()
        };
        assert!(matches!(
            s.with_line_search(ls),
            Err(Error::Optim(OptimError::WolfeConstants { .. }))
        ));
    }

    #[test]
    fn message_names_setting_value_and_range() {
        let e = LbfgsbSettings::default()
            .with_pgtol(-1.0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`pgtol` = -1") && e.contains("finite and >= 0"),
            "{e}"
        );
    }
}
