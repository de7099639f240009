// glibc malloc/free were ~20 % of the committer's samples (benches/RESULTS.md, section 10).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(shortcode_gw::cli::main_with(std::env::args_os()));
}
