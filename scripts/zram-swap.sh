#!/usr/bin/env bash
# Swap on zram for page-out tests and the demo (root only).
#   scripts/zram-swap.sh up [--size SIZE] [--algorithm A] [--holder PID]   swap on zram, if none is active
#   scripts/zram-swap.sh down [--holder PID]               undo what 'up' did, once no holder is left
#   scripts/zram-swap.sh status                            active swap, zram use, holders
# 'up' records in /run/dynamos/zram-swap/ that it created the swap; 'down' removes only
# swap recorded there, never swap that was already active. Holders are pids (a test
# passes its own): 'down' keeps the swap while another live holder still uses it, and
# holders that died are forgotten. Without --holder the holder is "manual".
# SIZE is what zram's disksize takes (e.g. 4G); default: half of RAM, at most 8G.
# A is a compressor from /sys/block/zramN/comp_algorithm (lzo-rle, lz4...); default: the kernel's.
set -euo pipefail

state=/run/dynamos/zram-swap
lock=/run/dynamos/zram-swap.lock

say() { echo "zram-swap: $*"; }
die() { echo "zram-swap: $*" >&2; exit 1; }

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

cmd="${1:-}"
[[ -n "$cmd" ]] || { usage >&2; exit 2; }
shift
case "$cmd" in
  up|down|status) ;;
  -h|--help|help) usage; exit 0 ;;
  *) die "unknown command '$cmd' (up, down or status; try --help)" ;;
esac
size=""
algorithm=""
holder="manual"
while (($#)); do
  case "$1" in
    --size) size="${2:?--size needs a value}"; shift ;;
    --algorithm) algorithm="${2:?--algorithm needs a value}"; shift ;;
    --holder) holder="${2:?--holder needs a pid}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
  shift
done
[[ "$holder" == manual || "$holder" =~ ^[0-9]+$ ]] || die "--holder takes a pid, not '$holder'"

active_swaps() { tail -n +2 /proc/swaps | awk '{print $1}'; }

# A holder runs while its pid exists and is not a zombie (an exited gangd whose parent,
# init on some machines, has not reaped it yet no longer holds the swap).
running() {
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

prune_holders() {
  local h
  for h in "$state"/holders/*; do
    [[ -e "$h" ]] || continue
    h="${h##*/}"
    [[ "$h" == manual ]] && continue
    running "$h" || { rm -f "$state/holders/$h"; say "forgot holder $h (no longer running)"; }
  done
}

live_holders() { { ls "$state/holders" 2>/dev/null || true; } | tr '\n' ' ' | sed 's/ $//'; }

default_size() {
  local kb
  kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  kb=$((kb / 2))
  ((kb > 8 * 1024 * 1024)) && kb=$((8 * 1024 * 1024))
  echo "$((kb / 1024))M"
}

# A zram device not in use: an uninitialised one, else a new one from hot_add.
free_zram() {
  local d
  for d in /sys/block/zram*; do
    [[ -e "$d/initstate" ]] || continue
    if [[ "$(cat "$d/initstate")" == 0 ]]; then echo "${d##*/} existing"; return; fi
  done
  [[ -e /sys/class/zram-control/hot_add ]] || return 1
  echo "zram$(cat /sys/class/zram-control/hot_add) hot_added"
}

