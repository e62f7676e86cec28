//! Compiles every `bpf/*.bpf.c` with clang and generates its libbpf-rs skeleton into OUT_DIR.
//! The object itself also lands in OUT_DIR (`NAME.bpf.o`) so `src/programs.rs` can embed it.

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

    for source in sources {
        let file_name = source.file_name().unwrap().to_string_lossy().into_owned();
        let name = file_name.trim_end_matches(".bpf.c");
        // -mcpu=v3: compare-and-swap, which the exact tables' writers use (bpf/exact.h).
        SkeletonBuilder::new()
            .source(&source)
            .obj(out_dir.join(format!("{name}.bpf.o")))
            .reference_obj(true)
            .clang_args(["-Iinclude", "-Ibpf", "-Wall", "-Werror", "-mcpu=v3"])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|err| panic!("building {}: {err:#}", source.display()));
    }
}
