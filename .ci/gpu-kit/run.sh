#!/usr/bin/env bash
# gpu-kit/run.sh [OUTDIR]: the GPU check on a machine without network, from a seqkit checkout
# with gpu-kit/ in it (`make gpu-kit` builds it). Installs the kit's wheels offline into a
# folder of their own, without dependencies (torch, torchaudio and Triton stay as they are),
# runs `seqkit bench gpu` within 8 minutes, and copies gpu-report.md, gpu-report.json and the
# stages' logs (gpu-logs.tar.gz) into OUTDIR (default $OUT). Exits as seqkit bench gpu does:
# 0 only if every stage is ok.
set -uo pipefail
kit="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$kit/.." && pwd)"
outdir="${1:-${OUT:-}}"
if [ -z "$outdir" ]; then
  echo "gpu-kit/run.sh: give OUTDIR or set OUT: the folder the report is copied into" >&2
  exit 2
fi
mkdir -p "$outdir" && outdir="$(cd "$outdir" && pwd)"
py="${PYTHON:-python3}"
site="${GPU_KIT_SITE:-${TMPDIR:-/tmp}/seqkit-gpu-kit/site}"
work="${GPU_KIT_WORK:-${TMPDIR:-/tmp}/seqkit-gpu-kit/check}"
minutes="${GPU_KIT_MINUTES:-}"  # default: seqkit bench gpu's own plan (under 7.5 minutes)

# 1. install: the carried wheels only, no index, no dependencies, into a folder of their own
rm -rf "$site" && mkdir -p "$site" "$work"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
  "$kit"/wheels/*.whl || { echo "gpu-kit/run.sh: installing the kit's wheels failed" >&2; exit 2; }
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET

# 2. what seqkit requires against what the machine has (a line per mismatch, not fatal)
"$py" -P - "$outdir/gpu-kit-preflight.txt" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement

lines = []
for text in requires("seqkit") or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        found = version(req.name)
    except PackageNotFoundError:
        lines.append(f"missing: {req} (not installed)")
        continue
    if not req.specifier.contains(found, prereleases=True):
        lines.append(f"mismatch: {req} (found {found})")
lines.append(f"python {sys.version.split()[0]}; seqkit {version('seqkit')}; torch "
             f"{version('torch')}; " + ("ok: every requirement met" if not lines else
                                        f"{len(lines)} requirement(s) not met"))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
print("\n".join(f"gpu-kit preflight: {line}" for line in lines), file=sys.stderr)
PY

# 3. the check, from the checkout (its tests/ hold the CUDA cases), stopped at 8 minutes at most
cd "$repo"
args=(bench gpu --out "$work")
[ -n "$minutes" ] && args+=(--minutes "$minutes")
timeout -s INT -k 10 470 "$py" -P -c \
  'import sys; sys.argv[0] = "seqkit"; from seqkit.cli.main import main; main()' "${args[@]}"
status=$?

# 4. what comes back
for name in gpu-report.md gpu-report.json; do
  [ -f "$work/$name" ] && cp "$work/$name" "$outdir/"
done
[ -d "$work/logs" ] && tar -czf "$outdir/gpu-logs.tar.gz" -C "$work" logs
echo "gpu-kit/run.sh: seqkit bench gpu exited $status; report in $outdir" >&2
exit "$status"
