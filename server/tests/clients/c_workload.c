/* Differential workload for the ZooKeeper C client (run by server/tests/thirdparty.rs).
 * Usage: c_workload HOST:PORT
 * Prints normalised results (no zxids, times, session ids) one per line. */
#define THREADED 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <zookeeper/zookeeper.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int connected = 0;
static char events[64][256];
static int nevents = 0;

static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
    (void)zh;
    pthread_mutex_lock(&mu);
    if (type == ZOO_SESSION_EVENT) {
        if (state == ZOO_CONNECTED_STATE) connected = 1;
    } else if (nevents < 64) {
        snprintf(events[nevents++], 256, "%s type=%d state=%d path=%s",
                 ctx ? (const char *)ctx : "global", type, state, path ? path : "(null)");
    }
    pthread_mutex_unlock(&mu);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_stat(const char *what, int rc, const struct Stat *st) {
    if (rc != ZOK || !st) {
        printf("%s rc=%d (%s)\n", what, rc, zerror(rc));
        return;
    }
    printf("%s rc=0 version=%d cversion=%d aversion=%d dataLength=%d numChildren=%d eph=%d "
           "czxid==mzxid=%d pzxid>=czxid=%d\n",
           what, st->version, st->cversion, st->aversion, st->dataLength, st->numChildren,
           st->ephemeralOwner != 0, st->czxid == st->mzxid, st->pzxid >= st->czxid);
}

