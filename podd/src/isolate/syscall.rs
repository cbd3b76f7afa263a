//! Thin wrappers for the kernel calls `nix` 0.30 does not have (pidfd, close_range,
//! mount_setattr, openat2, open_tree, move_mount, SIOCSIFFLAGS) plus `fork`. Every `unsafe` of the shim lives here or names
//! its reason where it stands.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::ForkResult;

/// `pidfd_open(pid, 0)`: a CLOEXEC fd that refers to exactly this process.
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = Errno::result(fd)? as RawFd;
    // SAFETY: the kernel just returned this new fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> nix::Result<()> {
    // SAFETY: the fd is valid for the call (borrowed); a NULL siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Close every fd >= 3 except `keep`. Used right after a fork, before any `OwnedFd` that
/// refers to a closed number is used again; callers must forget such objects.
pub fn close_fds_except(keep: &[RawFd]) -> nix::Result<()> {
    let mut first: libc::c_uint = 3;
    let mut keep: Vec<libc::c_uint> = keep.iter().map(|&k| k as libc::c_uint).collect();
    keep.sort_unstable();
    for k in keep.into_iter().filter(|&k| k >= 3) {
        if k > first {
            close_range(first, k - 1)?;
        }
        first = k + 1;
    }
    close_range(first, libc::c_uint::MAX)
}

fn close_range(first: libc::c_uint, last: libc::c_uint) -> nix::Result<()> {
    // SAFETY: called only in a freshly forked single-threaded child where the closed fds'
    // owners are never used again (see `close_fds_except`).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    Errno::result(r).map(drop)
}

/// `struct mount_attr` from <linux/mount.h> (libc does not define it).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `struct open_how` from <linux/openat2.h>.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(root, path, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `path`
/// resolved by the kernel as if `root` were `/` (`..` and absolute symlinks never leave it;
/// /proc magic links refused), atomically. Retries the kernel's EAGAIN (a rename raced with
/// a `..` step).
pub fn open_in_root(root: BorrowedFd<'_>, path: &CStr) -> nix::Result<OwnedFd> {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    let mut tries = 0;
    loop {
        // SAFETY: `path` is a valid C string and `how` a correctly laid out struct of the size
        // passed; both outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match Errno::result(fd) {
            Err(Errno::EAGAIN) if tries < 32 => tries += 1,
            // SAFETY: the kernel just returned this new fd and nothing else owns it.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(e) => return Err(e),
        }
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// `open_tree(dirfd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE [| AT_EMPTY_PATH])`:
/// a detached copy of the mount tree at `path` (a recursive bind mount not attached anywhere
/// yet). An empty `path` means `dirfd` itself.
pub fn clone_tree(dirfd: Option<BorrowedFd<'_>>, path: &CStr) -> nix::Result<OwnedFd> {
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is a valid C string that outlives the call; the rest are integers.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    let fd = Errno::result(fd)? as RawFd;
    // SAFETY: the kernel just returned this new fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`: attach
/// the detached tree `tree` on the very inode `target` is an O_PATH fd of.
pub fn move_mount_onto(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: the empty C string literal is static; the fds are valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, ..)` on a mount tree fd (detached or
/// not): read-only when `readonly`, and the propagation type when not 0.
pub fn set_tree_attributes(
    tree: BorrowedFd<'_>,
    readonly: bool,
    propagation: u64,
) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    // SAFETY: as in `make_readonly_recursive`; the empty path is a static C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Make the fd number of `target` refer to what `new` refers to (`dup3(new, target,
/// O_CLOEXEC)`), atomically: whoever writes to `target` writes to the new file from then on.
pub fn replace_fd(new: BorrowedFd<'_>, target: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: `target` stays owned by its owner and open (dup3 closes and reuses the number
    // in one step), only the open file description behind it changes; `new` is unaffected.
    let r = unsafe { libc::dup3(new.as_raw_fd(), target.as_raw_fd(), libc::O_CLOEXEC) };
    Errno::result(r).map(drop)
}

/// Set IFF_UP on the interface `name` of the current network namespace.
pub fn interface_up(name: &str) -> nix::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(Errno::EINVAL);
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads and writes only the ifreq we pass, which lives on our stack.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS just filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above, the kernel only reads our ifreq.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
}

/// `fork()`. Sound here because the shim is single-threaded (no tokio, no threads): the child
/// may keep running Rust code, allocate and so on.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: podd-shim never starts a thread, so the child inherits no lock held by another
    // thread; this function is only reachable from the shim's entry point.
    unsafe { nix::unistd::fork() }
}

/// Leave the process now, without running destructors or flushing stdio buffers that a
/// parent also holds (the child of a fork must not flush the parent's data twice).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Shrink an idle shim's footprint before it settles into its wait loop: return free heap to
/// the kernel and drop the page-table entries of its unmodified file mappings (code and
/// read-only data of podd-shim and libc). Those pages stay in the page cache and come back on
/// the next page fault; the kernel's fault-around had mapped 64 KiB around each page touched
/// during set-up, which otherwise stays counted in the process's RSS/PSS for its whole life.
pub fn trim_memory() {
    // SAFETY: malloc_trim only releases free heap memory; no live allocation is touched.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let regions = pristine_file_mappings(&smaps);
    drop(smaps);
    // SAFETY: as above; the smaps text was freed.
    unsafe { libc::malloc_trim(0) };
    for (start, len) in regions {
        // SAFETY: each region is a private, non-writable file mapping without anonymous
        // (copy-on-write) pages, so its contents equal the file's: MADV_DONTNEED only unmaps
        // page-table entries and later accesses refill them from the same file pages.
        unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    }
}

/// (start, length) of the non-writable private file mappings of an smaps text that have no
/// anonymous pages.
fn pristine_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).unwrap_or("0");
            let range = usize::from_str_radix(lo, 16)
                .ok()
                .zip(usize::from_str_radix(hi, 16).ok());
            current = match range {
                Some((lo, hi))
                    if inode != "0"
                        && perms.starts_with('r')
                        && &perms[1..2] == "-"
                        && perms.ends_with('p') =>
                {
                    Some((lo, hi - lo))
                }
                _ => None,
            };
        } else if first == "Anonymous:" {
            if let Some(region) = current.take() {
                if fields.next() == Some("0") {
                    out.push(region);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_untouched_read_only_file_mappings_are_trimmed() {
        let smaps = "\
55d0a000-55d0b000 r--p 00000000 fe:01 123 /usr/bin/podd-shim
Rss:                   4 kB
Anonymous:             0 kB
55d0b000-55d0f000 r-xp 00001000 fe:01 123 /usr/bin/podd-shim
Anonymous:             0 kB
55d10000-55d11000 r--p 00005000 fe:01 123 /usr/bin/podd-shim
Anonymous:             4 kB
55d11000-55d12000 rw-p 00006000 fe:01 123 /usr/bin/podd-shim
Anonymous:             0 kB
55d13000-55d34000 rw-p 00000000 00:00 0 [heap]
Anonymous:             8 kB
7ffd0000-7ffd1000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            pristine_file_mappings(smaps),
            vec![(0x55d0a000, 0x1000), (0x55d0b000, 0x4000)]
        );
    }
}
