/*
 * Tests of the respool C API against the real librespool (static or shared).
 * Every test checks what C can observe: result codes and their messages, job
 * outcomes, and how often each task's run and destroy callbacks were called.
 */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024ull * 1024ull)

static char tmpdir[256];

static void path_in_tmp(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* ------------------------------------------------------------------------ */

static void test_version(void) {
    CHECK(strcmp(RESPOOL_VERSION, respool_version()) == 0);
    char composed[64];
    snprintf(composed, sizeof composed, "%d.%d.%d", RESPOOL_VERSION_MAJOR, RESPOOL_VERSION_MINOR,
             RESPOOL_VERSION_PATCH);
    CHECK(strcmp(composed, RESPOOL_VERSION) == 0);
}

static void test_messages(void) {
    for (unsigned i = 0; i < CODE_COUNT; i++) {
        const char *m = respool_result_message(i);
        CHECK(m != NULL && m[0] != '\0');
        for (unsigned j = 0; j < i; j++) {
            CHECK(strcmp(m, respool_result_message(j)) != 0);
        }
    }
    CHECK(strcmp(respool_result_message(RESPOOL_OK), "success") == 0);
    CHECK(strstr(respool_result_message(RESPOOL_NEVER_FITS), "never run") != NULL);
    CHECK(strstr(respool_result_message(RESPOOL_NULL_ARGUMENT), "NULL") != NULL);
    CHECK(strstr(respool_result_message(RESPOOL_TIMED_OUT), "not finished") != NULL);
    CHECK(strstr(respool_result_message(RESPOOL_PANICKED), "panic") != NULL);
    CHECK(strcmp(respool_result_message(CODE_COUNT), "unknown respool result code") == 0);
    CHECK(strcmp(respool_result_message(0xFFFFFFFFu), "unknown respool result code") == 0);
    /* Pinned numbers: part of the ABI. */
    CHECK(RESPOOL_OK == 0 && RESPOOL_NULL_ARGUMENT == 1 && RESPOOL_NEVER_FITS == 4);
    CHECK(RESPOOL_STORE_IO == 13 && RESPOOL_TASK_TIMED_OUT == 19);
}

static void test_last_error(void) {
    CHECK_RC(respool_config_set_workers(NULL, 1), RESPOOL_NULL_ARGUMENT);
    char buf[256];
    size_t needed = 0;
    CHECK_RC(respool_last_error_message(buf, sizeof buf, &needed), RESPOOL_OK);
    CHECK(strcmp(buf, "respool_config_set_workers: argument `config` is NULL") == 0);
    CHECK(needed == strlen(buf));
    /* Reading it does not clear it; truncation is snprintf-like. */
    char small[8];
    size_t needed2 = 0;
    CHECK_RC(respool_last_error_message(small, sizeof small, &needed2), RESPOOL_OK);
    CHECK(needed2 == needed);
    CHECK(strlen(small) == 7 && strncmp(small, buf, 7) == 0);
    /* Size query. */
    size_t needed3 = 0;
    CHECK_RC(respool_last_error_message(NULL, 0, &needed3), RESPOOL_OK);
    CHECK(needed3 == needed);
    /* A successful call clears it. */
    respool_config *cfg = NULL;
    CHECK_RC(respool_config_new(&cfg), RESPOOL_OK);
    CHECK_RC(respool_last_error_message(buf, sizeof buf, &needed), RESPOOL_OK);
    CHECK(buf[0] == '\0' && needed == 0);
    respool_config_free(cfg);
    /* Each thread has its own message (checked in test_many_threads). */
}

/* Every function, with NULL for each pointer argument. */
static void test_null_arguments(void) {
    respool_config *cfg = NULL;
    respool_task_desc *desc = NULL;
    respool_pool *pool = NULL;
    respool_job *job = NULL;
    respool_result outcome = RESPOOL_INTERNAL;

    CHECK_RC(respool_last_error_message(NULL, 4, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "`buf` is NULL") != NULL);

    /* config */
    CHECK_RC(respool_config_new(NULL), RESPOOL_NULL_ARGUMENT);
    respool_config_free(NULL);
    CHECK_RC(respool_config_set_workers(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_capacity(NULL, RESPOOL_DIM_CPU, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_capacity_str(NULL, RESPOOL_DIM_CPU, "1"), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_headroom(NULL, RESPOOL_DIM_CPU, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_admission(NULL, RESPOOL_POLICY_DEFER, 0), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_placement(NULL, RESPOOL_PLACEMENT_FIRST_FIT),
             RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_max_waiting(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_critical_reserve(NULL, RESPOOL_DIM_CPU, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_learning(NULL, true), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_learning_min_executions(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_learning_confidence(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_learning_fallback(NULL, RESPOOL_DIM_CPU, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_profile_path(NULL, "x"), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_config_set_stack_size(NULL, 1 << 20), RESPOOL_NULL_ARGUMENT);
    cfg = test_config(1, "64MiB");
    CHECK_RC(respool_config_set_capacity_str(cfg, RESPOOL_DIM_CPU, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "`amount` is NULL") != NULL);
    CHECK_RC(respool_config_set_profile_path(cfg, NULL), RESPOOL_NULL_ARGUMENT);

    /* task description */
    CHECK_RC(respool_task_desc_new(NULL), RESPOOL_NULL_ARGUMENT);
    respool_task_desc_free(NULL);
    CHECK_RC(respool_task_desc_set_class(NULL, "c"), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_requirement(NULL, RESPOOL_DIM_CPU, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_requirement_str(NULL, RESPOOL_DIM_CPU, "1"),
             RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_priority(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_deadline_ms(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_timeout_ms(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_critical(NULL, true), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_size_hint(NULL, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_class(desc, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_task_desc_set_requirement_str(desc, RESPOOL_DIM_CPU, NULL),
             RESPOOL_NULL_ARGUMENT);

    /* pool: outputs are untouched on failure */
    respool_pool *sentinel_pool = (respool_pool *)(void *)&outcome;
    pool = sentinel_pool;
    CHECK_RC(respool_pool_new(NULL, &pool), RESPOOL_NULL_ARGUMENT);
    CHECK(pool == sentinel_pool);
    CHECK_RC(respool_pool_new(cfg, NULL), RESPOOL_NULL_ARGUMENT);
    respool_pool_free(NULL);
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    CHECK(pool != sentinel_pool && pool != NULL);

    /* submit: destroy is called once on every refusal, run never */
    task_rec r;
    rec_init(&r);
    respool_job *sentinel_job = (respool_job *)(void *)&r;
    job = sentinel_job;
    CHECK_RC(respool_pool_submit(NULL, NULL, rec_run, &r, rec_destroy, &job),
             RESPOOL_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "`pool` is NULL") != NULL);
    CHECK_RC(respool_pool_submit(pool, NULL, NULL, &r, rec_destroy, &job), RESPOOL_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "`run` is NULL") != NULL);
    CHECK(job == sentinel_job);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 2);
    /* NULL destroy and NULL job_out are allowed (detached, nothing to free). */
    task_rec d;
    rec_init(&d);
    CHECK_RC(respool_pool_submit(pool, NULL, rec_run, &d, NULL, NULL), RESPOOL_OK);

    CHECK_RC(respool_pool_shutdown(NULL), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_pool_shutdown_now(NULL, NULL), RESPOOL_NULL_ARGUMENT);
    respool_stats stats;
    CHECK_RC(respool_pool_stats(NULL, &stats), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_pool_stats(pool, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_pool_set_capacity(NULL, RESPOOL_DIM_MEMORY, 1), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_pool_export_profiles(NULL, "x"), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_pool_export_profiles(pool, NULL), RESPOOL_NULL_ARGUMENT);
    size_t n = 77;
    CHECK_RC(respool_pool_import_profiles(NULL, "x", &n), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_pool_import_profiles(pool, NULL, &n), RESPOOL_NULL_ARGUMENT);
    CHECK(n == 77);

    /* job */
    task_rec jr;
    rec_init(&jr);
    CHECK_RC(respool_pool_submit(pool, NULL, rec_run, &jr, rec_destroy, &job), RESPOOL_OK);
    CHECK_RC(respool_job_wait(NULL, &outcome), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_job_wait(job, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_job_wait_timeout(NULL, 1, &outcome), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_job_wait_timeout(job, 1, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_job_status(NULL, &outcome), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_job_status(job, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK_RC(respool_job_cancel(NULL, NULL), RESPOOL_NULL_ARGUMENT);
    CHECK(outcome == RESPOOL_INTERNAL); /* never written by a failed call */
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK_RC(respool_job_cancel(job, NULL), RESPOOL_OK); /* prevented_out may be NULL */
    respool_job_free(NULL);
    respool_job_free(job);

    /* Optional outputs. */
    CHECK_RC(respool_pool_import_profiles(pool, "/nonexistent-respool-profile.json", NULL),
             RESPOOL_OK);
    CHECK_RC(respool_pool_shutdown_now(pool, NULL), RESPOOL_OK);
    respool_pool_free(pool);
    CHECK(atomic_load(&jr.runs) == 1 && atomic_load(&jr.destroys) == 1);
    CHECK(atomic_load(&d.destroys) == 0 && atomic_load(&d.runs) <= 1);

    respool_task_desc_free(desc);
    respool_config_free(cfg);
}

static void test_invalid_arguments(void) {
    respool_config *cfg = NULL;
    CHECK_RC(respool_config_new(&cfg), RESPOOL_OK);
    CHECK_RC(respool_config_set_workers(cfg, 0), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "at least 1") != NULL);
    CHECK_RC(respool_config_set_capacity(cfg, 42, 1), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "42 is not a respool_dim") != NULL);
    CHECK_RC(respool_config_set_capacity(cfg, RESPOOL_DIM_COUNT, 1), RESPOOL_INVALID_ARGUMENT);
    CHECK_RC(respool_config_set_capacity(cfg, RESPOOL_DIM_MEMORY, (1ull << 60) + 1),
             RESPOOL_INVALID_ARGUMENT);
    CHECK_RC(respool_config_set_admission(cfg, 7, 0), RESPOOL_INVALID_ARGUMENT);
    CHECK_RC(respool_config_set_admission(cfg, RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE, 0),
             RESPOOL_INVALID_ARGUMENT);
    CHECK_RC(respool_config_set_admission(cfg, RESPOOL_POLICY_DEFER, 5), RESPOOL_INVALID_ARGUMENT);
    CHECK_RC(respool_config_set_learning_confidence(cfg, 1000001), RESPOOL_INVALID_ARGUMENT);
    CHECK_RC(respool_config_set_stack_size(cfg, 0), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "RESPOOL_MIN_STACK_SIZE") != NULL);
    CHECK_RC(respool_config_set_profile_path(cfg, ""), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "empty path") != NULL);
    /* Unix paths are bytes, not necessarily UTF-8. */
    CHECK_RC(respool_config_set_profile_path(cfg, "bad\xff.json"), RESPOOL_OK);

    /* A headroom above the capacity is refused when the pool is built. */
    CHECK_RC(respool_config_set_workers(cfg, 1), RESPOOL_OK);
    CHECK_RC(respool_config_set_capacity(cfg, RESPOOL_DIM_MEMORY, 100 * MiB), RESPOOL_OK);
    CHECK_RC(respool_config_set_headroom(cfg, RESPOOL_DIM_MEMORY, 200 * MiB), RESPOOL_OK);
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "headroom") != NULL);
    CHECK(pool == NULL);
    respool_config_free(cfg);

    respool_task_desc *desc = NULL;
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_class(desc, "r\xc3\x28"), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "`class_key` is not valid UTF-8") != NULL);
    CHECK_RC(respool_task_desc_set_requirement(desc, 99, 1), RESPOOL_INVALID_ARGUMENT);
    CHECK_RC(respool_task_desc_set_requirement(desc, RESPOOL_DIM_CPU, UINT64_MAX),
             RESPOOL_INVALID_ARGUMENT);
    respool_task_desc_free(desc);

    /* Changing the capacity of a dimension the pool does not track. */
    pool = test_pool(1, "64MiB");
    CHECK_RC(respool_pool_set_capacity(pool, RESPOOL_DIM_USER0, 1), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "not tracked") != NULL);
    CHECK_RC(respool_pool_set_capacity(pool, 12345, 1), RESPOOL_INVALID_ARGUMENT);
    respool_pool_free(pool);
}

static void test_parse_error(void) {
    respool_config *cfg = NULL;
    CHECK_RC(respool_config_new(&cfg), RESPOOL_OK);
    CHECK_RC(respool_config_set_capacity_str(cfg, RESPOOL_DIM_MEMORY, "12 parsecs"),
             RESPOOL_PARSE_ERROR);
    CHECK(strstr(last_error(), "12 parsecs") != NULL);
    CHECK_RC(respool_config_set_capacity_str(cfg, RESPOOL_DIM_CPU, "2500m"), RESPOOL_OK);
    respool_config_free(cfg);

    respool_task_desc *desc = NULL;
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_requirement_str(desc, RESPOOL_DIM_CPU, "lots"),
             RESPOOL_PARSE_ERROR);
    CHECK(strstr(last_error(), "\"lots\"") != NULL);
    CHECK_RC(respool_task_desc_set_requirement_str(desc, RESPOOL_DIM_NETWORK, "100Mbit/s"),
             RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_requirement_str(desc, RESPOOL_DIM_MEMORY, ""),
             RESPOOL_PARSE_ERROR);
    respool_task_desc_free(desc);
}

/* The length of the last error message (without the NUL). */
static size_t last_error_length(void) {
    size_t needed = 0;
    CHECK_RC(respool_last_error_message(NULL, 0, &needed), RESPOOL_OK);
    return needed;
}

/* Issue 14, defect 6: a message quotes at most 256 bytes of the text it was
 * given, then an ellipsis and the text's length. A 1 MiB bad amount gave a
 * 1,048,706-byte message. */
static void test_long_input_is_cut(void) {
    const size_t n = (size_t)1 << 20;
    char *big = malloc(n + 8);
    CHECK(big != NULL);
    if (big == NULL) {
        return;
    }
    memset(big, '9', n);
    strcpy(big + n, "parsecs");
    respool_config *cfg = test_config(1, "64MiB");
    CHECK_RC(respool_config_set_capacity_str(cfg, RESPOOL_DIM_MEMORY, big), RESPOOL_PARSE_ERROR);
    CHECK(last_error_length() < 512);
    CHECK(strstr(last_error(), "\xe2\x80\xa6 (1048583 bytes in all)") != NULL);
    respool_task_desc *desc = NULL;
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_requirement_str(desc, RESPOOL_DIM_CPU, big),
             RESPOOL_PARSE_ERROR);
    CHECK(last_error_length() < 512);
    respool_task_desc_free(desc);
    /* A profile path too long for the system: the I/O error quotes its start. */
    memset(big, 'p', n + 7);
    big[0] = '/';
    CHECK_RC(respool_config_set_profile_path(cfg, big), RESPOOL_OK);
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_STORE_IO);
    CHECK(pool == NULL);
    CHECK(last_error_length() < 512);
    respool_config_free(cfg);
    free(big);
}

/* Every placement algorithm builds a pool that runs tasks; an unknown
 * number and a NULL config are refused. */
static void test_placement(void) {
    /* The numbers are part of the ABI. */
    CHECK(RESPOOL_PLACEMENT_FIRST_FIT == 0 && RESPOOL_PLACEMENT_NEXT_FIT == 1);
    CHECK(RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT == 2);
    CHECK(RESPOOL_PLACEMENT_WORST_FIT_BALANCED_ALLOCATION == 11);
    const respool_placement all[] = {
        RESPOOL_PLACEMENT_FIRST_FIT,
        RESPOOL_PLACEMENT_NEXT_FIT,
        RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT,
        RESPOOL_PLACEMENT_BEST_FIT_L2_RESIDUAL,
        RESPOOL_PLACEMENT_BEST_FIT_MOST_ALLOCATED,
        RESPOOL_PLACEMENT_BEST_FIT_LEAST_ALLOCATED,
        RESPOOL_PLACEMENT_BEST_FIT_BALANCED_ALLOCATION,
        RESPOOL_PLACEMENT_WORST_FIT_DOT_PRODUCT,
        RESPOOL_PLACEMENT_WORST_FIT_L2_RESIDUAL,
        RESPOOL_PLACEMENT_WORST_FIT_MOST_ALLOCATED,
        RESPOOL_PLACEMENT_WORST_FIT_LEAST_ALLOCATED,
        RESPOOL_PLACEMENT_WORST_FIT_BALANCED_ALLOCATION,
    };
    const size_t count = sizeof all / sizeof all[0];
    CHECK(count == 12);
    respool_task_desc *desc = memory_desc("16MiB");
    CHECK_RC(respool_task_desc_set_requirement(desc, RESPOOL_DIM_CPU, 250), RESPOOL_OK);
    for (size_t i = 0; i < count; i++) {
        CHECK((size_t)all[i] == i); /* contiguous, in this order */
        respool_config *cfg = test_config(1, "64MiB");
        CHECK_RC(respool_config_set_placement(cfg, all[i]), RESPOOL_OK);
        respool_pool *pool = NULL;
        CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
        respool_config_free(cfg);
        if (pool == NULL) {
            fprintf(stderr, "placement %zu: no pool: %s\n", i, last_error());
            continue;
        }
        task_rec r;
        rec_init(&r);
        respool_job *job = NULL;
        CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
        respool_result outcome = RESPOOL_INTERNAL;
        CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
        CHECK_OUTCOME(outcome, RESPOOL_OK);
        CHECK(atomic_load(&r.runs) == 1 && atomic_load(&r.destroys) == 1);
        respool_job_free(job);
        respool_pool_free(pool);
    }
    respool_task_desc_free(desc);

    /* Unknown numbers: RESPOOL_INVALID_ARGUMENT, a message naming the
     * number, and the configuration unchanged. */
    respool_config *cfg = test_config(1, "64MiB");
    CHECK_RC(respool_config_set_placement(cfg, RESPOOL_PLACEMENT_NEXT_FIT), RESPOOL_OK);
    CHECK_RC(respool_config_set_placement(cfg, 12), RESPOOL_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(),
                 "respool_config_set_placement: 12 is not a respool_placement (0 to 11)") == 0);
    CHECK_RC(respool_config_set_placement(cfg, 0xFFFFFFFFu), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "4294967295 is not a respool_placement") != NULL);
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    respool_pool_free(pool);

    /* NULL config. */
    CHECK_RC(respool_config_set_placement(NULL, RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT),
             RESPOOL_NULL_ARGUMENT);
    CHECK(strcmp(last_error(), "respool_config_set_placement: argument `config` is NULL") == 0);
    respool_config_free(cfg);
}

/* ------------------------------------------------------------------------ */

enum { NORMAL_TASKS = 100 };

static void test_normal_use(void) {
    respool_pool *pool = test_pool(2, "1GiB");
    respool_task_desc *desc = memory_desc("64MiB");
    CHECK_RC(respool_task_desc_set_requirement_str(desc, RESPOOL_DIM_CPU, "500m"), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_priority(desc, 3), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_size_hint(desc, 4096), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_critical(desc, false), RESPOOL_OK);
    static task_rec recs[NORMAL_TASKS];
    respool_job *jobs[NORMAL_TASKS];
    for (int i = 0; i < NORMAL_TASKS; i++) {
        rec_init(&recs[i]);
        jobs[i] = NULL;
        /* Alternate: with requirements / the fast path. */
        CHECK_RC(respool_pool_submit(pool, (i % 2) ? desc : NULL, rec_run, &recs[i], rec_destroy,
                                     &jobs[i]),
                 RESPOOL_OK);
    }
    respool_task_desc_free(desc); /* jobs do not depend on it */
    for (int i = 0; i < NORMAL_TASKS; i++) {
        respool_result outcome = RESPOOL_INTERNAL;
        CHECK_RC(respool_job_wait(jobs[i], &outcome), RESPOOL_OK);
        CHECK_OUTCOME(outcome, RESPOOL_OK);
        /* Finished means run and destroy have both returned. */
        CHECK(atomic_load(&recs[i].runs) == 1 && atomic_load(&recs[i].destroys) == 1);
        /* Waiting again, and polling, give the same outcome. */
        CHECK_RC(respool_job_wait(jobs[i], &outcome), RESPOOL_OK);
        CHECK_OUTCOME(outcome, RESPOOL_OK);
        CHECK_RC(respool_job_status(jobs[i], &outcome), RESPOOL_OK);
        CHECK_OUTCOME(outcome, RESPOOL_OK);
        bool prevented = true;
        CHECK_RC(respool_job_cancel(jobs[i], &prevented), RESPOOL_OK);
        CHECK(!prevented);
        respool_job_free(jobs[i]);
    }
    /* Counters are final once the workers are joined (a waiter can see a
     * result a moment before the worker counts it). */
    CHECK_RC(respool_pool_shutdown(pool), RESPOOL_OK);
    respool_stats s;
    memset(&s, 0xAB, sizeof s);
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.workers == 2);
    CHECK(s.submitted == NORMAL_TASKS);
    CHECK(s.completed == NORMAL_TASKS);
    CHECK(s.panicked == 0 && s.rejected == 0 && s.timed_out == 0);
    CHECK(s.accepted + s.deferred == NORMAL_TASKS / 2);
    CHECK(s.queued == 0 && s.waiting == 0);
    CHECK((s.tracked & (1u << RESPOOL_DIM_CPU)) && (s.tracked & (1u << RESPOOL_DIM_MEMORY)));
    CHECK(!(s.tracked & (1u << RESPOOL_DIM_USER0)) && s.capacity[RESPOOL_DIM_USER0] == 0);
    CHECK(s.capacity[RESPOOL_DIM_MEMORY] == 1024 * MiB);
    CHECK(s.capacity[RESPOOL_DIM_CPU] == 4000);
    CHECK(s.effective_capacity[RESPOOL_DIM_MEMORY] == 1024 * MiB);
    CHECK(s.reserved[RESPOOL_DIM_MEMORY] == 0 && s.reserved[RESPOOL_DIM_CPU] == 0);
    CHECK(s.latency_p50_ns <= s.latency_p99_ns);
    respool_pool_free(pool);
}

/* A task that needs more than the pool has is refused at once. */
static void test_never_fits(void) {
    respool_pool *pool = test_pool(1, "1GiB");
    respool_task_desc *desc = memory_desc("2GiB");
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_NEVER_FITS);
    CHECK(strstr(last_error(), "can never run") != NULL);
    CHECK(strstr(last_error(), "memory") != NULL);
    CHECK(job == NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.rejected == 1 && s.submitted == 1 && s.completed == 0);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
}

/* Holds the pool's whole memory with a gate task; returns its job. */
static respool_job *hold_memory(respool_pool *pool, gate *g, const char *amount) {
    respool_task_desc *desc = memory_desc(amount);
    respool_job *job = NULL;
    gate_init(g);
    CHECK_RC(respool_pool_submit(pool, desc, gate_run, g, gate_destroy, &job), RESPOOL_OK);
    respool_task_desc_free(desc);
    gate_wait_started(g);
    return job;
}

static void release(gate *g, respool_job *job) {
    gate_open(g);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK(atomic_load(&g->rec.runs) == 1 && atomic_load(&g->rec.destroys) == 1);
    respool_job_free(job);
}

static respool_pool *policy_pool(respool_policy policy, uint64_t max_wait_ms, size_t max_waiting) {
    respool_config *cfg = test_config(2, "100MiB");
    CHECK_RC(respool_config_set_admission(cfg, policy, max_wait_ms), RESPOOL_OK);
    CHECK_RC(respool_config_set_max_waiting(cfg, max_waiting), RESPOOL_OK);
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    respool_config_free(cfg);
    return pool;
}

static void test_busy(void) {
    respool_pool *pool = policy_pool(RESPOOL_POLICY_REJECT, 0, 16);
    gate g;
    respool_job *holder = hold_memory(pool, &g, "100MiB");
    respool_task_desc *desc = memory_desc("10MiB");
    task_rec r;
    rec_init(&r);
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, NULL), RESPOOL_BUSY);
    CHECK(strstr(last_error(), "not enough free now") != NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
    release(&g, holder);
    /* Fits again once the holder is done. */
    respool_job *job = NULL;
    task_rec r2;
    rec_init(&r2);
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r2, rec_destroy, &job), RESPOOL_OK);
    respool_result outcome;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    respool_job_free(job);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
    CHECK(atomic_load(&r2.runs) == 1 && atomic_load(&r2.destroys) == 1);
}