static void flush_events(const char *what, int expect) {
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&mu);
        int n = nevents;
        pthread_mutex_unlock(&mu);
        if (n >= expect) break;
        usleep(10000);
    }
    usleep(100000);
    pthread_mutex_lock(&mu);
    /* sort for determinism */
    for (int i = 0; i < nevents; i++)
        for (int j = i + 1; j < nevents; j++)
            if (strcmp(events[i], events[j]) > 0) {
                char tmp[256];
                strcpy(tmp, events[i]);
                strcpy(events[i], events[j]);
                strcpy(events[j], tmp);
            }
    printf("%s events=%d\n", what, nevents);
    for (int i = 0; i < nevents; i++) printf("  %s\n", events[i]);
    nevents = 0;
    pthread_mutex_unlock(&mu);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zoo_set_log_stream(stderr);
    zhandle_t *zh = zookeeper_init(argv[1], watcher, 10000, NULL, NULL, 0);
    if (!zh) { printf("init failed\n"); return 1; }
    for (int i = 0; i < 1000 && !connected; i++) usleep(10000);
    printf("connected=%d timeout=%d\n", connected, zoo_recv_timeout(zh));

    char path[512];
    char buf[1024];
    int len, rc;
    struct Stat st;
    struct String_vector sv;

    rc = zoo_create(zh, "/c", "hello", 5, &ZOO_OPEN_ACL_UNSAFE, 0, path, sizeof path);
    printf("create /c rc=%d path=%s\n", rc, rc == ZOK ? path : "");
    rc = zoo_create(zh, "/c", "x", 1, &ZOO_OPEN_ACL_UNSAFE, 0, path, sizeof path);
    printf("create /c again rc=%d (%s)\n", rc, zerror(rc));
    rc = zoo_create(zh, "/c/seq-", NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_SEQUENCE, path, sizeof path);
    printf("create seq rc=%d path=%s\n", rc, rc == ZOK ? path : "");
    rc = zoo_create(zh, "/c/eph", "e", 1, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, path, 4);
    printf("create eph truncated-path rc=%d path=%s\n", rc, rc == ZOK ? path : "");
    rc = zoo_create(zh, "/c/x/y", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    printf("create no parent rc=%d (%s)\n", rc, zerror(rc));
    rc = zoo_create(zh, "/c/eph/child", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    printf("create under eph rc=%d (%s)\n", rc, zerror(rc));
    rc = zoo_create(zh, "bad", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    printf("create bad path rc=%d (%s)\n", rc, zerror(rc));
    struct Stat cst;
    rc = zoo_create2(zh, "/c/c2", "abc", 3, &ZOO_OPEN_ACL_UNSAFE, 0, path, sizeof path, &cst);
    print_stat("create2 /c/c2", rc, &cst);

    len = sizeof buf;
    rc = zoo_get(zh, "/c", 0, buf, &len, &st);
    printf("get /c len=%d data=%.*s\n", len, len > 0 ? len : 0, buf);
    print_stat("get /c stat", rc, &st);
    len = sizeof buf;
    rc = zoo_get(zh, "/c/seq-0000000000", 0, buf, &len, &st);
    printf("get null-data len=%d\n", len);
    print_stat("get seq stat", rc, &st);
    len = sizeof buf;
    rc = zoo_get(zh, "/nope", 0, buf, &len, &st);
    printf("get missing rc=%d (%s)\n", rc, zerror(rc));

    rc = zoo_set(zh, "/c", "v1", 2, -1);
    printf("set rc=%d\n", rc);
    rc = zoo_set2(zh, "/c", "v2", 2, 1, &st);
    print_stat("set2 version 1", rc, &st);
    rc = zoo_set(zh, "/c", "v3", 2, 42);
    printf("set bad version rc=%d (%s)\n", rc, zerror(rc));
    rc = zoo_set(zh, "/nope", "v3", 2, -1);
    printf("set missing rc=%d (%s)\n", rc, zerror(rc));

    rc = zoo_get_children(zh, "/c", 0, &sv);
    printf("children rc=%d count=%d\n", rc, rc == ZOK ? sv.count : -1);
    if (rc == ZOK) {
        qsort(sv.data, sv.count, sizeof(char *), cmp_str);
        for (int i = 0; i < sv.count; i++) printf("  %s\n", sv.data[i]);
        deallocate_String_vector(&sv);
    }
    rc = zoo_get_children2(zh, "/c", 0, &sv, &st);
    print_stat("children2 stat", rc, &st);
    if (rc == ZOK) deallocate_String_vector(&sv);
    rc = zoo_get_children(zh, "/nope", 0, &sv);
    printf("children missing rc=%d (%s)\n", rc, zerror(rc));

    /* watches */
    rc = zoo_wexists(zh, "/c/w", watcher, "exists", &st);
    printf("wexists missing rc=%d (%s)\n", rc, zerror(rc));
    rc = zoo_create(zh, "/c/w", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    printf("create /c/w rc=%d\n", rc);
    flush_events("after create", 1);
    rc = zoo_wexists(zh, "/c/w", watcher, "exists2", &st);
    print_stat("wexists /c/w", rc, &st);
    len = sizeof buf;
    rc = zoo_wget(zh, "/c/w", watcher, "data", buf, &len, &st);
    printf("wget rc=%d len=%d\n", rc, len);
    rc = zoo_wget_children(zh, "/c/w", watcher, "child", &sv);
    printf("wget_children rc=%d count=%d\n", rc, rc == ZOK ? sv.count : -1);
    if (rc == ZOK) deallocate_String_vector(&sv);
    rc = zoo_exists(zh, "/c", 1, &st); /* global watcher */
    print_stat("exists /c global watch", rc, &st);
    rc = zoo_set(zh, "/c/w", "z", 1, -1);
    printf("set /c/w rc=%d\n", rc);
    flush_events("after set", 2);
    rc = zoo_create(zh, "/c/w/k", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    printf("create /c/w/k rc=%d\n", rc);
    flush_events("after child create", 1);
    rc = zoo_wexists(zh, "/c/w", watcher, "exists3", &st);
    rc = zoo_delete(zh, "/c/w", -1);
    printf("delete non-empty rc=%d (%s)\n", rc, zerror(rc));
    rc = zoo_delete(zh, "/c/w/k", 5);
    printf("delete bad version rc=%d (%s)\n", rc, zerror(rc));
    rc = zoo_delete(zh, "/c/w/k", 0);
    printf("delete rc=%d\n", rc);
    rc = zoo_delete(zh, "/c/w", -1);
    printf("delete /c/w rc=%d\n", rc);
    flush_events("after delete", 1);
    rc = zoo_set(zh, "/c", "g", 1, -1);
    flush_events("after set /c (global)", 1);

    /* multi: success */
    {
        zoo_op_t ops[4];
        zoo_op_result_t res[4];
        char p1[64], p2[64];
        zoo_create_op_init(&ops[0], "/c/m", "m", 1, &ZOO_OPEN_ACL_UNSAFE, 0, p1, sizeof p1);
        zoo_create_op_init(&ops[1], "/c/m/s-", "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_SEQUENCE, p2, sizeof p2);
        zoo_set_op_init(&ops[2], "/c/m", "mm", 2, 0, &st);
        zoo_check_op_init(&ops[3], "/c/m", 1);
        rc = zoo_multi(zh, 4, ops, res);
        printf("multi ok rc=%d\n", rc);
        for (int i = 0; i < 4; i++) printf("  op%d err=%d\n", i, res[i].err);
        printf("  paths %s %s\n", p1, p2);
        print_stat("  set stat", res[2].err, &st);
    }
    /* multi: failing check */
    {
        zoo_op_t ops[3];
        zoo_op_result_t res[3];
        char p1[64];
        zoo_create_op_init(&ops[0], "/c/n", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, p1, sizeof p1);
        zoo_check_op_init(&ops[1], "/c/m", 7);
        zoo_delete_op_init(&ops[2], "/c/m", -1);
        rc = zoo_multi(zh, 3, ops, res);
        printf("multi fail rc=%d (%s)\n", rc, zerror(rc));
        for (int i = 0; i < 3; i++) printf("  op%d err=%d\n", i, res[i].err);
        rc = zoo_exists(zh, "/c/n", 0, &st);
        printf("  /c/n exists rc=%d\n", rc);
    }
    /* multi: delete of missing */
    {
        zoo_op_t ops[2];
        zoo_op_result_t res[2];
        zoo_delete_op_init(&ops[0], "/c/m/s-0000000000", -1);
        zoo_delete_op_init(&ops[1], "/c/zz", -1);
        rc = zoo_multi(zh, 2, ops, res);
        printf("multi fail missing rc=%d (%s)\n", rc, zerror(rc));
        for (int i = 0; i < 2; i++) printf("  op%d err=%d\n", i, res[i].err);
    }

    /* ACLs */
    {
        struct ACL_vector acl;
        rc = zoo_get_acl(zh, "/c", &acl, &st);
        printf("get_acl rc=%d count=%d perms=%d scheme=%s id=%s aversion=%d\n", rc, acl.count,
               acl.data[0].perms, acl.data[0].id.scheme, acl.data[0].id.id, st.aversion);
        deallocate_ACL_vector(&acl);
        rc = zoo_create(zh, "/c/ro", "", 0, &ZOO_READ_ACL_UNSAFE, 0, NULL, 0);
        printf("create ro rc=%d\n", rc);
        rc = zoo_set(zh, "/c/ro", "x", 1, -1);
        printf("set ro rc=%d (%s)\n", rc, zerror(rc));
        rc = zoo_set_acl(zh, "/c/ro", 3, &ZOO_OPEN_ACL_UNSAFE);
        printf("set_acl bad version rc=%d (%s)\n", rc, zerror(rc));
        rc = zoo_delete(zh, "/c/ro", -1);
        printf("delete ro (parent open) rc=%d\n", rc);
    }

    /* extended create modes, system nodes */
    {
        rc = zoo_create(zh, "/c/cont", "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_CONTAINER, path, sizeof path);
        printf("create container rc=%d path=%s\n", rc, rc == ZOK ? path : "");
        rc = zoo_create2_ttl(zh, "/c/ttl", "t", 1, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT_WITH_TTL,
                             60000, path, sizeof path, &st);
        print_stat("create ttl", rc, &st);
        rc = zoo_create2_ttl(zh, "/c/ttl0", "t", 1, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT_WITH_TTL,
                             0, path, sizeof path, &st);
        printf("create ttl 0 rc=%d (%s)\n", rc, zerror(rc));
        rc = zoo_create2_ttl(zh, "/c/ttlbad", "t", 1, &ZOO_OPEN_ACL_UNSAFE, 0,
                             1000, path, sizeof path, &st);
        printf("create ttl with persistent mode rc=%d (%s)\n", rc, zerror(rc));
        rc = zoo_delete(zh, "/c/ttl", -1);
        printf("delete ttl rc=%d\n", rc);
        rc = zoo_delete(zh, "/c/cont", -1);
        printf("delete container rc=%d\n", rc);
        rc = zoo_exists(zh, "/", 0, &st);
        printf("exists / rc=%d version=%d aversion=%d dataLength=%d\n", rc, st.version, st.aversion,
               st.dataLength);
        rc = zoo_get_children(zh, "/zookeeper", 0, &sv);
        printf("children /zookeeper rc=%d count=%d\n", rc, rc == ZOK ? sv.count : -1);
        if (rc == ZOK) {
            qsort(sv.data, sv.count, sizeof(char *), cmp_str);
            for (int i = 0; i < sv.count; i++) printf("  %s\n", sv.data[i]);
            deallocate_String_vector(&sv);
        }
        len = sizeof buf;
        rc = zoo_getconfig(zh, 0, buf, &len, &st);
        printf("getconfig rc=%d len=%d\n", rc, len);
        rc = zoo_add_auth(zh, "digest", "u:p", 3, NULL, NULL);
        printf("add_auth rc=%d\n", rc);
        rc = zoo_create(zh, "/c/authed", "", 0, &ZOO_CREATOR_ALL_ACL, 0, NULL, 0);
        printf("create creator-all rc=%d\n", rc);
        struct ACL_vector acl;
        rc = zoo_get_acl(zh, "/c/authed", &acl, &st);
        if (rc == ZOK) {
            printf("get_acl rc=%d count=%d perms=%d scheme=%s id=%s\n", rc, acl.count,
                   acl.data[0].perms, acl.data[0].id.scheme, acl.data[0].id.id);
            deallocate_ACL_vector(&acl);
        } else {
            printf("get_acl rc=%d\n", rc);
        }
        rc = zoo_delete(zh, "/c/authed", -1);
        printf("delete authed rc=%d\n", rc);
        rc = zoo_create(zh, "/c/", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
        printf("create trailing slash rc=%d (%s)\n", rc, zerror(rc));
        rc = zoo_create(zh, "/c/s/", "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_SEQUENCE, path, sizeof path);
        printf("create seq trailing slash rc=%d (%s)\n", rc, zerror(rc));
    }

    /* cleanup */
    const char *del[] = {"/c/m/s-0000000000", "/c/m", "/c/c2", "/c/seq-0000000000", "/c/eph", "/c"};
    for (unsigned i = 0; i < sizeof del / sizeof del[0]; i++) {
        rc = zoo_delete(zh, del[i], -1);
        printf("delete %s rc=%d\n", del[i], rc);
    }
    zookeeper_close(zh);
    printf("done\n");
    return 0;
}
