// Checks shared by the two C++ test translation units.
#pragma once
#ifndef RESPOOL_CPP_CHECK_HPP
#define RESPOOL_CPP_CHECK_HPP

#include <atomic>
#include <cstdio>

namespace check {
// `inline` variables: one definition shared by both translation units.
inline std::atomic<int> checks{0};
inline std::atomic<int> failures{0};

inline void expect(bool ok, const char *what, const char *file, int line) {
    ++checks;
    if (!ok) {
        ++failures;
        std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, what);
    }
}
}  // namespace check

#define CHECK(cond) check::expect(static_cast<bool>(cond), #cond, __FILE__, __LINE__)

// Tests in test_cpp_b.cpp.
void test_shutdown_now_destroys_callables();
void test_profiles_and_errors();
void test_threads();

#endif
