//! `cargo xtask demo [<method>|all]`: reproduces each seed's figures as PNG files under
//! `target/xai-demo/<method>/`.

use anyhow::{bail, Result};

const METHODS: [&str; 4] = ["similarity", "cem", "kernelshap", "l2x"];

pub fn run(args: &[String]) -> Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    let methods: Vec<&str> = if which == "all" {
        METHODS.to_vec()
    } else if METHODS.contains(&which) {
        vec![which]
    } else {
        bail!(
            "unknown method `{which}`; expected one of: all, {}",
            METHODS.join(", ")
        );
    };
    let mut failed = Vec::new();
    for m in methods {
        let result: Result<()> = match m {
            "similarity" => crate::similarity::run(),
            "cem" => crate::cem::run(),
            "kernelshap" => crate::kernelshap::run(&args[1..]),
            "l2x" => crate::l2x::run(&args[1..]),
            other => Err(anyhow::anyhow!(
                "the `{other}` method's crate is not part of the workspace yet, so there is no demo for it"
            )),
        };
        if let Err(e) = result {
            eprintln!("demo {m}: {e:#}");
            failed.push(m);
        }
    }
    if !failed.is_empty() && which != "all" {
        bail!("demo {} did not run", failed.join(", "));
    }
    Ok(())
}
