/* The DynAMOS extension ABI: the one header an extension includes.
 *
 * An extension is a shared object that a host process (the node agent dynamosd, a
 * test, any program using core/extension_host.hpp) loads at runtime. It exports:
 *
 *   const uint32_t dynamos_extension_abi;                  = DYNAMOS_EXTENSION_ABI
 *   const dynamos_extension* dynamos_extension_entry_v1(void);
 *
 * Write both with DYNAMOS_EXTENSION_DEFINE(descriptor). The host reads the data
 * symbol first, without calling anything in the object: an object built for another
 * ABI number is refused before any of its code runs (apart from the static
 * constructors dlopen runs). The entry point's name carries the ABI number, so a
 * future ABI 2 object exports dynamos_extension_entry_v2 and can never be called
 * through the v1 signature by mistake.
 *
 * The descriptor returned by the entry point is read once per load. It names the
 * extension, its version, its tunables, and its hooks. Plain C, no C++ types cross
 * this boundary; every struct starts or ends with fields that let the host check it.
 *
 * Conventions (stated once, for every function pointer below):
 *  - A hook returns 0 on success and non-zero on failure. On failure it should first
 *    call host->set_error(host, "what was attempted on what: why"); the host adds the
 *    extension's name and hands the message to whoever called.
 *  - Any hook pointer may be NULL: the extension does not implement it. Calling an
 *    unimplemented hook through the host fails with a clear message.
 *  - An extension keeps its state in its own globals (static variables of the shared
 *    object). Hooks take no state pointer: calls reach the extension through dispatch
 *    stubs of the live-update engine, and during an upgrade in place the same stub
 *    leads to the old or to the new build, each with its own globals.
 *  - Dispatched hooks (attach .. call) may run concurrently on several threads; the
 *    extension synchronises its own state. Lifecycle hooks (init, fini, export_state,
 *    import_state, on_tunable) are called by the host one at a time per extension.
 *  - A hook must not call, directly or through the host, a dispatched hook of its own
 *    extension: during an upgrade that call would wait for the upgrade, which waits
 *    for the hook to return.
 *  - Strings are UTF-8, NUL-terminated, owned by the caller, valid only during the
 *    call. */
#ifndef DYNAMOS_EXTENSION_ABI_H
#define DYNAMOS_EXTENSION_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI number. Bump it on any incompatible change of this header. */
#define DYNAMOS_EXTENSION_ABI 1u
#define DYNAMOS_EXTENSION_ABI_SYMBOL "dynamos_extension_abi"
#define DYNAMOS_EXTENSION_ENTRY_SYMBOL "dynamos_extension_entry_v1"

/* ---- Tunables ----------------------------------------------------------------
 * Registered in the descriptor; the host parses, validates, stores and reports
 * them, so `dynamos ext list` and `dynamos ext set` need no code per extension.
 * Defaults and bounds are written as text, in the same syntax a user types. */
typedef enum dynamos_tunable_type {
  DYNAMOS_TUNABLE_INTEGER = 1,  /* int64: "42", "-7", "0x40" */
  DYNAMOS_TUNABLE_FLOAT = 2,    /* double: "0.25", "1e-3" */
  DYNAMOS_TUNABLE_DURATION = 3, /* nanoseconds: "250ms", "1.5s", "2min", "1h30m" */
  DYNAMOS_TUNABLE_SIZE = 4,     /* bytes: "4096", "64K", "64M", "2GiB", "1GB" (10^9) */
  DYNAMOS_TUNABLE_ENUM = 5,     /* one of `choices`, read as its index */
  DYNAMOS_TUNABLE_BOOLEAN = 6   /* "true/false", "yes/no", "on/off", "1/0" */
} dynamos_tunable_type;

/* The tunable may be changed while the extension runs (dynamos ext set). Without
 * it the value is fixed when the extension loads (environment, config file,
 * default) and carried across upgrades. */
#define DYNAMOS_TUNABLE_RUNTIME 1u

typedef struct dynamos_tunable {
  const char* name;          /* [a-z][a-z0-9_]*, unique within the extension */
  uint32_t type;             /* dynamos_tunable_type */
  uint32_t flags;            /* DYNAMOS_TUNABLE_RUNTIME or 0 */
  const char* default_value; /* text; must parse and lie within the range */
  const char* min;           /* inclusive bound as text, or NULL (integer, float, duration, size) */
  const char* max;           /* inclusive bound as text, or NULL */
  const char* const* choices; /* enum only: NULL-terminated list of names */
  const char* help;           /* one line: what it changes and in which unit */
} dynamos_tunable;

