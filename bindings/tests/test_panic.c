/*
 * A Rust panic inside respool never crosses into C. Linked against a test
 * build of the library (cargo feature "test-panic") that exports three
 * entry points provoking panics; they are not in respool.h, so they are
 * declared here.
 */
#include "common.h"

respool_result respool_test_panic(void);
bool respool_test_panic_value(void);
respool_result respool_test_submit_panicking(respool_pool *pool, void (*run)(void *user),
                                             void *user, void (*destroy)(void *user),
                                             respool_job **job_out);

int main(void) {
    /* A panic in an entry point: a code and a message, no unwinding. */
    CHECK_RC(respool_test_panic(), RESPOOL_PANICKED);
    CHECK(strstr(last_error(), "respool_test_panic: a panic inside respool was caught") != NULL);
    CHECK(strstr(last_error(), "respool_test_panic was called") != NULL);
    CHECK(respool_test_panic_value());
    CHECK(strstr(last_error(), "respool_test_panic_value was called") != NULL);

    /* A panic on a worker, inside a task: outcome PANICKED, destroy called
     * once while unwinding, run never, the pool goes on. */
    respool_pool *pool = test_pool(1, "64MiB");
    task_rec r;
    rec_init(&r);
    respool_job *job = NULL;
    CHECK_RC(respool_test_submit_panicking(pool, rec_run, &r, rec_destroy, &job), RESPOOL_OK);
    respool_result outcome = RESPOOL_INTERNAL;
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_PANICKED);
    CHECK(strstr(last_error(), "a panic inside a task") != NULL);
    CHECK(atomic_load(&r.runs) == 0 && atomic_load(&r.destroys) == 1);
    respool_job_free(job);

    task_rec after;
    rec_init(&after);
    CHECK_RC(respool_pool_submit(pool, NULL, rec_run, &after, rec_destroy, &job), RESPOOL_OK);
    CHECK_RC(respool_job_wait(job, &outcome), RESPOOL_OK);
    CHECK_OUTCOME(outcome, RESPOOL_OK);
    respool_job_free(job);
    CHECK_RC(respool_pool_shutdown(pool), RESPOOL_OK); /* counters are final */
    respool_stats s;
    CHECK_RC(respool_pool_stats(pool, &s), RESPOOL_OK);
    CHECK(s.panicked == 1 && s.completed == 1);
    respool_pool_free(pool);
    CHECK(atomic_load(&after.runs) == 1 && atomic_load(&after.destroys) == 1);
    CHECK(seen[RESPOOL_PANICKED]);
    return finish("test_panic");
}
