/*
 * syscall-probe: tries syscalls a seccomp profile decides about and prints, one line each,
 * "NAME: ok" or "NAME: ERRNO-NAME". Used by podd's seccomp end-to-end tests.
 *
 *   syscall-probe all
 *
 * Each probe that could change the probing process (clone, personality) runs in a child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *errno_name(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case ENOMEM: return "ENOMEM";
    default: return strerror(e);
    }
}

static void report(const char *name, long r)
{
    if (r < 0)
        printf("%s: %s\n", name, errno_name(errno));
    else
        printf("%s: ok\n", name);
}

/* Runs fn in a child; the child's exit status is 0 for success, else the errno. */
static void in_child(const char *name, int (*fn)(void))
{
    pid_t pid = fork();
    if (pid < 0) {
        report(name, -1);
        return;
    }
    if (pid == 0)
        _exit(fn());
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        printf("%s: ok\n", name);
    else if (WIFEXITED(status))
        printf("%s: %s\n", name, errno_name(WEXITSTATUS(status)));
    else
        printf("%s: signal %d\n", name, WTERMSIG(status));
}

static int do_clone(unsigned long flags)
{
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r < 0)
        return errno;
    if (r == 0)
        _exit(0);
    waitpid((pid_t)r, 0, 0);
    return 0;
}

static int clone_plain(void) { return do_clone(0); }
static int clone_newuser(void) { return do_clone(CLONE_NEWUSER); }

struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static int clone3_plain(void)
{
    struct clone3_args a;
    memset(&a, 0, sizeof a);
    a.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &a, sizeof a);
    if (r < 0)
        return errno;
    if (r == 0)
        _exit(0);
    waitpid((pid_t)r, 0, 0);
    return 0;
}

static int personality_linux(void) { return personality(PER_LINUX) < 0 ? errno : 0; }
static int personality_odd(void) { return personality(0x0400000 | PER_LINUX) < 0 ? errno : 0; }

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "all") != 0) {
        fprintf(stderr, "usage: syscall-probe all\n");
        return 2;
    }
    setvbuf(stdout, 0, _IOLBF, 0);
    in_child("clone", clone_plain);
    in_child("clone_newuser", clone_newuser);
    in_child("clone3", clone3_plain);
    in_child("personality_linux", personality_linux);
    in_child("personality_odd", personality_odd);
    report("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
    report("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
    char params[120];
    memset(params, 0, sizeof params);
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
    report("syscall_500", syscall(500, 0, 0, 0));
    return 0;
}
