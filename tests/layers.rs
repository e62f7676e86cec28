//! The layering of `src/` (docs/architecture.md): each top-level module imports only the layers
//! below it, so there is no cycle between them, and `sys` names no feature. Read from the
//! source text, so a new import that breaks the rule fails here, without root.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Bottom to top; modules of one layer do not import each other.
const LAYERS: &[&[&str]] = &[
    &["abi", "skel", "input", "packets"],
    &["sys"],
    &["firewall"],
    &["counters"],
    &["trace", "lab", "config"],
    &["output"],
    &["commands"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a file's code (not its comments) names as `crate::NAME`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or(""))
                    .collect()
            } else {
                vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")]
            };
            found.extend(
                names
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    found
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        let Some(own) = rank(top) else {
            assert!(
                ["lib", "main"].contains(&top),
                "src/{} is in no layer: add its module to LAYERS here and to docs/architecture.md",
                relative.display()
            );
            continue;
        };
        for imported in imports(&fs::read_to_string(file).unwrap()) {
            match rank(&imported) {
                Some(theirs) if imported != top && theirs >= own => broken.push(format!(
                    "src/{} ({top}) imports {imported}, which is not below it",
                    relative.display()
                )),
                _ => {}
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_single_and_grouped_imports_but_not_comments() {
    let text =
        "use crate::sys::attach;\nuse crate::{firewall::rules, output};\n// crate::commands\n";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["firewall", "output", "sys"]);
}

#[test]
fn sys_names_no_feature_type() {
    let sys = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sys");
    let mut files = Vec::new();
    walk(&sys, &mut files);
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for word in ["FirewallMaps", "skel::firewall", "fw_config", "fw_rule"] {
            assert!(
                !text.contains(word),
                "{} names the firewall's {word}",
                file.display()
            );
        }
    }
}
