/*
 * Deliberate misuse of the C API, so that ci/c-tests.sh can show that its
 * AddressSanitizer and valgrind runs would catch real errors: each mode must
 * make the checker fail.
 *
 *   double-free     a handle freed twice (caught wherever free is watched)
 *   leak            a handle never freed (a definite leak)
 *   use-after-free  a freed handle written to by the library (caught only
 *                   when the Rust side itself is instrumented)
 */
#include <stdio.h>
#include <string.h>

#include "respool.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: canary double-free|leak|use-after-free\n");
        return 2;
    }
    respool_config *cfg = NULL;
    if (respool_config_new(&cfg) != RESPOOL_OK) {
        return 2;
    }
    if (strcmp(argv[1], "double-free") == 0) {
        respool_config_free(cfg);
        respool_config_free(cfg);
    } else if (strcmp(argv[1], "leak") == 0) {
        cfg = NULL;
    } else if (strcmp(argv[1], "use-after-free") == 0) {
        respool_config_free(cfg);
        respool_config_set_workers(cfg, 3);
    } else {
        return 2;
    }
    return 0;
}
