//! How respool quotes text in an error message: at most [`MAX_ECHO`] bytes.
//!
//! An error that echoes its input (an amount that did not parse, an
//! environment variable, a path) cuts it to a bounded excerpt, on a
//! character boundary, followed by an ellipsis and the total length, so that
//! a megabyte of garbage read from a file or an environment variable never
//! becomes a megabyte of log line. It lives in the lowest std crate that
//! echoes input (respool-sys: container limits from the environment);
//! `respool::limits` re-exports it for the runtime's own errors.

use std::fmt;

/// The most bytes of a text that respool echoes in an error message: 256.
/// Longer text is cut on a character boundary and followed by an ellipsis
/// and its total length (see [`Excerpt`]).
pub const MAX_ECHO: usize = 256;

/// A text as respool quotes it in an error message: at most [`MAX_ECHO`]
/// bytes of it (cut on a character boundary), then, when it was cut, an
/// ellipsis and its total length. [`Excerpt::quoted`] writes it as a Rust
/// string literal (`"12 parsecs"`), [`Excerpt::plain`] as it is.
///
/// # Examples
///
/// ```
/// use respool_sys::{Excerpt, MAX_ECHO};
/// assert_eq!(Excerpt::quoted("12 parsecs").to_string(), "\"12 parsecs\"");
/// let long = "x".repeat(1 << 20);
/// let shown = Excerpt::quoted(&long).to_string();
/// assert!(shown.len() < MAX_ECHO + 40);
/// assert!(shown.ends_with("\"… (1048576 bytes in all)"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Excerpt<'a> {
    text: &'a str,
    quoted: bool,
}

impl<'a> Excerpt<'a> {
    /// `text` in quotes (Rust string literal syntax, as `{:?}`).
    #[must_use]
    pub fn quoted(text: &'a str) -> Excerpt<'a> {
        Excerpt { text, quoted: true }
    }

    /// `text` as it is.
    #[must_use]
    pub fn plain(text: &'a str) -> Excerpt<'a> {
        Excerpt {
            text,
            quoted: false,
        }
    }
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cut = self.text.len().min(MAX_ECHO);
        while !self.text.is_char_boundary(cut) {
            cut -= 1;
        }
        let shown = self.text.get(..cut).unwrap_or_default();
        if self.quoted {
            write!(f, "{shown:?}")?;
        } else {
            f.write_str(shown)?;
        }
        if cut < self.text.len() {
            write!(f, "… ({} bytes in all)", self.text.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_a_character_boundary() {
        assert_eq!(Excerpt::plain("abc").to_string(), "abc");
        assert_eq!(Excerpt::quoted("a\"b").to_string(), "\"a\\\"b\"");
        let exact = "y".repeat(MAX_ECHO);
        assert_eq!(Excerpt::plain(&exact).to_string(), exact);
        // 255 ASCII bytes, then a 3-byte character across the limit.
        let text = format!("{}€€", "a".repeat(MAX_ECHO - 1));
        let shown = Excerpt::plain(&text).to_string();
        assert_eq!(
            shown,
            format!(
                "{}… ({} bytes in all)",
                "a".repeat(MAX_ECHO - 1),
                text.len()
            )
        );
        let big = "é".repeat(1 << 19);
        let shown = Excerpt::quoted(&big).to_string();
        assert!(shown.len() < MAX_ECHO + 40, "{}", shown.len());
        assert!(shown.ends_with("… (1048576 bytes in all)"), "{shown}");
    }
}
