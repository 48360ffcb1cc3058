//! `respool run`'s progress bar, drawn on standard error only when it is a
//! terminal (indicatif hides it otherwise): jobs done of all, running and
//! waiting, memory reserved and measured against the budget, and the time
//! left. Everything `respool run` prints to standard error while the bar
//! is shown goes through [`say`] or [`suspend`], which lift the bar first.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::schedule::fmt_bytes;

/// The bar of this process, once shown.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// The progress bar (or nothing, off a terminal or with `--no-progress`).
pub struct Progress {
    bar: Option<ProgressBar>,
    budget: Option<u64>,
}

/// What the bar shows besides the counts indicatif keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Jobs running now.
    pub running: u64,
    /// Jobs waiting for memory (respool's wait queue).
    pub waiting: usize,
    /// Memory reserved for the running jobs.
    pub reserved: Option<u64>,
    /// Memory the running jobs use now (their cgroups), if measured.
    pub measured: Option<u64>,
}

impl Progress {
    /// A bar for `total` jobs when `wanted` and standard error is a terminal.
    #[must_use]
    pub fn new(wanted: bool, total: u64, budget: Option<u64>) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress { bar: None, budget };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{bar:24.cyan/blue} {pos}/{len} jobs  {msg}  {elapsed_precise} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        let _ = BAR.set(bar.clone());
        Progress {
            bar: Some(bar),
            budget,
        }
    }

    /// Whether a bar is drawn.
    #[must_use]
    pub fn shown(&self) -> bool {
        self.bar.is_some()
    }

    /// Moves the bar to `done` jobs and shows `status`.
    pub fn update(&self, done: u64, status: Status) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(status_line(status, self.budget));
        }
    }

    /// Removes the bar (before the summary).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The bar's message: `running 2, waiting 3, memory 320.0 MiB reserved,
/// 290.1 MiB used of 448.0 MiB`.
#[must_use]
pub fn status_line(s: Status, budget: Option<u64>) -> String {
    let mut line = format!("running {}, waiting {}", s.running, s.waiting);
    if let Some(r) = s.reserved {
        line.push_str(&format!(", memory {} reserved", fmt_bytes(r)));
        if let Some(m) = s.measured {
            line.push_str(&format!(", {} used", fmt_bytes(m)));
        }
        if let Some(b) = budget {
            line.push_str(&format!(" of {}", fmt_bytes(b)));
        }
    }
    line
}

/// Runs `f` (which prints) with the bar lifted, if one is shown.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match BAR.get() {
        Some(bar) if !bar.is_finished() => bar.suspend(f),
        _ => f(),
    }
}

/// Prints `message` and a newline on standard error, above the bar.
pub fn say(message: impl std::fmt::Display) {
    suspend(|| eprintln!("{message}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_what_is_known() {
        let s = Status {
            running: 2,
            waiting: 3,
            reserved: Some(320 << 20),
            measured: Some(290 << 20),
        };
        assert_eq!(
            status_line(s, Some(448 << 20)),
            "running 2, waiting 3, memory 320.0 MiB reserved, 290.0 MiB used of 448.0 MiB"
        );
        let s = Status {
            measured: None,
            ..s
        };
        assert_eq!(
            status_line(s, None),
            "running 2, waiting 3, memory 320.0 MiB reserved"
        );
        assert_eq!(
            status_line(Status::default(), Some(1)),
            "running 0, waiting 0"
        );
    }

    #[test]
    fn off_a_terminal_there_is_no_bar() {
        // cargo test captures standard error: not a terminal.
        if std::io::stderr().is_terminal() {
            return;
        }
        let p = Progress::new(true, 10, None);
        assert!(!p.shown());
        p.update(3, Status::default());
        p.finish();
    }
}
