//! podctl: the command line for podd.

#![allow(dead_code)]

mod client;
mod logs;
mod manifest;
mod output;
mod resolve;

fn main() {}
