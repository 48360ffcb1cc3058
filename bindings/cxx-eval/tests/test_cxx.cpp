// The bridge does what it was built for: C++ callables (move-only ones
// too) run as tasks, a task's exception comes back as a rust::String, a
// refusal as a rust::Error exception.
#include <atomic>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "respool-cxx-eval/src/lib.rs.h"
#include "rust/cxx.h"

#define CHECK(c)                                                         \
    do {                                                                 \
        if (!(c)) {                                                      \
            std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #c); \
            return 1;                                                    \
        }                                                                \
    } while (0)

int main() {
    using respool::cxx::task;
    rust::Box<respool::cxx::Pool> pool = respool::cxx::new_pool(2, "1GiB");
    std::atomic<int> sum{0};
    std::vector<rust::Box<respool::cxx::Job>> jobs;
    for (int i = 1; i <= 100; i++) {
        auto owned = std::make_unique<int>(i);  // move-only capture
        if (i % 2) {
            jobs.push_back(pool->submit(task([&sum, v = std::move(owned)] { sum += *v; })));
        } else {
            jobs.push_back(pool->submit_with_memory(
                64 << 20, task([&sum, v = std::move(owned)] { sum += *v; })));
        }
    }
    for (auto &j : jobs) {
        CHECK(j->wait().empty());
    }
    CHECK(sum == 5050);

    auto thrower = pool->submit(task([] { throw std::runtime_error("no input"); }));
    rust::String error = thrower->wait();
    CHECK(std::string(error) == "no input");

    bool refused = false;
    try {
        pool->submit_with_memory(std::uint64_t(2) << 30, task([] {}));
    } catch (const rust::Error &e) {
        refused = std::string(e.what()).find("never") != std::string::npos;
        if (!refused) {
            std::fprintf(stderr, "unexpected message: %s\n", e.what());
        }
    }
    CHECK(refused);
    std::puts("test_cxx: ok");
    return 0;
}
