//! `xai`: explain an image classifier — an ONNX file or a shipped network — on your own PNG/JPEG
//! images or `.npy` arrays, with KernelSHAP, gradient similarity, CEM or L2X.
//!
//! ```text
//! xai <method> --model <file.onnx|shipped-name> --input <file-or-dir>... --out <dir> [flags]
//! xai shap       --model model.onnx --input digits/ --out shap-out --nsamples 1000
//! xai similarity --model alibi_cnn --reference train/ --input test/ --out sim-out
//! xai cem        --model cem_cnn --autoencoder cem_autoencoder --input seven.png --out cem-out
//! xai l2x        --model mnist_net --reference train/ --input test/ --out l2x-out
//! ```
//!
//! Every subcommand writes, per input, `<out>/<name>/` with the figure (PNG), the explanation as
//! JSON and its arrays as `.npy`, and prints one line per input (or one JSON object per line with
//! `--json`). Errors are one line on stderr with exit code 2 when the input or an option is at
//! fault.

mod attribution;
mod cem;
mod cli;
mod error;
mod eval;
mod inputs;
mod l2x;
mod model;
mod output;
mod progress;
mod shap;
mod shard;
mod similarity;

/// Large activation buffers are allocated at every model call; mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", clap_one_line(&e.to_string()));
            return std::process::ExitCode::from(2);
        }
    };
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// clap's message on one line: the text before its usage and help hints, lines joined.
fn clap_one_line(message: &str) -> String {
    let end = ["\n\nUsage:", "\n\nFor more information", "\nUsage:"]
        .iter()
        .filter_map(|m| message.find(m))
        .min()
        .unwrap_or(message.len());
    let line = message[..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.starts_with("error:") {
        line
    } else {
        format!("error: {line}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_errors_become_one_line() {
        let m = "error: the following required arguments were not provided:\n  --out <DIR>\n\nUsage: xai shap\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::clap_one_line(m),
            "error: the following required arguments were not provided: --out <DIR>"
        );
    }
}
