/*
 * respool from C in five minutes: a pool with a memory budget, tasks that
 * declare what they need, waiting for them, statistics, and learned
 * profiles saved for the next run.
 *
 * Build and run it from the repository root (README.md gives the same lines
 * and ci/c-tests.sh runs them):
 *
 * c-build:begin
 *   bindings/stage.sh
 *   # static
 *   cc -std=c11 bindings/c/example.c -Iinclude target/c/lib/librespool.a \
 *      $(cat target/c/lib/native-static-libs.txt) -o target/c/example-static
 *   target/c/example-static
 *   # shared (the rpath finds librespool.so.0 where it was staged; installed,
 *   # use `pkg-config --cflags --libs respool` instead)
 *   cc -std=c11 bindings/c/example.c -Iinclude -Ltarget/c/lib -lrespool \
 *      -Wl,-rpath,"$PWD/target/c/lib" -lpthread -ldl -lm -o target/c/example-shared
 *   target/c/example-shared
 * c-build:end
 *
 * Installed:  cc -std=c11 example.c $(pkg-config --cflags --libs respool) -o example
 */
#include <stdio.h>
#include <stdlib.h>

#include "respool.h"

/* Stops the program with respool's explanation of what went wrong. */
static void check(respool_result rc, const char *what) {
    if (rc != RESPOOL_OK) {
        char details[512];
        respool_last_error_message(details, sizeof details, NULL);
        fprintf(stderr, "%s: %s (%s)\n", what, respool_result_message(rc), details);
        exit(1);
    }
}

/* A task: sums the numbers 1..n into its own slot. */
typedef struct {
    unsigned long n;
    unsigned long sum;
} work;

static void run_sum(void *user) {
    work *w = user;
    for (unsigned long i = 1; i <= w->n; i++) {
        w->sum += i;
    }
}

int main(void) {
    /* 1. A pool with 4 workers and a 1 GiB memory budget. */
    respool_config *config = NULL;
    check(respool_config_new(&config), "config");
    check(respool_config_set_workers(config, 4), "workers");
    check(respool_config_set_capacity_str(config, RESPOOL_DIM_MEMORY, "1GiB"), "memory");
    respool_pool *pool = NULL;
    check(respool_pool_new(config, &pool), "pool");
    respool_config_free(config);

    /* 2. Tasks that need 256 MiB each: at most 4 run at once. The class key
     *    lets respool learn what "sum" tasks really use. */
    respool_task_desc *desc = NULL;
    check(respool_task_desc_new(&desc), "desc");
    check(respool_task_desc_set_requirement_str(desc, RESPOOL_DIM_MEMORY, "256MiB"), "need");
    check(respool_task_desc_set_class(desc, "sum"), "class");

    enum { TASKS = 8 };
    work works[TASKS];
    respool_job *jobs[TASKS];
    for (int i = 0; i < TASKS; i++) {
        works[i] = (work){.n = 1000ul * (unsigned long)(i + 1), .sum = 0};
        /* No destroy callback: `works` outlives the tasks. */
        check(respool_pool_submit(pool, desc, run_sum, &works[i], NULL, &jobs[i]), "submit");
    }

    /* 3. A task that can never fit is refused at once, with the reason. */
    respool_task_desc *huge = NULL;
    check(respool_task_desc_new(&huge), "desc");
    check(respool_task_desc_set_requirement_str(huge, RESPOOL_DIM_MEMORY, "4GiB"), "need");
    work unused = {0, 0};
    respool_result rc = respool_pool_submit(pool, huge, run_sum, &unused, NULL, NULL);
    char why[256];
    respool_last_error_message(why, sizeof why, NULL);
    printf("4 GiB task: %s\n  %s\n", respool_result_message(rc), why);
    respool_task_desc_free(huge);

    /* 4. Wait for each job; its outcome says whether it ran. */
    for (int i = 0; i < TASKS; i++) {
        respool_result outcome;
        check(respool_job_wait(jobs[i], &outcome), "wait");
        printf("task %d: %s, sum(1..%lu) = %lu\n", i, respool_result_message(outcome), works[i].n,
               works[i].sum);
        respool_job_free(jobs[i]);
    }
    respool_task_desc_free(desc);

    /* 5. Statistics. */
    respool_stats stats;
    check(respool_pool_stats(pool, &stats), "stats");
    printf("submitted %llu, completed %llu, refused %llu; memory %llu of %llu bytes reserved\n",
           (unsigned long long)stats.submitted, (unsigned long long)stats.completed,
           (unsigned long long)stats.rejected,
           (unsigned long long)stats.reserved[RESPOOL_DIM_MEMORY],
           (unsigned long long)stats.capacity[RESPOOL_DIM_MEMORY]);

    /* 6. Save what was learned; a later run imports it. */
    check(respool_pool_export_profiles(pool, "respool-example-profiles.json"), "export");
    size_t classes = 0;
    check(respool_pool_import_profiles(pool, "respool-example-profiles.json", &classes), "import");
    printf("profiles: %zu class(es) saved and loaded back\n", classes);
    remove("respool-example-profiles.json");

    /* 7. Graceful shutdown: every accepted task runs, then the pool is freed. */
    respool_pool_free(pool);
    printf("header %s, library %s\n", RESPOOL_VERSION, respool_version());
    return 0;
}
