//! The sharding recipes under `docs/recipes/`: the Kubernetes manifests, rendered with a
//! placeholder image, parse as YAML with the fields Kubernetes needs; the Slurm array script
//! runs as is under bash, one process per array task, and its merge script joins the shards
//! into exactly the unsharded run's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use yaml_rust2::{Yaml, YamlLoader};

const IMAGE: &str = "registry.example/xai:test";

fn recipe(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/recipes")
        .join(name)
}

fn read_recipe(name: &str) -> String {
    let path = recipe(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the recipes' `sed` commands do.
fn render(text: &str, shards: usize) -> String {
    text.replace("{{IMAGE}}", IMAGE)
        .replace("{{SHARDS}}", &shards.to_string())
}

/// The documents of a rendered manifest; each must be a `batch/v1` Job with a valid name.
fn jobs(name: &str, shards: usize) -> Vec<Yaml> {
    let raw = read_recipe(name);
    assert!(
        raw.contains("{{IMAGE}}"),
        "{name}: no {{{{IMAGE}}}} placeholder"
    );
    let text = render(&raw, shards);
    assert!(!text.contains("{{"), "{name}: a placeholder is left");
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let docs: Vec<Yaml> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert!(!docs.is_empty(), "{name}: no document");
    for d in &docs {
        assert_eq!(d["apiVersion"].as_str(), Some("batch/v1"), "{name}");
        assert_eq!(d["kind"].as_str(), Some("Job"), "{name}");
        let job = d["metadata"]["name"].as_str().expect("metadata.name");
        assert_dns_label(job);
        let pod = &d["spec"]["template"]["spec"];
        let restart = pod["restartPolicy"].as_str();
        assert!(
            matches!(restart, Some("Never" | "OnFailure")),
            "{job}: a Job's pods need restartPolicy Never or OnFailure, not {restart:?}"
        );
        let containers = pod["containers"].as_vec().expect("containers");
        assert!(!containers.is_empty(), "{job}: no container");
        for c in containers {
            assert_dns_label(c["name"].as_str().expect("container name"));
            assert_eq!(c["image"].as_str(), Some(IMAGE), "{job}");
            // Every mount names one of the pod's volumes, each a claim.
            for m in c["volumeMounts"].as_vec().into_iter().flatten() {
                let v = volume(pod, m["name"].as_str().expect("volumeMount name"));
                let claim = v["persistentVolumeClaim"]["claimName"].as_str();
                assert!(
                    claim.is_some_and(|c| !c.is_empty()),
                    "{job}: volume {:?} is not a claim",
                    v["name"]
                );
                assert!(m["mountPath"].as_str().is_some_and(|p| p.starts_with('/')));
            }
        }
    }
    docs
}

/// Kubernetes object and container names: DNS-1123 labels.
fn assert_dns_label(name: &str) {
    assert!(
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-'),
        "{name:?} is not a DNS-1123 label"
    );
}

/// The pod's volume `name`.
fn volume<'a>(pod: &'a Yaml, name: &str) -> &'a Yaml {
    pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no volume {name:?} for a volumeMount"))
}

/// The container's command and arguments, split into words (a `sh -c` script too).
fn words(container: &Yaml) -> Vec<String> {
    ["command", "args"]
        .iter()
        .flat_map(|k| container[*k].as_vec().cloned().unwrap_or_default())
        .map(|w| match w {
            Yaml::String(s) => s,
            Yaml::Integer(i) => i.to_string(),
            other => panic!("a non-string argument: {other:?}"),
        })
        .flat_map(|w| w.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The word after `flag`.
fn flag<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let i = words.iter().position(|w| w == flag)?;
    words.get(i + 1).map(String::as_str)
}

/// The mount of the pod's only container that holds `path`, and its claim.
fn mount_of<'a>(pod: &'a Yaml, path: &str) -> (&'a Yaml, String) {
    let c = &pod["containers"][0];
    let m = c["volumeMounts"]
        .as_vec()
        .expect("volumeMounts")
        .iter()
        .find(|m| {
            let p = m["mountPath"].as_str().unwrap().trim_end_matches('/');
            path.starts_with(&format!("{p}/"))
        })
        .unwrap_or_else(|| panic!("{path} is on no mounted volume"));
    let v = volume(pod, m["name"].as_str().unwrap());
    let claim = v["persistentVolumeClaim"]["claimName"].as_str().unwrap();
    (m, claim.to_string())
}

