//! The command line (clap): `respool run ...` and `respool profiles ...`,
//! with the parsers of the option values that need more than clap's.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// respool: runs commands in parallel, learning what each kind of command
/// needs, and never runs the machine out of memory.
#[derive(Debug, Parser)]
#[command(name = "respool", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs COMMAND once per argument (GNU parallel's input forms).
    Run(RunArgs),
    /// Shows and edits the learned profiles.
    Profiles(ProfilesArgs),
    /// Runs a generated workload (GNU sort on small and large files) with
    /// a count-only runner (xargs -P) and twice with `respool run`, under
    /// one memory budget, and shows what each used.
    Demo(DemoArgs),
}

/// `respool demo`'s options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Jobs at once, for xargs -P and respool run -j [default: the CPUs, at least 2].
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// The memory budget the workload is sized for and run under
    /// [default: 512MiB, or half the available memory if less].
    #[arg(long, value_name = "BUDGET", value_parser = parse_budget)]
    pub memory: Option<u64>,
    /// Write the workload, the profiles and the results under DIR (made if
    /// missing, and kept) instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// Make no memory cgroup, as where this process may not (not root):
    /// the budget goes to respool as --memory, memory is sampled.
    #[arg(long)]
    pub no_cgroup: bool,
}

/// `respool run`'s options.
#[derive(Debug, Args)]
#[command(
    after_help = "Arguments: `::: A B C` (each `:::` group is an input source), `:::: FILE...` \
                  (one argument per line, `-` is standard input), else standard input one per line. \
                  Several sources combine as GNU parallel's (every combination, in order); \
                  a source after `:::+` or `::::+` is linked to the one before it: paired \
                  argument by argument instead of combined (a longer source's extra arguments are dropped, \
                  as GNU parallel 20221122 drops them).\n\
                  Replacement strings: {} {.} {/} {//} {/.} {#} and {N} {N.} {N/} {N//} {N/.}; \
                  without any, the arguments are appended. Arguments are shell-quoted."
)]
pub struct RunArgs {
    /// Jobs at most at once [default: the CPUs this machine or container allows].
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Memory the jobs may use together, e.g. 4GiB, 512MiB [default: the
    /// machine's or container's memory, less a headroom].
    #[arg(long, value_name = "BUDGET", value_parser = parse_budget)]
    pub memory: Option<u64>,
    /// Print the jobs' outputs in input order (default: each as it finishes, never interleaved).
    #[arg(short = 'k', long)]
    pub keep_order: bool,
    /// Print the commands, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// When to stop early: never, now|soon,fail|success|done=N or N% (GNU parallel's).
    #[arg(long, value_name = "WHEN,WHY=N", value_parser = parse_halt_option)]
    pub halt: Option<HaltOption>,
    /// Kill a job after SECONDS (suffix s, m, h, d), or after P% of its
    /// class's median run time (P above 100).
    #[arg(long, value_name = "DURATION|P%", value_parser = parse_timeout)]
    pub timeout: Option<Timeout>,
    /// The jobs' class (what respool learns under): a name, or a template
    /// with the command's replacement strings, expanded per job without
    /// quoting (e.g. 'sort-{/.}', 'conv-{2}') [default, and where the
    /// template expands to nothing: the program's name].
    #[arg(long, value_name = "NAME|TEMPLATE")]
    pub class: Option<String>,
    /// The profiles file [default: $XDG_STATE_HOME/respool/profiles.json,
    /// else ~/.local/state/respool/profiles.json].
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Price the run at this instance type's on-demand rates (the summary
    /// says what the jobs cost, and what they held unused) [default:
    /// m7i.large].
    #[arg(long, value_name = "TYPE", default_value = "m7i.large")]
    pub instance: String,
    /// A price table of your own (CSV: provider,region,instance,vcpus,
    /// memory_gib,gpus,usd_per_hour,as_of,source) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub pricing: Option<PathBuf>,
    /// Write GNU parallel's joblog to FILE.
    #[arg(long, value_name = "FILE")]
    pub joblog: Option<PathBuf>,
    /// Skip the jobs the --joblog FILE records (by job number, as GNU
    /// parallel), run the others, and append to FILE (and to --results).
    /// A missing FILE: every job runs. Jobs stopped by Ctrl-C are not in
    /// the joblog (as GNU parallel's), so --resume runs them again.
    #[arg(long, requires = "joblog")]
    pub resume: bool,
    /// As --resume, but also run again the jobs the joblog records as
    /// failed (Exitval or Signal not 0).
    #[arg(long, requires = "joblog")]
    pub resume_failed: bool,
    /// Write one JSON object per job (memory, CPU, prediction) to FILE.
    #[arg(long, value_name = "FILE.jsonl")]
    pub results: Option<PathBuf>,
    /// Measure memory with rusage (largest process), not a cgroup per job.
    /// Under rusage there is no per-job memory limit and no OOM retry: no
    /// OOM kill can be seen.
    #[arg(long)]
    pub no_cgroup: bool,
    /// Do not limit each job's memory. With a cgroup per job, each job is
    /// otherwise limited to what respool reserved for it (the whole budget
    /// while its class is on the fallback, not learned yet). Under rusage
    /// (--no-cgroup, or no cgroup can be made) there is no per-job limit.
    #[arg(long)]
    pub no_limit: bool,
    /// Times a job the OOM killer killed is retried, each time with its
    /// reservation raised (its peak x1.2, at least +100 MiB, at least its
    /// last reservation x1.2, capped at the budget); a job killed at the
    /// whole budget is not retried.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub oom_retries: u32,
    /// Do not draw the progress bar (it is drawn only when standard error
    /// is a terminal: jobs done, running and waiting, memory reserved and
    /// used against the budget, time left).
    #[arg(long)]
    pub no_progress: bool,
    /// The command, then its input: COMMAND... [::: ARGS...]... [:::: FILE...]...
    /// (`:::+`, `::::+`: linked to the source before)
    #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `respool profiles`'s options.
#[derive(Debug, Args)]
pub struct ProfilesArgs {
    /// The profiles file [default: as for `respool run`].
    #[arg(long, value_name = "PATH", global = true)]
    pub store: Option<PathBuf>,
    /// What to do with them.
    #[command(subcommand)]
    pub action: ProfilesAction,
}

/// What `respool profiles` does.
#[derive(Debug, Subcommand)]
pub enum ProfilesAction {
    /// One line per class: runs, samples, memory and run time.
    List,
    /// One class's record, as JSON.
    Show {
        /// The class.
        class: String,
    },
    /// Every profile on standard output: the profiles document (JSON, the
    /// default; `respool profiles import` reads it back), or each class's
    /// learned requests for a cluster scheduler.
    ///
    /// A request is the PERCENTILE of the class's measured samples plus
    /// MARGIN, rounded up (memory to whole MiB).
    ///
    /// Examples:
    ///   respool profiles export > profiles.json
    ///   respool profiles export --format k8s            # container resources per class
    ///   respool profiles export --format slurm --percentile 99 --margin 20
    ///   respool profiles export --format hq > job.toml  # hq job submit-file job.toml
    ///   respool profiles export --format ray
    #[command(verbatim_doc_comment)]
    Export {
        /// json (the profiles document), k8s (container resources), slurm
        /// (#SBATCH options), hq (a HyperQueue job file), ray (task options).
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// The percentile of the measured samples, 0 to 100 (not for json).
        #[arg(long, value_name = "P", default_value = "95", value_parser = parse_percent)]
        percentile: respool::Ppm,
        /// Added on top, in percent (not for json).
        #[arg(long, value_name = "PERCENT", default_value = "15", value_parser = parse_margin)]
        margin: respool::Ppm,
    },
    /// What each class costs per run, what its learned request would cost
    /// (the prediction for its next run) and the slack between them, and
    /// the instance type of the price table that runs it cheapest.
    Cost {
        /// The instance type to price at [default: m7i.large].
        #[arg(long, value_name = "TYPE", default_value = "m7i.large")]
        instance: String,
        /// A price table of your own (CSV, as for `respool run --pricing`).
        #[arg(long, value_name = "FILE")]
        pricing: Option<PathBuf>,
        /// The percentile of the measured samples the request is taken at, 0 to 100.
        #[arg(long, value_name = "P", default_value = "95", value_parser = parse_percent)]
        percentile: respool::Ppm,
        /// Added on top of the request, in percent.
        #[arg(long, value_name = "PERCENT", default_value = "15", value_parser = parse_margin)]
        margin: respool::Ppm,
    },
    /// Adds the classes of FILE (an export) to the store, replacing those of the same name.
    Import {
        /// The exported JSON file (`-`: standard input).
        file: PathBuf,
    },
    /// Removes a class from the store.
    Forget {
        /// The class.
        class: String,
    },
}

/// What `respool profiles export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The profiles document.
    Json,
    /// Kubernetes container `resources` per class.
    K8s,
    /// Slurm `#SBATCH` options per class.
    Slurm,
    /// A HyperQueue job file.
    Hq,
    /// Ray task options per class.
    Ray,
}

/// A percentage, as parts per million.
fn percent(s: &str, max: f64) -> Result<respool::Ppm, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of percent"))?;
    if !(0.0..=max).contains(&v) {
        return Err(format!("{s:?} is outside 0 to {max}"));
    }
    // In range: at most 1000% = 10^7 ppm, which fits a u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ppm = (v * 10_000.0).round() as u32;
    Ok(respool::Ppm::from_ppm(ppm))
}

