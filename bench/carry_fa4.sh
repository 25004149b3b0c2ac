#!/usr/bin/env bash
# flash-attn-4 (its CuTe DSL kernels have SM90 forward and backward) for a machine with no network
# and a 64 MiB limit per transfer: the CUDA 13 CuTe DSL library alone is a 92 MB wheel, so it
# travels as two xz parts that are unpacked into one folder there.
#
#   bash bench/carry_fa4.sh pack            # here, with network: .fa4a/ (50 MB) and .fa4b/ (23 MB)
#   bash bench/carry_fa4.sh unpack DIR SITE # there: unpack what DIR (.fa4a or .fa4b) holds into SITE
#   export PYTHONPATH=SITE:SITE/nvidia_cutlass_dsl/dsl_packages   # then: import flash_attn.cute
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
pack)
    dl=$(mktemp -d)
    pip download -q --no-deps --pre --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dl" \
        flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 \
        nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 \
        "apache-tvm-ffi<0.2,>=0.1.11" torch-c-dlpack-ext "quack-kernels>=0.5.3"
    mkdir -p .fa4a .fa4b
    big=$(mktemp -d)
    unzip -q "$dl"/nvidia_cutlass_dsl_libs_cu13-*.whl -d "$big"
    ir=nvidia_cutlass_dsl/dsl_packages/cutlass/_mlir/_mlir_libs/_cutlass_ir.cu13.cpython-312-x86_64-linux-gnu.so
    rt=nvidia_cutlass_dsl/cu13/lib/libcute_dsl_runtime.so
    xz -9 -c "$big/$ir" > .fa4a/cutlass_ir.so.xz
    xz -6 -c "$big/$rt" > .fa4b/cute_dsl_runtime.so.xz
    tar -C "$big" -cf .fa4b/cu13_rest.tar --exclude="$ir" --exclude="$rt" .
    mv "$dl"/*.whl .fa4b/ && rm .fa4b/nvidia_cutlass_dsl_libs_cu13-*.whl
    rm -rf "$dl" "$big"
    du -sh .fa4a .fa4b
    ;;
unpack)
    src=$2 site=$3
    mkdir -p "$site"
    ir=nvidia_cutlass_dsl/dsl_packages/cutlass/_mlir/_mlir_libs/_cutlass_ir.cu13.cpython-312-x86_64-linux-gnu.so
    rt=nvidia_cutlass_dsl/cu13/lib/libcute_dsl_runtime.so
    for w in "$src"/*.whl; do [ -e "$w" ] && python3 -m zipfile -e "$w" "$site"; done  # no unzip there
    [ -e "$src/cu13_rest.tar" ] && tar -C "$site" -xf "$src/cu13_rest.tar"
    if [ -e "$src/cutlass_ir.so.xz" ]; then mkdir -p "$(dirname "$site/$ir")"; xz -dc "$src/cutlass_ir.so.xz" > "$site/$ir"; chmod +x "$site/$ir"; fi
    if [ -e "$src/cute_dsl_runtime.so.xz" ]; then mkdir -p "$(dirname "$site/$rt")"; xz -dc "$src/cute_dsl_runtime.so.xz" > "$site/$rt"; chmod +x "$site/$rt"; fi
    echo "unpacked $src into $site"
    ;;
*)
    echo "usage: $0 pack | unpack DIR SITE" >&2
    exit 2
    ;;
esac
