# routed6d %postun ($1: 0 = erase, 1 = upgrade), as %systemd_postun_with_restart does
# it: reload, and on upgrade restart a running service. rpm keeps a modified config as
# .rpmsave; the key is the operator's file and stays, and so does the system user
# (rpm has no purge; the distribution's rule is never to delete one). The state
# directory (the address record, valid for one boot only) goes with an erase.
if [ "$1" = 0 ]; then
    rm -rf /var/lib/routed6d /var/lib/private/routed6d
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart routed6d.service >/dev/null 2>&1 || :
    fi
fi
