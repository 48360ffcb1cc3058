// N trivial tasks through include/respool.hpp over the C ABI, one worker:
// submit all, wait all (the same program as percall_cxx.cpp).
#include <atomic>
#include <cstdlib>
#include <vector>

#include "respool.hpp"

int main(int argc, char **argv) {
    int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    respool::Config config;
    config.workers(1).capacity(RESPOOL_DIM_MEMORY, "1GiB");
    respool::Pool pool(config);
    std::atomic<int> sum{0};
    std::vector<respool::Job> jobs;
    jobs.reserve(n);
    for (int i = 0; i < n; i++) {
        jobs.push_back(pool.submit([&sum] { sum++; }));
    }
    for (auto &j : jobs) {
        if (j.wait() != RESPOOL_OK) return 1;
    }
    return sum == n ? 0 : 1;
}
