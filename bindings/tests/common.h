/*
 * Helpers shared by the C tests of the respool C API: checks that count and
 * report, per-task run/destroy counters, a gate that holds a worker, and a
 * record of which result codes the tests produced.
 */
#ifndef RESPOOL_TEST_COMMON_H
#define RESPOOL_TEST_COMMON_H

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "respool.h"

#define CODE_COUNT 20

static int checks = 0;
static int failures = 0;
/* seen[code]: the code was returned (or written as an outcome) and expected. */
static int seen[CODE_COUNT];

static inline const char *last_error(void) {
    static char buf[1024];
    size_t needed = 0;
    if (respool_last_error_message(buf, sizeof buf, &needed) != RESPOOL_OK) {
        return "<respool_last_error_message failed>";
    }
    return buf;
}

#define CHECK(cond)                                                                \
    do {                                                                           \
        checks++;                                                                  \
        if (!(cond)) {                                                             \
            failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                          \
    } while (0)

/* Checks that `call` returns `expected` and records the code as produced. */
#define CHECK_RC(call, expected)                                                         \
    do {                                                                                 \
        respool_result rc_ = (call);                                                     \
        respool_result ex_ = (expected);                                                 \
        checks++;                                                                        \
        if (rc_ != ex_) {                                                                \
            failures++;                                                                  \
            fprintf(stderr, "%s:%d: %s returned %u (%s), expected %u (%s); details: %s\n", \
                    __FILE__, __LINE__, #call, (unsigned)rc_, respool_result_message(rc_), \
                    (unsigned)ex_, respool_result_message(ex_), last_error());           \
        } else if (rc_ < CODE_COUNT) {                                                   \
            seen[rc_] = 1;                                                               \
        }                                                                                \
    } while (0)

/* Checks a job's outcome (written by respool_job_wait and friends). */
#define CHECK_OUTCOME(outcome, expected)                                                  \
    do {                                                                                  \
        respool_result o_ = (outcome);                                                    \
        respool_result e_ = (expected);                                                   \
        checks++;                                                                         \
        if (o_ != e_) {                                                                   \
            failures++;                                                                   \
            fprintf(stderr, "%s:%d: outcome %u (%s), expected %u (%s)\n", __FILE__,       \
                    __LINE__, (unsigned)o_, respool_result_message(o_), (unsigned)e_,     \
                    respool_result_message(e_));                                          \
        } else if (o_ < CODE_COUNT) {                                                     \
            seen[o_] = 1;                                                                 \
        }                                                                                 \
    } while (0)

/* Sleeps at least `us` microseconds (a signal does not cut it short). */
static inline void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One task's record: how often run and destroy were called for it. */
typedef struct {
    atomic_int runs;
    atomic_int destroys;
} task_rec;

static inline void rec_run(void *user) {
    atomic_fetch_add(&((task_rec *)user)->runs, 1);
}

static inline void rec_destroy(void *user) {
    atomic_fetch_add(&((task_rec *)user)->destroys, 1);
}

static inline void rec_init(task_rec *r) {
    atomic_init(&r->runs, 0);
    atomic_init(&r->destroys, 0);
}

/* A gate: `gate_run` (a task) blocks its worker until `gate_open`. */
typedef struct {
    task_rec rec;
    atomic_int started;
    atomic_int open;
} gate;

static inline void gate_init(gate *g) {
    rec_init(&g->rec);
    atomic_init(&g->started, 0);
    atomic_init(&g->open, 0);
}

static inline void gate_run(void *user) {
    gate *g = user;
    atomic_fetch_add(&g->rec.runs, 1);
    atomic_store(&g->started, 1);
    while (!atomic_load(&g->open)) {
        sleep_us(100);
    }
}

static inline void gate_destroy(void *user) {
    atomic_fetch_add(&((gate *)user)->rec.destroys, 1);
}

static inline void gate_wait_started(gate *g) {
    while (!atomic_load(&g->started)) {
        sleep_us(100);
    }
}

static inline void gate_open(gate *g) {
    atomic_store(&g->open, 1);
}

/* A configuration with fixed workers and explicit CPU and memory capacity
 * (nothing detected, so the tests behave the same on every machine). */
static inline respool_config *test_config(size_t workers, const char *memory) {
    respool_config *cfg = NULL;
    CHECK_RC(respool_config_new(&cfg), RESPOOL_OK);
    CHECK_RC(respool_config_set_workers(cfg, workers), RESPOOL_OK);
    CHECK_RC(respool_config_set_capacity_str(cfg, RESPOOL_DIM_MEMORY, memory), RESPOOL_OK);
    CHECK_RC(respool_config_set_capacity(cfg, RESPOOL_DIM_CPU, 4000), RESPOOL_OK);
    return cfg;
}

static inline respool_pool *test_pool(size_t workers, const char *memory) {
    respool_config *cfg = test_config(workers, memory);
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    respool_config_free(cfg);
    if (pool == NULL) {
        fprintf(stderr, "cannot build a test pool: %s\n", last_error());
        exit(2);
    }
    return pool;
}

/* A description requiring `amount` of memory (text). */
static inline respool_task_desc *memory_desc(const char *amount) {
    respool_task_desc *d = NULL;
    CHECK_RC(respool_task_desc_new(&d), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_requirement_str(d, RESPOOL_DIM_MEMORY, amount), RESPOOL_OK);
    return d;
}

static inline int finish(const char *name) {
    printf("%s: %d checks, %d failures\n", name, checks, failures);
    return failures == 0 ? 0 : 1;
}

#endif /* RESPOOL_TEST_COMMON_H */
