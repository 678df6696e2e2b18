//! Sharded runs: `--shard i/n` takes the `i`-th of `n` contiguous blocks of the inputs (in the
//! order an unsharded run reads them), `--shard auto/n` takes `i` from `JOB_COMPLETION_INDEX`
//! (Kubernetes Indexed Jobs) or `SLURM_ARRAY_TASK_ID` (Slurm job arrays submitted as
//! `--array=0-(n-1)`; the task ID is the shard, so a failed task resubmitted alone with
//! `--array=<id>` reruns the same shard). Every run writes `manifest.json` (the command, hashes of its
//! parameters and model, its shard and the inputs it wrote); `xai merge` checks the shards'
//! manifests against each other and merges their folders into exactly what one unsharded run
//! writes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{failed_in, usage, Result};

/// The manifest's file name, in the output folder.
pub const MANIFEST: &str = "manifest.json";

/// One shard of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based.
    pub index: usize,
    /// At least 1.
    pub count: usize,
}

/// `--shard` as given: a fixed index, or one read from the job's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    /// `i/n`.
    Fixed(Shard),
    /// `auto/n`.
    Auto(usize),
}

/// Parses `i/n` or `auto/n`.
pub fn parse_shard(s: &str) -> std::result::Result<ShardSpec, String> {
    let bad = || format!("`{s}` is not a shard: expected i/n (0 <= i < n) or auto/n, e.g. 2/8");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    if i.trim().eq_ignore_ascii_case("auto") {
        return Ok(ShardSpec::Auto(n));
    }
    let index: usize = i.trim().parse().map_err(|_| bad())?;
    if index >= n {
        return Err(format!(
            "`{s}`: shard {index} does not exist among {n} (0..={})",
            n - 1
        ));
    }
    Ok(ShardSpec::Fixed(Shard { index, count: n }))
}

impl ShardSpec {
    /// The shard, reading `auto`'s index from the environment (`env` looks a variable up).
    pub fn resolve(self, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let count = match self {
            ShardSpec::Fixed(s) => return Ok(s),
            ShardSpec::Auto(n) => n,
        };
        let read = |name: &str| -> Result<Option<i64>> {
            match env(name) {
                None => Ok(None),
                Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                    usage(format!(
                        "--shard auto/{count}: {name}={v:?} is not a number"
                    ))
                }),
            }
        };
        let (name, index) = if let Some(i) = read("JOB_COMPLETION_INDEX")? {
            ("JOB_COMPLETION_INDEX", i)
        } else if let Some(i) = read("SLURM_ARRAY_TASK_ID")? {
            ("SLURM_ARRAY_TASK_ID", i)
        } else {
            return Err(usage(format!(
                "--shard auto/{count}: neither JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) nor \
                 SLURM_ARRAY_TASK_ID (a Slurm job array) is set; give the shard as i/{count}"
            )));
        };
        if index < 0 || index as usize >= count {
            return Err(usage(format!(
                "--shard auto/{count}: {name} gives shard {index}, outside 0..={}",
                count - 1
            )));
        }
        Ok(Shard {
            index: index as usize,
            count,
        })
    }
}

impl Shard {
    /// The global indices of this shard's part of `n` items: a contiguous block, the blocks'
    /// sizes differing by at most one.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        let start = self.index * n / self.count;
        let end = (self.index + 1) * n / self.count;
        start..end
    }
}

/// One input an output folder holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestInput {
    /// Its position among all the inputs of the unsharded run.
    pub index: usize,
    /// Its folder's name.
    pub name: String,
    /// Where it came from.
    pub source: String,
}

/// The block of the reference set a shard of the references (`xai similarity --shard i/n
/// --shard-references`) fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceShard {
    /// The position of the block's first reference in the whole set.
    pub offset: usize,
    /// How many references the block holds (0 when there are more shards than chunks).
    pub len: usize,
    /// How many references the whole set has.
    pub n_references: usize,
}

/// What a run wrote: `<out>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The subcommand.
    pub command: String,
    /// SHA-256 of the command line without `--out`, `--shard`, `--json` and `--quiet`: the
    /// method, its parameters and seed, the inputs.
    pub args_sha256: String,
    /// SHA-256 of the model file (or of a shipped model's name).
    pub model_sha256: String,
    /// This run's shard, `None` for a whole run (or a merge).
    pub shard: Option<Shard>,
    /// How many inputs the whole run has.
    pub n_inputs: usize,
    /// The inputs this folder holds, in order.
    pub inputs: Vec<ManifestInput>,
    /// For a shard of the references: its block of them (every input is in every such shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<ReferenceShard>,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of the arguments that decide what a run computes: `args` without the program name,
