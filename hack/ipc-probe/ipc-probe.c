/*
 * ipc-probe: a tiny static helper for podd's e2e tests.
 *
 * It proves that the containers of one pod share the pod's IPC namespace
 * (SysV shared memory, POSIX message queues) and its /dev/shm, and lets a
 * test read the hostname a container sees (UTS namespace).
 *
 *   ipc-probe write WORD MSG   create/overwrite the three objects for WORD
 *   ipc-probe read WORD        print "sysv: MSG", "mqueue: MSG", "shm: MSG"
 *   ipc-probe hostname         print gethostname()
 *
 * WORD is a short name such as "podd42" ([A-Za-z0-9_.-], 1..200 chars).
 * From it:
 *   SysV shm key   = djb2(WORD) (a non-zero 32-bit value, never IPC_PRIVATE)
 *   POSIX mqueue   = "/WORD"
 *   POSIX shm      = "/WORD"  (i.e. /dev/shm/WORD)
 *
 * Objects are created mode 0666 with umask 0 so containers running as other
 * uids (e.g. nobody) in the same pod can read them. "write" leaves them in
 * place. "read" does not consume the queued message: mq_receive takes it and
 * it is sent back at once, so repeated reads keep working.
 *
 * Exit status: 0 success, 1 failure (missing object, syscall error),
 * 2 usage error. Errors go to stderr.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o ipc-probe ipc-probe.c -lrt
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_SIZE 4096          /* SysV segment and POSIX shm object size */
#define MAX_MSG (SEG_SIZE - 1) /* room for the terminating NUL */
#define MQ_MSGSIZE SEG_SIZE
#define MQ_MAXMSG 1

static const char *prog = "ipc-probe";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s write WORD MSG\n"
		"       %s read WORD\n"
		"       %s hostname\n"
		"WORD: 1..200 chars of [A-Za-z0-9_.-]; MSG: at most %d bytes\n",
		prog, prog, prog, MAX_MSG);
}

