#!/usr/bin/env bash
# The GPU benchmark's one prepared script: the MLP (bench/specs/breast-cancer-mlp.yaml) and a
# 500-tree forest (bench/specs/breast-cancer-forest500.yaml) on ONNX Runtime's CUDA provider
# against the CPU at 1, 64 and 1,000 rows, through Kiln's own runtime (bench/gpu.py), with
# where each node runs from ONNX Runtime's profiler.
#
#   bash bench/gpu.sh prepare   # HERE (the dev machine, with .venv and PyPI): trains the two
#                               # models if needed, downloads the wheels the GPU machine lacks,
#                               # cuts them into .gpu/c1 ... .gpu/cN (one device call each) and
#                               # prints the calls to make, in order
#   bash bench/gpu.sh stash     # THERE: keeps what this call carried (.gpu/c*) in $KILN_GPU_CACHE
#   bash bench/gpu.sh run       # THERE: stash, install, run bench/gpu.py, write to $OUT
#   bash bench/gpu.sh run --cpu-only   # anywhere: the same on the CPU alone (no GPU figure);
#                               # run's arguments go to bench/gpu.py (--seconds 0.5, ...)
#
# What it assumes about the GPU machine (/work/.library/device/README.md and KINDS.md, read
# 2026-12-02; none of it was seen by this script, since no GPU was lent to the session that
# wrote it):
# - x86-64 Linux, one NVIDIA GPU, no network: nothing can be downloaded there.
# - `python3` is Python 3.12 with numpy, pandas, scikit-learn, protobuf, flatbuffers, packaging
#   and the CUDA 13 libraries as pip packages (nvidia/cu13/lib, nvidia/cudnn/lib: PyTorch's
#   cu130 build); its onnxruntime is the CPU-only one, and pydantic is not there.
# - onnxruntime-gpu 1.31.1 (PyPI's newest; Kiln's lock pins onnxruntime 1.32.0, which has no GPU
#   wheel) is built for CUDA 13 (libcublas.so.13, libcudart.so.13, cuDNN 9), so it runs on those
#   libraries. Its wheel is 244 MiB and a device call carries 64 MiB in all, the working tree
#   included, so it travels in pieces over several calls and is put together there; the pieces
#   wait in $KILN_GPU_CACHE (/tmp/kiln-gpu), which lasts only while the machine stays warm (30 s
#   after a call): make the calls back to back. `run` says which pieces are missing.
# - Kiln's models are carried (a version directory each; the MLP's model.onnx is 37 MiB):
#   training there would need Kiln's training side and BentoML, which the machine lacks.
# The run itself (install, 2 models x 3 provider sets x 3 batch sizes, each cell about 2 s plus
# warm-up and 10 profiled calls) takes about 2-3 minutes; bench/gpu.py is stopped at
# $KILN_GPU_TIMEOUT (360 s) whatever happens.
set -euo pipefail

cd "$(dirname "$0")/.."
CARRY_DIR=.gpu                                # what `prepare` writes, ignored by git
CACHE=${KILN_GPU_CACHE:-/tmp/kiln-gpu}        # where the pieces wait on the GPU machine
STORE=${KILN_GPU_STORE:-build/gpu-store}      # BENTOML_HOME that `prepare` trains into
OUT_DIR=${OUT:-build/gpu-out}                 # $OUT on the device machine
PYTHON=${PYTHON:-python3}
ORT_GPU_VERSION=1.31.1
DEVICE_PYTHON=3.12
CALL_MIB=60          # what one call may carry: 64 MiB less a margin for the tree's growth
SPECS=(bench/specs/breast-cancer-mlp.yaml bench/specs/breast-cancer-forest500.yaml)
# Kiln's core needs pydantic; the GPU machine's python3 has none. Versions from the lock.
SMALL_WHEELS=(pydantic pydantic-core annotated-types typing-inspection typing-extensions)