/// `--out`, `--shard` (with their values), `--shard-references`, `--json`, `--quiet`/`-q`.
pub fn args_sha256(args: &[String]) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut skip_value = false;
    for a in args.iter().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        match a.as_str() {
            "--out" | "--shard" => skip_value = true,
            "--json" | "--quiet" | "-q" | "--shard-references" => {}
            s if s.starts_with("--out=") || s.starts_with("--shard=") => {}
            s => kept.push(s),
        }
    }
    sha256_hex(kept.join("\0").as_bytes())
}

/// SHA-256 of the model: the file's bytes and, for an ONNX file whose weights live in external
/// data files (`model.onnx.data`, as torch's exporter writes them), each such file's name and
/// bytes; or the shipped model's name. Shards run against different external weights thus differ.
pub fn model_sha256(model: &str) -> Result<String> {
    let path = Path::new(model);
    if !path.is_file() {
        return Ok(sha256_hex(format!("shipped:{model}").as_bytes()));
    }
    let mut hasher = Sha256::new();
    hash_file(&mut hasher, path)?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        // A model that does not parse fails when it loads, with the loader's message.
        for data in xai_onnx::external_data_files(path).unwrap_or_default() {
            // The data file's name, length-prefixed, separates it from the bytes before.
            let name = data
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hash_file(&mut hasher, &data)?;
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Streams the file at `path` into `hasher`.
fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let read_error = |e: std::io::Error| {
        usage(format!(
            "{}: cannot read the model or its data ({e})",
            path.display()
        ))
    };
    let mut f = std::fs::File::open(path).map_err(read_error)?;
    std::io::copy(&mut f, hasher).map_err(read_error)?;
    Ok(())
}

impl Manifest {
    /// Writes `dir/manifest.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST);
        let text =
            serde_json::to_string_pretty(self).map_err(|e| failed_in("writing the manifest", e))?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| failed_in(format!("writing {}", path.display()), e))
    }

    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            usage(format!(
                "{}: no readable {MANIFEST}; not the output folder of an xai run",
                dir.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| usage(format!("{}: not an xai manifest ({e})", path.display())))
    }
}

/// Merges the output folders of the shards of one run into `out`: checks that they are the
/// shards `0..n` of the same command, parameters and model, each once, then copies every
/// input's folder into `out` (nothing there is overwritten) and writes the manifest of the
/// whole run. Returns the number of inputs merged.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<usize> {
    if dirs.is_empty() {
        return Err(usage("xai merge: no shard folder given"));
    }
    let manifests: Vec<Manifest> = dirs
        .iter()
        .map(|d| Manifest::read(d))
        .collect::<Result<_>>()?;
    let first = &manifests[0];
    let count = match first.shard {
        Some(s) => s.count,
        None => {
            return Err(usage(format!(
                "{}: the output of a whole run, not of a shard (--shard i/n)",
                dirs[0].display()
            )))
        }
    };
    let mut seen: Vec<Option<&Path>> = vec![None; count];
    for (m, d) in manifests.iter().zip(dirs) {
        let Some(shard) = m.shard else {
            return Err(usage(format!(
                "{}: the output of a whole run, not of a shard (--shard i/n)",
                d.display()
            )));
        };
        let differs = |what: &str| {
            usage(format!(
                "{} and {}: different {what}; shards of one run have the same command line \
                 (but --out and --shard) and model",
                dirs[0].display(),
                d.display()
            ))
        };
        if m.command != first.command {
            return Err(differs("subcommands"));
        }
        if m.args_sha256 != first.args_sha256 {
            return Err(differs("parameters, seeds or inputs"));
        }
        if m.model_sha256 != first.model_sha256 {
            return Err(differs("models"));
        }
        if shard.count != count || m.n_inputs != first.n_inputs {
            return Err(differs("shard counts"));
        }
        if let Some(other) = seen[shard.index] {
            return Err(usage(format!(
                "{} and {} are both shard {}/{count}",
                other.display(),
                d.display(),
                shard.index
            )));
        }
        seen[shard.index] = Some(d);
    }
    if let Some(missing) = seen.iter().position(Option::is_none) {
        return Err(usage(format!(
            "shard {missing}/{count} is missing (give every shard's folder; a failed shard can be \
             rerun alone)"
        )));
    }
    if manifests.iter().any(|m| m.references.is_some()) {
        let mut ordered: Vec<(&Manifest, &Path)> = manifests
            .iter()
            .zip(dirs)
            .map(|(m, d)| (m, d.as_path()))
            .collect();
        ordered.sort_by_key(|(m, _)| m.shard.map_or(0, |s| s.index));
        return crate::similarity::merge_reference_shards(&ordered, out);
    }
    // Every input once, in the whole run's order.
    let mut inputs: Vec<(&ManifestInput, &Path)> = manifests
        .iter()
        .zip(dirs)
        .flat_map(|(m, d)| m.inputs.iter().map(move |i| (i, d.as_path())))
        .collect();
    inputs.sort_by_key(|(i, _)| i.index);
    if inputs.len() != first.n_inputs || inputs.iter().enumerate().any(|(k, (i, _))| i.index != k) {
        return Err(usage(format!(
            "the shards hold {} inputs, the run has {}: a shard's folder is incomplete (rerun it)",
            inputs.len(),
            first.n_inputs
        )));
    }
    let names: Vec<String> = inputs.iter().map(|(i, _)| i.name.clone()).collect();
    prepare_merge_folder(out, &names)?;
    for (i, d) in &inputs {
        copy_tree(&d.join(&i.name), &out.join(&i.name))?;
    }
    if first.command == "eval" {
        let names: Vec<String> = inputs.iter().map(|(i, _)| i.name.clone()).collect();
        crate::eval::write_tables(out, &names)?;
    }
    Manifest {
        shard: None,
        inputs: inputs.iter().map(|(i, _)| (*i).clone()).collect(),
        ..first.clone()
    }
    .write(out)?;
    Ok(inputs.len())
}