static int valid_word(const char *w)
{
	size_t n = strlen(w);

	if (n == 0 || n > 200 || strcmp(w, ".") == 0 || strcmp(w, "..") == 0)
		return 0;
	for (const char *p = w; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* djb2, folded so that the key is never IPC_PRIVATE (0). */
static key_t sysv_key(const char *w)
{
	uint32_t h = 5381;

	for (const unsigned char *p = (const unsigned char *)w; *p; p++)
		h = h * 33u + *p;
	if (h == 0)
		h = 5381;
	return (key_t)h;
}

/* ---- SysV shared memory ---------------------------------------------- */

static int sysv_write(key_t key, const char *msg)
{
	int id = shmget(key, SEG_SIZE, IPC_CREAT | 0666);
	if (id < 0) {
		fprintf(stderr, "%s: sysv: shmget(0x%08x): %s\n", prog,
			(unsigned)key, strerror(errno));
		return -1;
	}
	char *p = shmat(id, NULL, 0);
	if (p == (void *)-1) {
		fprintf(stderr, "%s: sysv: shmat(0x%08x): %s\n", prog,
			(unsigned)key, strerror(errno));
		return -1;
	}
	memset(p, 0, SEG_SIZE);
	memcpy(p, msg, strlen(msg));
	shmdt(p);
	return 0;
}

/* Returns 0 and fills buf, 1 if absent, -1 on error. */
static int sysv_read(key_t key, char *buf)
{
	int id = shmget(key, 0, 0);
	if (id < 0) {
		if (errno == ENOENT)
			return 1;
		fprintf(stderr, "%s: sysv: shmget(0x%08x): %s\n", prog,
			(unsigned)key, strerror(errno));
		return -1;
	}
	struct shmid_ds ds;
	if (shmctl(id, IPC_STAT, &ds) < 0) {
		fprintf(stderr, "%s: sysv: shmctl(IPC_STAT): %s\n", prog,
			strerror(errno));
		return -1;
	}
	const char *p = shmat(id, NULL, SHM_RDONLY);
	if (p == (void *)-1) {
		fprintf(stderr, "%s: sysv: shmat(0x%08x): %s\n", prog,
			(unsigned)key, strerror(errno));
		return -1;
	}
	size_t n = ds.shm_segsz < MAX_MSG ? ds.shm_segsz : MAX_MSG;
	memcpy(buf, p, n);
	buf[n] = '\0';
	shmdt(p);
	return 0;
}

/* ---- POSIX message queue --------------------------------------------- */

static int mq_write(const char *name, const char *msg)
{
	struct mq_attr attr = { .mq_maxmsg = MQ_MAXMSG, .mq_msgsize = MQ_MSGSIZE };
	mqd_t q = mq_open(name, O_CREAT | O_RDWR | O_NONBLOCK, 0666, &attr);
	if (q == (mqd_t)-1) {
		fprintf(stderr, "%s: mqueue: mq_open(%s): %s\n", prog, name,
			strerror(errno));
		return -1;
	}
	struct mq_attr cur;
	if (mq_getattr(q, &cur) < 0) {
		fprintf(stderr, "%s: mqueue: mq_getattr(%s): %s\n", prog, name,
			strerror(errno));
		mq_close(q);
		return -1;
	}
	size_t len = strlen(msg);
	if ((long)len > cur.mq_msgsize) {
		fprintf(stderr, "%s: mqueue: message of %zu bytes exceeds the queue's msgsize %ld\n",
			prog, len, cur.mq_msgsize);
		mq_close(q);
		return -1;
	}
	/* Drain what an earlier write left so the queue holds only MSG. */
	char *tmp = malloc((size_t)cur.mq_msgsize);
	if (!tmp) {
		fprintf(stderr, "%s: out of memory\n", prog);
		mq_close(q);
		return -1;
	}
	while (mq_receive(q, tmp, (size_t)cur.mq_msgsize, NULL) >= 0)
		;
	free(tmp);
	if (errno != EAGAIN) {
		fprintf(stderr, "%s: mqueue: mq_receive(%s): %s\n", prog, name,
			strerror(errno));
		mq_close(q);
		return -1;
	}
	if (mq_send(q, msg, len, 0) < 0) {
		fprintf(stderr, "%s: mqueue: mq_send(%s): %s\n", prog, name,
			strerror(errno));
		mq_close(q);
		return -1;
	}
	mq_close(q);
	return 0;
}

static int mq_read(const char *name, char *buf)
{
	mqd_t q = mq_open(name, O_RDWR | O_NONBLOCK);
	if (q == (mqd_t)-1) {
		if (errno == ENOENT)
			return 1;
		fprintf(stderr, "%s: mqueue: mq_open(%s): %s\n", prog, name,
			strerror(errno));
		return -1;
	}
	struct mq_attr cur;
	if (mq_getattr(q, &cur) < 0) {
		fprintf(stderr, "%s: mqueue: mq_getattr(%s): %s\n", prog, name,
			strerror(errno));
		mq_close(q);
		return -1;
	}
	char *tmp = malloc((size_t)cur.mq_msgsize);
	if (!tmp) {
		fprintf(stderr, "%s: out of memory\n", prog);
		mq_close(q);
		return -1;
	}
	unsigned prio = 0;
	ssize_t n = mq_receive(q, tmp, (size_t)cur.mq_msgsize, &prio);
	if (n < 0) {
		int e = errno;
		free(tmp);
		mq_close(q);
		if (e == EAGAIN) {
			fprintf(stderr, "%s: mqueue: %s exists but holds no message\n",
				prog, name);
			return 1;
		}
		fprintf(stderr, "%s: mqueue: mq_receive(%s): %s\n", prog, name,
			strerror(e));
		return -1;
	}
	/* Put it back so that reading is repeatable. */
	if (mq_send(q, tmp, (size_t)n, prio) < 0)
		fprintf(stderr, "%s: mqueue: warning: re-sending to %s: %s\n",
			prog, name, strerror(errno));
	size_t m = (size_t)n < MAX_MSG ? (size_t)n : MAX_MSG;
	memcpy(buf, tmp, m);
	buf[m] = '\0';
	free(tmp);
	mq_close(q);
	return 0;
}

/* ---- POSIX shared memory (/dev/shm) ---------------------------------- */

static int shm_write(const char *name, const char *msg)
{
	int fd = shm_open(name, O_CREAT | O_RDWR, 0666);
	if (fd < 0) {
		fprintf(stderr, "%s: shm: shm_open(%s): %s\n", prog, name,
			strerror(errno));
		return -1;
	}
	if (ftruncate(fd, SEG_SIZE) < 0) {
		fprintf(stderr, "%s: shm: ftruncate(%s): %s\n", prog, name,
			strerror(errno));
		close(fd);
		return -1;
	}
	char *p = mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "%s: shm: mmap(%s): %s\n", prog, name,
			strerror(errno));
		return -1;
	}
	memset(p, 0, SEG_SIZE);
	memcpy(p, msg, strlen(msg));
	munmap(p, SEG_SIZE);
	return 0;
}

