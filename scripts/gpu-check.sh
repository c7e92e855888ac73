#!/usr/bin/env bash
# Every CUDA test and benchmark of netc in one call, ending with a short table.
#
# The lent GPU machine has CUDA, PyTorch and ncu but no Rust, so this runs in
# two halves:
#   scripts/gpu-check.sh build   here: builds netc and the device tests (release)
#                                into .gpu-check/ (git-ignored; carry it)
#   scripts/gpu-check.sh         there, in the repository root: runs them on the GPU
#
# On the GPU it runs the device test binaries with NETC_TEST_DEVICE=cuda (every
# op case forward and backward against the reference, the PyTorch reference
# models, the PyTorch training trajectories), trains the MNIST example on cuda
# and on cpu from the same seed and compares their losses, and times netc's
# training step against PyTorch eager on the same network, data and batch.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=.gpu-check
tests=(devices examples torch_agreement torch_training)

if [[ "${1:-}" == "build" ]]; then
    set -e
    cargo build --release --locked
    mkdir -p "$out"
    cp target/release/netc "$out/netc"
    args=()
    for t in "${tests[@]}"; do args+=(--test "$t"); done
    cargo test --release --locked --no-run --message-format=json "${args[@]}" \
        | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], ".gpu-check/" + m["target"]["name"])
'
    strip "$out"/* 2>/dev/null || true
    du -sh "$out"
    echo "gpu-check: built; run scripts/gpu-check.sh on the GPU machine with .gpu-check carried"
    exit 0
fi

rows=()
row() { rows+=("$(printf '%-34s %-6s %s' "$1" "$2" "$3")"); }

if ! nvidia-smi >/dev/null 2>&1; then
    echo "gpu-check: no GPU here (nvidia-smi fails); nothing to check"
    exit 1
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
[[ -x "$out/netc" ]] || { echo "gpu-check: $out/netc missing; run 'scripts/gpu-check.sh build' first and carry $out"; exit 1; }

# NVRTC: the pinned wheel if it travelled, else the one in this machine's Python.
if [[ -z "${NETC_NVRTC:-}" && ! -f .nvrtc/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 ]]; then
    NETC_NVRTC=$(python3 - <<'PY'
import glob, os, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
hits = [p for d in dirs for p in glob.glob(os.path.join(d, "nvidia", "**", "libnvrtc.so.*"), recursive=True) if "builtins" not in p and "alt" not in p]
hits.sort(key=lambda p: (".so.12" not in p, p))
print(hits[0] if hits else "")
PY
)
    export NETC_NVRTC
fi
echo "gpu-check: $gpu; NVRTC: ${NETC_NVRTC:-.nvrtc (pinned 12.9)}"

export NETC_TEST_DEVICE=cuda CARGO_MANIFEST_DIR="$PWD" NETC_TEST_TMPDIR=/tmp/netc-gpu-check NETC_CACHE_DIR=/tmp/netc-gpu-check/cache
mkdir -p "$NETC_TEST_TMPDIR"
for t in "${tests[@]}"; do
    start=$(date +%s.%N)
    log="$NETC_TEST_TMPDIR/$t.log"
    if "$out/$t" --test-threads 1 >"$log" 2>&1; then status=ok; else status=FAIL; fi
    secs=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    summary=$(grep -E '^test result' "$log" | tail -1 | sed 's/test result: //; s/; 0 measured.*//')
    row "tests: $t (cuda)" "$status" "$summary; ${secs} s"
    [[ $status == ok ]] || tail -20 "$log"
done

# Training: cuda against cpu from the same seed, then a timed cuda run.
for dev in cuda cpu; do
    "$out/netc" run examples/mnist_cnn.net --device "$dev" --steps 30 --seed 1 --log "$NETC_TEST_TMPDIR/steps-$dev.jsonl" >/dev/null 2>"$NETC_TEST_TMPDIR/steps-$dev.err"
done
cmp=$(python3 - "$NETC_TEST_TMPDIR" <<'PY'
import json, sys
d = sys.argv[1]
def losses(dev):
    try:
        return [json.loads(l)["loss"] for l in open(f"{d}/steps-{dev}.jsonl") if '"loss"' in l]
    except OSError:
        return []
a, b = losses("cuda"), losses("cpu")
if len(a) != 30 or len(b) != 30:
    print("FAIL missing losses (cuda %d, cpu %d)" % (len(a), len(b)))
else:
    worst = max(abs(x - y) / max(abs(y), 1e-6) for x, y in zip(a, b))
    print(("ok" if worst < 1e-2 else "FAIL") + f" 30 steps; largest relative loss difference {worst:.1e}; final {a[-1]:.4f} vs {b[-1]:.4f}")
PY
)
row "train mnist: cuda vs cpu" "${cmp%% *}" "${cmp#* }"

if "$out/netc" run examples/mnist_cnn.net --device cuda --log "$NETC_TEST_TMPDIR/full.jsonl" >"$NETC_TEST_TMPDIR/full.out" 2>"$NETC_TEST_TMPDIR/full.err"; then
    row "train mnist 8 epochs (cuda)" ok "$(tail -1 "$NETC_TEST_TMPDIR/full.out")"
else
    row "train mnist 8 epochs (cuda)" FAIL "$(tail -1 "$NETC_TEST_TMPDIR/full.err")"
fi
bench=$("$out/netc" bench examples/mnist_cnn.net --train --device cuda --runs 50 2>/dev/null | head -1)
netc_rate=$(echo "$bench" | sed -n 's/.* \([0-9]*\) samples\/s.*/\1/p')
torch_rate=$(python3 scripts/torch_mnist_baseline.py cuda 300 2>/dev/null | python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['samples_per_s']:.0f}\")" 2>/dev/null || echo n/a)
row "mnist training step (samples/s)" info "netc ${netc_rate:-n/a} vs PyTorch eager $torch_rate (batch 64)"
"$out/netc" bench examples/mnist_cnn.net --train --device cuda --runs 20 2>/dev/null | sed -n '2,8p'

echo
echo "GPU check on $gpu"
printf '%-34s %-6s %s\n' "check" "result" "detail"
for r in "${rows[@]}"; do echo "$r"; done
if printf '%s\n' "${rows[@]}" | grep -q ' FAIL '; then exit 1; fi
