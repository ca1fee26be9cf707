//! Running experiments: stages, resumption, sharding.