static void test_queue_full(void) {
    respool_pool *pool = policy_pool(RESPOOL_POLICY_DEFER, 0, 1);
    gate g;
    respool_job *holder = hold_memory(pool, &g, "100MiB");
    respool_task_desc *desc = memory_desc("10MiB");
    task_rec waiting, refused;
    rec_init(&waiting);
    rec_init(&refused);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &waiting, rec_destroy, &job), RESPOOL_OK);
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.waiting == 1 && s.deferred == 1);
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &refused, rec_destroy, NULL),
             RESPOOL_QUEUE_FULL);
    CHECK(strstr(last_error(), "wait queue is full") != NULL);
    CHECK(atomic_load(&refused.runs) == 0 && atomic_load(&refused.destroys) == 1);
    /* The waiting task has not finished while the holder holds the memory. */
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_status(job, &outcome), RESPOOL_TIMED_OUT);
    CHECK(outcome == RESPOOL_INTERNAL);
    release(&g, holder);
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK(atomic_load(&waiting.runs) == 1 && atomic_load(&waiting.destroys) == 1);
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.admitted_after_wait == 1);
    respool_job_free(job);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

static void test_deadline_expired(void) {
    respool_pool *pool = policy_pool(RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE, 20, 16);
    gate g;
    respool_job *holder = hold_memory(pool, &g, "100MiB");
    respool_task_desc *desc = memory_desc("10MiB");
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    /* Blocks for the maximum wait, then gives up. */
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job),
             RESPOOL_DEADLINE_EXPIRED);
    CHECK(job == NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
    release(&g, holder);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

static void test_shut_down(void) {
    respool_pool *pool = test_pool(1, "64MiB");
    CHECK_RC(respool_pool_shutdown(pool), RESPOOL_OK);
    CHECK_RC(respool_pool_shutdown(pool), RESPOOL_OK); /* idempotent */
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, rec_run, &r, rec_destroy, &job), RESPOOL_SHUT_DOWN);
    respool_task_desc *desc = memory_desc("1MiB");
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, NULL), RESPOOL_SHUT_DOWN);
    CHECK_RC(respool_pool_submit(pool, NULL, rec_run, &r, rec_destroy, NULL), RESPOOL_SHUT_DOWN);
    CHECK(job == NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 3);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* Cancel before the start: a queued task (destroyed when a worker reaches
 * it) and a task waiting for resources (destroyed at once). */