/// Creates the merge's output folder `out`, after checking that it holds no run's results and
/// none of the inputs' folders `names` (nothing is overwritten).
pub fn prepare_merge_folder(out: &Path, names: &[String]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| usage(format!("creating {} ({e})", out.display())))?;
    if out.join(MANIFEST).exists() {
        return Err(usage(format!(
            "{} already holds a run's results; merge into a new folder",
            out.display()
        )));
    }
    for name in names {
        if out.join(name).exists() {
            return Err(usage(format!(
                "{} already exists; merge into a new folder (nothing is overwritten)",
                out.join(name).display()
            )));
        }
    }
    Ok(())
}

/// Copies the folder `from` to `to` (created), recursively.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let entries = std::fs::read_dir(from).map_err(|e| {
        usage(format!(
            "{}: cannot read it ({e}); the shard's folder is incomplete (rerun it)",
            from.display()
        ))
    })?;
    std::fs::create_dir_all(to).map_err(|e| failed_in(format!("creating {}", to.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| failed_in(format!("reading {}", from.display()), e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .map_err(|e| failed_in(format!("copying {}", src.display()), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_resolve() {
        assert_eq!(
            parse_shard("2/8").unwrap(),
            ShardSpec::Fixed(Shard { index: 2, count: 8 })
        );
        assert_eq!(parse_shard("auto/4").unwrap(), ShardSpec::Auto(4));
        for bad in ["8/8", "1/0", "a/2", "3", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let auto = ShardSpec::Auto(3);
        assert_eq!(
            auto.resolve(env(&[("JOB_COMPLETION_INDEX", "2")]))
                .unwrap()
                .index,
            2
        );
        assert_eq!(
            auto.resolve(env(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_MIN", "2")
            ]))
            .unwrap()
            .index,
            2
        );
        for vars in [
            &[][..],
            &[("JOB_COMPLETION_INDEX", "3")][..],
            &[("SLURM_ARRAY_TASK_ID", "x")][..],
        ] {
            let vars: &'static [(&str, &str)] = Box::leak(vars.to_vec().into_boxed_slice());
            assert!(auto.resolve(env(vars)).is_err(), "{vars:?}");
        }
    }

    #[test]
    fn blocks_cover_every_input_once() {
        for n in 0..20 {
            for count in 1..6 {
                let mut all = Vec::new();
                for index in 0..count {
                    all.extend(Shard { index, count }.range(n));
                }
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "{n} in {count}");
            }
        }
    }

    #[test]
    fn the_model_hash_covers_external_data() {
        let t = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../xai-onnx/fixtures");
        for ext in ["onnx", "onnx.data"] {
            std::fs::copy(
                fixtures.join(format!("torch_dynamic_hw.{ext}")),
                t.path().join(format!("torch_dynamic_hw.{ext}")),
            )
            .unwrap();
        }
        let model = t.path().join("torch_dynamic_hw.onnx");
        let model = model.to_str().unwrap();
        let before = model_sha256(model).unwrap();
        assert_eq!(before, model_sha256(model).unwrap());
        // Other weights in the data file: another hash.
        let data = t.path().join("torch_dynamic_hw.onnx.data");
        let mut bytes = std::fs::read(&data).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&data, bytes).unwrap();
        assert_ne!(before, model_sha256(model).unwrap());
        assert_ne!(
            model_sha256("alibi_cnn").unwrap(),
            model_sha256("cem_cnn").unwrap()
        );
    }

    #[test]
    fn the_hash_ignores_where_and_how_results_go() {
        let a: Vec<String> = [
            "xai", "shap", "--model", "m", "--out", "o1", "--shard", "0/2",
        ]
        .map(String::from)
        .to_vec();
        let b: Vec<String> = ["xai", "shap", "--json", "--model", "m", "--out=o2"]
            .map(String::from)
            .to_vec();
        let c: Vec<String> = ["xai", "shap", "--model", "m2"].map(String::from).to_vec();
        assert_eq!(args_sha256(&a), args_sha256(&b));
        assert_ne!(args_sha256(&a), args_sha256(&c));
    }
}
