//! Compiles every `bpf/*.bpf.c` with clang and generates its libbpf-rs skeleton into OUT_DIR.
//! Only the programs sit in bpf/; their headers are in bpf/lib/ and bpf/firewall/, included as
//! "lib/NAME.h" and "firewall/NAME.h" through -Ibpf.
//! The object itself also lands in OUT_DIR (`NAME.bpf.o`) so `src/sys/programs.rs` can embed it.
//! The constants and enums of `include/xdpctl.h` become `OUT_DIR/abi.rs` through bindgen
//! (`src/abi.rs`), so the Rust side never writes a value of the ABI again; a feature's structs
//! come from its skeleton's BTF, and the counters every program shares (struct datarec,
//! struct history_second) from bindgen too.

use std::sync::{Arc, Mutex};
use std::{env, fs, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=include");

    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("bpf/ is readable")
        .map(|entry| entry.expect("bpf/ entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    generate_abi(&out_dir);

    for source in sources {
        let file_name = source.file_name().unwrap().to_string_lossy().into_owned();
        let name = file_name.trim_end_matches(".bpf.c");
        // -mcpu=v3: compare-and-swap, which the exact tables' writers use (bpf/firewall/exact.h).
        SkeletonBuilder::new()
            .source(&source)
            .obj(out_dir.join(format!("{name}.bpf.o")))
            .reference_obj(true)
            .clang_args(["-Iinclude", "-Ibpf", "-Wall", "-Werror", "-mcpu=v3"])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|err| panic!("building {}: {err:#}", source.display()));
    }
}

/// The header's `#define`s and enums as Rust constants, named as in C.
fn generate_abi(out_dir: &std::path::Path) {
    // The header relies on the kernel's fixed-width types (vmlinux.h in the BPF programs).
    let prelude = concat!(
        "typedef unsigned char __u8;\n",
        "typedef unsigned short __u16;\n",
        "typedef unsigned int __u32;\n",
        "typedef unsigned long long __u64;\n",
        "#include \"xdpctl.h\"\n",
    );
    let names = VariantNames::default();
    bindgen::Builder::default()
        .header_contents("abi.h", prelude)
        .parse_callbacks(Box::new(names.clone()))
        .clang_arg("-Iinclude")
        .allowlist_var("XDP_ACTION_MAX|XDPCTL_.*|FW_.*")
        .allowlist_type(
            "history_drop|fw_(proto|drop_reason|exact_state|rule_reason|rl_proto|map_bit|list|hhh_level|hit_kind)",
        )
        // The counters every program shares: no one program's skeleton is theirs.
        .allowlist_type("datarec|history_second")
        .derive_default(true)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|err| panic!("bindgen on include/xdpctl.h: {err}"))
        .write_to_file(out_dir.join("abi.rs"))
        .expect("writing OUT_DIR/abi.rs");
    fs::write(out_dir.join("abi_names.rs"), names.render()).expect("writing OUT_DIR/abi_names.rs");
}

/// Enums whose variants the renderers print: `NAMES` gets each variant's name, lowercase and
/// without the prefix (FW_DROP_PORT is "port"), in value order, so a new variant in the header
/// shows up in every table, JSON document and metric without a Rust edit.
const NAMED_ENUMS: [(&str, &str); 4] = [
    ("fw_drop_reason", "FW_DROP_"),
    ("fw_proto", "FW_PROTO_"),
    ("history_drop", "HISTORY_DROP_"),
    ("fw_rule_reason", "FW_REASON_"),
];

#[derive(Clone, Debug, Default)]
struct VariantNames(Arc<Mutex<Vec<(String, String, i64)>>>);

impl bindgen::callbacks::ParseCallbacks for VariantNames {
    fn enum_variant_name(
        &self,
        enum_name: Option<&str>,
        variant: &str,
        value: bindgen::callbacks::EnumVariantValue,
    ) -> Option<String> {
        let value = match value {
            bindgen::callbacks::EnumVariantValue::Signed(v) => v,
            bindgen::callbacks::EnumVariantValue::Unsigned(v) => v as i64,
            bindgen::callbacks::EnumVariantValue::Boolean(v) => v as i64,
        };
        let enum_name = enum_name?.trim_start_matches("enum ").to_owned();
        let mut seen = self.0.lock().unwrap();
        if !seen.iter().any(|(e, v, _)| *e == enum_name && v == variant) {
            seen.push((enum_name, variant.to_owned(), value));
        }
        None
    }
}

impl VariantNames {
    fn render(&self) -> String {
        let seen = self.0.lock().unwrap();
        let mut out = String::new();
        for (enum_name, prefix) in NAMED_ENUMS {
            let mut variants: Vec<(i64, String)> = seen
                .iter()
                .filter(|(e, v, _)| e == enum_name && !v.ends_with("_MAX"))
                .map(|(_, v, value)| (*value, v.trim_start_matches(prefix).to_lowercase()))
                .collect();
            assert!(
                !variants.is_empty(),
                "include/xdpctl.h has no enum {enum_name}"
            );
            variants.sort();
            let first = variants[0].0;
            for (i, (value, _)) in variants.iter().enumerate() {
                assert_eq!(
                    *value,
                    first + i as i64,
                    "enum {enum_name} is not consecutive"
                );
            }
            let names: Vec<String> = variants.iter().map(|(_, n)| format!("{n:?}")).collect();
            out.push_str(&format!(
                "/// enum {enum_name}'s variants by name, from value {first} on.\n\
                 pub const {}_NAMES: [&str; {}] = [{}];\n",
                enum_name.to_uppercase(),
                names.len(),
                names.join(", ")
            ));
        }
        out
    }
}
