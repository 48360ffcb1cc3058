//! C ABI for respool: the functions, types and result codes of
//! `include/respool.h` (generated from this crate by cbindgen, see
//! `ffi/cbindgen.toml`), built as `librespool.a` / `librespool.so` by
//! `bindings/stage.sh`.
//!
//! The conventions (naming, ownership, NULL, outputs, thread safety, result
//! codes) are stated once, in the header preamble (`ffi/cbindgen.toml`).
//! The machinery behind them is in the private `ffi` module: one ownership trait
//! for every handle, one NULL check, one panic guard.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

// Declaration order is the order of the header.
mod config;
mod error;
mod ffi;
mod job;
mod pool;
mod task;
#[cfg(feature = "test-panic")]
mod test_panic;

pub use config::*;
pub use error::{respool_last_error_message, respool_result, respool_result_message};
pub use job::*;
pub use pool::*;
pub use task::*;

use std::ffi::c_char;

/// Major version of the header (of the Cargo package `respool-ffi`).
pub const RESPOOL_VERSION_MAJOR: u32 = 0;
/// Minor version of the header.
pub const RESPOOL_VERSION_MINOR: u32 = 1;
/// Patch version of the header.
pub const RESPOOL_VERSION_PATCH: u32 = 0;
// `RESPOOL_VERSION`, the same as text, is composed from these three in the
// header (`after_includes` in ffi/cbindgen.toml).

/// Parses a decimal `u32` at compile time (for the checks below).
const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u32 = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "not a decimal version number");
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

// cbindgen copies only literal constants into the header, so the version is
// written out above; these checks fail the build when the workspace version
// changes and the literals were not updated with it.
const _: () = {
    assert!(
        RESPOOL_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR"))
            && RESPOOL_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR"))
            && RESPOOL_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
        "update RESPOOL_VERSION_* in ffi/src/lib.rs to the workspace version"
    );
};

/// The version of the library linked in (`"0.1.0"`), to compare with
/// `RESPOOL_VERSION` from the header it was compiled against. A static
/// string; never NULL.
///
/// Thread safety: may be called from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn respool_version() -> *const c_char {
    const V: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => panic!("the package version contains a NUL byte"),
    };
    V.as_ptr()
}
