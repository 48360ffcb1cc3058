//! Each job's command line: GNU parallel's replacement strings and its shell
//! quoting, on bytes end to end (an argument need not be UTF-8).
//!
//! | string | replaced by (each argument shell-quoted) |
//! |---|---|
//! | `{}` | the argument (all of the job's arguments, space-separated, with several input sources) |
//! | `{.}` | the argument without its extension (`dir/a.tar.gz` → `dir/a.tar`) |
//! | `{/}` | its basename |
//! | `{//}` | its directory (Perl's `File::Basename::dirname`, as GNU parallel uses) |
//! | `{/.}` | its basename without extension |
//! | `{#}` | the job's number, from 1 |
//! | `{N}`, `{N.}`, `{N/}`, `{N//}`, `{N/.}` | the same for the Nth input source only |
//!
//! A command with none of them gets the arguments appended, quoted.
//!
//! As in GNU parallel, a command that *starts* with a replacement string
//! (`respool run {} ::: 'gzip -9 a'`, `{1} {2}`) is a command given by its
//! arguments: none of its replacements is quoted.

/// Quotes `arg` for a Bourne shell exactly as GNU parallel does
/// (`shell_quote_scalar_default`): nothing for `[-_.+a-zA-Z0-9/]+`, `''` for
/// the empty string, else single quotes, with each `'` written `'"'"'` and
/// the empty `''` left at either end removed.
#[must_use]
pub fn shell_quote(arg: &[u8]) -> Vec<u8> {
    if arg.is_empty() {
        return b"''".to_vec();
    }
    if arg
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-_.+/".contains(&b))
    {
        return arg.to_vec();
    }
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'\'');
    for &b in arg {
        if b == b'\'' {
            out.extend_from_slice(b"'\"'\"'");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    if out.starts_with(b"''") {
        out.drain(..2);
    }
    if out.ends_with(b"''") {
        out.truncate(out.len() - 2);
    }
    out
}

/// What a replacement string does to an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `{}`: the argument itself.
    Whole,
    /// `{.}`: without extension.
    NoExt,
    /// `{/}`: basename.
    Base,
    /// `{//}`: directory.
    Dir,
    /// `{/.}`: basename without extension.
    BaseNoExt,
}

/// One piece of a parsed command template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Text copied as it is.
    Literal(Vec<u8>),
    /// An argument (all of them when `source` is `None`), transformed and quoted.
    Arg { source: Option<usize>, op: Op },
    /// `{#}`.
    Seq,
}

/// A command line with its replacement strings located.
#[derive(Clone, Debug)]
pub struct Template {
    pieces: Vec<Piece>,
    append: bool,
    quote: bool,
}

/// Parses the text between `{` and `}` (exclusive) as a replacement string.
fn parse_token(inner: &[u8]) -> Option<Piece> {
    if inner == b"#" {
        return Some(Piece::Seq);
    }
    let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, rest) = inner.split_at(digits);
    let source = if num.is_empty() {
        None
    } else {
        let n: usize = std::str::from_utf8(num).ok()?.parse().ok()?;
        if n == 0 {
            return None;
        }
        Some(n - 1)
    };
    let op = match rest {
        b"" => Op::Whole,
        b"." => Op::NoExt,
        b"/" => Op::Base,
        b"//" => Op::Dir,
        b"/." => Op::BaseNoExt,
        _ => return None,
    };
    Some(Piece::Arg { source, op })
}