static void test_cancel_before_start(void) {
    respool_pool *pool = test_pool(1, "100MiB");
    gate g;
    gate_init(&g);
    respool_job *blocker = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, gate_run, &g, gate_destroy, &blocker), RESPOOL_OK);
    gate_wait_started(&g);

    task_rec queued;
    rec_init(&queued);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, rec_run, &queued, rec_destroy, &job), RESPOOL_OK);
    bool prevented = false;
    CHECK_RC(respool_job_cancel(job, &prevented), RESPOOL_OK);
    CHECK(prevented);
    respool_result outcome = RESPOOL_INTERNAL;
    /* Not finished until its destroy ran, when the busy worker reaches it. */
    CHECK_RC(respool_job_wait_timeout(job, 1, &outcome), RESPOOL_TIMED_OUT);
    CHECK(outcome == RESPOOL_INTERNAL);
    CHECK(atomic_load(&queued.destroys) == 0);
    gate_open(&g);
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_CANCELLED);
    CHECK(strstr(last_error(), "cancelled") != NULL);
    CHECK(atomic_load(&queued.runs) == 0 && atomic_load(&queued.destroys) == 1);
    respool_job_free(job);
    CHECK_RC(respool_job_wait(blocker, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    respool_job_free(blocker);
    respool_pool_free(pool);

    /* Waiting for resources: dropped at once, while the memory is held. */
    pool = test_pool(2, "100MiB");
    gate h;
    respool_job *holder = hold_memory(pool, &h, "100MiB");
    respool_task_desc *desc = memory_desc("10MiB");
    task_rec waiting;
    rec_init(&waiting);
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &waiting, rec_destroy, &job), RESPOOL_OK);
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.waiting == 1);
    prevented = false;
    CHECK_RC(respool_job_cancel(job, &prevented), RESPOOL_OK);
    CHECK(prevented);
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_CANCELLED);
    CHECK(atomic_load(&waiting.runs) == 0 && atomic_load(&waiting.destroys) == 1);
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.waiting == 0);
    CHECK(atomic_load(&h.open) == 0); /* the holder still holds the memory */
    respool_job_free(job);
    release(&h, holder);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* A job freed before it finished is detached: it still runs, and destroy is
 * still called once. */
