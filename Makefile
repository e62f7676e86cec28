# xdpctl: `make` builds the release binary; `make test` and `make demo` first install what is
# missing (as root). See README.md.

CARGO     ?= cargo
CLANG     ?= clang
BPFTOOL   ?= bpftool
ARCH      := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

BPF_SRC   := $(wildcard bpf/*.bpf.c)
BPF_OBJ   := $(patsubst bpf/%.bpf.c,build/%.bpf.o,$(BPF_SRC))
BPF_HDR   := $(wildcard bpf/*/*.h) include/xdpctl.h include/vmlinux.h
BPF_FLAGS := -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Iinclude -Ibpf -Wall -Werror
C_FILES   := $(wildcard bpf/*.c bpf/*/*.h tests/bpf/*.c) include/xdpctl.h

.PHONY: all deps bpf vmlinux test difftest bench demo check clean

## all: the release build (target/release/xdpctl)
all:
	$(CARGO) build --release --locked

## deps: install missing build and test dependencies (Debian/Ubuntu, as root)
deps:
	bash scripts/install-deps.sh

## bpf: compile each bpf/*.bpf.c to build/NAME.bpf.o, for bpftool or llvm-objdump
bpf: $(BPF_OBJ)

build/%.bpf.o: bpf/%.bpf.c $(BPF_HDR)
	@mkdir -p build
	$(CLANG) $(BPF_FLAGS) -c $< -o $@

## vmlinux: regenerate include/vmlinux.h from this kernel's BTF
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > include/vmlinux.h.tmp
	mv include/vmlinux.h.tmp include/vmlinux.h

## test: every test; root tests need root (XDPCTL_REQUIRE_ROOT=1 makes skipping them fail),
## and the benchmark harness on small sizes, so it never rots (no figure is judged there)
test: deps
	$(CARGO) test --locked
	@if [ "$$(id -u)" = 0 ]; then $(CARGO) bench --locked --bench bench -- --quick --output /dev/null; \
	 elif [ "$$XDPCTL_REQUIRE_ROOT" = 1 ]; then echo "the benchmark harness needs root" >&2; exit 1; \
	 else echo "SKIPPED the benchmark harness's quick run: it needs root"; fi

## bench: every benchmark in one run, written to BENCHMARKS.md (as root)
bench: deps
	$(CARGO) bench --locked --bench bench -- --output BENCHMARKS.md

## difftest: the firewall against its reference model on 1,000,000 random and mutated packets
difftest: deps
	XDPCTL_DIFF_PACKETS=1000000 $(CARGO) test --release --locked --test differential -- --nocapture

## demo: the tour in a throwaway lab: a flood auto-blocked, ending with its graph in build/
demo: deps
	$(CARGO) build --release --locked
	mkdir -p build
	./target/release/xdpctl demo --graph build/demo.png

## check: formatting and lints, Rust and C
check:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	clang-format --dry-run -Werror $(C_FILES)

clean:
	$(CARGO) clean
	rm -rf build
