# routed6d %pre ($1: 1 = install, 2 = upgrade). Written by hand: cargo-generate-rpm
# makes no scriptlets. The system user from sysusers.d, as %sysusers_create_compat
# does it: the file is not on disk yet, so its line (packaging/sysusers.conf) is
# given on standard input.
if [ -x /usr/bin/systemd-sysusers ]; then
    echo 'u routed6d - "routed6d daemon" /nonexistent' |
        systemd-sysusers --replace=/usr/lib/sysusers.d/routed6d.conf - || :
else
    getent passwd routed6d >/dev/null || useradd -r -U -M -d /nonexistent \
        -s /sbin/nologin -c "routed6d daemon" routed6d || :
fi
