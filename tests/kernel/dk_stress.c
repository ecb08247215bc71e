// Helper run inside the test VM (static, no libraries):
//   dk_stress switch FUNC VA VB PAIRS   switch FUNC to VB, then PAIRS times switch
//                                       to VA and revert back to VB: 2*PAIRS switches
//   dk_stress bench BLOCKS              ns per getppid() and per getpid() call
// A C program rather than a shell loop: 100,000 switches must take seconds under TCG.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int dev = -1;
static char reply[4096];

// One transaction on /dev/dynamos; returns 0 and fills `reply`, or -1.
static int command(const char* cmd) {
  ssize_t n = write(dev, cmd, strlen(cmd));
  ssize_t r = read(dev, reply, sizeof reply - 1);
  reply[r > 0 ? r : 0] = '\0';
  if (n < 0) {
    fprintf(stderr, "dk_stress: '%s' failed: %s", cmd, reply);
    return -1;
  }
  return 0;
}

static long update_id(void) {
  const char* at = strstr(reply, "update=");
  return at ? atol(at + 7) : -1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int stress(const char* func, const char* va, const char* vb, long pairs) {
  char cmd[256];
  long base, id, i;
  double t0 = now();

  dev = open("/dev/dynamos", O_RDWR);
  if (dev < 0) {
    perror("dk_stress: open /dev/dynamos");
    return 1;
  }
  snprintf(cmd, sizeof cmd, "switch %s %s", func, vb);
  if (command(cmd) || (base = update_id()) < 0) return 1;
  for (i = 0; i < pairs; i++) {
    snprintf(cmd, sizeof cmd, "switch %s %s", func, va);
    if (command(cmd) || (id = update_id()) < 0) return 1;
    snprintf(cmd, sizeof cmd, "revert %ld", id);
    if (command(cmd)) return 1;
  }
  snprintf(cmd, sizeof cmd, "revert %ld", base);
  if (command(cmd)) return 1;
  printf("DYNAMOS-FIGURE switch: switches=%ld seconds=%.2f\n", 2 * pairs + 2, now() - t0);
  return 0;
}

// Blocks of getppid() (the function under test) alternate with blocks of getpid()
// (a control that is never redirected, of the same cost): host noise hits both
// alike. Per syscall, the fastest block is its cost: interference only adds time.
static int bench(long blocks) {
  const long per_block = 1000;
  long expected = syscall(SYS_getppid), wrong = 0, b, i;
  double best_ppid = 1e9, best_pid = 1e9, t;

  for (b = 0; b < blocks; b++) {
    t = now();
    for (i = 0; i < per_block; i++)
      if (syscall(SYS_getppid) != expected) wrong++;
    t = now() - t;
    if (t < best_ppid) best_ppid = t;
    t = now();
    for (i = 0; i < per_block; i++)
      syscall(SYS_getpid);
    t = now() - t;
    if (t < best_pid) best_pid = t;
  }
  printf("ppid_ns=%.1f pid_ns=%.1f wrong=%ld\n", best_ppid * 1e9 / per_block,
         best_pid * 1e9 / per_block, wrong);
  return wrong != 0;
}

int main(int argc, char** argv) {
  if (argc == 6 && !strcmp(argv[1], "switch"))
    return stress(argv[2], argv[3], argv[4], atol(argv[5]));
  if (argc == 3 && !strcmp(argv[1], "bench")) return bench(atol(argv[2]));
  fprintf(stderr, "usage: dk_stress switch FUNC VA VB PAIRS | bench BLOCKS\n");
  return 2;
}
