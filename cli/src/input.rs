//! The jobs' arguments: `::: ARGS...` groups, `:::: FILE` groups and standard
//! input (one argument per line), combined as GNU parallel combines its
//! input sources (the cartesian product, the last source varying fastest).
//!
//! A source given after `:::+` or `::::+` is *linked* to the one before it,
//! as in GNU parallel: the two are zipped (the first argument of one with
//! the first of the other, and so on) instead of combined, and the zipped
//! group takes part in the product as one source. As in GNU parallel
//! 20221122, a linked group is as long as its shortest source (the longer
//! ones' surplus is dropped, not wrapped), and an empty source counts as
//! one empty argument unless every source is empty (then there is no job).

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Where one input source's arguments come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Given on the command line after `:::`.
    Args(Vec<Vec<u8>>),
    /// Lines of a file named after `::::` (`-`: standard input).
    File(PathBuf),
}

/// One input source and how it combines with the source before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Where its arguments come from.
    pub source: Source,
    /// Given after `:::+` or `::::+`: zipped with the source before it
    /// instead of combined (ignored for the first source, as GNU parallel
    /// ignores it).
    pub linked: bool,
}

/// The command's words and its input sources, split at `:::`, `::::`,
/// `:::+` and `::::+`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// The command's words (before the first separator).
    pub command: Vec<Vec<u8>>,
    /// The input sources, in order; empty: arguments come from standard input.
    pub sources: Vec<Input>,
}