fn parse_percent(s: &str) -> Result<respool::Ppm, String> {
    percent(s, 100.0)
}

fn parse_margin(s: &str) -> Result<respool::Ppm, String> {
    percent(s, 1000.0)
}

/// When `--halt` stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltWhen {
    /// Kill the running jobs and stop.
    Now,
    /// Start no new job; wait for the running ones.
    Soon,
}

/// What `--halt` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltWhy {
    /// Failed jobs.
    Fail,
    /// Successful jobs.
    Success,
    /// Finished jobs.
    Done,
}

/// How many of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HaltCount {
    /// This many jobs.
    Jobs(u64),
    /// This share of all jobs, in percent.
    Percent(f64),
}

/// A parsed `--halt` (`never` is `None`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Halt {
    /// Now or soon.
    pub when: HaltWhen,
    /// What is counted.
    pub why: HaltWhy,
    /// The threshold.
    pub count: HaltCount,
}

/// A parsed `--halt` value (`None`: never).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HaltOption(pub Option<Halt>);

fn parse_halt_option(s: &str) -> Result<HaltOption, String> {
    parse_halt(s).map(HaltOption)
}

/// A parsed `--timeout`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timeout {
    /// A fixed duration.
    Absolute(Duration),
    /// A share of the class's median run time (2.0 for `200%`).
    OfMedian(f64),
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("-j 0 would run nothing: give at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{s:?} is not a number of jobs (a whole number, at least 1)"
        )),
    }
}

