/*
 * respool C++ API: a thin, header-only RAII layer over respool.h (C++17).
 *
 * - Move-only owners: respool::Config, respool::TaskDesc, respool::Pool and
 *   respool::Job each hold a std::unique_ptr whose deleter calls the C
 *   _free function. Destroying a Pool shuts it down gracefully (every
 *   accepted task runs) and waits; destroying a Job that has not finished
 *   detaches it.
 * - Errors are exceptions: every C call that does not return RESPOOL_OK
 *   throws respool::Error, which carries the respool_result code and the
 *   detailed message of respool_last_error_message. A job's *outcome* is
 *   not an error of the call and is returned as a respool_result
 *   (RESPOOL_OK, RESPOOL_CANCELLED, RESPOOL_SHUT_DOWN, ...): a cancelled or
 *   shut-down task is an expected result, not an exception.
 * - Tasks are any callable `void()` (lambdas, std::function): moved into a
 *   heap box passed as the C `user` pointer, called by `run`, deleted by
 *   `destroy` (exactly once, whatever happens). An exception thrown by a
 *   task never reaches respool: it is captured and rethrown by Job::wait()
 *   (discarded for tasks submitted with execute()). The callable's
 *   destructor runs inside `destroy`, which must not call respool: do not
 *   let a task own a respool::Pool or respool::Job.
 * - Thread safety is that of the C API: Pool and Job methods may be called
 *   from any thread (not while the object is being destroyed or moved);
 *   Config and TaskDesc must not be changed while another thread uses them.
 */
#pragma once
#ifndef RESPOOL_HPP
#define RESPOOL_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "respool.h"

namespace respool {

/// A failed call: the C result code and the details.
class Error : public std::runtime_error {
public:
    Error(respool_result code, const std::string &message)
        : std::runtime_error(message), code_(code) {}

    /// The C result code (never RESPOOL_OK).
    respool_result code() const noexcept { return code_; }

private:
    respool_result code_;
};

namespace detail {

/// The calling thread's last error message (empty if none).
inline std::string last_error_message() {
    std::size_t needed = 0;
    if (respool_last_error_message(nullptr, 0, &needed) != RESPOOL_OK || needed == 0) {
        return std::string();
    }
    std::string s(needed + 1, '\0');
    if (respool_last_error_message(&s[0], s.size(), &needed) != RESPOOL_OK) {
        return std::string();
    }
    s.resize(needed < s.size() ? needed : s.size() - 1);
    return s;
}

/// Throws respool::Error unless `r` is RESPOOL_OK.
inline void check(respool_result r) {
    if (r != RESPOOL_OK) {
        std::string details = last_error_message();
        throw Error(r, details.empty() ? std::string(respool_result_message(r)) : details);
    }
}

struct ConfigFree {
    void operator()(respool_config *p) const noexcept { respool_config_free(p); }
};
struct TaskDescFree {
    void operator()(respool_task_desc *p) const noexcept { respool_task_desc_free(p); }
};
struct PoolFree {
    void operator()(respool_pool *p) const noexcept { respool_pool_free(p); }
};
struct JobFree {
    void operator()(respool_job *p) const noexcept { respool_job_free(p); }
};

/// What a task leaves for its Job: the exception it threw, if any. Written
/// by the worker before `destroy` returns, read after the job finished.
struct TaskState {
    std::exception_ptr error;
};

/// A callable in the C `user` pointer.
template <class F>
struct Boxed {
    F f;
    std::shared_ptr<TaskState> state;

    static void run(void *user) noexcept {
        auto *b = static_cast<Boxed *>(user);
        try {
            b->f();
        } catch (...) {
            if (b->state) {
                b->state->error = std::current_exception();
            }
        }
    }

