//! The jobs' arguments: `::: ARGS...` groups, `:::: FILE` groups and standard
//! input (one argument per line), combined as GNU parallel combines its
//! input sources (the cartesian product, the last source varying fastest).

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

/// The command's words and its input sources, split at `:::` and `::::`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// The command's words (before the first separator).
    pub command: Vec<Vec<u8>>,
    /// The input sources, in order; empty: arguments come from standard input.
    pub sources: Vec<Source>,
}

/// Why the input could not be read.
#[derive(Debug)]
pub enum InputError {
    /// A separator GNU parallel has and this version does not (`:::+`, `::::+`).
    Unsupported(String),
    /// No command before the first separator.
    NoCommand,
    /// A `::::` with no file after it.
    NoFile,
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
            InputError::Unsupported(sep) => write!(
                f,
                "{sep} (linked input sources) is not supported yet: use ::: or ::::"
            ),
            InputError::NoCommand => f.write_str(
                "no command given: respool run COMMAND [ARGS...] [::: ARGUMENTS...] [:::: FILE...]",
            ),
            InputError::NoFile => f.write_str(":::: must be followed by at least one file"),
            InputError::Read { path, error } => {
                write!(f, "cannot read input file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for InputError {}

/// Splits the words after `respool run [OPTIONS]` into the command and its
/// input sources: `:::` starts a group of arguments, `::::` a list of files,
/// each one input source.
///
/// # Errors
///
/// [`InputError::NoCommand`] when no command precedes the first separator,
/// [`InputError::NoFile`] for a `::::` with nothing after it,
/// [`InputError::Unsupported`] for linked sources.
pub fn split(words: &[OsString]) -> Result<CommandLine, InputError> {
    enum Mode {
        Command,
        Args,
        Files { seen: bool },
    }
    let mut command = Vec::new();
    let mut sources = Vec::new();
    let mut mode = Mode::Command;
    for word in words {
        let w = word.as_bytes();
        match w {
            b":::" => {
                if matches!(mode, Mode::Files { seen: false }) {
                    return Err(InputError::NoFile);
                }
                sources.push(Source::Args(Vec::new()));
                mode = Mode::Args;
                continue;
            }
            b"::::" => {
                if matches!(mode, Mode::Files { seen: false }) {
                    return Err(InputError::NoFile);
                }
                mode = Mode::Files { seen: false };
                continue;
            }
            b":::+" | b"::::+" => {
                return Err(InputError::Unsupported(word.to_string_lossy().into_owned()));
            }
            _ => {}
        }
        match &mut mode {
            Mode::Command => command.push(w.to_vec()),
            Mode::Args => {
                if let Some(Source::Args(args)) = sources.last_mut() {
                    args.push(w.to_vec());
                }
            }
            Mode::Files { seen } => {
                *seen = true;
                sources.push(Source::File(PathBuf::from(word)));
            }
        }
    }
    if matches!(mode, Mode::Files { seen: false }) {
        return Err(InputError::NoFile);
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

/// Reads every source (standard input when there is none).
///
/// # Errors
///
/// [`InputError::Read`] when a file or standard input cannot be read.
pub fn read_sources(sources: &[Source]) -> Result<Vec<Vec<Vec<u8>>>, InputError> {
    let stdin_err = |error| InputError::Read {
        path: PathBuf::from("-"),
        error,
    };
    if sources.is_empty() {
        return Ok(vec![lines(&read_stdin().map_err(stdin_err)?)]);
    }
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
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

/// The jobs' argument tuples: the cartesian product of the sources, in GNU
/// parallel's order.
#[derive(Debug)]
pub struct Product {
    sources: Vec<Vec<Vec<u8>>>,
    next: Option<Vec<usize>>,
}

impl Product {
    /// The product of `sources`.
    #[must_use]
    pub fn new(sources: Vec<Vec<Vec<u8>>>) -> Product {
        let next = if sources.iter().any(Vec::is_empty) {
            None
        } else {
            Some(vec![0; sources.len()])
        };
        Product { sources, next }
    }

    /// How many jobs the product has (saturating).
    #[must_use]
    pub fn total(&self) -> u64 {
        self.sources
            .iter()
            .fold(1u64, |acc, s| acc.saturating_mul(s.len() as u64))
    }
}

impl Iterator for Product {
    type Item = Vec<Vec<u8>>;

    fn next(&mut self) -> Option<Vec<Vec<u8>>> {
        let idx = self.next.take()?;
        let item = idx
            .iter()
            .zip(&self.sources)
            .map(|(&i, s)| s[i].clone())
            .collect();
        let mut idx = idx;
        let mut pos = idx.len();
        while pos > 0 {
            pos -= 1;
            idx[pos] += 1;
            if idx[pos] < self.sources[pos].len() {
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
                Source::Args(vec![b"a".to_vec(), b"b".to_vec()]),
                Source::File("f".into()),
                Source::File("g".into()),
                Source::Args(vec![b"1".to_vec()]),
            ]
        );
        assert!(matches!(
            split(&words(&[":::", "a"])),
            Err(InputError::NoCommand)
        ));
        assert!(matches!(
            split(&words(&["x", "::::"])),
            Err(InputError::NoFile)
        ));
        assert!(matches!(
            split(&words(&["x", ":::+", "a"])),
            Err(InputError::Unsupported(_))
        ));
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
        let p = Product::new(vec![
            vec![b"a".to_vec(), b"b".to_vec()],
            vec![b"1".to_vec(), b"2".to_vec()],
        ]);
        assert_eq!(p.total(), 4);
        let all: Vec<_> = p.collect();
        assert_eq!(
            all,
            vec![
                vec![b"a".to_vec(), b"1".to_vec()],
                vec![b"a".to_vec(), b"2".to_vec()],
                vec![b"b".to_vec(), b"1".to_vec()],
                vec![b"b".to_vec(), b"2".to_vec()],
            ]
        );
        assert_eq!(Product::new(vec![vec![b"a".to_vec()], vec![]]).count(), 0);
    }
}
