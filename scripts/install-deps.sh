#!/usr/bin/env bash
# Installs what building and testing xdpctl needs on Debian/Ubuntu, and only what is missing.
# Run as root. Used by `make deps` (and so by `make test`, `make demo` and .ci/run).
set -euo pipefail

packages=(
	clang llvm            # compile bpf/*.bpf.c (CO-RE) and inspect objects; libclang for bindgen
	libelf-dev zlib1g-dev # libbpf-sys builds the vendored libbpf against these
	pkg-config make
	libbpf-dev            # <bpf/bpf_helpers.h> for `make bpf` and user objects
	clang-format          # `make check`
	iproute2 ethtool      # the veth lab
	iputils-ping          # traffic in the lab
	util-linux            # unshare, setpriv, nsenter (tests)
	fonts-dejavu-core     # the labels of `xdpctl graph` (plotters embeds no font)
	xdp-tools iptables nftables ipset # the yardsticks of `make bench` (and its quick run in tests)
)

# Installing needs apt-get and root; otherwise say what is missing and how to get it.
require_apt_as_root() {
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "install-deps: no apt-get here; install these with your package manager: $*" >&2
		exit 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: missing $*; run as root (sudo make deps) to install them" >&2
		exit 1
	fi
}

missing=()
for pkg in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# bpftool is its own package on Debian, part of linux-tools on Ubuntu.
if ! command -v bpftool >/dev/null 2>&1; then
	missing+=(bpftool)
fi

if ((${#missing[@]})); then
	require_apt_as_root "${missing[@]}"
	echo "install-deps: installing ${missing[*]}"
	apt-get update -qq
	if [[ " ${missing[*]} " == *" bpftool "* ]] && ! apt-cache show bpftool >/dev/null 2>&1; then
		missing=("${missing[@]/bpftool/linux-tools-common}" "linux-tools-$(uname -r)")
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool checks the exporter's output in the tests. Debian ships it only inside the
# prometheus package, whose install also starts a Prometheus server: take the one binary out of
# the package instead (a static Go binary), into a directory of test tools.
tools_dir=/opt/xdpctl-test-tools
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$tools_dir/bin/promtool" ]; then
	require_apt_as_root "promtool (Prometheus's)"
	echo "install-deps: extracting promtool from Debian's prometheus package into $tools_dir"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	# apt-get download drops root's privileges to the _apt user: let it write here.
	chmod 0755 "$work"
	chown _apt "$work" 2>/dev/null || true
	if ! (cd "$work" && apt-get download -qq prometheus 2>/dev/null); then
		apt-get update -qq
		(cd "$work" && apt-get download -qq prometheus)
	fi
	dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
	mkdir -p "$tools_dir/bin"
	# Copy then rename, so an interrupted run never leaves a half-written promtool behind.
	install -m 0755 "$work/root/usr/bin/promtool" "$tools_dir/bin/.promtool.new"
	mv -f "$tools_dir/bin/.promtool.new" "$tools_dir/bin/promtool"
fi

if ! command -v cargo >/dev/null 2>&1; then
	echo "install-deps: cargo is missing: install Rust (>= 1.82) first, e.g. from rustup" >&2
	exit 1
fi
for component in rustfmt clippy; do
	if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
		if command -v rustup >/dev/null 2>&1; then
			rustup component add "$component"
		else
			echo "install-deps: cargo $component is missing (needed by make check only)" >&2
		fi
	fi
done
echo "install-deps: all build and test dependencies are present"