    static void destroy(void *user) noexcept { delete static_cast<Boxed *>(user); }
};

}  // namespace detail

/// The version of the linked library ("MAJOR.MINOR.PATCH"); compare with
/// RESPOOL_VERSION, the header's.
inline const char *version() noexcept { return respool_version(); }

/// Inside a task: whether it was asked to stop (cancelled after it started,
/// or past its timeout). Long tasks should poll it and return.
inline bool task_is_cancelled() noexcept { return respool_task_is_cancelled(); }

/// A pool configuration (see respool_config_* in respool.h). Setters return
/// *this so they chain, and throw respool::Error for invalid values.
class Config {
public:
    Config() {
        respool_config *p = nullptr;
        detail::check(respool_config_new(&p));
        p_.reset(p);
    }

    /// 1 to RESPOOL_MAX_WORKERS.
    Config &workers(std::size_t n) {
        detail::check(respool_config_set_workers(p_.get(), n));
        return *this;
    }
    /// Capacity of `dim` in its unit (millicores, bytes, ...).
    Config &capacity(respool_dim dim, std::uint64_t amount) {
        detail::check(respool_config_set_capacity(p_.get(), dim, amount));
        return *this;
    }
    /// Capacity of `dim` as text: "8GiB", "2500m".
    Config &capacity(respool_dim dim, const std::string &amount) {
        detail::check(respool_config_set_capacity_str(p_.get(), dim, amount.c_str()));
        return *this;
    }
    /// Held back from every task in `dim`; 0 undoes an earlier headroom.
    Config &headroom(respool_dim dim, std::uint64_t amount) {
        detail::check(respool_config_set_headroom(p_.get(), dim, amount));
        return *this;
    }
    /// Admission policy; `max_wait` only for RESPOOL_POLICY_BLOCK_UNTIL_DEADLINE.
    Config &admission(respool_policy policy,
                      std::chrono::milliseconds max_wait = std::chrono::milliseconds(0)) {
        detail::check(respool_config_set_admission(
            p_.get(), policy, static_cast<std::uint64_t>(max_wait.count())));
        return *this;
    }
    /// Placement algorithm: one of respool_placement (default
    /// RESPOOL_PLACEMENT_BEST_FIT_DOT_PRODUCT).
    Config &placement(respool_placement algorithm) {
        detail::check(
            respool_config_set_placement(p_.get(), static_cast<std::uint32_t>(algorithm)));
        return *this;
    }
    /// At most RESPOOL_MAX_WAITING.
    Config &max_waiting(std::size_t n) {
        detail::check(respool_config_set_max_waiting(p_.get(), n));
        return *this;
    }
    Config &critical_reserve(respool_dim dim, std::uint64_t amount) {
        detail::check(respool_config_set_critical_reserve(p_.get(), dim, amount));
        return *this;
    }
    Config &learning(bool enabled) {
        detail::check(respool_config_set_learning(p_.get(), enabled));
        return *this;
    }
    Config &learning_min_executions(std::uint32_t runs) {
        detail::check(respool_config_set_learning_min_executions(p_.get(), runs));
        return *this;
    }
    /// Confidence threshold in parts per million (500000 = 50%).
    Config &learning_confidence(std::uint32_t ppm) {
        detail::check(respool_config_set_learning_confidence(p_.get(), ppm));
        return *this;
    }
    Config &learning_fallback(respool_dim dim, std::uint64_t amount) {
        detail::check(respool_config_set_learning_fallback(p_.get(), dim, amount));
        return *this;
    }
    Config &profile_path(const std::string &path) {
        detail::check(respool_config_set_profile_path(p_.get(), path.c_str()));
        return *this;
    }
    /// RESPOOL_MIN_STACK_SIZE to RESPOOL_MAX_STACK_SIZE bytes.
    Config &stack_size(std::size_t bytes) {
        detail::check(respool_config_set_stack_size(p_.get(), bytes));
        return *this;
    }