#[test]
fn kubernetes_manifests_render_to_an_indexed_job_and_a_merge_job() {
    for shards in [3, 5] {
        let docs = jobs("k8s-indexed-job.yaml", shards);
        assert_eq!(docs.len(), 1, "one Job");
        let job = &docs[0];
        let name = job["metadata"]["name"].as_str().unwrap();
        let spec = &job["spec"];
        assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
        assert_eq!(spec["completions"].as_i64(), Some(shards as i64));
        let parallelism = spec["parallelism"].as_i64().expect("parallelism");
        assert!((1..=shards as i64).contains(&parallelism));
        let pod = &spec["template"]["spec"];
        match spec["backoffLimitPerIndex"].as_i64() {
            // Kubernetes rejects backoffLimitPerIndex with restartPolicy OnFailure.
            Some(n) => {
                assert!(n >= 0);
                assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
            }
            None => assert!(spec["backoffLimit"].as_i64().is_some_and(|n| n >= 0)),
        }
        let containers = pod["containers"].as_vec().unwrap();
        assert_eq!(containers.len(), 1);
        let w = words(&containers[0]);
        assert_eq!(&w[..2], ["xai", "shap"], "{w:?}");
        let auto = format!("auto/{shards}");
        assert_eq!(flag(&w, "--shard"), Some(auto.as_str()), "{w:?}");
        // Each index writes its own folder (by the kubelet's $(VAR) or a shell's $VAR).
        let out = flag(&w, "--out").expect("--out");
        assert!(
            out.contains("$(JOB_COMPLETION_INDEX)") || out.contains("$JOB_COMPLETION_INDEX"),
            "every pod would write {out}"
        );
        // The model and the images from a read-only claim, the results on another.
        let (data, data_claim) = mount_of(pod, flag(&w, "--model").expect("--model"));
        let (data2, _) = mount_of(pod, flag(&w, "--input").expect("--input"));
        assert_eq!(data, data2);
        assert_eq!(data["readOnly"].as_bool(), Some(true), "the data mount");
        let (results, results_claim) = mount_of(pod, out);
        assert_ne!(
            results["readOnly"].as_bool(),
            Some(true),
            "the results mount"
        );
        assert_ne!(data_claim, results_claim);
        let shard_prefix = out.split('$').next().unwrap();

        // The merge Job: every shard's folder, from the same claim, into another folder.
        let merge_docs = jobs("k8s-merge-job.yaml", shards);
        assert_eq!(merge_docs.len(), 1, "one Job");
        let merge = &merge_docs[0];
        let merge_name = merge["metadata"]["name"].as_str().unwrap();
        assert_ne!(merge_name, name);
        let mpod = &merge["spec"]["template"]["spec"];
        let mc = &mpod["containers"][0];
        let script = words(mc).join(" ");
        assert!(script.contains("xai merge"), "{script}");
        let glob = format!("{shard_prefix}*");
        assert!(script.contains(&glob), "{script} does not merge {glob}");
        let mw = words(mc);
        let merged = flag(&mw, "--out").expect("xai merge --out");
        assert!(
            !merged.starts_with(shard_prefix),
            "{merged} matches the shards' glob"
        );
        let (_, merge_claim) = mount_of(mpod, merged);
        assert_eq!(merge_claim, results_claim, "the merge reads another claim");
        assert_eq!(mount_of(mpod, &glob).1, results_claim);

        // The comments wait for the Job by its name before the merge.
        let wait = format!("kubectl wait --for=condition=complete job/{name}");
        for file in ["k8s-indexed-job.yaml", "k8s-merge-job.yaml", "README.md"] {
            assert!(read_recipe(file).contains(&wait), "{file}: no `{wait}`");
        }
    }
}

/// 28x28 grayscale PNGs of four shapes (a ring, a bar, a cross, a diagonal), MNIST-like.
fn write_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..4u32 {
        let img = image::GrayImage::from_fn(28, 28, |x, y| {
            let (dx, dy) = (x as f32 - 13.5, y as f32 - 13.5);
            let r = (dx * dx + dy * dy).sqrt();
            let on = match k {
                0 => (6.0..9.0).contains(&r),
                1 => (12..16).contains(&x) && (4..24).contains(&y),
                2 => ((12..16).contains(&x) || (12..16).contains(&y)) && r < 10.0,
                _ => x.abs_diff(y) < 3 && (4..24).contains(&x),
            };
            image::Luma([if on { 255 } else { 0 }])
        });
        img.save(dir.join(format!("shape{k}.png"))).unwrap();
    }
}

