# Sourced by the scripts beside it, from the repository root on the GPU box, with .dev/ holding
# the stripped, xz-compressed binaries (xp.xz: the default build) and tinyshakespeare.txt, and
# .gl/ the Vulkan loader packages (the device tool's README). Arguments: the binaries to unpack
# into /tmp.
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for b in "$@"; do
  python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.dev/$b.xz'), open('/tmp/$b','wb'))"
  chmod +x "/tmp/$b"
done
mkdir -p /tmp/c/datasets && cp .dev/tinyshakespeare.txt /tmp/c/datasets/
export XP_CACHE=/tmp/c PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# x NAME CMD...: runs CMD in /tmp within $XP_TIMEOUT seconds (240 unless set), keeps its output
# as $OUT/NAME.txt and prints the summary lines of `xp bench train`.
x() {
  local out=$1; shift; echo "== $out: $*"
  (cd /tmp && timeout "${XP_TIMEOUT:-240}" "$@" > "$OUT/$out.txt" 2>&1)
  grep -E "device|first step|tokens/s|step time|peak|^loss|rror" "$OUT/$out.txt"
}
# cold NAME [VAR=VALUE…] -- XP-ARGS…: `x` with fresh CubeCL and driver shader caches, as on a
# machine that never ran this configuration.
cold() {
  local name=$1; shift; local vars=()
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done; shift
  # The driver's shader cache folder must exist, or NVIDIA's driver caches nothing and every
  # start compiles every pipeline again (the 14 s second starts measured before this line).
  local d=/tmp/cold_$name; mkdir -p "$d/datasets" "$d/gl"; cp .dev/tinyshakespeare.txt "$d/datasets/"
  x "$name" env XP_CACHE="$d" __GL_SHADER_DISK_CACHE_PATH="$d/gl" "${vars[@]}" /tmp/xp "$@"
}