static void test_detach(void) {
    respool_pool *pool = test_pool(1, "64MiB");
    gate g;
    gate_init(&g);
    respool_job *blocker = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, gate_run, &g, gate_destroy, &blocker), RESPOOL_OK);
    gate_wait_started(&g);
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    respool_task_desc *desc = memory_desc("1MiB");
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
    respool_job_free(job);
    respool_job_free(blocker);
    gate_open(&g);
    respool_pool_free(pool); /* graceful: runs the detached task */
    CHECK(atomic_load(&r.runs) == 1 && atomic_load(&r.destroys) == 1);
    CHECK(atomic_load(&g.rec.runs) == 1 && atomic_load(&g.rec.destroys) == 1);
    respool_task_desc_free(desc);
}

static void test_wait_timeout(void) {
    respool_pool *pool = test_pool(1, "64MiB");
    gate g;
    gate_init(&g);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, gate_run, &g, gate_destroy, &job), RESPOOL_OK);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait_timeout(job, 10, &outcome), RESPOOL_TIMED_OUT);
    CHECK_RC(respool_job_wait_timeout(job, 0, &outcome), RESPOOL_TIMED_OUT);
    CHECK_RC(respool_job_status(job, &outcome), RESPOOL_TIMED_OUT);
    CHECK(outcome == RESPOOL_INTERNAL);
    CHECK(strstr(last_error(), "not finished") != NULL);
    gate_open(&g);
    CHECK_RC(respool_job_wait_timeout(job, 600000, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK_RC(respool_job_status(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK(last_error()[0] == '\0');
    respool_job_free(job);
    respool_pool_free(pool);
}

/* A task past its timeout is asked to stop; it polls the flag. */
static atomic_int polls_after_cancel;

static void poll_until_cancelled(void *user) {
    task_rec *r = user;
    atomic_fetch_add(&r->runs, 1);
    /* Bounded so that a broken timeout fails the test instead of hanging it. */
    for (int i = 0; i < 100000 && !respool_task_is_cancelled(); i++) {
        sleep_us(100);
    }
    if (respool_task_is_cancelled()) {
        atomic_fetch_add(&polls_after_cancel, 1);
    }
}

static void test_task_timeout(void) {
    CHECK(!respool_task_is_cancelled()); /* outside a task */
    respool_pool *pool = test_pool(1, "64MiB");
    respool_task_desc *desc = NULL;
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_timeout_ms(desc, 20), RESPOOL_OK);
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, poll_until_cancelled, &r, rec_destroy, &job),
             RESPOOL_OK);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_TASK_TIMED_OUT);
    CHECK(strstr(last_error(), "timeout") != NULL);
    /* The timeout is armed when a worker picks the task up, just before
     * `run`: on a slow machine (valgrind) it can fire before `run` is
     * called, which is then never called. Either way destroy ran once, and
     * a `run` that was called saw the flag and returned. */
    CHECK(atomic_load(&r.destroys) == 1);
    CHECK(atomic_load(&r.runs) == atomic_load(&polls_after_cancel));
    CHECK(atomic_load(&r.runs) <= 1);
    CHECK_RC(respool_pool_shutdown(pool), RESPOOL_OK); /* the timer thread counted it */
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.timed_out == 1);
    respool_job_free(job);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

