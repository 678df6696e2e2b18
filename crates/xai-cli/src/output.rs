//! Writing results: per input a folder `<out>/<name>/` with the figure (PNG), the explanation as
//! JSON (`meta` + `data`) and its arrays as `.npy`; one summary line per input on stdout, or one
//! JSON object per line with `--json`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use xai_core::{Explanation, NpyArrays};

use crate::error::{failed_in, usage_in, Result};

/// Where results go and how they are reported.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The output folder.
    pub out: PathBuf,
    /// JSON lines instead of text.
    pub json: bool,
}

/// One input's result, for stdout.
#[derive(Debug, Clone, Serialize)]
pub struct InputResult {
    /// The input (file, or `file[i]`).
    pub input: String,
    /// Its output folder.
    pub out_dir: PathBuf,
    /// The model's predicted class.
    pub prediction: usize,
    /// The model's output for that class.
    pub score: f32,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The method's result in brief.
    pub result: Value,
    /// One line for people.
    #[serde(skip)]
    pub summary: String,
}

impl Reporter {
    /// Creates the output folder.
    pub fn new(out: PathBuf, json: bool) -> Result<Self> {
        std::fs::create_dir_all(&out)
            .map_err(|e| usage_in(format!("creating the output folder {}", out.display()), e))?;
        Ok(Self { out, json })
    }

    /// The folder of one input (created).
    pub fn dir_for(&self, name: &str) -> Result<PathBuf> {
        let d = self.out.join(name);
        std::fs::create_dir_all(&d)
            .map_err(|e| usage_in(format!("creating {}", d.display()), e))?;
        Ok(d)
    }

    /// Prints one input's result (text or JSON line).
    pub fn report(&self, r: &InputResult) -> Result<()> {
        if self.json {
            let line = serde_json::to_string(r).map_err(|e| failed_in("writing JSON", e))?;
            println!("{line}");
        } else {
            println!("{}: {} -> {}", r.input, r.summary, r.out_dir.display());
        }
        Ok(())
    }
}

/// Writes `explanation.json` and the `.npy` arrays of an explanation into `dir`; returns the
/// files written.
pub fn save_explanation<D: Serialize + NpyArrays>(
    e: &Explanation<D>,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let json = dir.join("explanation.json");
    e.save_json(&json)
        .map_err(|err| failed_in(format!("writing {}", json.display()), err))?;
    let mut files = vec![json];
    files.extend(
        e.save_npy(dir)
            .map_err(|err| failed_in(format!("writing arrays to {}", dir.display()), err))?,
    );
    Ok(files)
}

/// The predicted class and its score.
pub fn top(row: ndarray::ArrayView1<'_, f32>) -> (usize, f32) {
    let mut best = 0;
    for (j, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = j;
        }
    }
    (best, row.get(best).copied().unwrap_or(f32::NAN))
}

/// The name of class `k`.
pub fn class_name(names: Option<&[String]>, k: usize) -> String {
    match names.and_then(|n| n.get(k)) {
        Some(n) => n.clone(),
        None => format!("class {k}"),
    }
}