impl Template {
    /// Parses a command line (the command's words joined by spaces, as GNU
    /// parallel joins them).
    #[must_use]
    pub fn parse(command: &[u8]) -> Template {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        let mut replaced = false;
        while i < command.len() {
            if command[i] == b'{' {
                if let Some(len) = command[i + 1..].iter().position(|&b| b == b'}') {
                    if let Some(piece) = parse_token(&command[i + 1..i + 1 + len]) {
                        if !literal.is_empty() {
                            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                        }
                        pieces.push(piece);
                        replaced = true;
                        i += len + 2;
                        continue;
                    }
                }
            }
            literal.push(command[i]);
            i += 1;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let quote = matches!(pieces.first(), None | Some(Piece::Literal(_)));
        Template {
            pieces,
            append: !replaced,
            quote,
        }
    }

    /// The command line of job `seq` (from 1) with arguments `args` (one per
    /// input source).
    #[must_use]
    pub fn expand(&self, args: &[&[u8]], seq: u64) -> Vec<u8> {
        let mut out = self.expand_pieces(args, seq, self.quote);
        if self.append {
            if !out.is_empty() && !args.is_empty() {
                out.push(b' ');
            }
            push_all(&mut out, args, Op::Whole, true);
        }
        out
    }

    /// The text of job `seq` with arguments `args`, its replacement strings
    /// replaced and nothing shell-quoted, and no argument appended when it
    /// has none (a `--class` template: `sort-{/.}`, `conv-{2}`, or a plain
    /// name, which comes back as it is).
    #[must_use]
    pub fn expand_unquoted(&self, args: &[&[u8]], seq: u64) -> Vec<u8> {
        self.expand_pieces(args, seq, false)
    }

    fn expand_pieces(&self, args: &[&[u8]], seq: u64, quote: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.extend_from_slice(text),
                Piece::Seq => out.extend_from_slice(seq.to_string().as_bytes()),
                Piece::Arg { source: None, op } => push_all(&mut out, args, *op, quote),
                Piece::Arg {
                    source: Some(n),
                    op,
                } => {
                    // A source that does not exist is replaced by nothing
                    // (GNU parallel does the same).
                    if let Some(arg) = args.get(*n) {
                        let value = apply(*op, arg);
                        if quote {
                            out.extend_from_slice(&shell_quote(&value));
                        } else {
                            out.extend_from_slice(&value);
                        }
                    }
                }
            }
        }
        out
    }
}

fn push_all(out: &mut Vec<u8>, args: &[&[u8]], op: Op, quote: bool) {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let value = apply(op, arg);
        if quote {
            out.extend_from_slice(&shell_quote(&value));
        } else {
            out.extend_from_slice(&value);
        }
    }
}

fn apply(op: Op, arg: &[u8]) -> Vec<u8> {
    match op {
        Op::Whole => arg.to_vec(),
        Op::NoExt => no_ext(arg).to_vec(),
        Op::Base => base(arg),
        Op::Dir => dirname(arg),
        Op::BaseNoExt => no_ext(&base(arg)).to_vec(),
    }
}

/// Perl's `s:\.[^/.]*$::`: removes the last `.` and what follows it, unless
/// a `/` follows it.
fn no_ext(arg: &[u8]) -> &[u8] {
    match arg.iter().rposition(|&b| b == b'.') {
        Some(dot) if !arg[dot..].contains(&b'/') => &arg[..dot],
        _ => arg,
    }
}

/// Perl's `s:.*/::` (where `.` matches no newline): in the first line that
/// holds a `/`, removes from that line's start to its last `/`.
fn base(arg: &[u8]) -> Vec<u8> {
    let mut start = 0;
    for line in arg.split(|&b| b == b'\n') {
        if let Some(slash) = line.iter().rposition(|&b| b == b'/') {
            let mut out = arg[..start].to_vec();
            out.extend_from_slice(&arg[start + slash + 1..]);
            return out;
        }
        start += line.len() + 1;
    }
    arg.to_vec()
}

/// Perl's `File::Basename::fileparse` on Unix: (directory with its trailing
/// `/`, or `./`; basename).
fn fileparse(path: &[u8]) -> (Vec<u8>, &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (path[..=i].to_vec(), &path[i + 1..]),
        None => (b"./".to_vec(), path),
    }
}

/// `s{(.)/*\z}{$1}s`: removes trailing slashes, keeping the first character.
fn strip_trailing_sep(dir: &mut Vec<u8>) {
    while dir.len() > 1 && dir.last() == Some(&b'/') {
        dir.pop();
    }
}

