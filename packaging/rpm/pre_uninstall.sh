# routed6d %preun ($1: 0 = erase, 1 = upgrade): stop and disable only on erase.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl stop routed6d.service >/dev/null 2>&1 || :
    systemctl disable routed6d.service >/dev/null 2>&1 || :
fi
