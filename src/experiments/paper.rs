//! Which models and attacks of an experiment follow the paper's protocol, i.e. resolve to the same specs
//! as `experiments/paper.yaml` (embedded at build time): only those get a verdict against the paper's
//! numbers in the report; the others show the paper's value for reference.

use crate::config::{AttackStage, Experiment, ModelSpec, TrainSet};

/// `experiments/paper.yaml`, as built into this binary.
const PAPER_YAML: &str = include_str!("../../experiments/paper.yaml");

/// The paper's experiment (parsed without validation: it needs no data to be compared against).
fn paper() -> Option<Experiment> {
    serde_norway::from_str(PAPER_YAML).ok()
}

/// A model spec with its seed resolved.
fn resolved(spec: &ModelSpec, exp: &Experiment) -> ModelSpec {
    ModelSpec {
        seed: Some(spec.seed.unwrap_or(exp.seed)),
        ..spec.clone()
    }
}

/// Whether model `name` of `exp` is trained exactly as `paper.yaml`'s model of that name (same
/// architecture, decay, optimiser and stopping rule, training set, seed, and P1/P2 split seed).
pub(crate) fn model_follows_paper(exp: &Experiment, name: &str) -> bool {
    let (Some(p), Some(ours)) = (paper(), exp.model(name)) else {
        return false;
    };
    let Some(theirs) = p.model(name) else {
        return false;
    };
    let split_ok = ours.train_on == TrainSet::Train || exp.data.split_seed == p.data.split_seed;
    split_ok && resolved(ours, exp) == resolved(theirs, &p)
}

/// Whether an attack stage of `exp` is `paper.yaml`'s attack of that model (the whole split, the same
/// targets and settings; the batch only chunks the work) on a model that follows the paper.
pub(crate) fn attack_follows_paper(exp: &Experiment, a: &AttackStage) -> bool {
    let Some(p) = paper() else {
        return false;
    };
    if !model_follows_paper(exp, &a.model) {
        return false;
    }
    p.attacks.iter().any(|pa| {
        pa.model == a.model && {
            let mut ours = a.spec.clone();
            ours.batch = pa.spec.batch;
            ours.split_seed = exp.data.split_seed;
            let mut theirs = pa.spec.clone();
            theirs.split_seed = p.data.split_seed;
            ours == theirs
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_yaml_follows_itself_and_a_shortened_model_does_not() {
        let p = paper().expect("paper.yaml parses");
        assert!(p.models.iter().all(|m| model_follows_paper(&p, &m.name)));
        assert!(p.attacks.iter().all(|a| attack_follows_paper(&p, a)));
        let quick: Experiment =
            serde_norway::from_str(include_str!("../../experiments/quick.yaml")).unwrap();
        assert!(
            !model_follows_paper(&quick, "N100-100-10"),
            "max_iter 250 is not the protocol"
        );
        assert!(quick
            .attacks
            .iter()
            .all(|a| !attack_follows_paper(&quick, a)));
    }
}