/// Parses `--memory`: a size with respool's units, more than 0.
///
/// # Errors
///
/// A message for the user.
pub fn parse_budget(s: &str) -> Result<u64, String> {
    match respool::units::parse_bytes(s) {
        Ok(0) => Err("a memory budget of 0 bytes would run nothing: give e.g. 4GiB".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_count(s: &str) -> Option<HaltCount> {
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.parse().ok()?;
        return (p > 0.0 && p <= 100.0).then_some(HaltCount::Percent(p));
    }
    let n: u64 = s.parse().ok()?;
    (n > 0).then_some(HaltCount::Jobs(n))
}

/// Parses `--halt` as GNU parallel does (`never`, `now,fail=1`,
/// `soon,fail=3%`, `now,success=1`, `soon,done=2`, and the old `0`, `1`,
/// `2`, `-1`, `-2`, `N%`). `Ok(None)`: never.
///
/// # Errors
///
/// A message for the user.
pub fn parse_halt(s: &str) -> Result<Option<Halt>, String> {
    let bad = || {
        format!(
            "invalid --halt {s:?}: expected never, or WHEN,WHY=N with WHEN now or soon, \
             WHY fail, success or done, N a count (at least 1) or a percentage (e.g. now,fail=1, soon,fail=10%)"
        )
    };
    let halt = |when, why, count| Ok(Some(Halt { when, why, count }));
    match s {
        "never" | "0" => return Ok(None),
        "1" => return halt(HaltWhen::Soon, HaltWhy::Fail, HaltCount::Jobs(1)),
        "2" => return halt(HaltWhen::Now, HaltWhy::Fail, HaltCount::Jobs(1)),
        "-1" => return halt(HaltWhen::Soon, HaltWhy::Success, HaltCount::Jobs(1)),
        "-2" => return halt(HaltWhen::Now, HaltWhy::Success, HaltCount::Jobs(1)),
        _ => {}
    }
    if !s.contains(',') {
        return match parse_count(s) {
            Some(count @ HaltCount::Percent(_)) => halt(HaltWhen::Soon, HaltWhy::Fail, count),
            _ => Err(bad()),
        };
    }
    let (when, rest) = s.split_once(',').ok_or_else(bad)?;
    let when = match when {
        "now" => HaltWhen::Now,
        "soon" => HaltWhen::Soon,
        _ => return Err(bad()),
    };
    let (why, count) = rest.split_once('=').ok_or_else(bad)?;
    let why = match why {
        "fail" => HaltWhy::Fail,
        "success" => HaltWhy::Success,
        "done" => HaltWhy::Done,
        _ => return Err(bad()),
    };
    let count = parse_count(count).ok_or_else(bad)?;
    halt(when, why, count)
}

/// Parses `--timeout`: `200%` (of the class's median run time, above 100%),
/// or seconds with an optional unit (`90`, `1.5m`, `2h`, `1d`).
///
/// # Errors
///
/// A message for the user.
pub fn parse_timeout(s: &str) -> Result<Timeout, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        return match p.parse::<f64>() {
            Ok(p) if p > 100.0 && p.is_finite() => Ok(Timeout::OfMedian(p / 100.0)),
            Ok(p) if p.is_finite() && p >= 0.0 => Err(format!(
                "--timeout {s}: a job would be killed before the class's median run time; \
                 give more than 100% (e.g. 200%)"
            )),
            _ => Err(format!(
                "invalid --timeout {s:?}: expected e.g. 200% or 30 (seconds)"
            )),
        };
    }
    let (num, mult) = match t.as_bytes().last() {
        Some(b's') => (&t[..t.len() - 1], 1.0),
        Some(b'm') => (&t[..t.len() - 1], 60.0),
        Some(b'h') => (&t[..t.len() - 1], 3600.0),
        Some(b'd') => (&t[..t.len() - 1], 86400.0),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Duration::try_from_secs_f64(v * mult)
            .map(Timeout::Absolute)
            .map_err(|e| format!("invalid --timeout {s:?}: {e}")),
        _ => Err(format!(
            "invalid --timeout {s:?}: expected seconds above 0 (optionally with s, m, h or d) or a percentage such as 200%"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_forms() {
        assert_eq!(parse_halt("never"), Ok(None));
        assert_eq!(
            parse_halt("now,fail=1"),
            Ok(Some(Halt {
                when: HaltWhen::Now,
                why: HaltWhy::Fail,
                count: HaltCount::Jobs(1)
            }))
        );
        assert_eq!(
            parse_halt("soon,success=25%"),
            Ok(Some(Halt {
                when: HaltWhen::Soon,
                why: HaltWhy::Success,
                count: HaltCount::Percent(25.0)
            }))
        );
        assert_eq!(parse_halt("2"), parse_halt("now,fail=1"));
        for bad in [
            "later,fail=1",
            "now,fail=0",
            "now,oops=1",
            "now",
            "now,fail=x",
        ] {
            assert!(parse_halt(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeout_forms() {
        assert_eq!(parse_timeout("200%"), Ok(Timeout::OfMedian(2.0)));
        assert_eq!(
            parse_timeout("1.5m"),
            Ok(Timeout::Absolute(Duration::from_secs(90)))
        );
        assert_eq!(
            parse_timeout("3"),
            Ok(Timeout::Absolute(Duration::from_secs(3)))
        );
        for bad in ["50%", "0", "-1", "x", "%"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn budgets() {
        assert_eq!(parse_budget("1GiB"), Ok(1 << 30));
        assert!(parse_budget("0").is_err());
        assert!(parse_budget("lots").is_err());
    }
}