static int shm_read(const char *name, char *buf)
{
	int fd = shm_open(name, O_RDONLY, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		fprintf(stderr, "%s: shm: shm_open(%s): %s\n", prog, name,
			strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "%s: shm: fstat(%s): %s\n", prog, name,
			strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		close(fd);
		buf[0] = '\0';
		return 0;
	}
	size_t size = (size_t)st.st_size;
	const char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "%s: shm: mmap(%s): %s\n", prog, name,
			strerror(errno));
		return -1;
	}
	size_t n = size < MAX_MSG ? size : MAX_MSG;
	memcpy(buf, p, n);
	buf[n] = '\0';
	munmap((void *)p, size);
	return 0;
}

/* ---- commands ---------------------------------------------------------- */

static int cmd_write(const char *word, const char *msg)
{
	char name[256];
	key_t key = sysv_key(word);

	if (strlen(msg) > MAX_MSG) {
		fprintf(stderr, "%s: MSG is %zu bytes, at most %d allowed\n",
			prog, strlen(msg), MAX_MSG);
		return 2;
	}
	snprintf(name, sizeof name, "/%s", word);
	int bad = 0;
	if (sysv_write(key, msg) < 0)
		bad = 1;
	if (mq_write(name, msg) < 0)
		bad = 1;
	if (shm_write(name, msg) < 0)
		bad = 1;
	if (bad)
		return 1;
	printf("wrote sysv key 0x%08x, mqueue %s, shm /dev/shm%s\n",
	       (unsigned)key, name, name);
	return 0;
}

static int cmd_read(const char *word)
{
	static char sv[SEG_SIZE], mq[SEG_SIZE], sh[SEG_SIZE];
	char name[256];
	key_t key = sysv_key(word);

	snprintf(name, sizeof name, "/%s", word);
	int rs = sysv_read(key, sv);
	int rm = mq_read(name, mq);
	int rh = shm_read(name, sh);

	if (rs == 0)
		printf("sysv: %s\n", sv);
	if (rm == 0)
		printf("mqueue: %s\n", mq);
	if (rh == 0)
		printf("shm: %s\n", sh);
	fflush(stdout);

	if (rs == 0 && rm == 0 && rh == 0)
		return 0;
	if (rs > 0)
		fprintf(stderr, "%s: missing: sysv shm segment with key 0x%08x\n",
			prog, (unsigned)key);
	if (rm > 0)
		fprintf(stderr, "%s: missing: POSIX message queue %s (or its message)\n",
			prog, name);
	if (rh > 0)
		fprintf(stderr, "%s: missing: POSIX shm object /dev/shm%s\n",
			prog, name);
	fprintf(stderr, "%s: read \"%s\" failed: sysv %s, mqueue %s, shm %s\n",
		prog, word, rs == 0 ? "ok" : rs > 0 ? "missing" : "error",
		rm == 0 ? "ok" : rm > 0 ? "missing" : "error",
		rh == 0 ? "ok" : rh > 0 ? "missing" : "error");
	return 1;
}

static int cmd_hostname(void)
{
	char h[HOST_NAME_MAX + 1];

	if (gethostname(h, sizeof h) < 0) {
		fprintf(stderr, "%s: gethostname: %s\n", prog, strerror(errno));
		return 1;
	}
	h[HOST_NAME_MAX] = '\0';
	printf("%s\n", h);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage();
		return 2;
	}
	umask(0);
	const char *cmd = argv[1];
	if (strcmp(cmd, "write") == 0 && argc == 4) {
		if (!valid_word(argv[2])) {
			fprintf(stderr, "%s: bad WORD \"%s\"\n", prog, argv[2]);
			usage();
			return 2;
		}
		return cmd_write(argv[2], argv[3]);
	}
	if (strcmp(cmd, "read") == 0 && argc == 3) {
		if (!valid_word(argv[2])) {
			fprintf(stderr, "%s: bad WORD \"%s\"\n", prog, argv[2]);
			usage();
			return 2;
		}
		return cmd_read(argv[2]);
	}
	if (strcmp(cmd, "hostname") == 0 && argc == 2)
		return cmd_hostname();
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		usage();
		return 0;
	}
	usage();
	return 2;
}
