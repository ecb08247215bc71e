// A target for the attach checks (attach_test.cpp). Modes (argv[1]):
//   hold                 prints "held euid E egid G" every 20 ms (what a setuid copy runs)
//   exec-on-usr1 PATH    prints "ready" every 20 ms; on SIGUSR1 executes PATH hold
//   nondumpable          prctl(PR_SET_DUMPABLE, 0), then prints "ready" every 20 ms
//   exec-when-traced SH  a busy thread calls compute(); another thread executes SH (a
//                        shell loop printing "held") as soon as the process is traced
//   fork-on-usr1         prints "ready"; on SIGUSR1 forks, prints "forked CHILD"; the
//                        child prints "child" lines
//   seccomp-kill-mmap    a seccomp filter that kills the process on mmap or mprotect
//   main-exits           a thread prints "ready"; the main thread calls pthread_exit
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int compute(int x);

static volatile sig_atomic_t exec_now, fork_now;

static void on_usr1(int sig) {
  (void)sig;
  exec_now = 1;
}

static void on_usr1_fork(int sig) {
  (void)sig;
  fork_now = 1;
}

static void kill_on_mmap(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static void* print_ready(void* arg) {
  (void)arg;
  for (;;) {
    printf("ready %d\n", compute(7));
    usleep(20000);
  }
  return NULL;
}

__attribute__((noinline)) int compute(int x) {
  int acc = x * 3 + 1;
  __asm__ volatile("" : "+r"(acc));
  return x * 2 + (acc & 0);
}

static void* busy(void* arg) {
  (void)arg;
  int (*volatile fn)(int) = compute;
  long local = 0;
  for (;;)
    local += fn((int)(local & 1023));
  return NULL;
}

static int traced(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  int tracer = 0;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "TracerPid:", 10) == 0) tracer = atoi(line + 10);
  if (f) fclose(f);
  return tracer != 0;
}

static const char* shell_loop;

static void* exec_when_traced(void* arg) {
  (void)arg;
  while (!traced())
    usleep(100);
  execl(shell_loop, shell_loop, "-c", "while :; do echo held; sleep 0.02; done", (char*)NULL);
  _exit(127);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "hold";
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(mode, "hold") == 0) {
    for (;;) {
      printf("held euid %d egid %d\n", (int)geteuid(), (int)getegid());
      usleep(20000);
    }
  }
  if (strcmp(mode, "exec-on-usr1") == 0 && argc > 2) signal(SIGUSR1, on_usr1);
  if (strcmp(mode, "nondumpable") == 0) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (strcmp(mode, "fork-on-usr1") == 0) signal(SIGUSR1, on_usr1_fork);
  if (strcmp(mode, "main-exits") == 0) {
    pthread_t t;
    pthread_create(&t, NULL, print_ready, NULL);
    pthread_exit(NULL);
  }
  const char* line = "ready";
  if (strcmp(mode, "seccomp-kill-mmap") == 0) {
    printf("installing the filter\n");  // stdout's buffer exists before the filter
    kill_on_mmap();
  }
  if (strcmp(mode, "exec-when-traced") == 0 && argc > 2) {
    shell_loop = argv[2];
    pthread_t a, b;
    pthread_create(&a, NULL, busy, NULL);
    pthread_create(&b, NULL, exec_when_traced, NULL);
  }
  for (;;) {
    if (exec_now) {
      execl(argv[2], argv[2], "hold", (char*)NULL);
      _exit(127);
    }
    if (fork_now) {
      fork_now = 0;
      const pid_t child = fork();
      if (child == 0)
        line = "child";
      else
        printf("forked %d\n", (int)child);
    }
    printf("%s %d\n", line, compute(7));
    usleep(20000);
  }
}