cmd_up() {
  mkdir -p "$state/holders"
  prune_holders
  if [[ -f "$state/device" ]] && active_swaps | grep -qx "$(cat "$state/device")"; then
    touch "$state/holders/$holder"
    say "swap on $(cat "$state/device") already set up by this script; holder $holder added (holders: $(live_holders))"
    return
  fi
  if [[ -f "$state/device" ]]; then
    # Recorded as ours but no longer active (swapoff by hand): free the device again.
    local stale
    stale=$(cat "$state/device")
    echo 1 >"/sys/block/${stale#/dev/}/reset" 2>/dev/null || true
    if [[ -f "$state/hot_added" ]]; then
      echo "${stale#/dev/zram}" >/sys/class/zram-control/hot_remove 2>/dev/null || true
    fi
    say "forgot $stale (recorded as set up by this script, but no longer active)"
  fi
  rm -f "$state/device" "$state/hot_added"
  local existing
  existing=$(active_swaps | tr '\n' ' ')
  if [[ -n "$existing" ]]; then
    say "swap already active ($existing): nothing to do, nothing recorded"
    return
  fi
  if [[ ! -e /sys/class/zram-control && ! -e /sys/block/zram0 ]]; then
    modprobe zram 2>/dev/null || die "no zram device and 'modprobe zram' failed: the kernel needs CONFIG_ZRAM"
  fi
  local found dev how
  found=$(free_zram) || die "no free zram device and no /sys/class/zram-control/hot_add to create one"
  dev=${found% *}
  how=${found#* }
  [[ -n "$size" ]] || size=$(default_size)
  if [[ -n "$algorithm" ]] && ! echo "$algorithm" >"/sys/block/$dev/comp_algorithm"; then
    [[ "$how" == hot_added ]] && echo "${dev#zram}" >/sys/class/zram-control/hot_remove 2>/dev/null
    die "zram does not offer compressor '$algorithm' (it has: $(cat "/sys/block/$dev/comp_algorithm"))"
  fi
  echo "$size" >"/sys/block/$dev/disksize" || die "could not set /sys/block/$dev/disksize to $size"
  if ! mkswap -q "/dev/$dev" >/dev/null || ! swapon -p 100 "/dev/$dev"; then
    echo 1 >"/sys/block/$dev/reset" || true
    [[ "$how" == hot_added ]] && echo "${dev#zram}" >/sys/class/zram-control/hot_remove 2>/dev/null || true
    die "mkswap/swapon on /dev/$dev failed"
  fi
  echo "/dev/$dev" >"$state/device"
  [[ "$how" == hot_added ]] && touch "$state/hot_added"
  rm -f "$state"/holders/*
  touch "$state/holders/$holder"
  say "created swap on /dev/$dev ($size, $(cat "/sys/block/$dev/comp_algorithm" | grep -o '\[[^]]*\]' | tr -d '[]'), ${how/_/-} device); holder $holder"
}

cmd_down() {
  if [[ ! -f "$state/device" ]]; then
    say "no swap set up by this script: nothing to do"
    return
  fi
  local dev
  dev=$(cat "$state/device")
  rm -f "$state/holders/$holder"
  prune_holders
  local left
  left=$(live_holders)
  if [[ -n "$left" ]]; then
    say "removed holder $holder; swap on $dev kept for holders: $left"
    return
  fi
  if active_swaps | grep -qx "$dev"; then
    swapoff "$dev" || die "swapoff $dev failed (not enough memory to take the swapped pages back?)"
  fi
  local name=${dev#/dev/}
  echo 1 >"/sys/block/$name/reset" 2>/dev/null || true
  if [[ -f "$state/hot_added" ]]; then
    echo "${name#zram}" >/sys/class/zram-control/hot_remove 2>/dev/null || true
  fi
  rm -rf "$state"
  say "removed swap on $dev (set up by this script; no holder left)"
}

cmd_status() {
  echo "active swap:"
  tail -n +2 /proc/swaps | sed 's/^/  /'
  [[ -n "$(active_swaps)" ]] || echo "  none"
  local d
  for d in /sys/block/zram*; do
    [[ -e "$d/mm_stat" && "$(cat "$d/initstate")" == 1 ]] || continue
    read -r orig compr used _ <"$d/mm_stat"
    echo "${d##*/}: $((orig / 1048576)) MiB stored in $((used / 1048576)) MiB (compressed $((compr / 1048576)) MiB)"
  done
  if [[ -f "$state/device" ]]; then
    prune_holders >/dev/null
    echo "set up by this script: $(cat "$state/device"); holders: $(live_holders)"
  else
    echo "set up by this script: nothing"
  fi
}

((EUID == 0)) || [[ "$cmd" == status ]] || die "must run as root"
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9
case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
esac