/// Why the input could not be read.
#[derive(Debug)]
pub enum InputError {
    /// No command before the first separator.
    NoCommand,
    /// A `::::` or `::::+` (the separator) with no file after it.
    NoFile(&'static str),
    /// A `::::` file (or standard input) could not be read.
    Read {
        /// The file (`-` for standard input).
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::NoCommand => f.write_str(
                "no command given: respool run COMMAND [ARGS...] [::: ARGUMENTS...] [:::: FILE...]",
            ),
            InputError::NoFile(sep) => write!(f, "{sep} must be followed by at least one file"),
            InputError::Read { path, error } => {
                write!(f, "cannot read input file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for InputError {}

/// Splits the words after `respool run [OPTIONS]` into the command and its
/// input sources: `:::` starts a group of arguments, `::::` a list of files,
/// each one input source; `:::+` and `::::+` do the same with the new
/// source(s) linked to the one before.
///
/// # Errors
///
/// [`InputError::NoCommand`] when no command precedes the first separator,
/// [`InputError::NoFile`] for a `::::` or `::::+` with nothing after it.
pub fn split(words: &[OsString]) -> Result<CommandLine, InputError> {
    enum Mode {
        Command,
        Args,
        Files {
            sep: &'static str,
            linked: bool,
            seen: bool,
        },
    }
    let mut command = Vec::new();
    let mut sources = Vec::new();
    let mut mode = Mode::Command;
    for word in words {
        let w = word.as_bytes();
        let next = match w {
            b":::" | b":::+" => Some(Mode::Args),
            b"::::" => Some(Mode::Files {
                sep: "::::",
                linked: false,
                seen: false,
            }),
            b"::::+" => Some(Mode::Files {
                sep: "::::+",
                linked: true,
                seen: false,
            }),
            _ => None,
        };
        if let Some(next) = next {
            if let Mode::Files {
                sep, seen: false, ..
            } = mode
            {
                return Err(InputError::NoFile(sep));
            }
            if matches!(next, Mode::Args) {
                sources.push(Input {
                    source: Source::Args(Vec::new()),
                    linked: w == b":::+",
                });
            }
            mode = next;
            continue;
        }
        match &mut mode {
            Mode::Command => command.push(w.to_vec()),
            Mode::Args => {
                if let Some(Input {
                    source: Source::Args(args),
                    ..
                }) = sources.last_mut()
                {
                    args.push(w.to_vec());
                }
            }
            Mode::Files { linked, seen, .. } => {
                *seen = true;
                // Every file of a `::::+` group is linked (to the one
                // before it), as in GNU parallel.
                sources.push(Input {
                    source: Source::File(PathBuf::from(word)),
                    linked: *linked,
                });
            }
        }
    }
    if let Mode::Files {
        sep, seen: false, ..
    } = mode
    {
        return Err(InputError::NoFile(sep));
    }
    if command.is_empty() {
        return Err(InputError::NoCommand);
    }
    Ok(CommandLine { command, sources })
}

/// Splits text into lines (`\n`; a last line without one counts, an empty
/// line is an empty argument, as in GNU parallel).
#[must_use]
pub fn lines(mut text: &[u8]) -> Vec<Vec<u8>> {
    if text.last() == Some(&b'\n') {
        text = &text[..text.len() - 1];
    } else if text.is_empty() {
        return Vec::new();
    }
    text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn read_stdin() -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::stdin().lock().read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads every source (standard input when there is none), in order.
///
/// # Errors
///
/// [`InputError::Read`] when a file or standard input cannot be read.
pub fn read_sources(sources: &[Input]) -> Result<Vec<Vec<Vec<u8>>>, InputError> {
    let stdin_err = |error| InputError::Read {
        path: PathBuf::from("-"),
        error,
    };
    if sources.is_empty() {
        return Ok(vec![lines(&read_stdin().map_err(stdin_err)?)]);
    }
    let mut out = Vec::with_capacity(sources.len());
    for Input { source, .. } in sources {
        match source {
            Source::Args(args) => out.push(args.clone()),
            Source::File(path) if path.as_os_str() == "-" => {
                out.push(lines(&read_stdin().map_err(stdin_err)?));
            }
            Source::File(path) => {
                let text = std::fs::read(path).map_err(|error| InputError::Read {
                    path: path.clone(),
                    error,
                })?;
                out.push(lines(&text));
            }
        }
    }
    Ok(out)
}

/// The jobs' argument tuples: the cartesian product of the sources, linked
/// sources zipped, in GNU parallel's order.
///
/// The sources form groups: a source starts a new group unless it is linked
/// to the one before it. A group's length is its shortest source's, and its
/// `i`th element is the `i`th argument of each of its sources. The tuples
/// are the groups' product, the last group varying fastest, each tuple
/// holding one argument per source.
#[derive(Debug)]
pub struct Product {
    sources: Vec<Vec<Vec<u8>>>,
    /// The group of each source.
    group_of: Vec<usize>,
    /// Each group's length.
    lens: Vec<usize>,
    /// The next tuple's index in each group; `None`: done.
    next: Option<Vec<usize>>,
}

impl Product {
    /// The product of `sources`, where `linked[i]` links source `i` to
    /// source `i - 1` (`linked[0]`, and a missing entry, count as false).
    #[must_use]
    pub fn new(mut sources: Vec<Vec<Vec<u8>>>, linked: &[bool]) -> Product {
        // GNU parallel: when some source has an argument, an empty source
        // stands as one empty argument.
        if sources.iter().any(|s| !s.is_empty()) {
            for s in &mut sources {
                if s.is_empty() {
                    s.push(Vec::new());
                }
            }
        }
        let mut group_of = Vec::with_capacity(sources.len());
        let mut lens: Vec<usize> = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            match lens.last_mut() {
                Some(len) if i > 0 && linked.get(i).copied().unwrap_or(false) => {
                    *len = (*len).min(s.len());
                }
                _ => lens.push(s.len()),
            }
            group_of.push(lens.len() - 1);
        }
        let next = if lens.contains(&0) {
            None
        } else {
            Some(vec![0; lens.len()])
        };
        Product {
            sources,
            group_of,
            lens,
            next,
        }
    }

    /// How many jobs the product has (saturating).
    #[must_use]
    pub fn total(&self) -> u64 {
        self.lens
            .iter()
            .fold(1u64, |acc, &l| acc.saturating_mul(l as u64))
    }
}

impl Iterator for Product {
    type Item = Vec<Vec<u8>>;

    fn next(&mut self) -> Option<Vec<Vec<u8>>> {
        let mut idx = self.next.take()?;
        let item = self
            .sources
            .iter()
            .zip(&self.group_of)
            .map(|(s, &g)| s[idx[g]].clone())
            .collect();
        let mut pos = idx.len();
        while pos > 0 {
            pos -= 1;
            idx[pos] += 1;
            if idx[pos] < self.lens[pos] {
                self.next = Some(idx);
                return Some(item);
            }
            idx[pos] = 0;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<OsString> {
        w.iter().map(OsString::from).collect()
    }

    fn input(source: Source, linked: bool) -> Input {
        Input { source, linked }
    }

    fn args(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// The product as strings, each tuple's arguments joined by spaces.
    fn tuples(sources: &[&[&str]], linked: &[bool]) -> Vec<String> {
        let p = Product::new(sources.iter().map(|s| args(s)).collect(), linked);
        let total = p.total();
        let all: Vec<String> = p
            .map(|t| String::from_utf8(t.join(&b' ')).expect("utf-8"))
            .collect();
        assert_eq!(all.len() as u64, total, "total() of {sources:?} {linked:?}");
        all
    }

    #[test]
    fn splits_command_and_sources() {
        let cl = split(&words(&[
            "echo", "-n", ":::", "a", "b", "::::", "f", "g", ":::", "1",
        ]))
        .expect("valid");
        assert_eq!(cl.command, vec![b"echo".to_vec(), b"-n".to_vec()]);
        assert_eq!(
            cl.sources,
            vec![
                input(Source::Args(args(&["a", "b"])), false),
                input(Source::File("f".into()), false),
                input(Source::File("g".into()), false),
                input(Source::Args(args(&["1"])), false),
            ]
        );
        assert!(matches!(
            split(&words(&[":::", "a"])),
            Err(InputError::NoCommand)
        ));
        assert!(matches!(
            split(&words(&["x", "::::"])),
            Err(InputError::NoFile("::::"))
        ));
        assert!(matches!(
            split(&words(&["x", "::::+", ":::", "a"])),
            Err(InputError::NoFile("::::+"))
        ));
    }

    #[test]
    fn splits_linked_sources() {
        let cl = split(&words(&[
            "echo", ":::+", "a", ":::", "b", ":::+", "1", "::::+", "f", "g", "::::", "h", ":::+",
        ]))
        .expect("valid");
        assert_eq!(
            cl.sources,
            vec![
                input(Source::Args(args(&["a"])), true),
                input(Source::Args(args(&["b"])), false),
                input(Source::Args(args(&["1"])), true),
                // Each file of a `::::+` group is linked, as in GNU parallel.
                input(Source::File("f".into()), true),
                input(Source::File("g".into()), true),
                input(Source::File("h".into()), false),
                input(Source::Args(Vec::new()), true),
            ]
        );
    }

    #[test]
    fn lines_as_gnu_parallel_reads_them() {
        assert_eq!(lines(b"a\n\nb"), vec![b"a".to_vec(), vec![], b"b".to_vec()]);
        assert_eq!(lines(b"a\n"), vec![b"a".to_vec()]);
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"\n"), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn product_in_gnu_parallel_order() {
        assert_eq!(
            tuples(&[&["a", "b"], &["1", "2"]], &[]),
            ["a 1", "a 2", "b 1", "b 2"]
        );
        // An empty source is one empty argument beside a non-empty one
        // (GNU parallel 20221122: `::: a b :::: /dev/null` runs `a ''`, `b ''`).
        assert_eq!(tuples(&[&["a", "b"], &[]], &[]), ["a ", "b "]);
        assert_eq!(tuples(&[&[], &["a"]], &[]), [" a"]);
        // Every source empty: no job.
        assert!(tuples(&[&[], &[]], &[]).is_empty());
        assert!(tuples(&[&[]], &[]).is_empty());
    }

    /// The orders GNU parallel 20221122 prints (`parallel -k echo ...`).
    #[test]
    fn linked_sources_zip_as_gnu_parallel() {
        // ::: a b :::+ 1 2
        assert_eq!(
            tuples(&[&["a", "b"], &["1", "2"]], &[false, true]),
            ["a 1", "b 2"]
        );
        // ::: a b ::: x y :::+ 1 2
        assert_eq!(
            tuples(
                &[&["a", "b"], &["x", "y"], &["1", "2"]],
                &[false, false, true]
            ),
            ["a x 1", "a y 2", "b x 1", "b y 2"]
        );
        // ::: a b :::+ 1 2 ::: x y
        assert_eq!(
            tuples(
                &[&["a", "b"], &["1", "2"], &["x", "y"]],
                &[false, true, false]
            ),
            ["a 1 x", "a 1 y", "b 2 x", "b 2 y"]
        );
        // Unequal lengths: the shortest wins (::: a b c :::+ 1 2, and the reverse).
        assert_eq!(
            tuples(&[&["a", "b", "c"], &["1", "2"]], &[false, true]),
            ["a 1", "b 2"]
        );
        assert_eq!(
            tuples(&[&["a", "b"], &["1", "2", "3"]], &[false, true]),
            ["a 1", "b 2"]
        );
        // ::: a b :::+ 1 2 :::+ X Y Z
        assert_eq!(
            tuples(
                &[&["a", "b"], &["1", "2"], &["X", "Y", "Z"]],
                &[false, true, true]
            ),
            ["a 1 X", "b 2 Y"]
        );
        // ::: a b c :::+ 1 2 ::: x y :::+ P Q R
        assert_eq!(
            tuples(
                &[&["a", "b", "c"], &["1", "2"], &["x", "y"], &["P", "Q", "R"]],
                &[false, true, false, true]
            ),
            ["a 1 x P", "a 1 y Q", "b 2 x P", "b 2 y Q"]
        );
        // A first source's link is ignored (:::+ a b).
        assert_eq!(tuples(&[&["a", "b"]], &[true]), ["a", "b"]);
        // An empty linked source: one empty argument (::: a b :::+).
        assert_eq!(tuples(&[&["a", "b"], &[]], &[false, true]), ["a "]);
        // ::: a b ::: :::+ 1 2
        assert_eq!(
            tuples(&[&["a", "b"], &[], &["1", "2"]], &[false, false, true]),
            ["a  1", "b  1"]
        );
    }
}
