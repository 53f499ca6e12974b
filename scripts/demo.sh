#!/usr/bin/env bash
# The main job against the built-in simulator: start simulated ESXi hosts, discover them, find a VM,
# capture it, then analyse the capture and bundle it for ticket DEMO-1 and verify the bundle.
set -euo pipefail
state="${1:-demo-state}"
rm -rf "$state"
esxcap sim --state-dir "$state" 2>"$state.log" &
sim_pid=$!
trap 'kill $sim_pid 2>/dev/null; wait $sim_pid 2>/dev/null || true; rm -f "$state.log"' EXIT
for _ in $(seq 100); do
  [ -s "$state/inventory.yaml" ] && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$state.log"; exit 1; }
  sleep 0.1
done
[ -s "$state/inventory.yaml" ] || { echo "simulator did not start:"; cat "$state.log"; exit 1; }

# each command shown as it can be pasted (words with spaces quoted)
run() { printf '\n\033[1m$'; printf ' %q' "$@"; printf '\033[0m\n'; "$@"; }
run esxcap -i "$state/inventory.yaml" hosts
run esxcap -i "$state/inventory.yaml" discover
run esxcap -i "$state/inventory.yaml" find 'web*'
run esxcap -i "$state/inventory.yaml" find 'データベース01'
run esxcap -i "$state/inventory.yaml" capture --vm 'web 01' --dry-run
run esxcap -i "$state/inventory.yaml" capture --vm 'web 01' --dir both --duration 3 -o "$state/captures/"
run esxcap -i "$state/inventory.yaml" capture --vm legacy-erp -c 6 --console -o "$state/legacy-erp.pcapng"
if command -v capinfos >/dev/null; then run capinfos -c -I "$state/legacy-erp.pcapng"; fi
run esxcap -i "$state/inventory.yaml" cleanup
# The self-check an admin runs once per real host (results kept per ESXi build, here in the state dir).
run env XDG_CACHE_HOME="$state/cache" esxcap -i "$state/inventory.yaml" doctor esx03
if command -v tshark >/dev/null; then run esxcap analyze "$state"/captures/*.pcapng --top 3; fi
run esxcap bundle --ticket DEMO-1 "$state"/captures/*.pcapng -o "$state/"
run esxcap verify "$state"/DEMO-1-*.zip
# Many hosts at once: web 01 (esx02) talking to app 03's second vNIC (esx03), whose firewall DVFilter
# drops the conversation; one merged file, then the path each packet took and where it stopped.
run esxcap -i "$state/inventory.yaml" recipe vm-to-vm 'web 01' 'app 03' --nic-b 2 --dry-run
run esxcap -i "$state/inventory.yaml" recipe vm-to-vm 'web 01' 'app 03' --nic-b 2 -d 4 -o "$state/vm-to-vm.pcapng"
run esxcap path "$state/vm-to-vm.pcapng"