static atomic_int slow_runs_cancelled;

/* Sleeps 50 ms, then records whether it was asked to stop. */
static void slow_run(void *user) {
    rec_run(user);
    sleep_us(50000);
    if (respool_task_is_cancelled()) {
        atomic_fetch_add(&slow_runs_cancelled, 1);
    }
}

/* Issue 14, defect 6: a timeout of 0 ms means no timeout, every time (it
 * gave RESPOOL_TASK_TIMED_OUT in one run and RESPOOL_OK in another), and
 * setting 0 removes an earlier timeout from a reused description. */
static void test_zero_timeout(void) {
    respool_pool *pool = test_pool(2, "64MiB");
    respool_task_desc *desc = memory_desc("1MiB");
    CHECK_RC(respool_task_desc_set_timeout_ms(desc, 0), RESPOOL_OK);
    enum { ROUNDS = 300 };
    int ok = 0;
    task_rec r;
    rec_init(&r);
    for (int i = 0; i < ROUNDS; i++) {
        respool_job *job = NULL;
        CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
        respool_result outcome = RESPOOL_INTERNAL;
        CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
        ok += outcome == RESPOOL_OK;
        respool_job_free(job);
    }
    CHECK(ok == ROUNDS);
    CHECK(atomic_load(&r.runs) == ROUNDS && atomic_load(&r.destroys) == ROUNDS);
    /* 20 ms, then 0: the 50 ms task runs to the end without being stopped. */
    CHECK_RC(respool_task_desc_set_timeout_ms(desc, 20), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_timeout_ms(desc, 0), RESPOOL_OK);
    task_rec slow;
    rec_init(&slow);
    atomic_init(&slow_runs_cancelled, 0);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, slow_run, &slow, rec_destroy, &job), RESPOOL_OK);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK(atomic_load(&slow.runs) == 1 && atomic_load(&slow_runs_cancelled) == 0);
    respool_job_free(job);
    CHECK_RC(respool_pool_shutdown(pool), RESPOOL_OK);
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.timed_out == 0);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* Cancel after the start only raises the flag the task polls. */
static void test_cancel_running(void) {
    respool_pool *pool = test_pool(1, "64MiB");
    respool_task_desc *desc = NULL;
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    atomic_store(&polls_after_cancel, 0);
    CHECK_RC(respool_pool_submit(pool, desc, poll_until_cancelled, &r, rec_destroy, &job),
             RESPOOL_OK);
    while (atomic_load(&r.runs) == 0) {
        sleep_us(100);
    }
    bool prevented = true;
    CHECK_RC(respool_job_cancel(job, &prevented), RESPOOL_OK);
    CHECK(!prevented);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK); /* it ran to the end of its callback */
    CHECK(atomic_load(&polls_after_cancel) == 1);
    CHECK(atomic_load(&r.runs) == 1 && atomic_load(&r.destroys) == 1);
    respool_job_free(job);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* A deadline that passed while the task was queued: never started. */
static void test_deadline_missed(void) {
    respool_pool *pool = test_pool(1, "64MiB");
    gate g;
    gate_init(&g);
    respool_job *blocker = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, gate_run, &g, gate_destroy, &blocker), RESPOOL_OK);
    gate_wait_started(&g);
    respool_task_desc *desc = NULL;
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_deadline_ms(desc, 1), RESPOOL_OK);
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
    sleep_us(20000); /* well past the 1 ms deadline */
    gate_open(&g);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_DEADLINE_MISSED);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
    respool_job_free(job);
    respool_job_free(blocker);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* A waiting task that can no longer ever fit after a capacity cut. */
static void test_rejected_while_waiting(void) {
    respool_pool *pool = test_pool(2, "100MiB");
    gate g;
    respool_job *holder = hold_memory(pool, &g, "60MiB");
    respool_task_desc *desc = memory_desc("80MiB");
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
    CHECK_RC(respool_pool_set_capacity(pool, RESPOOL_DIM_MEMORY, 70 * MiB), RESPOOL_OK);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_REJECTED_WHILE_WAITING);
    CHECK(strstr(last_error(), "refused while waiting") != NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.capacity[RESPOOL_DIM_MEMORY] == 70 * MiB);
    CHECK(s.rejected_after_wait == 1);
    respool_job_free(job);
    release(&g, holder);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

enum { PENDING = 50 };

/* Graceful shutdown (respool_pool_free) runs every accepted task. */
static void test_free_with_pending_jobs(void) {
    respool_pool *pool = test_pool(1, "100MiB");
    gate g;
    gate_init(&g);
    CHECK_RC(respool_pool_submit(pool, NULL, gate_run, &g, gate_destroy, NULL), RESPOOL_OK);
    gate_wait_started(&g);
    respool_task_desc *desc = memory_desc("10MiB");
    static task_rec recs[PENDING];
    respool_job *jobs[PENDING];
    for (int i = 0; i < PENDING; i++) {
        rec_init(&recs[i]);
        CHECK_RC(respool_pool_submit(pool, (i % 2) ? desc : NULL, rec_run, &recs[i], rec_destroy,
                                     &jobs[i]),
                 RESPOOL_OK);
    }
    gate_open(&g);
    respool_pool_free(pool);
    for (int i = 0; i < PENDING; i++) {
        CHECK(atomic_load(&recs[i].runs) == 1 && atomic_load(&recs[i].destroys) == 1);
        /* Jobs outlive the pool. */
        respool_result outcome = RESPOOL_INTERNAL;
        CHECK_RC(respool_job_status(jobs[i], &outcome), RESPOOL_OK);
        CHECK_OUTCOME(outcome, RESPOOL_OK);
        respool_job_free(jobs[i]);
    }
    respool_task_desc_free(desc);
}

typedef struct {
    respool_pool *pool;
    size_t unstarted;
    respool_result rc;
} shutdown_arg;

static void *shutdown_now_thread(void *p) {
    shutdown_arg *a = p;
    a->rc = respool_pool_shutdown_now(a->pool, &a->unstarted);
    return NULL;
}

