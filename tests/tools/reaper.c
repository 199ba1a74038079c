/* reaper CMD ARGS...: runs CMD as a child subreaper, so daemons it starts
 * (mount.lunfs forks into the background) stay our descendants.  When CMD
 * ends, every descendant still running is a leak: it is named, sent
 * SIGTERM, then SIGKILL after 5 s, and reaped.  Exit status: CMD's, or 1
 * when something leaked. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int children(pid_t parent, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)) && n < max) {
		char p[300], buf[512];
		snprintf(p, sizeof(p), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f)) {
			char *rp = strrchr(buf, ')');
			int ppid = 0;
			char st;
			if (rp && sscanf(rp + 2, "%c %d", &st, &ppid) == 2 && ppid == parent)
				out[n++] = atoi(e->d_name);
		}
		fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: reaper CMD [ARGS...]\n");
		return 2;
	}
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	pid_t main_pid = fork();
	if (main_pid == 0) {
		execvp(argv[1], argv + 1);
		perror(argv[1]);
		_exit(127);
	}
	int status = 0, rc = 1;
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, 0);
		if (p == main_pid) {
			rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			break;
		}
		if (p < 0)
			break;
	}
	pid_t left[64];
	int n = children(getpid(), left, 64), leaked = 0;
	for (int i = 0; i < n; i++) {
		char p[64], comm[64] = "?";
		snprintf(p, sizeof(p), "/proc/%d/comm", left[i]);
		FILE *f = fopen(p, "r");
		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = 0;
			fclose(f);
		}
		int st;
		if (waitpid(left[i], &st, WNOHANG) == left[i])
			continue; /* exited, now reaped */
		fprintf(stderr, "reaper: %s left process %d (%s) running: killing it\n", argv[1], left[i], comm);
		kill(left[i], SIGTERM);
		leaked = 1;
	}
	for (int t = 0; leaked && t < 50 && children(getpid(), left, 64); t++) {
		while (waitpid(-1, &status, WNOHANG) > 0)
			;
		usleep(100000);
	}
	n = children(getpid(), left, 64);
	for (int i = 0; i < n; i++)
		kill(left[i], SIGKILL);
	while (waitpid(-1, &status, 0) > 0)
		;
	return leaked && rc == 0 ? 1 : rc;
}