    const respool_config *get() const noexcept { return p_.get(); }

private:
    std::unique_ptr<respool_config, detail::ConfigFree> p_;
};

/// A task description (see respool_task_desc_* in respool.h).
class TaskDesc {
public:
    TaskDesc() {
        respool_task_desc *p = nullptr;
        detail::check(respool_task_desc_new(&p));
        p_.reset(p);
    }

    TaskDesc &class_key(const std::string &key) {
        detail::check(respool_task_desc_set_class(p_.get(), key.c_str()));
        return *this;
    }
    /// Requires `amount` of `dim`, in its unit.
    TaskDesc &require(respool_dim dim, std::uint64_t amount) {
        detail::check(respool_task_desc_set_requirement(p_.get(), dim, amount));
        return *this;
    }
    /// Requires an amount of `dim` given as text: "512MiB", "500m".
    TaskDesc &require(respool_dim dim, const std::string &amount) {
        detail::check(respool_task_desc_set_requirement_str(p_.get(), dim, amount.c_str()));
        return *this;
    }
    TaskDesc &priority(std::int32_t p) {
        detail::check(respool_task_desc_set_priority(p_.get(), p));
        return *this;
    }
    /// A deadline this long after each submission.
    TaskDesc &deadline(std::chrono::milliseconds after_submit) {
        detail::check(respool_task_desc_set_deadline_ms(
            p_.get(), static_cast<std::uint64_t>(after_submit.count())));
        return *this;
    }
    /// A timeout counted from the task's start; 0 means none.
    TaskDesc &timeout(std::chrono::milliseconds t) {
        detail::check(
            respool_task_desc_set_timeout_ms(p_.get(), static_cast<std::uint64_t>(t.count())));
        return *this;
    }
    TaskDesc &critical(bool on = true) {
        detail::check(respool_task_desc_set_critical(p_.get(), on));
        return *this;
    }
    TaskDesc &size_hint(std::uint64_t size) {
        detail::check(respool_task_desc_set_size_hint(p_.get(), size));
        return *this;
    }

    const respool_task_desc *get() const noexcept { return p_.get(); }

private:
    std::unique_ptr<respool_task_desc, detail::TaskDescFree> p_;
};

/// A submitted task. Destroying an unfinished Job detaches the task.
class Job {
public:
    /// An empty job (valid() is false).
    Job() noexcept = default;

    /// Waits until the task finished (its callable returned or will never
    /// be called, and was destroyed) and returns the outcome: RESPOOL_OK,
    /// RESPOOL_CANCELLED, RESPOOL_SHUT_DOWN, RESPOOL_REJECTED_WHILE_WAITING,
    /// RESPOOL_DEADLINE_MISSED, RESPOOL_TASK_TIMED_OUT or RESPOOL_PANICKED.
    /// Rethrows the exception the task threw, if any.
    respool_result wait() {
        respool_result outcome = RESPOOL_OK;
        detail::check(respool_job_wait(p_.get(), &outcome));
        rethrow_task_exception();
        return outcome;
    }

    /// As wait(), for at most `timeout`; std::nullopt if not finished.
    template <class Rep, class Period>
    std::optional<respool_result> wait_for(std::chrono::duration<Rep, Period> timeout) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
        respool_result outcome = RESPOOL_OK;
        respool_result r = respool_job_wait_timeout(
            p_.get(), static_cast<std::uint64_t>(ms < 0 ? 0 : ms), &outcome);
        if (r == RESPOOL_TIMED_OUT) {
            return std::nullopt;
        }
        detail::check(r);
        rethrow_task_exception();
        return outcome;
    }

    /// The outcome if finished, without waiting (does not rethrow).
    std::optional<respool_result> status() const {
        respool_result outcome = RESPOOL_OK;
        respool_result r = respool_job_status(p_.get(), &outcome);
        if (r == RESPOOL_TIMED_OUT) {
            return std::nullopt;
        }
        detail::check(r);
        return outcome;
    }