typedef struct {
    respool_pool *pool;
    respool_task_desc *desc;
    task_rec *rec;
    respool_result rc;
} blocked_submit_arg;

static void *blocked_submitter(void *p) {
    blocked_submit_arg *a = p;
    a->rc = respool_pool_submit(a->pool, a->desc, rec_run, a->rec, rec_destroy, NULL);
    return NULL;
}

/* A submitter blocked until admission is woken by shutdown_now with
 * RESPOOL_SHUT_DOWN, its destroy called before the return, its task neither
 * run nor counted as dropped by shutdown_now. It returns while the holder
 * still runs, so only shutdown_now can have ended its wait. */
static void test_shutdown_now_wakes_a_blocked_submitter(void) {
    respool_pool *pool = policy_pool(RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE, 3600u * 1000u, 16);
    gate g;
    respool_job *holder = hold_memory(pool, &g, "100MiB");
    respool_task_desc *desc = memory_desc("10MiB");
    task_rec r;
    rec_init(&r);
    blocked_submit_arg b = {pool, desc, &r, RESPOOL_INTERNAL};
    pthread_t submitter;
    CHECK(pthread_create(&submitter, NULL, blocked_submitter, &b) == 0);
    respool_stats s;
    do {
        sleep_us(100);
        CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    } while (s.waiting == 0);
    shutdown_arg a = {pool, 0, RESPOOL_INTERNAL};
    pthread_t closer;
    CHECK(pthread_create(&closer, NULL, shutdown_now_thread, &a) == 0);
    CHECK(pthread_join(submitter, NULL) == 0);
    CHECK_RC(b.rc, RESPOOL_SHUT_DOWN);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
    release(&g, holder);
    CHECK(pthread_join(closer, NULL) == 0);
    CHECK_RC(a.rc, RESPOOL_OK);
    CHECK(a.unstarted == 0);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* shutdown_now drops what has not started: destroy called, outcome
 * SHUT_DOWN; exactly the dropped ones are counted. */
static void test_shutdown_now(void) {
    respool_pool *pool = test_pool(1, "100MiB");
    gate g;
    gate_init(&g);
    respool_job *blocker = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, gate_run, &g, gate_destroy, &blocker), RESPOOL_OK);
    gate_wait_started(&g);
    respool_task_desc *desc = memory_desc("10MiB");
    static task_rec recs[PENDING];
    respool_job *jobs[PENDING];
    for (int i = 0; i < PENDING; i++) {
        rec_init(&recs[i]);
        CHECK_RC(respool_pool_submit(pool, (i % 2) ? desc : NULL, rec_run, &recs[i], rec_destroy,
                                     &jobs[i]),
                 RESPOOL_OK);
    }
    /* shutdown_now waits for the running blocker: call it from a thread,
     * and open the gate once the pool refuses new work. */
    shutdown_arg a = {pool, 0, RESPOOL_INTERNAL};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, shutdown_now_thread, &a) == 0);
    task_rec probe;
    rec_init(&probe);
    while (respool_pool_submit(pool, NULL, rec_run, &probe, rec_destroy, NULL) == RESPOOL_OK) {
        sleep_us(100);
    }
    gate_open(&g);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_RC(a.rc, RESPOOL_OK);
    size_t dropped = 0;
    for (int i = 0; i < PENDING; i++) {
        respool_result outcome = RESPOOL_INTERNAL;
        CHECK_RC(respool_job_wait(jobs[i], &outcome), RESPOOL_OK);
        int runs = atomic_load(&recs[i].runs);
        CHECK(atomic_load(&recs[i].destroys) == 1);
        if (runs == 0) {
            dropped++;
            CHECK_OUTCOME(outcome, RESPOOL_SHUT_DOWN);
        } else {
            CHECK(runs == 1);
            CHECK_OUTCOME(outcome, RESPOOL_OK);
        }
        respool_job_free(jobs[i]);
    }
    /* Probes that were accepted before the refusal were dropped too. The
     * split between run and dropped depends on when the worker noticed the
     * shutdown; the count must match it exactly. */
    int probes_submitted = atomic_load(&probe.destroys) - 1 /* the refused one */;
    int probes_dropped = probes_submitted - atomic_load(&probe.runs);
    CHECK(a.unstarted == dropped + (size_t)probes_dropped);
    respool_result outcome;
    CHECK_RC(respool_job_wait(blocker, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    respool_job_free(blocker);
    /* Later calls see a shut-down pool. */
    task_rec late;
    rec_init(&late);
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &late, rec_destroy, NULL), RESPOOL_SHUT_DOWN);
    CHECK(atomic_load(&late.destroys) == 1);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* shutdown_now called by a task on the pool's only worker: every queued
 * task is dropped, deterministically (the worker is busy until it returns). */
typedef struct {
    gate g;
    respool_pool *pool;
    size_t unstarted;
    respool_result rc;
} inner_shutdown;

static void shutdown_from_task(void *user) {
    inner_shutdown *s = user;
    gate_run(&s->g);
    s->rc = respool_pool_shutdown_now(s->pool, &s->unstarted);
}

static void test_shutdown_now_from_a_task(void) {
    respool_pool *pool = test_pool(1, "100MiB");
    inner_shutdown inner;
    gate_init(&inner.g);
    inner.pool = pool;
    inner.unstarted = 0;
    inner.rc = RESPOOL_INTERNAL;
    respool_job *blocker = NULL;
    CHECK_RC(respool_pool_submit(pool, NULL, shutdown_from_task, &inner, gate_destroy, &blocker),
             RESPOOL_OK);
    gate_wait_started(&inner.g);
    respool_task_desc *desc = memory_desc("10MiB");
    static task_rec recs[PENDING];
    respool_job *jobs[PENDING];
    for (int i = 0; i < PENDING; i++) {
        rec_init(&recs[i]);
        CHECK_RC(respool_pool_submit(pool, (i % 2) ? desc : NULL, rec_run, &recs[i], rec_destroy,
                                     &jobs[i]),
                 RESPOOL_OK);
    }
    gate_open(&inner.g);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(blocker, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK_RC(inner.rc, RESPOOL_OK);
    CHECK(inner.unstarted == PENDING);
    for (int i = 0; i < PENDING; i++) {
        CHECK_RC(respool_job_wait(jobs[i], &outcome), RESPOOL_OK);
        CHECK_OUTCOME(outcome, RESPOOL_SHUT_DOWN);
        CHECK(atomic_load(&recs[i].runs) == 0 && atomic_load(&recs[i].destroys) == 1);
        respool_job_free(jobs[i]);
    }
    respool_job_free(blocker);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

enum { THREADS = 8, PER_THREAD = 1000 };

typedef struct {
    respool_pool *pool;
    const respool_task_desc *desc;
    task_rec *recs;
    int failures;
    int thread_local_ok;
} submitter_arg;

static void *submitter(void *p) {
    submitter_arg *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        task_rec *r = &a->recs[i];
        rec_init(r);
        const respool_task_desc *desc = (i % 2) ? a->desc : NULL;
        if (i % 4 < 2) {
            respool_job *job = NULL;
            respool_result outcome = RESPOOL_INTERNAL;
            if (respool_pool_submit(a->pool, desc, rec_run, r, rec_destroy, &job) != RESPOOL_OK ||
                respool_job_wait(job, &outcome) != RESPOOL_OK || outcome != RESPOOL_OK ||
                atomic_load(&r->destroys) != 1) {
                a->failures++;
            }
            respool_job_free(job);
        } else if (respool_pool_submit(a->pool, desc, rec_run, r, rec_destroy, NULL) !=
                   RESPOOL_OK) {
            a->failures++;
        }
    }
    /* The last error is per thread: this thread's failure is its own. */
    respool_config_set_workers(NULL, 1);
    char buf[128];
    respool_last_error_message(buf, sizeof buf, NULL);
    a->thread_local_ok = strstr(buf, "respool_config_set_workers") != NULL;
    return NULL;
}

static void test_many_threads(void) {
    respool_pool *pool = test_pool(4, "64MiB");
    respool_task_desc *desc = memory_desc("1MiB");
    static task_rec recs[THREADS][PER_THREAD];
    pthread_t threads[THREADS];
    submitter_arg args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (submitter_arg){pool, desc, recs[t], 0, 0};
        CHECK(pthread_create(&threads[t], NULL, submitter, &args[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0);
        CHECK(args[t].failures == 0);
        CHECK(args[t].thread_local_ok);
    }
    CHECK(strstr(last_error(), "respool_config_set_workers") == NULL);
    CHECK_RC(respool_pool_shutdown(pool), RESPOOL_OK);
    int bad = 0;
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            bad += atomic_load(&recs[t][i].runs) != 1 || atomic_load(&recs[t][i].destroys) != 1;
        }
    }
    CHECK(bad == 0);
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.submitted == THREADS * PER_THREAD);
    CHECK(s.completed == THREADS * PER_THREAD);
    CHECK(s.reserved[RESPOOL_DIM_MEMORY] == 0);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

