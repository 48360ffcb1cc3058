//! Cutting a text that an error message quotes (an amount that did not
//! parse, a path, a file's header) to a bounded length. Re-exported as
//! `respool::limits::{Excerpt, MAX_ECHO}`; it imports nothing of the crate,
//! so the error types and the stores can all use it.

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
/// use respool::limits::{Excerpt, MAX_ECHO};
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
