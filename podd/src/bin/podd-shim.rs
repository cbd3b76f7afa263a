//! `podd-shim`: the single-threaded helper that does podd's namespace, mount and process work.
//! See `podd::isolate::spec` for the contract.

fn main() {
    std::process::exit(podd::isolate::shim_main())
}