say() { printf 'gpu.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
mib() { echo $(( ($1 + 1048575) / 1048576 )); }

spec_name() { sed -n 's/^name: *//p' "$1" | head -1; }

tree_bytes() {  # what every call carries besides its piece: tracked and untracked-not-ignored
    git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null \
        | awk '{s += $1} END {print s + 0}'
}

prepare() {
    [ -x .venv/bin/kiln ] || die "no .venv/bin/kiln here: run \`make install\` first"
    local work="$CARRY_DIR/download" first="$CARRY_DIR/c1"
    rm -rf "$CARRY_DIR"
    mkdir -p "$work" "$first/models" "$first/whl"
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    grep -qx "/$CARRY_DIR/" "$exclude" 2>/dev/null || echo "/$CARRY_DIR/" >>"$exclude"

    local spec name latest
    for spec in "${SPECS[@]}"; do
        name=$(spec_name "$spec")
        if [ ! -f "$STORE/models/$name/latest" ]; then
            say "training $spec into $STORE"
            BENTOML_HOME="$STORE" KILN_TRAIN_PROGRESS=false .venv/bin/kiln train "$spec" >&2
        fi
        latest=$(cat "$STORE/models/$name/latest")
        cp -r "$STORE/models/$name/$latest" "$first/models/$name"
    done

    local pins=() pkg pin
    for pkg in "${SMALL_WHEELS[@]}"; do
        pin=$(grep -ix "$pkg==[^ ]*" requirements-serve.lock) || die "$pkg is not in requirements-serve.lock"
        pins+=("$pin")
    done
    local platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --only-binary=:all: --implementation cp
        --python-version "$DEVICE_PYTHON")
    .venv/bin/python -m pip download -q --no-deps "${platforms[@]}" -d "$first/whl" "${pins[@]}"
    .venv/bin/python -m pip download -q --no-deps "${platforms[@]}" -d "$work" \
        "onnxruntime-gpu==$ORT_GPU_VERSION"

    local wheel size sha
    wheel=$(ls "$work"/onnxruntime_gpu-*.whl)
    size=$(stat -c %s "$wheel")
    sha=$(sha256sum "$wheel" | cut -d' ' -f1)
    local tree budget used offset=0 k=1 count
    tree=$(mib "$(tree_bytes)")
    budget=$(( CALL_MIB - tree ))
    used=$(mib "$(du -sb "$first" | cut -f1)")
    [ "$budget" -gt "$used" ] || die "the tree ($tree MiB) leaves no room under $CALL_MIB MiB"
    count=$(( budget - used ))                   # MiB of the wheel in this call
    while [ $(( offset * 1048576 )) -lt "$size" ]; do
        mkdir -p "$CARRY_DIR/c$k/parts"
        dd if="$wheel" of="$CARRY_DIR/c$k/parts/$(printf '%03d' "$k")" bs=1M skip="$offset" \
            count="$count" status=none
        offset=$(( offset + count ))
        count=$budget
        k=$(( k + 1 ))
    done
    local calls=$(( k - 1 )) c
    for c in $(seq 1 "$calls"); do
        printf 'wheel=%s\nsha256=%s\nparts=%s\n' "$(basename "$wheel")" "$sha" "$calls" \
            >"$CARRY_DIR/c$c/manifest"
    done
    rm -rf "$work"

    echo "Device calls: $calls, in this order, each $tree MiB of tree + its folder (< $CALL_MIB MiB):"
    for c in $(seq 1 "$calls"); do
        local command="bash bench/gpu.sh stash"
        [ "$c" -lt "$calls" ] || command="bash bench/gpu.sh run"
        printf '  %d. run(carry=["%s/c%d"], command="%s", timeout_s=%s)  # %s MiB\n' \
            "$c" "$CARRY_DIR" "$c" "$command" "$([ "$c" -lt "$calls" ] && echo 120 || echo 540)" \
            "$(mib "$(du -sb "$CARRY_DIR/c$c" | cut -f1)")"
    done
    echo "Make them back to back (a machine waits 30 s after a call, then goes back), then"
    echo "give_back; run's files come back from \$OUT: gpu.md, gpu.json, gpu.log, nvidia-smi.txt."
}

stash() {  # merge every carried .gpu/c*/ into the cache; say what is there
    mkdir -p "$CACHE"
    local dir
    for dir in "$CARRY_DIR"/c*/; do
        [ -d "$dir" ] && cp -r "$dir". "$CACHE"/
    done
    local have=0 want="?"
    [ -d "$CACHE/parts" ] && have=$(find "$CACHE/parts" -type f | wc -l)
    [ -f "$CACHE/manifest" ] && want=$(sed -n 's/^parts=//p' "$CACHE/manifest")
    say "$CACHE holds $have of $want pieces of onnxruntime-gpu; models: $(ls "$CACHE/models" 2>/dev/null | tr '\n' ' ')"
    say "this python3's onnxruntime: $("$PYTHON" -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())' 2>&1 | tail -1)"
    # What would stop `run` later, said in the first call, before the other pieces are sent.
    local gpu libs
    gpu=$(nvidia-smi -L 2>/dev/null | head -1 || true)
    libs=$(cuda_libraries)
    say "$("$PYTHON" -V 2>&1); GPU: ${gpu:-none found}; CUDA libraries: ${libs:-none found}"
}

