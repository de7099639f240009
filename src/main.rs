fn main() {
    std::process::exit(shortcode_gw::cli::main_with(std::env::args_os()));
}
