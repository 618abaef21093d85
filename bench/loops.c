// SPDX-License-Identifier: Apache-2.0
/*
 * Tight loops for the benches (bench_monitor.py, bench_apparmor.py, bench_lsm.py), compiled at
 * bench time: Python's own overhead per iteration would hide what a BPF program or an LSM adds
 * to a syscall. Prints "WALL_NS CPU_NS": wall and CPU time per iteration.
 *   loops open N PATH     open(PATH, O_RDONLY) + close
 *   loops exec N [PROG]   fork + execve(PROG, argv[0] "true") + waitpid; PROG is /bin/true by
 *                         default (a static busybox runs as its `true` applet)
 *   loops getppid N       the cheapest syscall: shows the syscall-tracepoint slow path
 * LOOP_CPU=K pins the loop (and the children it forks) to CPU K.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double clock_ns(clockid_t clock)
{
	struct timespec t;

	clock_gettime(clock, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

/* CPU time of this process and of its reaped children */
static double cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_CHILDREN, &ru);
	return clock_ns(CLOCK_PROCESS_CPUTIME_ID) +
	       (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 0;
	const char *cpu = getenv("LOOP_CPU");
	double start, start_cpu;
	long i;

	if (cpu) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(atoi(cpu), &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			return 3;
	}

	if (argc < 3 || n <= 0) {
		fprintf(stderr, "usage: loops open N PATH | exec N [PROG] | getppid N\n");
		return 2;
	}
	start_cpu = cpu_ns();
	start = clock_ns(CLOCK_MONOTONIC);
	if (!strcmp(argv[1], "open") && argc > 3) {
		for (i = 0; i < n; i++) {
			int fd = open(argv[3], O_RDONLY);

			if (fd < 0)
				return 1;
			close(fd);
		}
	} else if (!strcmp(argv[1], "exec")) {
		const char *prog = argc > 3 ? argv[3] : "/bin/true";

		for (i = 0; i < n; i++) {
			pid_t pid = fork();
			int status;

			if (pid == 0) {
				execl(prog, "true", (char *)NULL);
				_exit(127);
			}
			/* an exec that failed (or was denied) must not pass for a fast one */
			if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
				return 1;
		}
	} else if (!strcmp(argv[1], "getppid")) {
		for (i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else {
		return 2;
	}
	printf("%.1f %.1f\n", (clock_ns(CLOCK_MONOTONIC) - start) / n, (cpu_ns() - start_cpu) / n);
	return 0;
}