static void run_classified(respool_pool *pool, const char *cls, int n) {
    respool_task_desc *desc = NULL;
    CHECK_RC(respool_task_desc_new(&desc), RESPOOL_OK);
    CHECK_RC(respool_task_desc_set_class(desc, cls), RESPOOL_OK);
    for (int i = 0; i < n; i++) {
        task_rec r;
        rec_init(&r);
        respool_job *job = NULL;
        respool_result outcome = RESPOOL_INTERNAL;
        CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
        CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
        CHECK_OUTCOME(outcome, RESPOOL_OK);
        respool_job_free(job);
    }
    respool_task_desc_free(desc);
}

static void test_profiles(void) {
    char path[512], corrupt[512], newer[512], missing[512], saved[512];
    path_in_tmp(path, sizeof path, "profiles.json");
    path_in_tmp(corrupt, sizeof corrupt, "corrupt.json");
    path_in_tmp(newer, sizeof newer, "newer.json");
    path_in_tmp(missing, sizeof missing, "missing.json");
    path_in_tmp(saved, sizeof saved, "saved.json");

    respool_config *cfg = test_config(2, "1GiB");
    CHECK_RC(respool_config_set_learning(cfg, true), RESPOOL_OK);
    CHECK_RC(respool_config_set_learning_min_executions(cfg, 2), RESPOOL_OK);
    CHECK_RC(respool_config_set_learning_confidence(cfg, 500000), RESPOOL_OK);
    CHECK_RC(respool_config_set_learning_fallback(cfg, RESPOOL_DIM_MEMORY, 32 * MiB), RESPOOL_OK);
    CHECK_RC(respool_config_set_learning_fallback(cfg, RESPOOL_DIM_CPU, 500), RESPOOL_OK);
    CHECK_RC(respool_config_set_profile_path(cfg, saved), RESPOOL_OK);
    respool_pool *a = NULL;
    CHECK_RC(respool_pool_new(cfg, &a), RESPOOL_OK);
    run_classified(a, "resize", 5);
    run_classified(a, "encode", 3);
    respool_stats s;
    CHECK_RC(respool_pool_stats(a, &s), RESPOOL_OK);
    CHECK(s.learning_classes == 2);
    CHECK(s.latency_count >= 8);
    CHECK_RC(respool_pool_export_profiles(a, path), RESPOOL_OK);
    respool_pool_free(a); /* saves to the configured profile path */
    struct stat st;
    CHECK(stat(saved, &st) == 0 && st.st_size > 0);

    /* A new pool loads the configured file at build time... */
    respool_pool *b = NULL;
    CHECK_RC(respool_pool_new(cfg, &b), RESPOOL_OK);
    CHECK_RC(respool_pool_stats(b, &s), RESPOOL_OK);
    CHECK(s.learning_classes == 2);
    respool_pool_free(b);
    respool_config_free(cfg);

    /* ... and an exported file imports into another. */
    respool_pool *c = test_pool(1, "1GiB");
    size_t classes = 0;
    CHECK_RC(respool_pool_import_profiles(c, path, &classes), RESPOOL_OK);
    CHECK(classes == 2);
    CHECK_RC(respool_pool_stats(c, &s), RESPOOL_OK);
    CHECK(s.learning_classes == 2);
    classes = 99;
    CHECK_RC(respool_pool_import_profiles(c, missing, &classes), RESPOOL_OK);
    CHECK(classes == 0);

    write_file(corrupt, "{ this is not json");
    classes = 99;
    CHECK_RC(respool_pool_import_profiles(c, corrupt, &classes), RESPOOL_STORE_CORRUPT);
    CHECK(strstr(last_error(), "corrupt at line 1") != NULL);
    CHECK(classes == 99);
    write_file(newer, "{\"format\": \"respool-profiles\", \"version\": 999, \"classes\": []}");
    CHECK_RC(respool_pool_import_profiles(c, newer, &classes), RESPOOL_STORE_VERSION);
    CHECK(strstr(last_error(), "format version 999") != NULL);
    CHECK_RC(respool_pool_import_profiles(c, tmpdir, &classes), RESPOOL_STORE_IO);
    CHECK_RC(respool_pool_export_profiles(c, "/dev/null/p.json"), RESPOOL_STORE_IO);
    CHECK(strstr(last_error(), "/dev/null/p.json") != NULL);
    respool_pool_free(c);

    /* A configured file that is corrupt or newer fails the build, untouched. */
    respool_config *bad = test_config(1, "64MiB");
    respool_pool *d = NULL;
    CHECK_RC(respool_config_set_profile_path(bad, corrupt), RESPOOL_OK);
    CHECK_RC(respool_pool_new(bad, &d), RESPOOL_STORE_CORRUPT);
    CHECK_RC(respool_config_set_profile_path(bad, newer), RESPOOL_OK);
    CHECK_RC(respool_pool_new(bad, &d), RESPOOL_STORE_VERSION);
    CHECK(d == NULL);
    respool_config_free(bad);
    CHECK(stat(corrupt, &st) == 0 && st.st_size == (off_t)strlen("{ this is not json"));

    unlink(path);
    unlink(corrupt);
    unlink(newer);
    unlink(saved);
}

/* This process's address space in use, in bytes (VmSize), or 0. */
static size_t address_space_in_use(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return 0;
    }
    char line[256];
    size_t kib = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib * 1024;
}

/* The system cannot give a worker its stack: the largest stack the API
 * accepts, under an address-space limit (`ulimit -v`) of what is in use
 * plus 256 MiB, lifted again at once. */
static void test_spawn_failed(void) {
    respool_config *cfg = test_config(1, "64MiB");
    CHECK_RC(respool_config_set_stack_size(cfg, RESPOOL_MAX_STACK_SIZE), RESPOOL_OK);
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_AS, &old) == 0);
    size_t in_use = address_space_in_use();
    CHECK(in_use > 0);
    struct rlimit tight = {(rlim_t)in_use + 256 * MiB, old.rlim_max};
    CHECK(old.rlim_max == RLIM_INFINITY || tight.rlim_cur <= old.rlim_max);
    respool_pool *pool = NULL;
    respool_result rc = RESPOOL_INTERNAL;
    if (setrlimit(RLIMIT_AS, &tight) == 0) {
        rc = respool_pool_new(cfg, &pool);
        CHECK(setrlimit(RLIMIT_AS, &old) == 0);
    }
    CHECK_RC(rc, RESPOOL_SPAWN_FAILED);
    CHECK(strstr(last_error(), "could not start a worker thread") != NULL);
    CHECK(pool == NULL);
    respool_pool_free(pool);
    respool_config_free(cfg);
}

