//! `respool`: the command-line runner (to be written).

fn main() {
    eprintln!("respool: not written yet");
    std::process::exit(2);
}
