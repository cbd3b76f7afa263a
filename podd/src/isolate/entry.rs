//! `podd-shim <infra|monitor|exec> <ID>`: argument parsing, reading the spec from stdin, and
//! dispatch. The id is only there for `ps`; the spec (JSON) comes on stdin, read to EOF before
//! anything else, so that no secret of it is ever in a world-readable /proc/PID/cmdline.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;

use super::spec::Launched;

const USAGE: &str = "usage: podd-shim <infra|monitor|exec> <ID> < SPEC-JSON";

/// The shim's `main`; returns the process exit code.
pub fn shim_main() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let (Some(cmd), Some(_id), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("{USAGE}");
        return 2;
    };
    let mut spec = String::new();
    if let Err(e) = std::io::stdin().lock().read_to_string(&mut spec) {
        eprintln!("podd-shim: cannot read the spec from stdin: {e}");
        return 2;
    }
    // What the shim runs (an exec'd command) must not inherit podd's spent pipe.
    if let Err(e) = super::launch::stdin_to_devnull() {
        eprintln!("podd-shim: {e}");
        return 2;
    }
    match cmd.to_str() {
        Some("infra") => parse(&spec).map_or(2, super::infra::run),
        Some("monitor") => parse(&spec).map_or(2, super::container::run),
        Some("exec") => parse(&spec).map_or(2, super::exec::run),
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}

fn parse<T: DeserializeOwned>(json: &str) -> Option<T> {
    serde_json::from_str(json)
        .map_err(|e| eprintln!("podd-shim: bad spec on stdin: {e}"))
        .ok()
}

/// Print the `Launched` line on stdout; 0 when it was written.
pub fn print_launched(launched: &Launched) -> i32 {
    let mut line = serde_json::to_string(launched).unwrap_or_default();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("podd-shim: cannot print the result: {e}");
            1
        }
    }
}