/* A tunable value as the extension sees it. `integer` holds integers, durations
 * (ns), sizes (bytes), enum indexes and booleans (0/1); `real` holds floats (and,
 * for convenience, every other type converted to double). `text` is the canonical
 * text form ("250ms", "64MiB", "adaptive", "true"). */
typedef struct dynamos_tunable_value {
  int64_t integer;
  double real;
  const char* text;
} dynamos_tunable_value;

/* ---- What the host offers an extension ---------------------------------------- */

/* A growable byte buffer owned by the host: state exports, reports, replies. */
typedef struct dynamos_ext_buffer dynamos_ext_buffer;

#define DYNAMOS_LOG_ERROR 0
#define DYNAMOS_LOG_WARNING 1
#define DYNAMOS_LOG_INFO 2
#define DYNAMOS_LOG_DEBUG 3

/* Handed to init(); valid until fini() returns. Each loaded build gets its own
 * (tunable indexes refer to that build's table). All functions are thread-safe. */
typedef struct dynamos_ext_host {
  uint32_t abi;  /* DYNAMOS_EXTENSION_ABI of the host */
  uint32_t size; /* sizeof(dynamos_ext_host) as the host was built */
  void* context; /* host private */

  /* The current value of tunable `index` (its position in the descriptor's table).
   * Lock-free; cheap enough to call on every tick. An out-of-range index returns 0. */
  int64_t (*get_integer)(const struct dynamos_ext_host* host, uint32_t index);
  double (*get_float)(const struct dynamos_ext_host* host, uint32_t index);

  /* The message for the non-zero return of the hook running on this thread. */
  void (*set_error)(const struct dynamos_ext_host* host, const char* message);

  /* Appends bytes to a host buffer. Returns 0, or non-zero when out of memory. */
  int (*append)(dynamos_ext_buffer* buffer, const void* data, size_t size);

  /* A line for the host's log (level DYNAMOS_LOG_*), prefixed with the extension. */
  void (*log)(const struct dynamos_ext_host* host, int level, const char* message);
} dynamos_ext_host;

/* ---- Subjects of hooks -------------------------------------------------------- */

/* What a hook acts on: a job of the gang scheduler (its processes and cgroup on this
 * node), or a guest of cycle stealing. */
typedef enum dynamos_subject_kind {
  DYNAMOS_SUBJECT_NODE = 0, /* the node itself: no processes (e.g. a periodic tick) */
  DYNAMOS_SUBJECT_JOB = 1,
  DYNAMOS_SUBJECT_GUEST = 2
} dynamos_subject_kind;

typedef struct dynamos_ext_attr {
  const char* key;
  const char* value;
} dynamos_ext_attr;

typedef struct dynamos_ext_subject {
  uint32_t size;       /* sizeof(dynamos_ext_subject) as the host was built */
  uint32_t kind;       /* dynamos_subject_kind */
  uint64_t id;         /* the job's or guest's id, unique on this node */
  const char* name;    /* human name, never NULL ("" when none) */
  const char* cgroup;  /* its cgroup relative to the root of each hierarchy, e.g.
                          "dynamos/node0/job7"; "" when it has none */
  const int32_t* pids; /* its processes on this node (threads are found from them) */
  size_t pid_count;
  const char* policy;            /* the policy the caller chose for this subject (e.g. the
                                    job's paging policy); "" = the extension's default */
  const dynamos_ext_attr* attrs; /* anything else, extension-specific */
  size_t attr_count;
  uint64_t now_ns; /* CLOCK_MONOTONIC when the caller issued the event */
} dynamos_ext_subject;

/* A subject hook. `report` may be NULL; when not, the hook may append one JSON
 * object (no trailing newline) describing what it did, e.g. the paging
 * extension's per-switch figures. */
typedef int (*dynamos_subject_hook)(const dynamos_ext_subject* subject, dynamos_ext_buffer* report);

/* The generic operation hook: `op` names an extension-specific operation, `args`
 * its arguments as text (often JSON; "" when none); the reply goes to `reply`. */
typedef int (*dynamos_call_hook)(const char* op, const char* args, dynamos_ext_buffer* reply);

/* ---- The descriptor ----------------------------------------------------------- */

