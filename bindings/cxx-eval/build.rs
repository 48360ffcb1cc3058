//! Generates and compiles the C++ half of the bridge (cxx-build runs the
//! system C++ compiler): what a C++ user of a cxx bridge builds with cargo.
fn main() {
    cxx_build::bridge("src/lib.rs")
        .std("c++17")
        .compile("respool-cxx-eval");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=include/respool_cxx.hpp");
}
