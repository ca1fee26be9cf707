//! Training with weight decay λ·Σw²/k (§4.2): full-batch L-BFGS and minibatch Adam.
