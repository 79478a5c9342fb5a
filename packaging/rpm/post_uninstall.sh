# routed6d %postun ($1: 0 = erase, 1 = upgrade). rpm keeps a modified config as
# .rpmsave; the token is the operator's file and stays (rpm has no purge). The state
# directory (the address record, valid for one boot only) goes with an erase.
if [ "$1" = 0 ]; then
    rm -rf /var/lib/routed6d /var/lib/private/routed6d
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
