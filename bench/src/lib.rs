//! What the benchmark's programs share.

pub mod http;

pub mod workers;
