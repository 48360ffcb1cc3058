//! `respool run` and `respool profiles`, run as the built binary, compared
//! with GNU parallel where it is installed.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_respool");

/// A temporary directory with a profiles store in it.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> PathBuf {
        self.path("profiles.json")
    }

    /// `respool run --store STORE --no-cgroup ARGS...` with `stdin`.
    fn run<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Output {
        let mut full: Vec<OsString> = vec!["run".into(), "--store".into(), self.store().into()];
        full.extend(args.iter().map(|a| a.as_ref().to_owned()));
        exec(BIN, &full, stdin)
    }

    fn profiles<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut full: Vec<OsString> =
            vec!["profiles".into(), "--store".into(), self.store().into()];
        full.extend(args.iter().map(|a| a.as_ref().to_owned()));
        exec(BIN, &full, b"")
    }
}

fn exec<S: AsRef<OsStr>>(program: &str, args: &[S], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin).expect("stdin written");
    drop(input);
    child.wait_with_output().expect("the program ends")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// GNU parallel, when the `parallel` on this machine is it.
fn gnu_parallel() -> Option<&'static str> {
    match Command::new("parallel").arg("--version").output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).starts_with("GNU parallel") => Some("parallel"),
        _ => {
            println!("skipped: `parallel --version` is not GNU parallel here");
            None
        }
    }
}

#[test]
fn every_input_form() {
    let env = Env::new();
    // ::: groups: every combination, the last varying fastest.
    let o = env.run(&["-k", "echo", ":::", "a", "b", ":::", "1", "2"], b"");
    assert_eq!(stdout(&o), "a 1\na 2\nb 1\nb 2\n", "{}", stderr(&o));
    // :::: files, and ::: mixed with ::::.
    let file = env.path("args");
    std::fs::write(&file, "x\ny\n").expect("written");
    let o = env.run(
        &[
            OsStr::new("-k"),
            OsStr::new("echo"),
            OsStr::new("::::"),
            file.as_os_str(),
        ],
        b"",
    );
    assert_eq!(stdout(&o), "x\ny\n");
    let o = env.run(
        &[
            OsStr::new("-k"),
            OsStr::new("echo"),
            OsStr::new(":::"),
            OsStr::new("a"),
            OsStr::new("::::"),
            file.as_os_str(),
        ],
        b"",
    );
    assert_eq!(stdout(&o), "a x\na y\n");
    // Standard input, one argument per line (an empty line is an argument,
    // a last line without newline counts).
    let o = env.run(&["-k", "echo", "x{}y"], b"a\n\nb");
    assert_eq!(stdout(&o), "xay\nxy\nxby\n");
    // `:::: -` is standard input too.
    let o = env.run(&["-k", "echo", "::::", "-"], b"p\nq\n");
    assert_eq!(stdout(&o), "p\nq\n");
    // No input at all: no job.
    let o = env.run(&["echo", "never"], b"");
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), String::new()));
}

#[test]
fn each_replacement_string() {
    let env = Env::new();
    let o = env.run(
        &[
            "-k", "echo", "[{}]", "[{.}]", "[{/}]", "[{//}]", "[{/.}]", "[{#}]", ":::", "dir/a.b",
            "/x/y.z",
        ],
        b"",
    );
    assert_eq!(
        stdout(&o),
        "[dir/a.b] [dir/a] [a.b] [dir] [a] [1]\n[/x/y.z] [/x/y] [y.z] [/x] [y] [2]\n"
    );
    // Positional replacement strings, and the arguments appended when there is none.
    let o = env.run(&["-k", "echo", "{2}-{1.}", ":::", "a.x", ":::", "b"], b"");
    assert_eq!(stdout(&o), "b-a\n");
    let o = env.run(&["-k", "echo", "pre", ":::", "a b", ":::", "c"], b"");
    assert_eq!(stdout(&o), "pre a b c\n");
}

#[test]
fn nasty_arguments_reach_the_command_intact() {
    let env = Env::new();
    let nasty: Vec<Vec<u8>> = vec![
        b"two words".to_vec(),
        b"it's".to_vec(),
        b"\"double\"".to_vec(),
        b"line\nbreak".to_vec(),
        b"$HOME `id` $(id) ; | & * ?".to_vec(),
        b"\xff\xfe not utf-8".to_vec(),
        b"".to_vec(),
        b"-n".to_vec(),
    ];
    // `printf '%s\0'` writes each argument back as it arrived.
    let mut args: Vec<OsString> =
        vec!["-k".into(), "printf".into(), "'%s\\0'".into(), ":::".into()];
    args.extend(nasty.iter().map(|a| OsString::from_vec(a.clone())));
    let o = env.run(&args, b"");
    let expected: Vec<u8> = nasty
        .iter()
        .flat_map(|a| a.iter().copied().chain([0]))
        .collect();
    assert_eq!(o.stdout, expected, "{}", stderr(&o));
    // The same from standard input (newlines separate arguments there).
    let input = b"two words\nit's\n\xff\n";
    let o = env.run(&["-k", "printf", "'%s\\0'"], input);
    assert_eq!(o.stdout, b"two words\0it's\0\xff\0".to_vec());
}

#[test]
fn keep_order_matches_gnu_parallel() {
    let Some(parallel) = gnu_parallel() else {
        return;
    };
    let env = Env::new();
    let words: Vec<String> = (1..=40).map(|i| format!("w{i} x.{i}")).collect();
    let mut ours: Vec<String> = ["-k", "-j4", "echo", "{#}", "{.}", ":::"]
        .map(String::from)
        .to_vec();
    ours.extend(words.iter().cloned());
    let mut theirs: Vec<String> = ["-k", "-j4", "echo", "{#}", "{.}", ":::"]
        .map(String::from)
        .to_vec();
    theirs.extend(words.iter().cloned());
    let a = env.run(&ours, b"");
    let b = exec(parallel, &theirs, b"");
    assert_eq!(stdout(&a), stdout(&b));
    assert_eq!(a.status.code(), b.status.code());
}

#[test]
fn outputs_are_whole_without_keep_order() {
    let env = Env::new();
    let o = env.run(
        &[
            "-j4",
            "printf",
            "'%s\\n%s\\n'",
            "{}",
            "{}",
            ":::",
            "a",
            "b",
            "c",
            "d",
        ],
        b"",
    );
    // Each job's two lines stay together, whatever the order of the jobs.
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    for pair in lines.chunks(2) {
        assert_eq!(pair[0], pair[1], "{text}");
    }
}

