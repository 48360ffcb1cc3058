// N trivial tasks through the cxx bridge, one worker: submit all, wait all.
#include <atomic>
#include <cstdlib>
#include <vector>

#include "respool-cxx-eval/src/lib.rs.h"

int main(int argc, char **argv) {
    int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    rust::Box<respool::cxx::Pool> pool = respool::cxx::new_pool(1, "1GiB");
    std::atomic<int> sum{0};
    std::vector<rust::Box<respool::cxx::Job>> jobs;
    jobs.reserve(n);
    for (int i = 0; i < n; i++) {
        jobs.push_back(pool->submit(respool::cxx::task([&sum] { sum++; })));
    }
    for (auto &j : jobs) {
        if (!j->wait().empty()) return 1;
    }
    return sum == n ? 0 : 1;
}
