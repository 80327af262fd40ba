fn main() {
    eprintln!("spx-pipeline: not built yet");
    std::process::exit(1);
}
