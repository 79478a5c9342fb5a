# routed6d %preun ($1: 0 = erase, 1 = upgrade), as %systemd_preun does it: on erase,
# disable and stop. Then say what stays in the kernel: with on_stop = "keep" (the
# default) routed6d leaves its addresses and routes in place when it stops.
if [ "$1" -eq 0 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper remove-system-units routed6d.service || :
    else
        systemctl --no-reload disable --now routed6d.service >/dev/null 2>&1 || :
    fi
    status=$(routed6d status --offline 2>/dev/null) || status=
    count=$(printf '%s\n' "$status" | sed -n 's/^owned: *\([0-9][0-9]*\) object.*/\1/p')
    if [ "${count:-0}" -gt 0 ]; then
        echo "routed6d: $count object(s) of routed6d (addresses and routes) stay in the" \
            "kernel until the next reboot (on_stop = \"keep\"):"
        printf '%s\n' "$status" | sed -n '/^owned:/,/^[a-z]/{/^  /p}'
        echo "routed6d: to take them out, set on_stop = \"withdraw\" in" \
            "/etc/routed6d/routed6d.toml and stop routed6d before removing it"
    fi
fi
