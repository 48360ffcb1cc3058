//! Gives the shared library the soname of the staged file,
//! `librespool.so.0` (cargo names the file `librespool_ffi.so`;
//! `bindings/stage.sh` installs it as `librespool.so.0.1.0` with the
//! `librespool.so.0` and `librespool.so` links), so that programs linked
//! against it look for `librespool.so.0` at run time.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librespool.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
