// C++ tests, translation unit A (with main). Both units include the headers,
// twice, to check the include guards and that nothing in them is defined
// more than once at link time.
#include "respool.hpp"
#include "respool.hpp"
#include "respool.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "cpp_check.hpp"

static_assert(!std::is_copy_constructible_v<respool::Pool>, "move-only");
static_assert(!std::is_copy_assignable_v<respool::Pool>, "move-only");
static_assert(std::is_nothrow_move_constructible_v<respool::Pool>, "movable");
static_assert(!std::is_copy_constructible_v<respool::Job>, "move-only");
static_assert(std::is_nothrow_move_assignable_v<respool::Job>, "movable");
static_assert(!std::is_copy_constructible_v<respool::TaskDesc>, "move-only");
static_assert(!std::is_copy_constructible_v<respool::Config>, "move-only");

namespace {

// Counts how many live copies of a callable exist, and how often one ran.
struct Tracked {
    std::atomic<int> *alive;
    std::atomic<int> *runs;
    Tracked(std::atomic<int> *a, std::atomic<int> *r) : alive(a), runs(r) { ++*alive; }
    Tracked(Tracked &&o) noexcept : alive(o.alive), runs(o.runs) { ++*alive; }
    Tracked(const Tracked &) = delete;
    ~Tracked() { --*alive; }
    void operator()() const { ++*runs; }
};

respool::Config small_config(std::size_t workers, const char *memory) {
    respool::Config c;
    c.workers(workers).capacity(RESPOOL_DIM_MEMORY, memory).capacity(RESPOOL_DIM_CPU, 4000);
    return c;
}

void test_basics() {
    CHECK(std::strcmp(respool::version(), RESPOOL_VERSION) == 0);
    respool::Pool pool(small_config(2, "1GiB").placement(RESPOOL_PLACEMENT_BEST_FIT_L2_RESIDUAL));
    std::atomic<int> sum{0};
    std::vector<respool::Job> jobs;
    respool::TaskDesc desc;
    desc.require(RESPOOL_DIM_MEMORY, "64MiB").require(RESPOOL_DIM_CPU, 250).priority(1);
    for (int i = 1; i <= 100; i++) {
        auto owned = std::make_unique<int>(i);  // move-only capture
        if (i % 2) {
            jobs.push_back(pool.submit([&sum, v = std::move(owned)] { sum += *v; }));
        } else {
            jobs.push_back(pool.submit(desc, [&sum, v = std::move(owned)] { sum += *v; }));
        }
    }
    for (auto &j : jobs) {
        CHECK(j.wait() == RESPOOL_OK);
        CHECK(j.status() == std::optional<respool_result>(RESPOOL_OK));
    }
    CHECK(sum == 5050);

    // std::function works as well.
    std::function<void()> fn = [&sum] { sum += 1; };
    CHECK(pool.submit(fn).wait() == RESPOOL_OK);
    CHECK(sum == 5051);

    pool.shutdown();  // counters are final once the workers are joined
    respool_stats s = pool.stats();
    CHECK(s.completed == 101);
    CHECK(s.capacity[RESPOOL_DIM_MEMORY] == 1024ull * 1024 * 1024);

    // Moving a Job moves the handle.
    respool::Job moved = std::move(jobs.front());
    CHECK(moved.valid() && !jobs.front().valid());
}

void test_errors_are_exceptions() {
    respool::Pool pool(small_config(1, "1GiB"));
    respool::TaskDesc too_big;
    too_big.require(RESPOOL_DIM_MEMORY, "2GiB");
    std::atomic<int> alive{0}, runs{0};
    try {
        pool.submit(too_big, Tracked(&alive, &runs));
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_NEVER_FITS);
        CHECK(std::string(e.what()).find("can never run") != std::string::npos);
    }
    CHECK(alive == 0 && runs == 0);  // the refused callable was destroyed

    try {
        respool::TaskDesc d;
        d.require(RESPOOL_DIM_CPU, "plenty");
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_PARSE_ERROR);
        CHECK(std::string(e.what()).find("\"plenty\"") != std::string::npos);
    }
    try {
        respool::Config().workers(0);
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_INVALID_ARGUMENT);
    }
    try {
        respool::Config().workers(std::size_t(1) << 40);
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_INVALID_ARGUMENT);
        CHECK(std::string(e.what()).find("limit of 4096") != std::string::npos);
    }
    try {
        respool::Config().placement(static_cast<respool_placement>(99));
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_INVALID_ARGUMENT);
        CHECK(std::string(e.what()).find("99 is not a respool_placement") != std::string::npos);
    }
    try {
        respool::Job empty;
        empty.wait();
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_NULL_ARGUMENT);
    }

    // A task's exception is rethrown by wait(), never crosses into respool.
    respool::Job j = pool.submit([] { throw std::runtime_error("task failed"); });
    try {
        j.wait();
        CHECK(false);
    } catch (const std::runtime_error &e) {
        CHECK(std::string(e.what()) == "task failed");
    }
    // Detached: discarded, and the pool goes on.
    pool.execute([] { throw 42; });
    CHECK(pool.submit(Tracked(&alive, &runs)).wait() == RESPOOL_OK);
    CHECK(runs == 1);
    pool.shutdown();
    CHECK(alive == 0);
    CHECK(pool.stats().panicked == 0);
    try {
        pool.execute([] {});
        CHECK(false);
    } catch (const respool::Error &e) {
        CHECK(e.code() == RESPOOL_SHUT_DOWN);
    }
}

void test_cancel_and_timeouts() {
    respool::Pool pool(small_config(1, "64MiB"));
    std::atomic<bool> started{false}, open{false};
    respool::Job blocker = pool.submit([&] {
        started = true;
        while (!open) std::this_thread::sleep_for(std::chrono::microseconds(100));
    });
    while (!started) std::this_thread::sleep_for(std::chrono::microseconds(100));
    std::atomic<int> alive{0}, runs{0};
    respool::Job queued = pool.submit(Tracked(&alive, &runs));
    CHECK(queued.cancel());
    CHECK(!blocker.wait_for(std::chrono::milliseconds(5)).has_value());
    CHECK(!blocker.status().has_value());
    open = true;
    CHECK(blocker.wait_for(std::chrono::minutes(10)) == std::optional<respool_result>(RESPOOL_OK));
    CHECK(queued.wait() == RESPOOL_CANCELLED);
    CHECK(runs == 0 && alive == 0);

    respool::TaskDesc timed;
    timed.timeout(std::chrono::milliseconds(5));
    respool::Job t = pool.submit(timed, [] {
        for (int i = 0; i < 100000 && !respool::task_is_cancelled(); i++) {
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    });
    CHECK(t.wait() == RESPOOL_TASK_TIMED_OUT);
}

}  // namespace

int main() {
    test_basics();
    test_errors_are_exceptions();
    test_cancel_and_timeouts();
    test_shutdown_now_destroys_callables();
    test_profiles_and_errors();
    test_threads();
    std::printf("test_cpp: %d checks, %d failures\n", check::checks.load(), check::failures.load());
    return check::failures == 0 ? 0 : 1;
}
