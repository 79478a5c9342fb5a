# routed6d %post ($1: 1 = install, 2 = upgrade), as %systemd_post does it: on install,
# `systemctl preset`, which works in a chroot too (an image built there comes up
# enabled, by the package's preset file unless the distribution's says otherwise);
# an upgrade leaves an admin's enable or disable alone. Not started: it needs the API
# key first (until then the unit's ExecCondition skips it quietly).
# The service's group may read the configuration; the key stays root-only (systemd
# passes it as a credential).
chgrp routed6d /etc/routed6d /etc/routed6d/routed6d.toml
chmod 0750 /etc/routed6d
if [ "$1" -eq 1 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper install-system-units routed6d.service || :
    else
        systemctl --no-reload preset routed6d.service >/dev/null 2>&1 || :
    fi
fi
