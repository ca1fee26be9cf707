//! TorchScript classifiers (AlexNet and users' own models) behind the `Classifier` interface (paper §3, §4.2 Fig 5).
