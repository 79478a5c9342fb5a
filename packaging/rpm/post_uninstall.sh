# routed6d %postun ($1: 0 = erase, 1 = upgrade). rpm keeps a modified config as
# .rpmsave; the token is the operator's file and stays (rpm has no purge).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
