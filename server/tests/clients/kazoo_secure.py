"""kazoo 2.8 over TLS or SASL DIGEST-MD5: real reads and writes with x509 or
sasl ACLs. Prints one line per step (no zxids, times or session ids), so the
output can be compared between servers.

usage: kazoo_secure.py tls HOST:PORT CA CERT KEY DN
       kazoo_secure.py sasl HOST:PORT USER PASSWORD
"""
import sys

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoAuthError
from kazoo.security import make_acl


def acl_text(acls):
    return " ".join("%s:%s:%d" % (a.id.scheme, a.id.id, a.perms) for a in acls)


def main():
    mode, hosts = sys.argv[1], sys.argv[2]
    if mode == "tls":
        ca, cert, key, dn = sys.argv[3:7]
        zk = KazooClient(hosts=hosts, use_ssl=True, verify_certs=True,
                         ca=ca, certfile=cert, keyfile=key)
        anon = KazooClient(hosts=hosts, use_ssl=True, verify_certs=True, ca=ca)
        acl = make_acl("x509", dn, all=True)
        path = "/kz-tls"
    else:
        user, password = sys.argv[3:5]
        zk = KazooClient(hosts=hosts, sasl_options={
            "mechanism": "DIGEST-MD5", "username": user, "password": password})
        anon = KazooClient(hosts=hosts)
        acl = make_acl("sasl", user, all=True)
        path = "/kz-sasl"
    zk.start(timeout=15)
    anon.start(timeout=15)
    print("create", zk.create(path, b"secret", acl=[acl]))
    data, _ = zk.get(path)
    print("get", data.decode())
    zk.set(path, b"changed")
    print("get after set", zk.get(path)[0].decode())
    acls, _ = zk.get_acls(path)
    print("acl", acl_text(acls))
    try:
        anon.get(path)
        print("anonymous get: allowed")
    except NoAuthError:
        print("anonymous get: NoAuth")
    except KazooException as e:
        print("anonymous get:", type(e).__name__)
    zk.delete(path)
    print("exists after delete", zk.exists(path))
    for c in (zk, anon):
        c.stop()
        c.close()


if __name__ == "__main__":
    main()
