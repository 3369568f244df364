#!/usr/bin/env bash
# Installs a perf_analyzer that runs on Debian 12 (glibc 2.36) into build/tools/perf_analyzer/:
# the binary from the tritonclient[all] 2.48.0 wheel (the 2.60 perf-analyzer wheel needs glibc 2.38),
# libcudart.so.12 from nvidia-cuda-runtime-cu12 (it links it even with no GPU) and libb64.so.0d from
# Debian's libb64-0d. Only the files are extracted: no second tritonclient enters the venv.
# Prints the wrapper's path. Re-running is a no-op once installed.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=build/tools/perf_analyzer
WRAPPER=$DEST/perf_analyzer
if [ -x "$WRAPPER" ] && "$WRAPPER" --version >/dev/null 2>&1; then echo "$WRAPPER"; exit 0; fi
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$DEST/bin" "$DEST/lib"
$PY -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" \
  tritonclient==2.48.0 nvidia-cuda-runtime-cu12==12.9.79 >&2
(cd "$tmp" && apt-get download libb64-0d >/dev/null 2>&1) || {
  echo "apt-get download libb64-0d failed (Debian's package registry is needed)" >&2; exit 1; }
$PY - "$tmp" "$DEST" <<'PYEOF'
import pathlib, shutil, sys, zipfile
tmp, dest = map(pathlib.Path, sys.argv[1:])
for wheel, member, out in (("tritonclient-2.48.0-*.whl", "tritonclient-2.48.0.data/data/bin/perf_analyzer",
                            dest / "bin" / "perf_analyzer"),
                           ("nvidia_cuda_runtime_cu12-*.whl", "nvidia/cuda_runtime/lib/libcudart.so.12",
                            dest / "lib" / "libcudart.so.12")):
    path = next(tmp.glob(wheel))
    with zipfile.ZipFile(path) as z, z.open(member) as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
(dest / "bin" / "perf_analyzer").chmod(0o755)
PYEOF
dpkg-deb -x "$tmp"/libb64-0d_*.deb "$tmp/b64"
cp "$tmp"/b64/usr/lib/x86_64-linux-gnu/libb64.so.0d* "$DEST/lib/"
cat > "$WRAPPER" <<'WEOF'
#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/bin/perf_analyzer" "$@"
WEOF
chmod +x "$WRAPPER"
"$WRAPPER" --version >&2 || { echo "perf_analyzer does not run" >&2; exit 1; }
echo "$WRAPPER"