has() { "$PYTHON" -c "$1" >/dev/null 2>&1; }

install_ort_gpu() {  # put the pieces together, check them, install into $CACHE/site
    local want wheel sha
    [ -f "$CACHE/manifest" ] || die "onnxruntime-gpu is not here and no pieces of it came: run \`bash bench/gpu.sh prepare\` on the dev machine and make the calls it prints"
    wheel=$(sed -n 's/^wheel=//p' "$CACHE/manifest")
    sha=$(sed -n 's/^sha256=//p' "$CACHE/manifest")
    want=$(sed -n 's/^parts=//p' "$CACHE/manifest")
    local missing=() k
    for k in $(seq 1 "$want"); do
        [ -f "$CACHE/parts/$(printf '%03d' "$k")" ] || missing+=("$k")
    done
    [ ${#missing[@]} -eq 0 ] || die "pieces ${missing[*]} of $want are missing (the machine was given back between calls?): make the calls ${missing[*]} that \`prepare\` printed again, then this one"
    cat "$CACHE"/parts/??? >"$CACHE/$wheel"
    echo "$sha  $CACHE/$wheel" | sha256sum -c --quiet - || die "$wheel does not match its sha256"
    say "installing $wheel into $CACHE/site"
    timeout 180 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$CACHE/site" "$CACHE/$wheel"
    rm -f "$CACHE/$wheel"
}

cuda_libraries() {  # the pip-installed CUDA libraries' folders, for the dynamic loader
    "$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
        | while read -r site; do ls -d "$site"/nvidia/*/lib 2>/dev/null || true; done | paste -sd:
}

models() {  # a version directory per spec: carried, else from the store
    local spec name
    for spec in "${SPECS[@]}"; do
        name=$(spec_name "$spec")
        if [ -d "$CACHE/models/$name" ]; then
            echo "$CACHE/models/$name"
        elif [ -f "$STORE/models/$name/latest" ]; then
            echo "$STORE/models/$name/$(cat "$STORE/models/$name/latest")"
        else
            die "no $name model: \`prepare\` carries it (or train $spec into $STORE)"
        fi
    done
}

run() {  # arguments go to bench/gpu.py (--cpu-only, --seconds ...)
    local cpu_only=no arg
    for arg in "$@"; do [ "$arg" != "--cpu-only" ] || cpu_only=yes; done
    stash
    mkdir -p "$OUT_DIR" "$CACHE/site"
    export PYTHONPATH="$CACHE/site${PYTHONPATH:+:$PYTHONPATH}"
    if ! has 'import pydantic'; then
        compgen -G "$CACHE/whl/*.whl" >/dev/null || die "no pydantic here and no wheels carried"
        timeout 120 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$CACHE/site" "$CACHE"/whl/*.whl
    fi
    local libs
    libs=$(cuda_libraries)
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local cuda='import onnxruntime as o; assert "CUDAExecutionProvider" in o.get_available_providers()'
    if [ "$cpu_only" = no ] && ! has "$cuda"; then
        install_ort_gpu
        has "$cuda" || die "onnxruntime-gpu installed but without CUDAExecutionProvider"
    fi
    if command -v nvidia-smi >/dev/null; then nvidia-smi >"$OUT_DIR/nvidia-smi.txt" 2>&1 || true; fi
    local dirs
    mapfile -t dirs < <(models)
    say "models: ${dirs[*]}; CUDA libraries: ${libs:-none found}"
    timeout "${KILN_GPU_TIMEOUT:-360}" env PYTHONUNBUFFERED=1 "$PYTHON" bench/gpu.py "${dirs[@]}" \
        --threads 1 0 "$@" --json "$OUT_DIR/gpu.json" \
        --markdown "$OUT_DIR/gpu.md" 2>&1 | tee "$OUT_DIR/gpu.log"
}

case "${1:-run}" in
    prepare) prepare ;;
    stash) stash ;;
    run) shift || true; run "$@" ;;
    *) die "usage: bash bench/gpu.sh [prepare | stash | run [--cpu-only] [gpu.py arguments]]" ;;
esac
