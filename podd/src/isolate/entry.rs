//! `podd-shim <infra|monitor|exec> <SPEC-JSON>`: argument parsing and dispatch.

use std::io::Write;

use serde::de::DeserializeOwned;

use super::spec::Launched;

const USAGE: &str = "usage: podd-shim <infra|monitor|exec> <SPEC-JSON>";

/// The shim's `main`; returns the process exit code.
pub fn shim_main() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let (Some(cmd), Some(spec), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("{USAGE}");
        return 2;
    };
    let Some(spec) = spec.to_str().map(str::to_owned) else {
        eprintln!("podd-shim: the spec is not UTF-8");
        return 2;
    };
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
        .map_err(|e| eprintln!("podd-shim: bad spec: {e}"))
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
