//! Shared command-line plumbing for the `gen-compile` and `gen-train` binaries.
