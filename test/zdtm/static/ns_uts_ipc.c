/*
 * ns_uts_ipc - a process started in UTS and IPC namespaces of its own
 * keeps them: after restore its host and domain names and the IPC
 * settings it changed are still its own (CRIU's utsns, ipcns-var).
 *
 * The driver starts it with CLONE_NEWUTS | CLONE_NEWIPC; it refuses to
 * run in its parent's namespaces, whose names it would change.  It sets
 * a host name, a domain name, kernel.msgmax, kernel.sem,
 * fs.mqueue.msg_max and kernel.msg_next_id, forks a child that checks
 * the same names after restore, and checks them itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define HOST "amber-ns-test"
#define DOMAIN "amber.example"

static const struct {
	const char *path, *value;
} sysctls[] = {
	{ "/proc/sys/kernel/msgmax", "12345" },
	{ "/proc/sys/kernel/sem", "251\t32001\t33\t129" },
	{ "/proc/sys/fs/mqueue/msg_max", "21" },
	{ "/proc/sys/kernel/msg_next_id", "77" },
};

static void own_namespace(const char *kind)
{
	char a[64], b[64];
	struct stat sa, sb;

	snprintf(a, sizeof(a), "/proc/self/ns/%s", kind);
	snprintf(b, sizeof(b), "/proc/%d/ns/%s", getppid(), kind);
	if (stat(a, &sa) || stat(b, &sb))
		fail("stat %s, %s: %s", a, b, strerror(errno));
	if (sa.st_ino == sb.st_ino)
		fail("not in a %s namespace of its own (start it with CLONE_NEW%s)", kind, kind);
}

static void write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	ssize_t n = strlen(value);

	if (fd < 0 || write(fd, value, n) != n)
		fail("write %s to %s: %s", value, path, strerror(errno));
	close(fd);
}

static void expect_file(const char *path, const char *want)
{
	char buf[128];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		fail("read %s: %s", path, strerror(errno));
	buf[n] = 0;
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = 0;
	if (strcmp(buf, want))
		fail("%s is \"%s\", want \"%s\"", path, buf, want);
}

/* check fails unless the names and settings are those set up. */
static void check(const char *who)
{
	struct utsname u;
	unsigned i;

	if (uname(&u))
		fail("%s: uname: %s", who, strerror(errno));
	if (strcmp(u.nodename, HOST) || strcmp(u.domainname, DOMAIN))
		fail("%s: host name \"%s\", domain \"%s\", want \"%s\", \"%s\"", who, u.nodename, u.domainname, HOST,
		     DOMAIN);
	for (i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		expect_file(sysctls[i].path, sysctls[i].value);
}

int main(void)
{
	int ready[2], status;
	pid_t child;
	unsigned i;
	char c;

	test_init();
	own_namespace("uts");
	own_namespace("ipc");
	if (sethostname(HOST, strlen(HOST)) || setdomainname(DOMAIN, strlen(DOMAIN)))
		fail("set names: %s", strerror(errno));
	for (i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		write_file(sysctls[i].path, sysctls[i].value);
	check("setup");
	if (pipe(ready))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		sigset_t set;
		int sig;

		close(ready[0]);
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		if (write(ready[1], "x", 1) != 1)
			_exit(2);
		sigwait(&set, &sig);
		check("child");
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	test_ready();
	test_wait_stop();
	check("parent");
	if (kill(child, SIGUSR1) || waitpid(child, &status, 0) != child)
		fail("wake child %d: %s", child, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child failed its check (status %#x)", status);
	pass();
}
