#!/usr/bin/env bash
# The floor: one container done by hand with the bare tools, the same steps Carrier takes
# (holder owning user+net+uts+ipc namespaces, newuidmap/newgidmap with the subuid range,
# the network helper attached to the holder, wait for the default route, `runc run` joining
# the holder's namespaces, cleanup), minus Carrier's Python and its per-container rootfs.
#
# usage: floor.sh CONFIG_TEMPLATE pasta|slirp4netns|none
#   CONFIG_TEMPLATE: an OCI config.json whose namespace paths say @HOLDER@ (bench/start.py
#   writes it; its root.path is absolute, so no rootfs is prepared here).
# environment (all optional):
#   FLOOR_MTU=N            helper MTU (default 65520, both helpers' default)
#   FLOOR_HOST_LOOPBACK=1  the gateway reaches the host's loopback (Carrier's --host-loopback)
#   FLOOR_PUBLISH=H:C      publish host 127.0.0.1:H to container port C (TCP)
#   FLOOR_PYTHON=path      python for slirp4netns's API socket (port publishing only)
set -euo pipefail
template=$1 network=$2
mtu=${FLOOR_MTU:-65520}
work=$(mktemp -d "${TMPDIR:-/tmp}/carrier-floor-XXXXXX")
helper=""
cleanup() {
    if [ -n "${container:-}" ]; then
        runc --root "$work/state" kill "$container" KILL 2>/dev/null || true
        wait "$runc_pid" 2>/dev/null || true
        runc --root "$work/state" delete --force "$container" 2>/dev/null || true
    fi
    if [ -n "$helper" ]; then kill "$helper" 2>/dev/null || true; wait "$helper" 2>/dev/null || true; fi
    if [ -n "${HOLDER_PID:-}" ]; then
        exec {hold}>&- 2>/dev/null || true
        kill "$HOLDER_PID" 2>/dev/null || true
        wait "$HOLDER_PID" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# 1. The holder: owns the namespaces until its stdin (our pipe) closes.
coproc HOLDER { exec unshare --user --net --uts --ipc -- sh -c 'echo ready; exec cat >/dev/null'; }
hold=${HOLDER[1]}
read -r -t 5 line <&"${HOLDER[0]}"
[ "$line" = ready ]
me=$(id -u) my_gid=$(id -g) name=$(id -un)
read -r sub_uid sub_uid_n < <(awk -F: -v u="$name" '$1 == u {print $2, $3; exit}' /etc/subuid)
read -r sub_gid sub_gid_n < <(awk -F: -v u="$name" '$1 == u {print $2, $3; exit}' /etc/subgid)
newuidmap "$HOLDER_PID" 0 "$me" 1 1 "$sub_uid" "$sub_uid_n"
newgidmap "$HOLDER_PID" 0 "$my_gid" 1 1 "$sub_gid" "$sub_gid_n"
nsenter -t "$HOLDER_PID" -U -n --preserve-credentials ip link set lo up

# 2. The network helper, then wait (bounded) for the default route inside.
case $network in
pasta)
    args=(--config-net --quiet --foreground --mtu "$mtu" -u none -T none -U none)
    [ "${FLOOR_HOST_LOOPBACK:-}" = 1 ] || args+=(--no-map-gw)
    if [ -n "${FLOOR_PUBLISH:-}" ]; then args+=(-t "127.0.0.1/${FLOOR_PUBLISH}"); else args+=(-t none); fi
    pasta "${args[@]}" "$HOLDER_PID" >/dev/null 2>&1 &
    helper=$!
    ;;
slirp4netns)
    args=(--configure "--mtu=$mtu" --api-socket "$work/api.sock")
    [ "${FLOOR_HOST_LOOPBACK:-}" = 1 ] || args+=(--disable-host-loopback)
    slirp4netns "${args[@]}" "$HOLDER_PID" tap0 >/dev/null 2>&1 &
    helper=$!
    ;;
none) ;;
*) echo "floor.sh: unknown network $network" >&2; exit 2 ;;
esac
if [ "$network" != none ]; then
    for _ in $(seq 1000); do
        route=$(nsenter -t "$HOLDER_PID" -U -n --preserve-credentials ip -o route show default 2>/dev/null)
        [ -n "$route" ] && break
        kill -0 "$helper" 2>/dev/null || { echo "floor.sh: $network exited" >&2; exit 1; }
        sleep 0.002
    done
    [ -n "$route" ] || { echo "floor.sh: no default route after 1000 tries" >&2; exit 1; }
fi
if [ "$network" = slirp4netns ] && [ -n "${FLOOR_PUBLISH:-}" ]; then
    "${FLOOR_PYTHON:-python3}" - "$work/api.sock" "${FLOOR_PUBLISH%%:*}" "${FLOOR_PUBLISH##*:}" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(json.dumps({"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "127.0.0.1",
          "host_port": int(sys.argv[2]), "guest_port": int(sys.argv[3])}}).encode())
s.shutdown(socket.SHUT_WR)
reply = s.recv(4096)
assert b'"return"' in reply, reply
EOF
fi

# 3. The container: runc joins the holder's namespaces by path.
mkdir "$work/bundle"
sed "s/@HOLDER@/$HOLDER_PID/g" "$template" >"$work/bundle/config.json"
# In the background and waited for, so that a TERM runs the cleanup at once.
container=floor-$$-$RANDOM
runc --root "$work/state" run --bundle "$work/bundle" "$container" &
runc_pid=$!
status=0
wait "$runc_pid" || status=$?
container=""
exit $status
