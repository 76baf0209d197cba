# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make forest_tls's private CA in a directory on the controller, once: make_private_ca.py DIR.

Prints "made" or "exists".  Two provisions started together must not both make one (the second
would replace the key the first signed with): the check and the making hold a lock on DIR/.lock,
and the key and certificate are written under temporary names and renamed into place, so a reader
never sees one without the other."""
import fcntl
import os
import subprocess
import sys


def main(ca_dir):
    os.makedirs(ca_dir, mode=0o700, exist_ok=True)
    key, cert = os.path.join(ca_dir, 'ca.key'), os.path.join(ca_dir, 'ca.crt')
    with open(os.path.join(ca_dir, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(cert) and os.path.exists(key):
            return 'exists'
        part = '.new-%d' % os.getpid()
        old_umask = os.umask(0o077)
        try:
            subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                            '-nodes', '-keyout', key + part, '-out', cert + part, '-days', '3650',
                            '-subj', '/CN=pgforest.cluster private CA'], check=True, capture_output=True)
        finally:
            os.umask(old_umask)
        os.chmod(cert + part, 0o644)
        os.rename(key + part, key)
        os.rename(cert + part, cert)
        return 'made'


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: make_private_ca.py DIR')
    try:
        print(main(sys.argv[1]))
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit('could not make the private CA in %s: %s %s' % (
            sys.argv[1], exc, getattr(exc, 'stderr', b'').decode(errors='replace').strip()))