/* Issue 14, defect 2: every size is checked where it is set. A size outside
 * its limits is refused with RESPOOL_INVALID_ARGUMENT and a message that
 * states the limit, and the configuration keeps its earlier value. Before,
 * set_workers(SIZE_MAX) was accepted and respool_pool_new returned
 * RESPOOL_PANICKED (with a backtrace on stderr); set_workers(1 << 40) was
 * accepted and respool_pool_new aborted the program. */
static void test_limits(void) {
    CHECK(RESPOOL_MAX_WORKERS == 4096);
    CHECK(RESPOOL_MIN_STACK_SIZE == 64 * 1024);
    CHECK(RESPOOL_MAX_STACK_SIZE == 1024 * MiB);
    respool_config *cfg = test_config(2, "64MiB");
    const size_t workers[] = {(size_t)RESPOOL_MAX_WORKERS + 1, SIZE_MAX, (size_t)1 << 40};
    for (size_t i = 0; i < sizeof workers / sizeof workers[0]; i++) {
        CHECK_RC(respool_config_set_workers(cfg, workers[i]), RESPOOL_INVALID_ARGUMENT);
        CHECK(strstr(last_error(), "above the limit of 4096") != NULL);
        CHECK(strstr(last_error(), "RESPOOL_MAX_WORKERS") != NULL);
    }
    /* The configuration still has its 2 workers. */
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    respool_stats s;
    if (pool != NULL) {
        CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
        CHECK(s.workers == 2);
        respool_pool_free(pool);
        pool = NULL;
    }
    CHECK_RC(respool_config_set_max_waiting(cfg, SIZE_MAX), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "above the limit of 4294967295") != NULL);
    CHECK(strstr(last_error(), "RESPOOL_MAX_WAITING") != NULL);
#if SIZE_MAX > 0xffffffffu
    CHECK_RC(respool_config_set_max_waiting(cfg, (size_t)RESPOOL_MAX_WAITING + 1),
             RESPOOL_INVALID_ARGUMENT);
#endif
    /* At the limit it is accepted (not built here: the wait queue is still
     * allocated whole when the pool is built). */
    CHECK_RC(respool_config_set_max_waiting(cfg, (size_t)RESPOOL_MAX_WAITING), RESPOOL_OK);
    CHECK_RC(respool_config_set_max_waiting(cfg, 16), RESPOOL_OK);
    const size_t small_stacks[] = {0, 1, (size_t)RESPOOL_MIN_STACK_SIZE - 1};
    for (size_t i = 0; i < sizeof small_stacks / sizeof small_stacks[0]; i++) {
        CHECK_RC(respool_config_set_stack_size(cfg, small_stacks[i]), RESPOOL_INVALID_ARGUMENT);
        CHECK(strstr(last_error(), "below the minimum of 65536") != NULL);
        CHECK(strstr(last_error(), "RESPOOL_MIN_STACK_SIZE") != NULL);
    }
    const size_t large_stacks[] = {(size_t)RESPOOL_MAX_STACK_SIZE + 1, (size_t)1 << 50, SIZE_MAX};
    for (size_t i = 0; i < sizeof large_stacks / sizeof large_stacks[0]; i++) {
        CHECK_RC(respool_config_set_stack_size(cfg, large_stacks[i]), RESPOOL_INVALID_ARGUMENT);
        CHECK(strstr(last_error(), "above the limit of 1073741824") != NULL);
        CHECK(strstr(last_error(), "RESPOOL_MAX_STACK_SIZE") != NULL);
    }
    CHECK_RC(respool_config_set_stack_size(cfg, RESPOOL_MAX_STACK_SIZE), RESPOOL_OK);
    CHECK_RC(respool_config_set_workers(cfg, RESPOOL_MAX_WORKERS), RESPOOL_OK);
    /* The smallest stack runs tasks. */
    CHECK_RC(respool_config_set_stack_size(cfg, RESPOOL_MIN_STACK_SIZE), RESPOOL_OK);
    CHECK_RC(respool_config_set_workers(cfg, 2), RESPOOL_OK);
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    respool_config_free(cfg);
    if (pool == NULL) {
        return;
    }
    respool_task_desc *desc = memory_desc("1MiB");
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK(atomic_load(&r.runs) == 1 && atomic_load(&r.destroys) == 1);
    respool_job_free(job);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* Issue 14, defect 6: a headroom set back to 0 is undone; a headroom of 0
 * holds nothing back and needs no capacity (a headroom of 1, then 0, on an
 * untracked dimension used to fail respool_pool_new). */
static void test_headroom_undone(void) {
    respool_config *cfg = test_config(1, "64MiB");
    CHECK_RC(respool_config_set_headroom(cfg, RESPOOL_DIM_USER3, 1), RESPOOL_OK);
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "headroom") != NULL);
    CHECK_RC(respool_config_set_headroom(cfg, RESPOOL_DIM_USER3, 0), RESPOOL_OK);
    CHECK_RC(respool_config_set_headroom(cfg, RESPOOL_DIM_MEMORY, 0), RESPOOL_OK);
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    respool_config_free(cfg);
    if (pool == NULL) {
        return;
    }
    /* Nothing is held back: a task may take the whole 64 MiB. */
    respool_task_desc *desc = memory_desc("64MiB");
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    respool_job_free(job);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* Critical tasks may use the reserve that normal tasks may not. */
static void test_critical_reserve(void) {
    respool_config *cfg = test_config(1, "100MiB");
    CHECK_RC(respool_config_set_critical_reserve(cfg, RESPOOL_DIM_MEMORY, 50 * MiB), RESPOOL_OK);
    respool_pool *pool = NULL;
    CHECK_RC(respool_pool_new(cfg, &pool), RESPOOL_OK);
    respool_config_free(cfg);
    respool_task_desc *desc = memory_desc("80MiB");
    task_rec r;
    rec_init(&r);
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, NULL), RESPOOL_NEVER_FITS);
    CHECK_RC(respool_task_desc_set_critical(desc, true), RESPOOL_OK);
    respool_job *job = NULL;
    CHECK_RC(respool_pool_submit(pool, desc, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
    respool_result outcome;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    CHECK(atomic_load(&r.runs) == 1 && atomic_load(&r.destroys) == 2);
    respool_job_free(job);
    respool_task_desc_free(desc);
    respool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/respool-c-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_version();
    test_messages();
    test_last_error();
    test_null_arguments();
    test_invalid_arguments();
    test_parse_error();
    test_long_input_is_cut();
    test_placement();
    test_normal_use();
    test_never_fits();
    test_busy();
    test_queue_full();
    test_deadline_expired();
    test_shut_down();
    test_cancel_before_start();
    test_detach();
    test_wait_timeout();
    test_task_timeout();
    test_zero_timeout();
    test_cancel_running();
    test_deadline_missed();
    test_rejected_while_waiting();
    test_free_with_pending_jobs();
    test_shutdown_now();
    test_shutdown_now_wakes_a_blocked_submitter();
    test_shutdown_now_from_a_task();
    test_many_threads();
    test_profiles();
    test_spawn_failed();
    test_critical_reserve();
    test_headroom_undone();
    test_limits();
    rmdir(tmpdir);

    /* Every code C can reach was produced, except PANICKED (test_panic.c)
     * and INTERNAL (reserved for errors this version cannot produce). */
    for (unsigned code = 0; code < CODE_COUNT; code++) {
        if (code == RESPOOL_PANICKED || code == RESPOOL_INTERNAL) {
            continue;
        }
        if (!seen[code]) {
            failures++;
            fprintf(stderr, "result code %u (%s) was never produced\n", code,
                    respool_result_message(code));
        }
        checks++;
    }
    return finish("test_c_api");
}
