# Shared helpers for hack/ scripts. Source it; it sets `repo` and defines log/die.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "$*"; exit 1; }
need_root() { ((EUID == 0)) || die "run as root: podd creates namespaces and mounts"; }
# Cargo may live in ~/.cargo/bin without being on PATH in a fresh shell.
[[ -d $HOME/.cargo/bin ]] && PATH=$HOME/.cargo/bin:$PATH
