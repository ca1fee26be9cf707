//! Experiment files (YAML): typed schema, validation before any work starts.
