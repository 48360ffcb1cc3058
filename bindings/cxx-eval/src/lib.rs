//! A cxx bridge over `respool` (an evaluation, see `measure.sh`): C++
//! submits its own callables (`respool::cxx::task(lambda)`), and gets errors
//! as `rust::String` (`Job::wait`) or as `rust::Error` exceptions (the
//! `Result` functions, whose `what()` is the Rust error's message).
#![allow(missing_docs)]

use cxx::UniquePtr;

#[cxx::bridge(namespace = "respool::cxx")]
mod ffi {
    unsafe extern "C++" {
        include!("respool-cxx-eval/include/respool_cxx.hpp");

        /// A C++ callable (see include/respool_cxx.hpp).
        type Task;
        /// Runs it; a C++ exception it throws comes back as `Err`.
        fn run(self: Pin<&mut Task>) -> Result<()>;
    }

    extern "Rust" {
        type Pool;
        type Job;

        /// A pool of `workers` threads with `memory` of memory ("1GiB").
        fn new_pool(workers: usize, memory: &str) -> Result<Box<Pool>>;
        /// Submits `task` with no requirements.
        fn submit(self: &Pool, task: UniquePtr<Task>) -> Result<Box<Job>>;
        /// Submits `task` requiring `memory_bytes` of memory.
        fn submit_with_memory(
            self: &Pool,
            memory_bytes: u64,
            task: UniquePtr<Task>,
        ) -> Result<Box<Job>>;
        /// Submits `task` without a job.
        fn execute(self: &Pool, task: UniquePtr<Task>) -> Result<()>;
        /// Waits for the task: "" when it ran, otherwise what went wrong
        /// (the exception it threw, or why it never ran).
        fn wait(self: &mut Job) -> String;
    }
}

/// A C++ callable moved to a worker thread.
struct SendTask(UniquePtr<ffi::Task>);

// SAFETY: the callable is owned (unique_ptr), used by one thread at a time,
// and the C++ side requires tasks that may run on any thread (as
// respool.hpp does).
unsafe impl Send for SendTask {}

impl SendTask {
    fn run(mut self) -> Result<(), String> {
        match self.0.as_mut() {
            Some(t) => t.run().map_err(|e| e.what().to_owned()),
            None => Err("a null task".to_owned()),
        }
    }
}

pub struct Pool(respool::Pool);

pub struct Job(Option<respool::JoinHandle<Result<(), String>>>);

fn new_pool(workers: usize, memory: &str) -> Result<Box<Pool>, respool::BuildError> {
    respool::Pool::builder()
        .workers(workers)
        .memory(memory)
        .build()
        .map(|p| Box::new(Pool(p)))
}

impl Pool {
    fn submit(&self, task: UniquePtr<ffi::Task>) -> Result<Box<Job>, respool::SubmitError> {
        let task = SendTask(task);
        let h = self.0.submit(move || task.run())?;
        Ok(Box::new(Job(Some(h))))
    }

    fn submit_with_memory(
        &self,
        memory_bytes: u64,
        task: UniquePtr<ffi::Task>,
    ) -> Result<Box<Job>, respool::SubmitError> {
        let task = SendTask(task);
        let h = self
            .0
            .task()
            .require(respool::Dim::Memory, memory_bytes)
            .spawn(move |_| task.run())?;
        Ok(Box::new(Job(Some(h))))
    }

    fn execute(&self, task: UniquePtr<ffi::Task>) -> Result<(), respool::SubmitError> {
        let task = SendTask(task);
        self.0.execute(move || {
            let _ = task.run();
        })
    }
}

impl Job {
    fn wait(&mut self) -> String {
        match self.0.take().map(respool::JoinHandle::join) {
            Some(Ok(Ok(()))) => String::new(),
            Some(Ok(Err(thrown))) => thrown,
            Some(Err(e)) => e.to_string(),
            None => "already waited for".to_owned(),
        }
    }
}