/// Perl's `File::Basename::dirname` on Unix.
fn dirname(path: &[u8]) -> Vec<u8> {
    let (mut dir, base) = fileparse(path);
    strip_trailing_sep(&mut dir);
    if base.is_empty() {
        let (mut parent, _) = fileparse(&dir);
        strip_trailing_sep(&mut parent);
        return parent;
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).expect("utf-8 in tests")
    }

    #[test]
    fn quoting_matches_gnu_parallel() {
        assert_eq!(s(shell_quote(b"abc-_.+/9")), "abc-_.+/9");
        assert_eq!(s(shell_quote(b"")), "''");
        assert_eq!(s(shell_quote(b"a b")), "'a b'");
        assert_eq!(s(shell_quote(b"it's")), "'it'\"'\"'s'");
        assert_eq!(s(shell_quote(b"'")), "\"'\"");
        assert_eq!(s(shell_quote(b"$x")), "'$x'");
        assert_eq!(shell_quote(b"\xff"), b"'\xff'");
    }

    /// The table printed by GNU parallel 20221122 for
    /// `parallel echo [{}] [{.}] [{/}] [{//}] [{/.}] ::: ARG`.
    #[test]
    fn replacement_strings_match_gnu_parallel() {
        let cases: &[(&str, [&str; 4])] = &[
            ("a", ["a", "a", ".", "a"]),
            ("a.b", ["a", "a.b", ".", "a"]),
            ("dir/a.b", ["dir/a", "a.b", "dir", "a"]),
            ("a.b/c", ["a.b/c", "c", "a.b", "c"]),
            ("/x/y.z", ["/x/y", "y.z", "/x", "y"]),
            ("./a", ["./a", "a", ".", "a"]),
            (".hidden", ["", ".hidden", ".", ""]),
            ("a/", ["a/", "", ".", ""]),
            ("", ["", "", ".", ""]),
            ("/", ["/", "", "/", ""]),
            ("/a", ["/a", "a", "/", "a"]),
            ("a//b", ["a//b", "b", "a", "b"]),
            ("a/b//", ["a/b//", "", "a", ""]),
            ("//", ["//", "", "/", ""]),
            ("a.b.", ["a.b", "a.b.", ".", "a.b"]),
            ("..", [".", "..", ".", "."]),
            ("a/.b", ["a/", ".b", "a", ""]),
        ];
        for (arg, [noext, b, d, bnoext]) in cases {
            let a = arg.as_bytes();
            assert_eq!(s(apply(Op::NoExt, a)), *noext, "{{.}} of {arg:?}");
            assert_eq!(s(apply(Op::Base, a)), *b, "{{/}} of {arg:?}");
            assert_eq!(s(apply(Op::Dir, a)), *d, "{{//}} of {arg:?}");
            assert_eq!(s(apply(Op::BaseNoExt, a)), *bnoext, "{{/.}} of {arg:?}");
        }
    }

    #[test]
    fn templates_expand_like_gnu_parallel() {
        let t = Template::parse(b"echo {}x{.}");
        assert_eq!(s(t.expand(&[b"a b.c", b"1"], 1)), "echo 'a b.c' 1x'a b' 1");
        let t = Template::parse(b"echo");
        assert_eq!(s(t.expand(&[b"a", b"1"], 1)), "echo a 1");
        let t = Template::parse(b"echo {#}");
        assert_eq!(s(t.expand(&[b"a"], 7)), "echo 7");
        let t = Template::parse(b"echo {2} {1.} {3} {x} {");
        assert_eq!(s(t.expand(&[b"a.x", b"b"], 1)), "echo b a  {x} {");
        // A command that starts with a replacement string is not quoted.
        let t = Template::parse(b"{} {}");
        assert_eq!(s(t.expand(&[b"echo a"], 1)), "echo a echo a");
        let t = Template::parse(b"{#}{2}");
        assert_eq!(s(t.expand(&[b"x", b"b c"], 1)), "1b c");
        let t = Template::parse(b" {}");
        assert_eq!(s(t.expand(&[b"echo a"], 1)), " 'echo a'");
    }

    #[test]
    fn unquoted_expansion_for_class_templates() {
        let t = Template::parse(b"sort-{/.}");
        assert_eq!(s(t.expand_unquoted(&[b"dir/it's a.txt"], 1)), "sort-it's a");
        let t = Template::parse(b"conv-{2}-{#}");
        assert_eq!(s(t.expand_unquoted(&[b"a", b"x y"], 3)), "conv-x y-3");
        // A plain name: as it is, nothing appended.
        let t = Template::parse(b"fixed");
        assert_eq!(s(t.expand_unquoted(&[b"a"], 1)), "fixed");
        // {} is every argument; a missing source is nothing.
        let t = Template::parse(b"{}{3}");
        assert_eq!(s(t.expand_unquoted(&[b"a", b"b"], 1)), "a b");
        assert_eq!(s(Template::parse(b"{2}").expand_unquoted(&[b"a"], 1)), "");
    }
}
