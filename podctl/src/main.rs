//! podctl: the command line for podd.

#[allow(dead_code)]
mod manifest;

fn main() {}
