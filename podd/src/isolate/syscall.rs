//! Thin wrappers for the kernel calls `nix` 0.30 does not have (pidfd, close_range,
//! mount_setattr, SIOCSIFFLAGS) plus `fork`. Every `unsafe` of the shim lives here or names
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

/// Mark every fd from `first` up as close-on-exec (`close_range(first, ~0, CLOEXEC)`).
pub fn cloexec_from(first: RawFd) -> nix::Result<()> {
    // SAFETY: only sets a flag on fds; no Rust object is invalidated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
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

/// Make the mount at `path` and every mount below it read-only
/// (`mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`).
pub fn make_readonly_recursive(path: &CStr) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a valid C string and `attr` a correctly laid out struct of the size
    // passed; both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
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
