#!/usr/bin/env bash
# Run on the GPU box from the repository root, with .dev/ holding xp.xz (default build),
# xp_spirv.xz (--features spirv,persistent-cache), both stripped and xz-compressed, and
# tinyshakespeare.txt; .gl/ holds the Vulkan loader packages (the device tool's README).
# The precision check on xp's fastest path: the SPIR-V build, f32 vs f16, two seeds, 500 steps.
set -u
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.dev/xp_spirv.xz'), open('/tmp/xp_spirv','wb'))"; chmod +x /tmp/xp_spirv
mkdir -p /tmp/c/datasets && cp .dev/tinyshakespeare.txt /tmp/c/datasets/
export XP_CACHE=/tmp/c
timeout 560 /tmp/xp_spirv --db /tmp/pc.db run experiments/precision_check.toml --set hardware.device=vulkan > $OUT/pc_run.txt 2>&1; echo rc=$?; grep -E "completed|failed|started" $OUT/pc_run.txt
/tmp/xp_spirv --db /tmp/pc.db compare run-1 run-2 run-3 run-4 --plot $OUT/precision.svg > $OUT/pc_compare.txt 2>&1; sed -n 1,20p $OUT/pc_compare.txt
cp /tmp/pc.db $OUT/pc.db