    /// Requests cancellation; true if the task will never start.
    bool cancel() {
        bool prevented = false;
        detail::check(respool_job_cancel(p_.get(), &prevented));
        return prevented;
    }

    bool valid() const noexcept { return p_ != nullptr; }
    respool_job *get() const noexcept { return p_.get(); }

private:
    friend class Pool;
    Job(respool_job *job, std::shared_ptr<detail::TaskState> state) noexcept
        : p_(job), state_(std::move(state)) {}

    void rethrow_task_exception() const {
        if (state_ && state_->error) {
            std::rethrow_exception(state_->error);
        }
    }

    std::unique_ptr<respool_job, detail::JobFree> p_;
    std::shared_ptr<detail::TaskState> state_;
};

/// A resource-aware task pool. Destroying it shuts it down gracefully and
/// waits for every accepted task.
class Pool {
public:
    explicit Pool(const Config &config) {
        respool_pool *p = nullptr;
        detail::check(respool_pool_new(config.get(), &p));
        p_.reset(p);
    }

    /// Submits `f` without requirements (the fast path).
    template <class F>
    Job submit(F &&f) {
        return submit_impl(nullptr, std::forward<F>(f), true);
    }

    /// Submits `f` with the requirements and attributes of `desc`.
    template <class F>
    Job submit(const TaskDesc &desc, F &&f) {
        return submit_impl(desc.get(), std::forward<F>(f), true);
    }

    /// Submits `f` without a job (an exception it throws is discarded).
    template <class F>
    void execute(F &&f) {
        submit_impl(nullptr, std::forward<F>(f), false);
    }

    template <class F>
    void execute(const TaskDesc &desc, F &&f) {
        submit_impl(desc.get(), std::forward<F>(f), false);
    }

    respool_stats stats() const {
        respool_stats s;
        detail::check(respool_pool_stats(p_.get(), &s));
        return s;
    }

    /// Graceful: runs every accepted task, then stops.
    void shutdown() { detail::check(respool_pool_shutdown(p_.get())); }

    /// Drops every task that has not started; returns how many. A submitter
    /// blocked until admission is woken instead (its submit throws respool::Error
    /// with RESPOOL_SHUT_DOWN; its task is not counted here).
    std::size_t shutdown_now() {
        std::size_t n = 0;
        detail::check(respool_pool_shutdown_now(p_.get(), &n));
        return n;
    }

    void set_capacity(respool_dim dim, std::uint64_t amount) {
        detail::check(respool_pool_set_capacity(p_.get(), dim, amount));
    }

    void export_profiles(const std::string &path) const {
        detail::check(respool_pool_export_profiles(p_.get(), path.c_str()));
    }

    /// Returns how many classes were loaded.
    std::size_t import_profiles(const std::string &path) {
        std::size_t n = 0;
        detail::check(respool_pool_import_profiles(p_.get(), path.c_str(), &n));
        return n;
    }

    respool_pool *get() const noexcept { return p_.get(); }

private:
    template <class F>
    Job submit_impl(const respool_task_desc *desc, F &&f, bool want_job) {
        using Box = detail::Boxed<std::decay_t<F>>;
        static_assert(std::is_invocable_v<std::decay_t<F> &>, "a task is callable as f()");
        std::shared_ptr<detail::TaskState> state;
        if (want_job) {
            state = std::make_shared<detail::TaskState>();
        }
        // Owned by respool from the call on: `destroy` deletes it on every
        // path, including a failed submission.
        Box *box = new Box{std::forward<F>(f), state};
        respool_job *job = nullptr;
        detail::check(respool_pool_submit(p_.get(), desc, &Box::run, box, &Box::destroy,
                                          want_job ? &job : nullptr));
        return Job(job, std::move(state));
    }

    std::unique_ptr<respool_pool, detail::PoolFree> p_;
};

}  // namespace respool

#endif /* RESPOOL_HPP */