/// `bash docs/recipes/<script>` with the variables of a Slurm task removed, xai the test's
/// binary and the shipped models from the repository.
fn script(name: &str, cwd: &Path) -> Command {
    let mut c = Command::new("bash");
    c.arg(recipe(name)).current_dir(cwd);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("SLURM_")
            || [
                "JOB_COMPLETION_INDEX",
                "SHARD",
                "SHARDS",
                "XAI_ARGS",
                "MODEL",
                "INPUT",
                "OUT",
            ]
            .contains(&k.as_str())
        {
            c.env_remove(k);
        }
    }
    c.env("XAI", env!("CARGO_BIN_EXE_xai")).env(
        "XAI_MODELS_DIR",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    );
    c
}

const BUDGET: &str = "--seed 3 --nsamples 20 --n-segments 8";

fn shard_task(cwd: &Path, input: &Path, out: &Path, vars: &[(&str, &str)]) -> Command {
    let mut c = script("slurm-array.sh", cwd);
    c.env("MODEL", "binary_cnn")
        .env("INPUT", input)
        .env("OUT", out)
        .env("SHARDS", "4")
        .env("XAI_ARGS", BUDGET);
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn assert_fails(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
}

/// Every file under `dir`, by its path relative to `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_slurm_array_script_runs_its_shards_and_the_merge_script_joins_them() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("images");
    write_images(&input);
    let out = t.path().join("results");
    // The array's four tasks, at once as on a cluster.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let id = i.to_string();
            shard_task(t.path(), &input, &out, &[("SLURM_ARRAY_TASK_ID", &id)])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("bash runs")
        })
        .collect();
    // A shard rerun alone (`SHARD=id sbatch --array=2`): a one-task array from task 2.
    let rerun = t.path().join("rerun");
    let one_task = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_MIN", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "1"),
    ];
    let mut vars = one_task.to_vec();
    vars.push(("SHARD", "id"));
    let rerun_task = shard_task(t.path(), &input, &rerun, &vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The same rerun without SHARD=id: a 1-task array is not SHARDS tasks, refused.
    let wrong = t.path().join("wrong");
    assert_fails(
        &shard_task(t.path(), &input, &wrong, &one_task)
            .output()
            .unwrap(),
        "the array has 1 tasks but SHARDS=4",
    );
    assert!(!wrong.exists());
    assert_fails(
        &shard_task(t.path(), &input, &wrong, &[]).output().unwrap(),
        "SLURM_ARRAY_TASK_ID is not set",
    );
    // What one unsharded run writes, with the script's flags in its order.
    let whole = t.path().join("whole");
    let mut args = vec!["shap", "--model", "binary_cnn", "--input"];
    args.push(input.to_str().unwrap());
    args.extend(["--out", whole.to_str().unwrap(), "--quiet"]);
    args.extend(BUDGET.split(' '));
    let o = Command::new(env!("CARGO_BIN_EXE_xai"))
        .args(&args)
        .env(
            "XAI_MODELS_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
        )
        .output()
        .unwrap();
    assert_ok(&o, "the unsharded run");
    for (i, task) in tasks.into_iter().enumerate() {
        assert_ok(&task.wait_with_output().unwrap(), &format!("task {i}"));
        let m = manifest(&out.join(format!("shard-{i}")));
        assert_eq!(m["shard"], serde_json::json!({"index": i, "count": 4}));
        assert_eq!(m["inputs"].as_array().unwrap().len(), 1, "shard {i}");
    }
    assert_ok(&rerun_task.wait_with_output().unwrap(), "the rerun");
    assert_eq!(tree(&rerun.join("shard-2")), tree(&out.join("shard-2")));

    let o = script("slurm-merge.sh", t.path())
        .env("OUT", &out)
        .output()
        .unwrap();
    assert_ok(&o, "slurm-merge.sh");
    let merged = out.join("merged");
    let m = manifest(&merged);
    assert!(m["shard"].is_null(), "{m}");
    assert_eq!(m["n_inputs"], 4);
    let names: Vec<&str> = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4);
    for name in &names {
        assert!(
            merged.join(name).join("explanation.json").is_file(),
            "{name}"
        );
    }
    let (whole, merged) = (tree(&whole), tree(&merged));
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        merged.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &whole {
        assert!(merged[path] == *bytes, "{} differs", path.display());
    }
    // Merging again would overwrite: refused.
    let o = script("slurm-merge.sh", t.path())
        .env("OUT", &out)
        .output()
        .unwrap();
    assert_fails(&o, "already holds a run's results");
}