/// Linked sources (`:::+`, `::::+`): our `--dry-run` and `-k` outputs, as
/// GNU parallel 20221122 prints them (checked against it where installed).
#[test]
fn linked_sources_as_gnu_parallel() {
    let env = Env::new();
    let four = env.path("four");
    std::fs::write(&four, "f1\nf2\nf3\nf4\n").expect("written");
    let empty = env.path("empty");
    std::fs::write(&empty, "").expect("written");
    let (four, empty) = (
        four.to_str().expect("utf-8 temp path"),
        empty.to_str().expect("utf-8 temp path"),
    );
    // (the arguments after the options, what `-k` prints)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["echo", ":::", "a", "b", ":::+", "1", "2"],
            "a 1\nb 2\n",
        ),
        (
            vec!["echo", ":::", "a", "b", ":::", "x", "y", ":::+", "1", "2"],
            "a x 1\na y 2\nb x 1\nb y 2\n",
        ),
        (
            vec!["echo", ":::", "a", "b", ":::+", "1", "2", ":::", "x", "y"],
            "a 1 x\na 1 y\nb 2 x\nb 2 y\n",
        ),
        // Unequal lengths: as long as the shortest.
        (
            vec!["echo", "::::", four, ":::+", "1", "2", "3"],
            "f1 1\nf2 2\nf3 3\n",
        ),
        (
            vec!["echo", ":::", "a", "b", "c", ":::+", "1", "2"],
            "a 1\nb 2\n",
        ),
        (
            vec![
                "echo", ":::", "a", "b", ":::+", "1", "2", "3", ":::+", "X", "Y", "Z",
            ],
            "a 1 X\nb 2 Y\n",
        ),
        (
            vec!["echo", ":::", "a", "b", "c", "::::+", four, four],
            "a f1 f1\nb f2 f2\nc f3 f3\n",
        ),
        (
            vec![
                "echo", ":::", "a", "b", "c", ":::+", "1", "2", ":::", "x", "y", ":::+", "P", "Q",
                "R",
            ],
            "a 1 x P\na 1 y Q\nb 2 x P\nb 2 y Q\n",
        ),
        // Replacement strings, quoting and numbering over linked sources.
        (
            vec![
                "echo", "{#}", "{2}-{1}", ":::", "a b", "c", "d", ":::+", "1", "2",
            ],
            "1 1-a b\n2 2-c\n",
        ),
        // An empty source is one empty argument; a first `:::+` is `:::`.
        (
            vec!["echo", ":::", "a", "b", ":::", ":::+", "1", "2"],
            "a  1\nb  1\n",
        ),
        (vec!["echo", ":::", "a", "b", "::::+", empty], "a \n"),
        (vec!["echo", ":::", "a", "b", "::::", empty], "a \nb \n"),
        (vec!["echo", ":::+", "a", "b"], "a\nb\n"),
    ];
    let parallel = gnu_parallel();
    for (args, expected) in &cases {
        let mut k = vec!["-k"];
        k.extend(args);
        let ours = env.run(&k, b"");
        assert_eq!(stdout(&ours), *expected, "{args:?}: {}", stderr(&ours));
        assert_eq!(ours.status.code(), Some(0), "{args:?}");
        // GNU parallel's --dry-run prints in no fixed order without -k.
        let mut dry = vec!["-k", "--dry-run"];
        dry.extend(args);
        let ours_dry = env.run(&dry, b"");
        assert_eq!(
            stdout(&ours_dry).lines().count(),
            expected.lines().count(),
            "{args:?}"
        );
        if let Some(parallel) = parallel {
            let theirs = exec(parallel, &k, b"");
            assert_eq!(stdout(&ours), stdout(&theirs), "-k {args:?}");
            let theirs_dry = exec(parallel, &dry, b"");
            assert_eq!(stdout(&ours_dry), stdout(&theirs_dry), "--dry-run {args:?}");
        }
    }
    // `::::+` with no file is a usage error.
    let o = env.run(&["echo", ":::", "a", "::::+"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("::::+ must be followed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dry_run_prints_and_runs_nothing() {
    let env = Env::new();
    let marker = env.path("ran");
    let o = env.run(
        &[
            OsStr::new("--dry-run"),
            OsStr::new("touch"),
            marker.as_os_str(),
            OsStr::new("{}"),
            OsStr::new(":::"),
            OsStr::new("a b"),
            OsStr::new("c"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0));
    let m = marker.display();
    assert_eq!(stdout(&o), format!("touch {m} 'a b'\ntouch {m} c\n"));
    assert!(!marker.exists());
    assert!(!env.store().exists(), "a dry run learns nothing");
}

#[test]
fn halt_as_gnu_parallel() {
    let env = Env::new();
    // now,fail=1: the failing job's status, nothing after it.
    let o = env.run(
        &[
            "-j1",
            "-k",
            "--halt",
            "now,fail=1",
            "echo {}; exit {}",
            ":::",
            "0",
            "3",
            "4",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "0\n3\n");
    // soon,fail=2: the number of failures.
    let o = env.run(
        &[
            "-j1",
            "--halt",
            "soon,fail=2",
            "exit {}",
            ":::",
            "0",
            "3",
            "4",
            "5",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    // now,success=1: 0 as soon as one succeeds.
    let o = env.run(
        &[
            "-j1",
            "--halt",
            "now,success=1",
            "exit {}",
            ":::",
            "3",
            "0",
            "4",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0));
    // A signal: 128 + the signal, as bash reports it.
    let o = env.run(
        &["-j1", "--halt", "now,fail=1", "kill -9 $$", ":::", "x"],
        b"",
    );
    assert_eq!(o.status.code(), Some(128 + 9));
    if let Some(parallel) = gnu_parallel() {
        for (halt, codes) in [
            ("now,fail=1", ["0", "3", "4"]),
            ("soon,fail=2", ["0", "3", "4"]),
            ("now,success=1", ["3", "0", "4"]),
        ] {
            let mut args = vec!["-j1", "--halt", halt, "exit {}", ":::"];
            args.extend(codes);
            let ours = env.run(&args, b"");
            let theirs = exec(parallel, &args, b"");
            assert_eq!(ours.status.code(), theirs.status.code(), "--halt {halt}");
        }
    }
}

#[test]
fn exit_status_counts_failures() {
    let env = Env::new();
    let o = env.run(&["exit {}", ":::", "0", "1", "2", "0", "5"], b"");
    assert_eq!(o.status.code(), Some(3));
    let many: Vec<String> = (0..103).map(|i| i.to_string()).collect();
    let mut args: Vec<String> = ["-j8", "false", ":::"].map(String::from).to_vec();
    args.extend(many);
    let o = env.run(&args, b"");
    assert_eq!(o.status.code(), Some(101), "capped at 101");
    assert!(
        stderr(&o).contains("103 jobs, 103 failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_255_with_a_message() {
    let env = Env::new();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--memory".into(), "0".into(), "echo".into()],
            "0 bytes",
        ),
        (
            vec!["--memory".into(), "lots".into(), "echo".into()],
            "lots",
        ),
        (vec!["--bogus".into(), "echo".into()], "--bogus"),
        (vec![], "COMMAND"),
        (vec![":::".into(), "a".into()], "no command"),
        (vec!["-j".into(), "0".into(), "echo".into()], "-j 0"),
        (
            vec!["--halt".into(), "later".into(), "echo".into()],
            "--halt",
        ),
        (
            vec!["--timeout".into(), "50%".into(), "echo".into()],
            "100%",
        ),
        (
            vec!["echo".into(), "::::".into(), "/nonexistent/args".into()],
            "/nonexistent/args",
        ),
        (
            vec![
                "--joblog".into(),
                "/nonexistent/dir/log".into(),
                "echo".into(),
                ":::".into(),
                "a".into(),
            ],
            "joblog",
        ),
        (
            vec![
                "--results".into(),
                "/nonexistent/dir/r.jsonl".into(),
                "echo".into(),
                ":::".into(),
                "a".into(),
            ],
            "results",
        ),
    ];
    for (args, message) in cases {
        let o = env.run(&args, b"");
        assert_eq!(o.status.code(), Some(255), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}: nothing ran");
    }
    let o = exec(BIN, &["run", "--help"], b"");
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn missing_command_is_recorded_as_127() {
    let env = Env::new();
    let log = env.path("log");
    let results = env.path("results.jsonl");
    let o = env.run(
        &[
            OsStr::new("--joblog"),
            log.as_os_str(),
            OsStr::new("--results"),
            results.as_os_str(),
            OsStr::new("respool-no-such-command"),
            OsStr::new(":::"),
            OsStr::new("x"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).expect("joblog");
    let fields: Vec<&str> = text
        .lines()
        .nth(1)
        .expect("a job line")
        .split('\t')
        .collect();
    assert_eq!((fields[6], fields[7]), ("127", "0"));
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&results).expect("results").trim())
            .expect("JSON");
    assert_eq!(record["exit"], 127);
}

/// Splits a joblog into its lines' fields, sorted by Seq.
fn joblog_rows(path: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read(path).expect("joblog");
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut lines = text.split_inclusive('\n');
    let header = lines.next().expect("header").to_owned();
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| {
            l.trim_end_matches('\n')
                .split('\t')
                .map(str::to_owned)
                .collect()
        })
        .collect();
    rows.sort_by_key(|r| r[0].parse::<u64>().expect("Seq is a number"));
    (header, rows)
}

#[test]
fn joblog_matches_gnu_parallel() {
    let Some(parallel) = gnu_parallel() else {
        return;
    };
    let env = Env::new();
    let ours = env.path("ours.log");
    let theirs = env.path("theirs.log");
    let jobs = [
        "echo a",
        "exit 3",
        "kill -9 $$",
        "printf 'two words'",
        "respool-no-such-command",
    ];
    let mut args: Vec<OsString> = vec![
        "--joblog".into(),
        ours.clone().into(),
        "{}".into(),
        ":::".into(),
    ];
    args.extend(jobs.iter().map(OsString::from));
    let a = env.run(&args, b"");
    args[1] = theirs.clone().into();
    let b = exec(parallel, &args, b"");
    assert_eq!(a.status.code(), b.status.code());
    let (h1, r1) = joblog_rows(&ours);
    let (h2, r2) = joblog_rows(&theirs);
    assert_eq!(h1, h2, "headers");
    assert_eq!(r1.len(), r2.len());
    for (x, y) in r1.iter().zip(&r2) {
        // Everything but Starttime and JobRuntime.
        for col in [0, 1, 4, 5, 6, 7, 8] {
            assert_eq!(x[col], y[col], "column {col} of {x:?} vs {y:?}");
        }
        // The same formats for the times: %.3f and %10.3f.
        for row in [x, y] {
            let (int, frac) = row[2].split_once('.').expect("a decimal start time");
            assert!(
                int.chars().all(|c| c.is_ascii_digit()) && frac.len() == 3,
                "{row:?}"
            );
            assert_eq!(row[3].len(), 10, "{row:?}");
            assert_eq!(
                row[3].trim_start().split_once('.').map(|(_, f)| f.len()),
                Some(3),
                "{row:?}"
            );
        }
    }
}

/// GNU parallel's joblog header.
const HEADER: &str = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// A joblog as an interrupted run leaves it: job 1 succeeded, 2 failed, 3
/// was killed by a signal, 4 never ran, 5 succeeded, 6 failed and then
/// succeeded (a second line), 7 timed out (-1); 8 to 10 never ran.
fn interrupted_joblog() -> String {
    let line = |seq: u32, exit: i32, signal: i32| {
        format!(
            "{seq}\t:\t1796547468.038\t     0.010\t0\t2\t{exit}\t{signal}\techo {seq}; exit 0\n"
        )
    };
    [
        HEADER.to_owned(),
        line(1, 0, 0),
        line(2, 1, 0),
        line(3, 0, 9),
        line(5, 0, 0),
        line(6, 2, 0),
        line(7, -1, 0),
        line(6, 0, 0),
    ]
    .concat()
}

/// The Seq, Exitval, Signal and Command of a joblog's lines after the
/// first `skip` bytes, in the order written.
fn appended_rows(path: &Path, skip: usize) -> Vec<[String; 4]> {
    let text = std::fs::read(path).expect("joblog");
    String::from_utf8_lossy(&text[skip..])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            [f[0], f[6], f[7], f[8]].map(str::to_owned)
        })
        .collect()
}

/// --resume and --resume-failed skip and run again exactly the jobs GNU
/// parallel's own options would, on the same joblog; the joblog is
/// appended to, never rewritten, without a second header.
#[test]
fn resume_skips_and_reruns_as_gnu_parallel() {
    let env = Env::new();
    let before = interrupted_joblog();
    let parallel = gnu_parallel();
    // Job N prints N and exits with its input (job 2 and job 8 fail).
    let tail = [
        "echo {#}; exit {}",
        ":::",
        "0",
        "1",
        "0",
        "0",
        "0",
        "2",
        "0",
        "3",
        "0",
        "0",
    ];
    for (option, ran, status) in [
        ("--resume", "4\n8\n9\n10\n", 1),
        ("--resume-failed", "2\n3\n4\n7\n8\n9\n10\n", 2),
    ] {
        let ours = env.path("ours.log");
        std::fs::write(&ours, &before).expect("written");
        let mut args: Vec<&str> = vec!["--dry-run", "-j3", option, "--joblog"];
        args.push(ours.to_str().expect("utf-8 temp path"));
        args.extend(tail);
        // --dry-run shows the jobs that would run and writes nothing.
        let dry = env.run(&args, b"");
        assert_eq!(dry.status.code(), Some(0));
        assert_eq!(
            stdout(&dry).lines().count(),
            ran.lines().count(),
            "{option} --dry-run: {}",
            stdout(&dry)
        );
        assert_eq!(std::fs::read_to_string(&ours).expect("joblog"), before);
        args[0] = "-k";
        let o = env.run(&args, b"");
        assert_eq!(stdout(&o), ran, "{option}: {}", stderr(&o));
        assert_eq!(o.status.code(), Some(status), "{option}: {}", stderr(&o));
        let after = std::fs::read_to_string(&ours).expect("joblog");
        assert!(
            after.starts_with(&before),
            "{option}: appended to, not rewritten"
        );
        assert_eq!(after.matches("Seq\t").count(), 1, "{option}: one header");
        let mut rows = appended_rows(&ours, before.len());
        rows.sort_by_key(|r| r[0].parse::<u64>().expect("Seq"));
        let seqs: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
        assert_eq!(
            seqs.join("\n") + "\n",
            ran,
            "{option}: a line for each job run"
        );

        if let Some(parallel) = parallel {
            let theirs = env.path("theirs.log");
            std::fs::write(&theirs, &before).expect("written");
            args[4] = theirs.to_str().expect("utf-8 temp path");
            let t = exec(parallel, &args, b"");
            assert_eq!(stdout(&o), stdout(&t), "{option}: the jobs run");
            assert_eq!(o.status.code(), t.status.code(), "{option}");
            let mut theirs_rows = appended_rows(&theirs, before.len());
            theirs_rows.sort_by_key(|r| r[0].parse::<u64>().expect("Seq"));
            assert_eq!(rows, theirs_rows, "{option}: the lines appended");
        }
    }
}

/// What --resume does when there is nothing to resume from, or something
/// that is not a joblog.
#[test]
fn resume_without_a_sound_joblog() {
    let env = Env::new();
    let log = env.path("log");
    let log_s = log.to_str().expect("utf-8 temp path");
    // No --joblog: a usage error.
    for option in ["--resume", "--resume-failed"] {
        let o = env.run(&[option, "echo", ":::", "a"], b"");
        assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
        assert!(stderr(&o).contains("--joblog"), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    // No joblog yet: every job runs, and the joblog is made with its header.
    let o = env.run(
        &["-k", "--resume", "--joblog", log_s, "echo", ":::", "a", "b"],
        b"",
    );
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(0), "a\nb\n".to_owned())
    );
    let (header, rows) = joblog_rows(&log);
    assert_eq!((header.as_str(), rows.len()), (HEADER, 2));
    // Then nothing is left to do.
    let o = env.run(
        &["-k", "--resume", "--joblog", log_s, "echo", ":::", "a", "b"],
        b"",
    );
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), String::new()));
    // Not a joblog, or not readable: exit 255, nothing run, nothing touched.
    let bad_cases = [
        "not a joblog\n".to_owned(),
        format!("{HEADER}1\t:\t1796547468.038\t0.010\n"),
        format!("{HEADER}x\t:\t1796547468.038\t0.010\t0\t0\t0\t0\techo\n"),
    ];
    for bad in &bad_cases {
        std::fs::write(&log, bad).expect("written");
        for option in ["--resume", "--resume-failed"] {
            let o = env.run(&[option, "--joblog", log_s, "echo", ":::", "a"], b"");
            assert_eq!(o.status.code(), Some(255), "{bad:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("cannot resume from the joblog"),
                "{}",
                stderr(&o)
            );
            assert!(o.stdout.is_empty(), "nothing ran");
            assert_eq!(&std::fs::read_to_string(&log).expect("kept"), bad);
        }
    }
    let dir = env.path("a-directory");
    std::fs::create_dir(&dir).expect("made");
    let o = env.run(
        &[
            OsStr::new("--resume"),
            OsStr::new("--joblog"),
            dir.as_os_str(),
            OsStr::new("echo"),
            OsStr::new(":::"),
            OsStr::new("a"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

/// With --resume the results file is added to, as the joblog is.
#[test]
fn resume_appends_to_the_results() {
    let env = Env::new();
    let log = env.path("log");
    let results = env.path("r.jsonl");
    let run = |inputs: &[&str]| {
        let mut args: Vec<&OsStr> = ["--no-cgroup", "--resume", "--joblog"]
            .map(OsStr::new)
            .to_vec();
        args.push(log.as_os_str());
        args.push(OsStr::new("--results"));
        args.push(results.as_os_str());
        args.push(OsStr::new("true"));
        args.push(OsStr::new(":::"));
        args.extend(inputs.iter().map(OsStr::new));
        let o = env.run(&args, b"");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    run(&["a", "b"]);
    run(&["a", "b", "c"]);
    let seqs: Vec<u64> = results_lines(&results)
        .iter()
        .map(|v| v["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), 3, "{seqs:?}");
    assert_eq!(seqs.last(), Some(&3));
}

/// GNU parallel resumes from our joblog as from its own: `parallel
/// --resume`, `--resume-failed` and `--retry-failed` run the same commands
/// with our joblog of a run as with its own joblog of the same run.
#[test]
fn gnu_parallel_resumes_from_our_joblog() {
    let Some(parallel) = gnu_parallel() else {
        return;
    };
    let env = Env::new();
    // (No argument with a newline: GNU parallel splits a `:::` argument at
    // its newlines; see below for such a command.)
    let first = [
        "echo a",
        "echo e; exit 3",
        "echo k; kill -9 $$",
        "echo b",
        "echo f; exit 5",
    ];
    let more = ["echo c", "echo d; exit 4"];
    let ours = env.path("ours.log");
    let theirs = env.path("theirs.log");
    let log_args = |log: &Path, inputs: &[&str]| -> Vec<OsString> {
        let mut args: Vec<OsString> =
            vec!["--joblog".into(), log.into(), "{}".into(), ":::".into()];
        args.extend(inputs.iter().map(OsString::from));
        args
    };
    let o = env.run(&log_args(&ours, &first), b"");
    let t = exec(parallel, &log_args(&theirs, &first), b"");
    assert_eq!(o.status.code(), t.status.code());
    let all: Vec<&str> = first.iter().chain(&more).copied().collect();
    for option in ["--resume", "--resume-failed", "--retry-failed"] {
        let mut outputs = Vec::new();
        for log in [&ours, &theirs] {
            let copy = env.path("copy.log");
            std::fs::copy(log, &copy).expect("copied");
            let mut args: Vec<OsString> = vec!["-k".into(), option.into()];
            if option == "--retry-failed" {
                // The commands come from the joblog.
                args.extend(["--joblog".into(), copy.clone().into()]);
            } else {
                args.extend(log_args(&copy, &all));
            }
            let run = exec(parallel, &args, b"");
            outputs.push((stdout(&run), run.status.code(), stderr(&run)));
        }
        assert_eq!(
            outputs[0], outputs[1],
            "parallel {option}: ours, then its own"
        );
        let expected = match option {
            "--resume" => "c\nd\n",
            "--resume-failed" => "e\nk\nf\nc\nd\n",
            _ => "e\nk\nf\n",
        };
        assert_eq!(outputs[0].0, expected, "parallel {option}");
    }
    // A command with a newline (written as NUL in the joblog): GNU
    // parallel's --retry-failed runs it as it was.
    let o = env.run(&log_args(&ours, &["echo 'n1\nn2'; exit 5", "echo b"]), b"");
    assert_eq!(o.status.code(), Some(1));
    let mut args: Vec<OsString> = vec!["-k".into(), "--retry-failed".into(), "--joblog".into()];
    args.push(ours.clone().into());
    let run = exec(parallel, &args, b"");
    assert_eq!(stdout(&run), "n1\nn2\n", "{}", stderr(&run));
}

#[test]
fn results_lines_carry_memory_and_its_source() {
    let env = Env::new();
    let results = env.path("r.jsonl");
    let o = env.run(
        &[
            OsStr::new("--no-cgroup"),
            OsStr::new("--results"),
            results.as_os_str(),
            OsStr::new("sh -c 'exit {}'"),
            OsStr::new(":::"),
            OsStr::new("0"),
            OsStr::new("2"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&results).expect("results");
    let mut seqs = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        assert_eq!(v["memory_source"], "rusage_maxrss_largest_process", "{v}");
        assert!(
            v["peak_memory_bytes"].as_u64().is_some_and(|m| m > 0),
            "{v}"
        );
        assert!(
            v["reserved_memory_bytes"].as_u64().is_some_and(|m| m > 0),
            "{v}"
        );
        for key in [
            "command",
            "exit",
            "signal",
            "start",
            "runtime_s",
            "predicted_memory_bytes",
            "oom_killed",
            "cpu_s",
            "timed_out",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        seqs.push((
            v["seq"].as_u64().expect("seq"),
            v["exit"].as_i64().expect("exit"),
        ));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, vec![(1, 0), (2, 2)]);
}

/// `--class` as a template: each job's class from its own arguments,
/// unquoted; a plain name for all; an empty expansion falls back to the
/// program's name.
#[test]
fn class_templates_expand_per_job() {
    let env = Env::new();
    let results = env.path("r.jsonl");
    let classes = |class: &str, inputs: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--no-cgroup",
            "--results",
            results.to_str().expect("utf-8 temp path"),
            "--class",
            class,
            "true",
        ];
        args.extend(inputs);
        let o = env.run(&args, b"");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let mut lines: Vec<(u64, String)> = results_lines(&results)
            .iter()
            .map(|v| {
                (
                    v["seq"].as_u64().expect("seq"),
                    v["class"].as_str().expect("class").to_owned(),
                )
            })
            .collect();
        lines.sort();
        lines.into_iter().map(|(_, c)| c).collect()
    };
    assert_eq!(
        classes("sort-{/.}", &[":::", "dir/a.txt", "it's b.tar.gz", "c"]),
        ["sort-a", "sort-it's b.tar", "sort-c"]
    );
    assert_eq!(
        classes("conv-{2}", &[":::", "a", "b", ":::", "png", "jpg"]),
        ["conv-png", "conv-jpg", "conv-png", "conv-jpg"]
    );
    assert_eq!(classes("k{#}", &[":::", "a", "b"]), ["k1", "k2"]);
    assert_eq!(classes("fixed", &[":::", "a", "b"]), ["fixed", "fixed"]);
    // {2} of an empty argument: the program's name.
    assert_eq!(
        classes("{2}", &[":::", "a", "b", ":::+", "x", ""]),
        ["x", "true"]
    );
    // The classes are learned under their names.
    let list = stdout(&env.profiles(&["list"]));
    for class in ["sort-a", "conv-png", "conv-jpg", "k2", "fixed", "x", "true"] {
        assert!(list.contains(&format!("\n{class}\t")), "{class} in {list}");
    }
}

#[test]
fn profiles_persist_between_runs() {
    let env = Env::new();
    // A command whose memory is the same each run (a shell holding 8 MB).
    let cmd = "x=$(head -c 8000000 /dev/zero | tr '\\0' a); echo ${#x} {}";
    let results = env.path("r.jsonl");
    let args: Vec<OsString> = [
        "--no-cgroup",
        "--class",
        "hold8m",
        "--results",
        results.to_str().expect("utf-8 temp path"),
        cmd,
        ":::",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
    ]
    .map(OsString::from)
    .to_vec();
    let first = env.run(&args, b"");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let list = env.profiles(&["list"]);
    assert!(stdout(&list).contains("hold8m\t6\t"), "{}", stdout(&list));
    let second = env.run(&args, b"");
    assert_eq!(second.status.code(), Some(0));
    let show = env.profiles(&["show", "hold8m"]);
    let record: serde_json::Value = serde_json::from_slice(&show.stdout).expect("JSON");
    assert_eq!(record["runs"], 12);
    // The second run started from what the first learned: its jobs were
    // admitted on a prediction, not on the fallback.
    let text = std::fs::read_to_string(&results).expect("results");
    let predicted = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["predicted_memory_bytes"].is_u64())
        })
        .count();
    assert!(predicted > 0, "{text}\n{}", stderr(&second));
}

#[test]
fn profiles_subcommands() {
    let env = Env::new();
    let o = env.run(&["--class", "k", "true", ":::", "1", "2"], b"");
    assert_eq!(o.status.code(), Some(0));
    let export = env.profiles(&["export"]);
    assert_eq!(export.status.code(), Some(0));
    let exported = env.path("export.json");
    std::fs::write(&exported, &export.stdout).expect("written");
    assert_eq!(env.profiles(&["forget", "k"]).status.code(), Some(0));
    assert!(!stdout(&env.profiles(&["list"])).contains("\nk\t"));
    assert_eq!(
        env.profiles(&["forget", "k"]).status.code(),
        Some(1),
        "already gone"
    );
    let import = env.profiles(&[OsStr::new("import"), exported.as_os_str()]);
    assert_eq!(import.status.code(), Some(0), "{}", stderr(&import));
    assert!(stdout(&env.profiles(&["list"])).contains("\nk\t2\t"));
}

#[test]
fn corrupt_or_newer_profiles_are_reported_and_left_untouched() {
    let env = Env::new();
    for content in [
        "{ not json",
        r#"{"format":"respool-profiles","version":999,"classes":[]}"#,
    ] {
        std::fs::write(env.store(), content).expect("written");
        let o = env.run(&["echo", ":::", "a"], b"");
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("profile store"), "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "no job ran");
        let o = env.profiles(&["list"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("left as it is"), "{}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(env.store()).expect("still there"),
            content
        );
    }
}

#[test]
fn timeouts_are_recorded() {
    let env = Env::new();
    let log = env.path("log");
    let results = env.path("r.jsonl");
    // `exec sleep`: the shell's own process sleeps; the timeout kills it.
    let o = env.run(
        &[
            OsStr::new("--timeout"),
            OsStr::new("0.2"),
            OsStr::new("--joblog"),
            log.as_os_str(),
            OsStr::new("--results"),
            results.as_os_str(),
            OsStr::new("exec sleep"),
            OsStr::new(":::"),
            OsStr::new("1000"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    let (_, rows) = joblog_rows(&log);
    assert_eq!(rows[0][6], "-1", "GNU parallel writes -1 for a timeout");
    let v: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&results).expect("results").trim())
            .expect("JSON");
    assert_eq!(v["timed_out"], true);
}

#[test]
fn non_utf8_command_words_are_kept() {
    let env = Env::new();
    let o = env.run(
        &[
            OsStr::new("-k"),
            OsStr::new("printf"),
            OsStr::from_bytes(b"\xe9%s"),
            OsStr::new(":::"),
            OsStr::new("x"),
        ],
        b"",
    );
    assert_eq!(o.stdout, b"\xe9x".to_vec());
}

/// A command that allocates `{}` MiB and touches every page.
const ALLOCATE: &str = r#"python3 -c "b=bytearray({}<<20); b[::4096]=b'x'*len(b[::4096])""#;

/// Whether the run's summary says each job ran in a memory cgroup (prints
/// why the test is skipped when not).
fn measured_by_cgroup(test: &str, o: &Output) -> bool {
    let err = stderr(o);
    if err.contains("(cgroup v1 memory controller at") || err.contains("(cgroup v2 at") {
        true
    } else {
        println!("SKIP {test}: no memory cgroup here: {err}");
        false
    }
}

fn results_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect()
}

#[test]
fn oom_killed_job_is_retried_with_a_raised_reservation() {
    const TEST: &str = "oom_killed_job_is_retried_with_a_raised_reservation";
    let env = Env::new();
    // The class learns that it needs little (about 20 MiB and the interpreter)...
    let args: Vec<&str> = ["-j", "2", "--memory", "1GiB", ALLOCATE, ":::"]
        .into_iter()
        .chain(std::iter::repeat_n("20", 8))
        .collect();
    let o = env.run(&args, b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    if !measured_by_cgroup(TEST, &o) {
        return;
    }
    // ...then one of its jobs needs 100 MiB: limited to the small
    // reservation it is OOM-killed, and retried with a raised one.
    let results = env.path("r.jsonl");
    let joblog = env.path("log");
    let o = env.run(
        &[
            OsStr::new("--memory"),
            OsStr::new("1GiB"),
            OsStr::new("--results"),
            results.as_os_str(),
            OsStr::new("--joblog"),
            joblog.as_os_str(),
            OsStr::new(ALLOCATE),
            OsStr::new(":::"),
            OsStr::new("100"),
        ],
        b"",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("respool: job 1 was OOM-killed at "), "{err}");
    assert!(err.contains("; retrying with "), "{err}");
    assert!(
        err.contains("1 job recovered with a raised reservation, 0 could not fit in the budget"),
        "{err}"
    );
    let lines = results_lines(&results);
    assert_eq!(lines.len(), 1, "one line per job: {lines:?}");
    let v = &lines[0];
    assert_eq!(v["exit"], 0, "{v}");
    assert_eq!(v["oom_killed"], false, "the last attempt: {v}");
    assert_eq!(v["oom_gave_up"], false, "{v}");
    let kills = v["oom_kills"].as_u64().expect("oom_kills");
    assert!(kills >= 1, "{v}");
    assert_eq!(v["attempts"].as_u64(), Some(kills + 1), "{v}");
    let limit = v["memory_limit_bytes"].as_u64().expect("a limit");
    assert!(limit >= 100 << 20, "{v}");
    assert_eq!(v["reserved_memory_bytes"].as_u64(), Some(limit), "{v}");
    // The joblog has the final attempt only (GNU parallel's --retries).
    let (_, rows) = joblog_rows(&joblog);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][6], "0", "{rows:?}");
}

#[test]
fn job_that_cannot_fit_in_the_budget_gives_up() {
    const TEST: &str = "job_that_cannot_fit_in_the_budget_gives_up";
    let env = Env::new();
    let results = env.path("r.jsonl");
    // A class not learned yet is limited by the whole budget only.
    let o = env.run(
        &[
            OsStr::new("--memory"),
            OsStr::new("64MiB"),
            OsStr::new("--results"),
            results.as_os_str(),
            OsStr::new(ALLOCATE),
            OsStr::new(":::"),
            OsStr::new("200"),
        ],
        b"",
    );
    if !measured_by_cgroup(TEST, &o) {
        return;
    }
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "respool: job 1 was OOM-killed at the whole budget (64.0 MiB): class python3 \
             cannot fit even alone; not retried"
        ),
        "{err}"
    );
    assert!(err.contains("respool: 1 job, 1 failed, 1 OOM kill (0 jobs recovered with a raised reservation, 1 could not fit in the budget)"), "{err}");
    let lines = results_lines(&results);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v = &lines[0];
    assert_eq!(v["oom_gave_up"], true, "{v}");
    assert_eq!(v["oom_killed"], true, "{v}");
    assert_eq!(v["attempts"], 1, "{v}");
    assert_eq!(v["memory_limit_bytes"], 64 << 20, "{v}");
    // --no-limit: the job runs past the budget, as before.
    let o = env.run(
        &["--memory", "64MiB", "--no-limit", ALLOCATE, ":::", "100"],
        b"",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("no per-job limit (--no-limit)"), "{err}");
    // Under rusage no limit can be set, and the summary says so.
    let o = env.run(
        &["--memory", "64MiB", "--no-cgroup", ALLOCATE, ":::", "100"],
        b"",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("no per-job limit (rusage: none can be set)"),
        "{err}"
    );
}

#[test]
fn the_demo_refuses_a_budget_it_cannot_use() {
    // Its files are sized from the budget, and its count-only run is meant
    // to go over it: nothing is written for a budget too small or beyond
    // half of this machine's memory.
    for memory in ["1MiB", "1000TiB"] {
        let o = exec(BIN, &["demo", "--memory", memory, "--no-cgroup"], b"");
        assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("outside what the demo can use"),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
}

#[test]
fn the_demo_runs_and_respool_stays_under_its_budget() {
    // A small budget keeps it quick; without cgroups, as a user who is not
    // root sees it (the kernel's own figures are checked by ci/demo.sh).
    let o = exec(
        BIN,
        &["demo", "--memory", "96MiB", "-j", "2", "--no-cgroup"],
        b"",
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    for run in ["first run", "second run"] {
        assert!(
            out.lines().any(|l| l.starts_with("respool run,")
                && l.contains(run)
                && l.contains("under the budget, every job done")),
            "{run}:\n{out}"
        );
    }
    assert!(
        out.contains("reserved what sort's earlier runs measured"),
        "{out}"
    );
}

/// Whether no process has id `pid` (`kill(pid, 0)` fails with ESRCH; a
/// negative `pid`: no process is in that group).
fn gone(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 sends nothing; it takes plain integers.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Ctrl-C (SIGINT to respool): nothing more starts, the running jobs are
/// stopped, the joblog has a whole line for each job that started, and no
/// job process and no cgroup is left. The jobs announce themselves through
/// a FIFO (their shell's pid), so the test knows they run without sleeping.
#[test]
fn ctrl_c_stops_the_jobs_and_leaves_nothing_behind() {
    use std::io::BufRead;
    use std::os::unix::ffi::OsStrExt;
    use std::time::{Duration, Instant};

    /// Only so that a broken respool fails the test instead of hanging it.
    const SAFETY_NET: Duration = Duration::from_secs(60);

    let env = Env::new();
    let fifo = env.path("started");
    let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    // Open for reading and writing: never blocks, and never reads EOF when
    // a job closes its end.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("the FIFO opens");
    let (tx, announced) = std::sync::mpsc::channel::<i32>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if let Ok(pid) = line.trim().parse() {
                if tx.send(pid).is_err() {
                    return;
                }
            }
        }
    });

    let log = env.path("log");
    let command = format!(
        "echo $$ > '{}'; exec sleep 1000 {{}}",
        fifo.to_str().expect("utf-8 temp path")
    );
    let mut args: Vec<OsString> = vec![
        "run".into(),
        "--store".into(),
        env.store().into(),
        "-j2".into(),
        // A class per job: a class not learned yet runs one job at a time
        // (the cold-start probe), and this test needs two running.
        "--class".into(),
        "job-{}".into(),
        "--joblog".into(),
        log.clone().into(),
        command.into(),
        ":::".into(),
    ];
    args.extend((1..=10).map(|i| OsString::from(i.to_string())));
    let mut child = Command::new(BIN)
        .args(&args)
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("respool starts");
    let respool = i32::try_from(child.id()).expect("a pid");

    // The two jobs -j2 allows, running.
    let mut pids = Vec::new();
    for _ in 0..2 {
        match announced.recv_timeout(SAFETY_NET) {
            Ok(pid) => pids.push(pid),
            Err(_) => {
                let _ = child.kill();
                let o = child.wait_with_output().expect("respool ends");
                panic!("no job announced itself: {}", stderr(&o));
            }
        }
    }

    // The cgroups the jobs run in (the lines of /proc/PID/cgroup that name
    // respool's per-process parent).
    let job_groups: Vec<String> = pids
        .iter()
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let parent = format!("/respool-{respool}/");
            text.lines()
                .find(|l| l.contains(&parent))
                .map(str::to_owned)
        })
        .collect();

    // SAFETY: kill(2) takes plain integers; `respool` is our unreaped child.
    assert_eq!(unsafe { libc::kill(respool, libc::SIGINT) }, 0);
    let deadline = Instant::now() + SAFETY_NET;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            for &pid in &pids {
                // SAFETY: kill(2) takes plain integers (the job's group).
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let o = child.wait_with_output().expect("respool ends");
            panic!("respool still runs after Ctrl-C: {}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(10)); // the safety net's poll
    }
    let o = child.wait_with_output().expect("respool's output");
    let err = stderr(&o);

    // GNU parallel's status when Ctrl-C stops it.
    assert_eq!(o.status.code(), Some(255), "{err}");
    // Nothing more started: only the two announced jobs ran.
    assert!(announced.try_recv().is_err(), "a job started after Ctrl-C");
    assert!(err.contains("2 jobs, 2 failed, 8 not started"), "{err}");
    // The joblog is whole (its header, nothing partial) and, as GNU
    // parallel's after Ctrl-C (checked with 20221122), has no line for the
    // two jobs Ctrl-C stopped: `--resume` runs them again.
    let text = std::fs::read_to_string(&log).expect("joblog");
    assert_eq!(text, HEADER);
    // No job process is left, nor anything of its process group.
    for pid in pids {
        assert!(gone(pid), "job process {pid} is still there");
        assert!(gone(-pid), "a process of job group {pid} is still there");
    }
    // No cgroup is left (when jobs ran in cgroups).
    let parent = ["cgroup v1 memory controller at ", "cgroup v2 at "]
        .iter()
        .find_map(|prefix| {
            let (_, rest) = err.split_once(prefix)?;
            rest.split(';').next()
        });
    match parent {
        Some(dir) => {
            assert_eq!(job_groups.len(), 2, "each job in a group of {dir}");
            assert!(!Path::new(dir).exists(), "cgroup {dir} is left");
        }
        None => {
            assert!(err.contains("rusage"), "{err}");
            println!("cgroup check skipped: no cgroup could be made here ({err})");
        }
    }
}

#[test]
fn the_progress_bar_is_drawn_on_a_terminal_only() {
    let env = Env::new();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "run",
            "--store",
            env.store().to_str().expect("utf-8"),
            "-j1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v.extend(
            ["sleep", ":::", "0.4", "0.4"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        v
    };
    // Piped: no bar.
    let o = exec(BIN, &args(&[]), b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("ETA"), "{}", stderr(&o));
    // On a terminal (util-linux's `script` gives the command a pty): the bar,
    // unless --no-progress.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIP the terminal half: no `script` (util-linux) here");
        return;
    }
    let on_pty = |extra: &[&str]| -> String {
        let line = std::iter::once(BIN.to_owned())
            .chain(args(extra))
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let o = exec("script", &["-qec", &line, "/dev/null"], b"");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let shown = on_pty(&[]);
    assert!(shown.contains("jobs  running"), "{shown:?}");
    assert!(shown.contains("ETA"), "{shown:?}");
    assert!(shown.contains("respool: 2 jobs, 0 failed"), "{shown:?}");
    let hidden = on_pty(&["--no-progress"]);
    assert!(!hidden.contains("ETA"), "{hidden:?}");
    assert!(hidden.contains("respool: 2 jobs, 0 failed"), "{hidden:?}");
}

#[test]
fn profiles_export_to_cluster_schedulers() {
    // deploy/profiles-example.json: the numbers below are computed by hand
    // from its samples (nearest-rank p95, +15%, rounded up).
    let env = Env::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/profiles-example.json");
    std::fs::copy(&fixture, env.store()).expect("fixture copied");
    let out = |args: &[&str]| {
        let o = env.profiles(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    // JSON stays the default: the profiles document itself.
    let doc: serde_json::Value = serde_json::from_str(&out(&["export"])).expect("JSON");
    assert_eq!(doc["format"], "respool-profiles");
    let k8s: serde_json::Value =
        serde_json::from_str(&out(&["export", "--format", "k8s"])).expect("JSON");
    // thumbnail: p95 256 MiB x 1.15 = 294.4 -> 295 Mi; p95 1133m x 1.15 -> 1303m.
    assert_eq!(k8s["thumbnail"]["requests"]["memory"], "295Mi");
    assert_eq!(k8s["thumbnail"]["limits"]["memory"], "295Mi");
    assert_eq!(k8s["thumbnail"]["requests"]["cpu"], "1303m");
    // transcode: killed at 2560 MiB, so at least 2560 x 1.2 = 3072 Mi (its
    // p95 + 15% is 2524 Mi).
    assert_eq!(k8s["transcode"]["requests"]["memory"], "3072Mi");
    assert_eq!(k8s["transcode"]["requests"]["cpu"], "4548m");
    let slurm = out(&["export", "--format", "slurm"]);
    assert!(slurm.contains("#SBATCH --mem=295M\n"), "{slurm}");
    assert!(slurm.contains("#SBATCH --cpus-per-task=2\n"), "{slurm}");
    let hq = out(&["export", "--format", "hq"]);
    // 295 MiB = 309.3 MB -> 310.
    assert!(
        hq.contains("resources = { \"cpus\" = \"1.303\", \"mem\" = \"310\" }"),
        "{hq}"
    );
    let ray: serde_json::Value =
        serde_json::from_str(&out(&["export", "--format", "ray"])).expect("JSON");
    assert_eq!(ray["thumbnail"]["memory"], 295u64 << 20);
    assert_eq!(ray["thumbnail"]["num_cpus"], 1.303);
    // Another percentile and margin: p100 of thumbnail is 180 + 78 = 258 MiB, +0%.
    let k8s: serde_json::Value = serde_json::from_str(&out(&[
        "export",
        "--format",
        "k8s",
        "--percentile",
        "100",
        "--margin",
        "0",
    ]))
    .expect("JSON");
    assert_eq!(k8s["thumbnail"]["requests"]["memory"], "258Mi");
    // Usage errors exit 255 with the reason.
    for bad in [
        &["export", "--format", "yaml"][..],
        &["export", "--format", "k8s", "--percentile", "101"],
        &["export", "--format", "k8s", "--margin", "-1"],
    ] {
        let o = env.profiles(bad);
        assert_eq!(o.status.code(), Some(255), "{bad:?}");
        assert!(!stderr(&o).is_empty());
    }
}

#[test]
fn the_summary_prices_the_run() {
    let env = Env::new();
    let o = env.run(&["--class", "c", "true", ":::", "1", "2"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("; this run: $") && err.contains(" at m7i.large (aws us-east-1, as of "),
        "{err}"
    );
    assert!(err.contains("more reserved but unused (slack)"), "{err}");
    // Another instance from a price table of one's own.
    let table = env.path("prices.csv");
    std::fs::write(
        &table,
        "provider,region,instance,vcpus,memory_gib,gpus,usd_per_hour,as_of,source\n\
         onprem,lab,rack-a,64,256,0,2.5,2026-01-15,https://intranet.example/costs\n",
    )
    .expect("written");
    let mut args: Vec<OsString> = vec!["--pricing".into(), table.clone().into()];
    args.extend(["--instance", "rack-a", "true", ":::", "1"].map(OsString::from));
    let o = env.run(&args, b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(" at rack-a (onprem lab, as of 2026-01-15) prices"),
        "{}",
        stderr(&o)
    );
    // Unknown instances and invalid tables are usage errors that say why.
    let o = env.run(&["--instance", "m9.huge", "true", ":::", "1"], b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("no instance \"m9.huge\""),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        &table,
        "provider,region,instance,vcpus,memory_gib,gpus,usd_per_hour,as_of,source\n\
         onprem,lab,rack-a,64,256,0,2.5,,https://intranet.example/costs\n",
    )
    .expect("written");
    let o = env.run(&args, b"");
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("line 2: as_of is missing"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn profiles_cost_by_hand() {
    // One class: ten runs of an hour, each one CPU and 1 GiB. Its request
    // (p95 + 15%, memory rounded up to MiB): 1,150 millicores, 1,178 MiB.
    let env = Env::new();
    let samples: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"at_unix_ms":{},"wall_ns":3600000000000,"usage":{{"cpu":1000,"memory":1073741824}}}}"#,
                1_764_979_200_000u64 + i
            )
        })
        .collect();
    std::fs::write(
        env.store(),
        format!(
            r#"{{"format":"respool-profiles","version":1,"saved_at_unix_ms":0,"classes":[{{"class":"k","runs":10,"samples":[{}]}}]}}"#,
            samples.join(",")
        ),
    )
    .expect("store written");
    // Two instance types of 2 vCPUs: 8 GiB at $0.10/h, 4 GiB at $0.08/h.
    let table = env.path("prices.csv");
    std::fs::write(
        &table,
        "provider,region,instance,vcpus,memory_gib,gpus,usd_per_hour,as_of,source\n\
         test,here,a.big,2,8,0,0.10,2026-12-06,https://example.com/a\n\
         test,here,b.small,2,4,0,0.08,2026-12-06,https://example.com/b\n",
    )
    .expect("prices written");
    let o = env.profiles(&[
        "cost",
        "--instance",
        "a.big",
        "--pricing",
        table.to_str().expect("utf-8"),
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("k\t"))
        .expect("a row for k")
        .split('\t')
        .collect();
    // a.big's price split (respool::cost): a vCPU-hour v, a GiB-hour v * r.
    let r = respool::cost::MEMORY_TO_CPU_PRICE_RATIO;
    let v = 0.10 / (2.0 + r * 8.0);
    let used = v + v * r; // one CPU and 1 GiB for an hour
    let requested = 1.15 * v + 1178.0 / 1024.0 * v * r;
    let usd = respool::cost::format_usd;
    assert_eq!(row[1], "10");
    assert_eq!(row[2], "3600.000s");
    assert_eq!(row[3], usd(used));
    assert_eq!(row[4], usd(requested));
    assert_eq!(row[5], usd(requested - used));
    // One request fits on either type at a time (1,150 millicores of 2,000):
    // 1,000 hour-long runs cost $100 on a.big, $80 on b.small, the cheapest.
    assert_eq!(row[6], usd(100.0));
    assert_eq!(row[7], "b.small (test)");
    assert_eq!(row[8], usd(80.0));
    // An instance the table does not have: said, exit 1.
    let o = env.profiles(&[
        "cost",
        "--instance",
        "c.none",
        "--pricing",
        table.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("c.none"), "{}", stderr(&o));
}