typedef struct dynamos_extension {
  uint32_t abi;            /* DYNAMOS_EXTENSION_ABI */
  uint32_t size;           /* sizeof(dynamos_extension) */
  const char* name;        /* [a-z][a-z0-9]*: no '_' so that DYNAMOS_<EXT>_<KEY> is unambiguous */
  const char* version;     /* free text, e.g. "1.2.0" */
  const char* description; /* one line */

  const dynamos_tunable* tunables;
  uint32_t tunable_count;
  uint32_t reserved; /* 0 */

  /* -- Lifecycle: called directly by the host, one at a time. -- */

  /* Sets the extension up. Tunables are readable already. On failure the object is
   * unloaded without fini(): release what init took before returning non-zero. */
  int (*init)(const dynamos_ext_host* host);
  /* Tears down; `reason` is a DYNAMOS_FINI_* below. No dispatched hook of this build
   * runs during or after it. */
  void (*fini)(uint32_t reason);

  /* Upgrade in place. The old build's export_state writes its whole state to `out`
   * (any format; put a format tag first); the new build's import_state reads it and
   * may refuse it (non-zero): the upgrade is then abandoned and the old build keeps
   * serving with its state untouched. While these two run, no dispatched hook of
   * either build runs: calls wait at the dispatch points and are then answered by
   * the new build (or, when abandoned, the old one). See docs/extensions.md.
   * If the old build has export_state, the new one must have import_state or the
   * upgrade is refused; an old build without export_state hands over nothing and the
   * new build starts from init() alone. */
  int (*export_state)(dynamos_ext_buffer* out);
  int (*import_state)(const void* data, size_t size);

  /* A runtime change of tunable `index` is proposed; return non-zero to refuse it
   * (for constraints between tunables). The value is committed after this returns 0;
   * reading it through host->get_* during the call still gives the old value. */
  int (*on_tunable)(uint32_t index, const dynamos_tunable_value* value);

  /* -- Dispatched hooks: reached through the live-update engine's dispatch stubs. -- */

  /* A subject starts or stops being the extension's business: a job placed on this
   * node, a guest started (cycle stealing), and their ends. */
  dynamos_subject_hook attach;
  dynamos_subject_hook detach;
  /* Gang switches: the outgoing job is frozen before switch_out; the incoming job
   * is thawed after switch_in returns. */
  dynamos_subject_hook switch_out;
  dynamos_subject_hook switch_in;
  /* Periodic, during a quantum: `subject` is the running job, or the node. */
  dynamos_subject_hook tick;
  /* Everything else: policies, status, reports, extension-specific controls. */
  dynamos_call_hook call;
} dynamos_extension;

/* Why fini() is called. */
#define DYNAMOS_FINI_UNLOAD 0u /* unloaded: undo everything (thaw, remove cgroups...) */
#define DYNAMOS_FINI_UPGRADED                                  \
  1u /* replaced by a newer build that imported the state: the \
        things the state describes belong to it now; free      \
        only this build's private memory */
#define DYNAMOS_FINI_ABANDONED                               \
  2u /* this build was loaded for an upgrade that was        \
        abandoned: the old build keeps the state and what it \
        describes; free only this build's private memory */

/* The entry point's type, for hosts. */
typedef const dynamos_extension* (*dynamos_extension_entry_fn)(void);

/* Defines the two exported symbols. Use once, at file scope, in one source file:
 *   static const dynamos_extension descriptor = { DYNAMOS_EXTENSION_ABI, sizeof descriptor, ... };
 *   DYNAMOS_EXTENSION_DEFINE(descriptor)
 * Build the object with -fvisibility=hidden if you like: these two stay visible. */
#ifdef __cplusplus
#define DYNAMOS_EXTENSION_LINKAGE extern "C"
#else
#define DYNAMOS_EXTENSION_LINKAGE
#endif
#define DYNAMOS_EXTENSION_DEFINE(descriptor)                                                \
  DYNAMOS_EXTENSION_LINKAGE __attribute__((visibility("default")))                          \
  const uint32_t dynamos_extension_abi = DYNAMOS_EXTENSION_ABI;                             \
  DYNAMOS_EXTENSION_LINKAGE __attribute__((visibility("default"))) const dynamos_extension* \
  dynamos_extension_entry_v1(void) {                                                        \
    return &(descriptor);                                                                   \
  }

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DYNAMOS_EXTENSION_ABI_H */
