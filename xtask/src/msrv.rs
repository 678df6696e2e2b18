//! `cargo xtask msrv`: checks that every workspace crate's declared `rust-version` is at least
//! the highest `rust-version` declared by anything it builds with (its normal and build
//! dependencies, transitively, as resolved in `Cargo.lock`). Older toolchains cannot be
//! installed here, so this is how the claim is kept true.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// A `rust-version` as (major, minor, patch).
type RustVersion = (u64, u64, u64);

fn parse_version(s: &str) -> Option<RustVersion> {
    let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

fn show((a, b, c): RustVersion) -> String {
    if c == 0 {
        format!("{a}.{b}")
    } else {
        format!("{a}.{b}.{c}")
    }
}

/// One workspace crate's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrvRow {
    /// The crate.
    pub name: String,
    /// Its declared `rust-version`, if any.
    pub declared: Option<String>,
    /// The highest `rust-version` among what it builds with, and which crate declares it.
    pub required: Option<(String, String)>,
}

impl MsrvRow {
    /// Whether the declaration covers what its dependencies need.
    pub fn ok(&self) -> bool {
        match (&self.declared, &self.required) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(d), Some((r, _))) => parse_version(d) >= parse_version(r),
        }
    }
}

/// Reads `cargo metadata` for the workspace and computes one row per workspace crate.
pub fn check() -> Result<Vec<MsrvRow>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(crate::workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    rows_from_metadata(&meta)
}

/// The rows for a `cargo metadata` document (separate for tests).
pub fn rows_from_metadata(meta: &Value) -> Result<Vec<MsrvRow>> {
    let packages = meta["packages"]
        .as_array()
        .context("metadata without packages")?;
    let mut name_of = HashMap::new();
    let mut version_of = HashMap::new();
    for p in packages {
        let id = p["id"].as_str().context("package without id")?.to_string();
        name_of.insert(id.clone(), p["name"].as_str().unwrap_or("?").to_string());
        if let Some(v) = p["rust_version"].as_str() {
            version_of.insert(id, v.to_string());
        }
    }
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for node in meta["resolve"]["nodes"]
        .as_array()
        .context("metadata without a resolve graph")?
    {
        let id = node["id"].as_str().context("node without id")?.to_string();
        let mut out = Vec::new();
        for d in node["deps"].as_array().into_iter().flatten() {
            let builds_with = d["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if builds_with {
                if let Some(pkg) = d["pkg"].as_str() {
                    out.push(pkg.to_string());
                }
            }
        }
        deps.insert(id, out);
    }
    let mut rows = BTreeMap::new();
    for member in meta["workspace_members"]
        .as_array()
        .context("metadata without workspace members")?
    {
        let member = member.as_str().context("bad member id")?;
        let mut seen = HashSet::new();
        let mut stack: Vec<&str> = deps
            .get(member)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut required: Option<(RustVersion, String)> = None;
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(v) = version_of.get(id).and_then(|v| parse_version(v)) {
                if required.as_ref().is_none_or(|(r, _)| v > *r) {
                    required = Some((v, name_of[id].clone()));
                }
            }
            stack.extend(deps.get(id).into_iter().flatten().map(String::as_str));
        }
        let name = name_of[member].clone();
        rows.insert(
            name.clone(),
            MsrvRow {
                name,
                declared: version_of.get(member).cloned(),
                required: required.map(|(v, who)| (show(v), who)),
            },
        );
    }
    Ok(rows.into_values().collect())
}

/// Runs `cargo xtask msrv`: prints the table, fails if any declaration is too low.
pub fn run() -> Result<()> {
    let rows = check()?;
    println!("{:<14} {:>9} {:>9}  set by", "crate", "declared", "needed");
    for r in &rows {
        let (need, who) = r
            .required
            .clone()
            .unwrap_or_else(|| ("-".into(), String::new()));
        println!(
            "{:<14} {:>9} {:>9}  {who}{}",
            r.name,
            r.declared.as_deref().unwrap_or("none"),
            need,
            if r.ok() { "" } else { "   <-- too low" }
        );
    }
    let bad: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.name.as_str())
        .collect();
    if !bad.is_empty() {
        bail!("rust-version too low (or missing) for: {}", bad.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitive_normal_and_build_dependencies_count_dev_dependencies_do_not() {
        let meta = serde_json::json!({
            "packages": [
                {"id": "a", "name": "a", "rust_version": "1.80"},
                {"id": "b", "name": "b", "rust_version": "1.70"},
                {"id": "c", "name": "c", "rust_version": "1.88.1"},
                {"id": "d", "name": "d", "rust_version": "1.95"},
                {"id": "e", "name": "e", "rust_version": null}
            ],
            "workspace_members": ["a"],
            "resolve": {"nodes": [
                {"id": "a", "deps": [
                    {"pkg": "b", "dep_kinds": [{"kind": null}]},
                    {"pkg": "d", "dep_kinds": [{"kind": "dev"}]}
                ]},
                {"id": "b", "deps": [{"pkg": "c", "dep_kinds": [{"kind": "build"}]},
                                     {"pkg": "e", "dep_kinds": [{"kind": null}]}]},
                {"id": "c", "deps": []},
                {"id": "d", "deps": []},
                {"id": "e", "deps": []}
            ]}
        });
        let rows = rows_from_metadata(&meta).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].required, Some(("1.88.1".into(), "c".into())));
        assert!(!rows[0].ok());
        assert_eq!(parse_version("1.91"), Some((1, 91, 0)));
        assert_eq!(parse_version("x"), None);
    }
}
