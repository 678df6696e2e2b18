//! Writing results: per input a folder `<out>/<name>/` with the figure (PNG), the explanation as
//! JSON (`meta` + `data`) and its arrays as `.npy`; one summary line per input on stdout, or one
//! JSON object per line with `--json`.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::Value;
use xai_core::{Explanation, NpyArrays};

use crate::error::{failed_in, usage_in, Result};
use crate::inputs::Sample;
use crate::progress::Progress;

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
    /// The model's top classes (`--top-k`), best first.
    pub top_k: Vec<TopClass>,
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
    fn dir_for(&self, name: &str) -> Result<PathBuf> {
        let d = self.out.join(name);
        std::fs::create_dir_all(&d)
            .map_err(|e| usage_in(format!("creating {}", d.display()), e))?;
        Ok(d)
    }

    /// Starts the output of one input: creates its folder `<out>/<name>/`; `names` are the class
    /// names of its summary line.
    pub fn input<'a>(
        &self,
        sample: &Sample,
        names: Option<&'a [String]>,
    ) -> Result<InputOutput<'a>> {
        Ok(InputOutput {
            names,
            source: sample.source.clone(),
            dir: self.dir_for(&sample.name)?,
            files: Vec::new(),
            top: Vec::new(),
        })
    }

    /// Prints one input's result (text or JSON line) above the progress bar `bar`.
    pub fn report(&self, bar: &ProgressBar, r: &InputResult) -> Result<()> {
        bar.suspend(|| {
            if self.json {
                let line = serde_json::to_string(r).map_err(|e| failed_in("writing JSON", e))?;
                println!("{line}");
            } else {
                println!("{}: {} -> {}", r.input, r.summary, r.out_dir.display());
            }
            Ok(())
        })
    }

    /// Explains every sample with `explain` and reports each result, under a progress bar of
    /// one step per sample (prefixed `prefix`, showing the sample's name).
    pub fn each_input(
        &self,
        progress: &Progress,
        samples: &[Sample],
        prefix: &str,
        mut explain: impl FnMut(&Sample) -> Result<InputResult>,
    ) -> Result<()> {
        let bar = progress.bar(samples.len(), prefix);
        for sample in samples {
            bar.set_message(sample.name.clone());
            let r = explain(sample)?;
            bar.inc(1);
            self.report(&bar, &r)?;
        }
        bar.finish_and_clear();
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

/// One input's results as they are written: its folder `<out>/<name>/`, the files written so
/// far, and how its line is reported at the end ([`InputOutput::finish`]).
pub struct InputOutput<'a> {
    names: Option<&'a [String]>,
    source: String,
    dir: PathBuf,
    files: Vec<PathBuf>,
    top: Vec<TopClass>,
}

/// One of the model's top classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopClass {
    /// The class index.
    pub class: usize,
    /// Its name (`--class-names`), or `class <k>`.
    pub name: String,
    /// The model's output for it (a probability for the methods on probabilities).
    pub score: f32,
}

/// The `k` classes with the highest outputs, best first (ties: the lower index first).
pub fn top_classes(outputs: &[f32], k: usize, names: Option<&[String]>) -> Vec<TopClass> {
    let mut order: Vec<usize> = (0..outputs.len()).collect();
    order.sort_by(|&a, &b| outputs[b].total_cmp(&outputs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| TopClass {
            class,
            name: class_name(names, class),
            score: outputs[class],
        })
        .collect()
}

impl<'a> InputOutput<'a> {
    /// The input's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records a file written into the input's folder by the caller.
    pub fn add_file(&mut self, path: PathBuf) {
        self.files.push(path);
    }

    /// Records the model's top `k` classes of `outputs` for the report.
    pub fn set_top(&mut self, outputs: &[f32], k: usize) {
        self.top = top_classes(outputs, k, self.names);
    }

    /// Writes an explanation's JSON and `.npy` arrays into the input's folder, or into its
    /// subfolder `sub` (created).
    pub fn save<D: Serialize + NpyArrays>(
        &mut self,
        e: &Explanation<D>,
        sub: Option<&str>,
    ) -> Result<()> {
        let dir = match sub {
            Some(sub) => {
                let d = self.dir.join(sub);
                std::fs::create_dir_all(&d)
                    .map_err(|err| failed_in(format!("creating {}", d.display()), err))?;
                d
            }
            None => self.dir.clone(),
        };
        self.files.extend(save_explanation(e, &dir)?);
        Ok(())
    }

    /// Writes `array` as `.npy` at `relative_path` in the input's folder (its parent folders
    /// created).
    pub fn array(&mut self, relative_path: &str, array: &ndarray::ArrayD<f32>) -> Result<()> {
        let path = self.dir.join(relative_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| failed_in(format!("creating {}", parent.display()), err))?;
        }
        xai_core::write_npy(&path, array)
            .map_err(|err| failed_in(format!("writing {}", path.display()), err))?;
        self.files.push(path);
        Ok(())
    }

    /// Draws the figure `file_name` in the input's folder with `draw`, which is given its path.
    pub fn figure<E: std::fmt::Display>(
        &mut self,
        file_name: &str,
        draw: impl FnOnce(&Path) -> std::result::Result<(), E>,
    ) -> Result<()> {
        let path = self.dir.join(file_name);
        draw(&path).map_err(|err| failed_in(format!("drawing {}", path.display()), err))?;
        self.files.push(path);
        Ok(())
    }

    /// The input's result for [`Reporter::report`]: its predicted class and score, the method's
    /// result in brief (`result`, for `--json`) and in words (`detail`, after the prediction on
    /// the text line).
    pub fn finish(
        self,
        (prediction, score): (usize, f32),
        result: Value,
        detail: &str,
    ) -> InputResult {
        let summary = if self.top.len() > 1 {
            let top: Vec<String> = self
                .top
                .iter()
                .map(|t| format!("{} ({:.3})", t.name, t.score))
                .collect();
            format!("{}; {detail}", top.join(", "))
        } else {
            format!(
                "{} ({score:.3}); {detail}",
                class_name(self.names, prediction)
            )
        };
        InputResult {
            input: self.source,
            out_dir: self.dir,
            prediction,
            score,
            files: self.files,
            top_k: self.top,
            result,
            summary,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_classes_are_best_first_with_names() {
        let names = ["a".to_string(), "b".into(), "c".into()];
        let t = top_classes(&[0.2, 0.5, 0.3], 2, Some(&names));
        assert_eq!(
            t.iter()
                .map(|c| (c.class, c.name.as_str()))
                .collect::<Vec<_>>(),
            [(1, "b"), (2, "c")]
        );
        assert_eq!(top_classes(&[0.2, 0.5], 5, None).len(), 2);
        assert_eq!(top_classes(&[1.0, 1.0], 1, None)[0].name, "class 0");
    }
}
