#!/bin/busybox sh
# /init of the test VM: mounts the basics, runs the scenario named on the kernel
# command line (dk.scenario=NAME, from scenarios.sh), prints the verdict and the
# kernel log on the console, powers off. scripts/kernel-boot.sh reads the console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp

scenario=$(sed -n 's/.*dk\.scenario=\([a-z_]*\).*/\1/p' /proc/cmdline)
. /scenarios.sh
echo "DYNAMOS-BEGIN $scenario on $(uname -r), $(nproc) CPUs"
[ -n "$DK_TRACE" ] && set -x
if type "scenario_$scenario" >/dev/null 2>&1 && "scenario_$scenario"; then
  verdict=PASS
else
  verdict=FAIL
fi
echo "--- kernel log ---"
dmesg | grep -E "dynamos|dk_" | tail -n 40
echo "DYNAMOS-RESULT $scenario $verdict"
poweroff -f
