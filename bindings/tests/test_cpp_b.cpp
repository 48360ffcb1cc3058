// C++ tests, translation unit B: includes the same headers (twice) as A and
// is linked with it.
#include "respool.h"
#include "respool.hpp"
#include "respool.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "cpp_check.hpp"

namespace {
struct Counted {
    std::atomic<int> *destroyed;
    std::atomic<int> *runs;
    bool owner = true;
    Counted(std::atomic<int> *d, std::atomic<int> *r) : destroyed(d), runs(r) {}
    Counted(Counted &&o) noexcept : destroyed(o.destroyed), runs(o.runs) { o.owner = false; }
    ~Counted() {
        if (owner) ++*destroyed;
    }
    void operator()() { ++*runs; }
};

respool::Config config(std::size_t workers) {
    respool::Config c;
    c.workers(workers).capacity(RESPOOL_DIM_MEMORY, "256MiB").capacity(RESPOOL_DIM_CPU, "4");
    return c;
}
}  // namespace

void test_shutdown_now_destroys_callables() {
    std::atomic<int> destroyed{0}, runs{0};
    std::atomic<bool> started{false}, open{false};
    std::vector<respool::Job> jobs;
    {
        respool::Pool pool(config(1));
        pool.execute([&] {
            started = true;
            while (!open) std::this_thread::sleep_for(std::chrono::microseconds(100));
        });
        while (!started) std::this_thread::sleep_for(std::chrono::microseconds(100));
        for (int i = 0; i < 20; i++) jobs.push_back(pool.submit(Counted(&destroyed, &runs)));
        std::thread opener([&] {
            // Open once shutdown_now has taken the queued tasks out: with the
            // only worker blocked, nothing else empties the queue, and it
            // does so after telling the workers to take no more. (Opening as
            // soon as the pool refused work let the worker run a queued
            // task if shutdown_now was preempted between the two steps.)
            while (pool.stats().queued != 0) {
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
            open = true;
        });
        CHECK(pool.stats().queued == 20);
        std::size_t dropped = pool.shutdown_now();
        opener.join();
        CHECK(dropped == 20);
    }
    CHECK(runs == 0);
    CHECK(destroyed == 20);
    for (auto &j : jobs) CHECK(j.wait() == RESPOOL_SHUT_DOWN);
}

void test_profiles_and_errors() {
    char dir[] = "/tmp/respool-cpp-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    std::string path = std::string(dir) + "/p.json";
    {
        respool::Pool pool(config(2));
        respool::TaskDesc d;
        d.class_key("thumbnail").size_hint(1000);
        for (int i = 0; i < 4; i++) CHECK(pool.submit(d, [] {}).wait() == RESPOOL_OK);
        pool.export_profiles(path);
    }
    respool::Pool other(config(1));
    CHECK(other.import_profiles(path) == 1);
    CHECK(other.stats().learning_classes == 1);
    try {
        other.import_profiles(dir);  // a directory
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_STORE_IO);
    }
    std::remove(path.c_str());
    std::remove(dir);
}

void test_threads() {
    respool::Pool pool(config(4));
    respool::TaskDesc d;
    d.require(RESPOOL_DIM_MEMORY, "1MiB");
    std::atomic<int> runs{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&] {
            for (int i = 0; i < 250; i++) {
                if (i % 2) {
                    pool.execute(d, [&runs] { ++runs; });
                } else {
                    CHECK(pool.submit([&runs] { ++runs; }).wait() == RESPOOL_OK);
                }
            }
        });
    }
    for (auto &t : threads) t.join();
    pool.shutdown();
    CHECK(runs == 1000);
}
