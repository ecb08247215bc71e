// dynamos_spank.so: the SPANK plugin that lets a Slurm user choose DynAMOS's paging at
// Slurm's own switches (PreemptMode=GANG suspends and resumes) for a job:
//
//   srun|sbatch|salloc --dynamos-paging=demand|selective|aggressive|adaptive
//   srun|sbatch|salloc --dynamos-guest          (the cycle-stealing guest class)
//
// Local and allocator contexts (srun, sbatch, salloc) validate the value: a bad one is
// refused with a message naming the option, the value and the choices, and the command
// fails. In the remote context (slurmstepd, root, on each node of the step) the choice
// is handed to the node's dynamosd in follow mode (`dynamosd --follow slurm`) as a small
// root-owned record, one per job:
//
//   <dir>/<job id>     dir = /run/dynamos/slurm, or the plugstack.conf argument dir=PATH
//   job=42
//   uid=1000
//   paging=adaptive
//   guest=0
//
// The record is created with O_EXCL|O_NOFOLLOW in a root-owned directory that is not
// writable by others (a symlink or a directory of someone else is refused), so a user
// can neither pre-create it nor redirect the write. The first step of a job that carries
// an option writes it (later steps of the job find it and leave it); that step removes
// it when it ends. A job that gives no option gets no record: dynamosd leaves it alone.
#include <errno.h>
#include <fcntl.h>
#include <slurm/spank.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

SPANK_PLUGIN(dynamos, 1);

enum { kOptPaging = 1, kOptGuest = 2 };

static const char* const kPolicies[] = {"demand", "selective", "aggressive", "adaptive"};
static const char* kDefaultDir = "/run/dynamos/slurm";

static char paging[16];  // "" when not given
static int guest;
static char record_dir[256];
static int wrote_record;  // this step created the record: it removes it at exit
static uint32_t record_job;

static int valid_policy(const char* value) {
  for (size_t i = 0; i < sizeof kPolicies / sizeof kPolicies[0]; ++i)
    if (strcmp(value, kPolicies[i]) == 0) return 1;
  return 0;
}

static int option_cb(int val, const char* optarg, int remote) {
  (void)remote;
  if (val == kOptGuest) {
    guest = 1;
    return 0;
  }
  if (!optarg || !valid_policy(optarg)) {
    slurm_error(
        "dynamos: invalid --dynamos-paging '%s': expected demand, selective, aggressive or "
        "adaptive",
        optarg ? optarg : "");
    return -1;
  }
  snprintf(paging, sizeof paging, "%s", optarg);
  return 0;
}

// Registered in slurm_spank_init (the only way that reaches sbatch and salloc too).
static struct spank_option options[] = {
    {"dynamos-paging", "POLICY",
     "DynAMOS paging at Slurm's suspends and resumes of this job: demand, selective, "
     "aggressive or adaptive (needs dynamosd --follow slurm on the nodes)",
     1, kOptPaging, option_cb},
    {"dynamos-guest", NULL,
     "run this job in DynAMOS's cycle-stealing guest class (idle priority) on its nodes", 0,
     kOptGuest, option_cb},
    SPANK_OPTIONS_TABLE_END};

// plugstack.conf arguments: dir=PATH (where the records go; absolute).
static int parse_args(int ac, char** av) {
  snprintf(record_dir, sizeof record_dir, "%s", kDefaultDir);
  for (int i = 0; i < ac; ++i) {
    if (strncmp(av[i], "dir=", 4) == 0 && av[i][4] == '/' &&
        strlen(av[i] + 4) < sizeof record_dir) {
      snprintf(record_dir, sizeof record_dir, "%s", av[i] + 4);
    } else {
      slurm_error("dynamos: unknown or bad plugstack.conf argument '%s' (expected dir=/PATH)",
                  av[i]);
      return -1;
    }
  }
  return 0;
}

int slurm_spank_init(spank_t sp, int ac, char** av) {
  if (parse_args(ac, av) != 0) return -1;
  for (struct spank_option* o = options; o->name; ++o) {
    spank_err_t e = spank_option_register(sp, o);
    if (e != ESPANK_SUCCESS) {
      slurm_error("dynamos: cannot register --%s: %s", o->name, spank_strerror(e));
      return -1;
    }
  }
  return 0;
}

// Opens (creating if missing, mode 0755) one directory level under `parent` and checks
// it is a real directory owned by root and writable by nobody else.
static int open_dir_at(int parent, const char* name) {
  if (mkdirat(parent, name, 0755) != 0 && errno != EEXIST) return -1;
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
    close(fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}

// The record directory, each component checked (no symlink, root's, not group/other
// writable). Returns an fd or -1 with errno.
static int open_record_dir(void) {
  char path[sizeof record_dir];
  snprintf(path, sizeof path, "%s", record_dir);
  int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  char* save = NULL;
  for (char* part = strtok_r(path, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
    int next = open_dir_at(fd, part);
    int e = errno;
    close(fd);
    if (next < 0) {
      errno = e;
      return -1;
    }
    fd = next;
  }
  return fd;
}

static int write_record(uint32_t job, uint32_t uid) {
  int dir = open_record_dir();
  if (dir < 0) {
    slurm_error("dynamos: cannot use %s for job records: %s", record_dir, strerror(errno));
    return -1;
  }
  char name[16];
  snprintf(name, sizeof name, "%u", job);
  int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    struct stat st;
    if (e == EEXIST && fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_uid == 0) {
      close(dir);
      return 0;  // an earlier step of this job wrote it
    }
    close(dir);
    if (e == EEXIST) {  // not ours: left alone (dynamosd ignores it), the job runs
      slurm_error(
          "dynamos: %s/%s exists and is not a record of this plugin; job %u is not "
          "followed",
          record_dir, name, job);
      return 0;
    }
    slurm_error("dynamos: cannot create %s/%s: %s", record_dir, name, strerror(e));
    return -1;
  }
  char text[128];
  int n = snprintf(text, sizeof text, "job=%u\nuid=%u\npaging=%s\nguest=%d\n", job, uid,
                   paging[0] ? paging : "demand", guest);
  int ok = n > 0 && write(fd, text, (size_t)n) == n;
  int e = errno;
  close(fd);
  if (!ok) {
    unlinkat(dir, name, 0);
    close(dir);
    slurm_error("dynamos: cannot write %s/%s: %s", record_dir, name, strerror(e));
    return -1;
  }
  close(dir);
  wrote_record = 1;
  record_job = job;
  return 0;
}

// After the options are known; in slurmstepd (remote, root) the record is written.
int slurm_spank_init_post_opt(spank_t sp, int ac, char** av) {
  (void)ac;
  (void)av;
  if (!spank_remote(sp) || (!paging[0] && !guest)) return 0;
  uint32_t job = 0;
  uid_t uid = 0;
  if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS ||
      spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS) {
    slurm_error("dynamos: the step has no job id or user id");
    return -1;
  }
  return write_record(job, (uint32_t)uid);
}

int slurm_spank_exit(spank_t sp, int ac, char** av) {
  (void)ac;
  (void)av;
  if (!spank_remote(sp) || !wrote_record) return 0;
  int dir = open_record_dir();
  if (dir < 0) return 0;
  char name[16];
  snprintf(name, sizeof name, "%u", record_job);
  unlinkat(dir, name, 0);
  close(dir);
  wrote_record = 0;
  return 0;
}
