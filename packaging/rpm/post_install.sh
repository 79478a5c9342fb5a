# routed6d %post ($1: 1 = install, 2 = upgrade). Written by hand: cargo-generate-rpm
# makes no scriptlets. Enable on install but do not start (it needs a token first);
# restart on upgrade if it was running.
# The service runs as the system user routed6d, whose group may read the
# configuration; the token stays root-only (systemd passes it as a credential).
getent passwd routed6d >/dev/null || useradd -r -U -M -d /nonexistent \
    -s /sbin/nologin -c "routed6d daemon" routed6d
chgrp routed6d /etc/routed6d /etc/routed6d/routed6d.toml
chmod 0750 /etc/routed6d
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable routed6d.service >/dev/null 2>&1 || :
    else
        systemctl try-restart routed6d.service >/dev/null 2>&1 || :
    fi
fi
