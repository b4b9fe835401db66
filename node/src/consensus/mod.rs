//! Consensus: the Clique proof-of-authority engine (EIP-225).

pub mod clique;
