// The C++ side of the cxx bridge (src/lib.rs): a type-erased, move-only
// callable that Rust runs on a worker. cxx cannot take a C++ closure
// directly (rust::Fn is for Rust functions, and a C++ function pointer has
// no state), so the callable travels as an opaque C++ type in a
// std::unique_ptr, and Rust calls back into C++ to run it.
#pragma once
#include <memory>
#include <type_traits>
#include <utility>

namespace respool {
namespace cxx {

class Task {
public:
    virtual ~Task() = default;
    virtual void run() = 0;
};

template <class F>
class TaskOf final : public Task {
public:
    explicit TaskOf(F f) : f_(std::move(f)) {}
    void run() override { f_(); }

private:
    F f_;
};

/// Any `void()` callable, move-only ones included.
template <class F>
std::unique_ptr<Task> task(F &&f) {
    return std::make_unique<TaskOf<std::decay_t<F>>>(std::forward<F>(f));
}

}  // namespace cxx
}  // namespace respool
