// A Curator 5.4 participant for zkit's interop tests (recipes/tests/interop.rs).
//
//   CuratorWorker lock  CONNECT LOCK_PATH COUNTER_PATH ROUNDS
//     InterProcessMutex: ROUNDS times acquire, read the counter, sleep 2 ms,
//     write counter+1 with the version read (BadVersion = two holders at
//     once), release. Prints "violations N" and "done".
//   CuratorWorker discovery CONNECT BASE_PATH
//     curator-x-discovery: registers service "java-svc" id "j1" (10.1.1.1:9090,
//     Map payload zone=eu-1), prints "registered", then waits for an instance of
//     "rust-svc" and prints "found <id> <address>:<port> zone=<payload zone>";
//     stays registered until stdin closes, then prints "done".
//   CuratorWorker group CONNECT GROUP_PATH
//     GroupMember "j1" with data "pj1": prints "joined"; on the stdin line
//     "update" calls setThisData("pj1-v2") and prints "updated"; leaves when
//     stdin closes and prints "done".
//   CuratorWorker register CONNECT BASE_PATH NAME ID
//     curator-x-discovery: registers service NAME id ID (10.3.3.3:7000),
//     prints "registered", stays registered until stdin closes, prints "done".
//   CuratorWorker queue CONNECT QUEUE_PATH
//     SimpleDistributedQueue: offers "j1" and "j2", prints "offered", waits
//     until j1 is gone and two items are queued (the other side took j1 and
//     put one), then takes one item and prints "took <item>".
//   CuratorWorker multilock CONNECT LOCK_PATH,LOCK_PATH2 COUNTER_PATH ROUNDS
//     InterProcessMultiLock over the comma-separated paths: as "lock".
//   CuratorWorker atomic CONNECT COUNTER_PATH LOCK_PATH N
//     DistributedAtomicLong (1 optimistic try, then PromotedToLock at
//     LOCK_PATH): N increments; prints "violations F" (F = increments that
//     did not succeed) and "done".
//   CuratorWorker latch CONNECT LATCH_PATH COUNTER_PATH LEAD_MS ID
//     LeaderLatch: join, wait for leadership, then for LEAD_MS do CAS steps
//     on the counter as above, then close. Prints "leader", "violations N",
//     "done".
//   CuratorWorker delayqueue CONNECT QUEUE_PATH
//     DistributedDelayQueue<String> (UTF-8 serializer): a producer-only queue
//     (putInBackground false) puts "j-late" due in 2500 ms, then "j-early" due
//     in 1000 ms, and prints "put <early epoch ms> <late epoch ms>". On the
//     stdin line "consume" starts a consumer (no lockPath) that prints
//     "took <item> <epoch ms when received>" per item; after two items it
//     closes and prints "done".
//   CuratorWorker pnode CONNECT PATH DATA
//     PersistentNode(EPHEMERAL, unprotected) at PATH with DATA on a client of
//     its own with a 2000 ms session timeout. Prints "created <waitForInitialCreate
//     result> <actual path> <session id, decimal>". Stdin lines: "show" prints
//     "node <data> <ephemeralOwner>" (or "node none") as Curator reads PATH.
//     Stdin EOF closes the node, prints "closed", then "done".
//   CuratorWorker ttlnode CONNECT DATA PATH=TTL_MS...
//     A PersistentTtlNode per PATH with its TTL and DATA (defaults otherwise),
//     on a client with a 2000 ms session timeout. Prints "created <results of
//     waitForInitialCreate, space-separated>"; closes them all on stdin EOF and
//     prints "done".
//   CuratorWorker protected CONNECT DIR NAME...
//     For each NAME: "check NAME <ProtectedUtils.isProtectedZNode>
//     <extractProtectedId or -> <normalize>". Then a PersistentNode
//     (EPHEMERAL_SEQUENTIAL, protected) at DIR/worker- with data "j": prints
//     "created <actual path> <session id>". Stdin line "path" prints
//     "path <getActualPath()>"; EOF closes it and prints "done".
import java.nio.charset.StandardCharsets;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.atomic.PromotedToLock;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessLock;
import org.apache.curator.framework.recipes.locks.InterProcessMultiLock;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import java.util.Arrays;
import org.apache.curator.framework.recipes.nodes.GroupMember;
import org.apache.curator.framework.recipes.queue.SimpleDistributedQueue;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.data.Stat;
import org.apache.curator.framework.recipes.queue.DistributedDelayQueue;
import org.apache.curator.framework.recipes.queue.QueueBuilder;
import org.apache.curator.framework.recipes.queue.QueueConsumer;
import org.apache.curator.framework.recipes.queue.QueueSerializer;
import org.apache.curator.framework.state.ConnectionState;

public class CuratorWorker {
    static int violations = 0;

    static void casStep(CuratorFramework c, String counter) throws Exception {
        Stat stat = new Stat();
        byte[] d = c.getData().storingStatIn(stat).forPath(counter);
        long v = Long.parseLong(new String(d, StandardCharsets.UTF_8));
        Thread.sleep(2);
        try {
            c.setData().withVersion(stat.getVersion())
                .forPath(counter, Long.toString(v + 1).getBytes(StandardCharsets.UTF_8));
        } catch (KeeperException.BadVersionException e) {
            violations++;
        }
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        CuratorFramework c = CuratorFrameworkFactory.newClient(
            args[1], 10000, 5000, new ExponentialBackoffRetry(50, 10));
        c.start();
        c.blockUntilConnected();
        if (mode.equals("delayqueue")) {
            delayQueue(c, args[2]);
            return;
        }
        if (mode.equals("pnode") || mode.equals("ttlnode") || mode.equals("protected")) {
            c.close();
            persistentModes(mode, args);
            return;
        }
        if (mode.equals("queue")) {
            SimpleDistributedQueue q = new SimpleDistributedQueue(c, args[2]);
            q.offer("j1".getBytes(StandardCharsets.UTF_8));
            q.offer("j2".getBytes(StandardCharsets.UTF_8));
            System.out.println("offered");
            System.out.flush();
            // Take only once the other side has taken j1 and put z1 (the
            // queue holds two items again and j1 is gone), so that the two
            // consumers do not race for the head.
            while (true) {
                java.util.List<String> kids = c.getChildren().forPath(args[2]);
                boolean j1Gone = true;
                for (String k : kids) {
                    try {
                        byte[] d = c.getData().forPath(args[2] + "/" + k);
                        if (new String(d, StandardCharsets.UTF_8).equals("j1")) {
                            j1Gone = false;
                        }
                    } catch (KeeperException.NoNodeException e) {
                        // taken meanwhile: look again
                        j1Gone = false;
                    }
                }
                if (j1Gone && kids.size() >= 2) {
                    break;
                }
                Thread.sleep(5);
            }
            byte[] item = q.take();
            System.out.println("took " + new String(item, StandardCharsets.UTF_8));
            System.out.println("done");
            c.close();
            return;
        }
        if (mode.equals("group")) {
            GroupMember m = new GroupMember(c, args[2], "j1", "pj1".getBytes(StandardCharsets.UTF_8));
            m.start();
            System.out.println("joined");
            System.out.flush();
            java.io.BufferedReader in = new java.io.BufferedReader(
                new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.equals("update")) {
                    m.setThisData("pj1-v2".getBytes(StandardCharsets.UTF_8));
                    System.out.println("updated");
                    System.out.flush();
                }
            }
            m.close();
            System.out.println("done");
            c.close();
            return;
        }
        if (mode.equals("register")) {
            ServiceDiscovery<Map> sd = ServiceDiscoveryBuilder.builder(Map.class)
                .client(c).basePath(args[2]).build();
            sd.start();
            ServiceInstance<Map> me = ServiceInstance.<Map>builder()
                .name(args[3]).id(args[4]).address("10.3.3.3").port(7000).build();
            sd.registerService(me);
            System.out.println("registered");
            System.out.flush();
            while (System.in.read() >= 0) { }
            sd.close();
            System.out.println("done");
            c.close();
            return;
        }
        if (mode.equals("discovery")) {
            ServiceDiscovery<Map> sd = ServiceDiscoveryBuilder.builder(Map.class)
                .client(c).basePath(args[2]).build();
            sd.start();
            Map<String, String> payload = new HashMap<>();
            payload.put("zone", "eu-1");
            ServiceInstance<Map> me = ServiceInstance.<Map>builder()
                .name("java-svc").id("j1").address("10.1.1.1").port(9090).payload(payload).build();
            sd.registerService(me);
            System.out.println("registered");
            System.out.flush();
            long until = System.currentTimeMillis() + 30000;
            while (System.currentTimeMillis() < until) {
                Collection<ServiceInstance<Map>> xs = sd.queryForInstances("rust-svc");
                if (!xs.isEmpty()) {
                    ServiceInstance<Map> x = xs.iterator().next();
                    System.out.println("found " + x.getId() + " " + x.getAddress() + ":" + x.getPort()
                        + " zone=" + x.getPayload().get("zone"));
                    System.out.flush();
                    break;
                }
                Thread.sleep(50);
            }
            while (System.in.read() >= 0) { }
            sd.close();
            System.out.println("done");
            c.close();
            return;
        }
        if (mode.equals("atomic")) {
            DistributedAtomicLong a = new DistributedAtomicLong(c, args[2], new RetryNTimes(0, 0),
                PromotedToLock.builder().lockPath(args[3]).retryPolicy(new RetryNTimes(100, 1)).build());
            int n = Integer.parseInt(args[4]);
            for (int i = 0; i < n; i++) {
                AtomicValue<Long> v = a.increment();
                if (!v.succeeded() || v.postValue() != v.preValue() + 1) {
                    violations++;
                }
            }
        } else if (mode.equals("lock") || mode.equals("multilock")) {
            InterProcessLock m = mode.equals("lock")
                ? new InterProcessMutex(c, args[2])
                : new InterProcessMultiLock(c, Arrays.asList(args[2].split(",")));
            int rounds = Integer.parseInt(args[4]);
            for (int i = 0; i < rounds; i++) {
                m.acquire();
                try {
                    casStep(c, args[3]);
                } finally {
                    m.release();
                }
            }
        } else {
            LeaderLatch latch = new LeaderLatch(c, args[2], args[5]);
            latch.start();
            latch.await();
            System.out.println("leader");
            System.out.flush();
            long until = System.currentTimeMillis() + Long.parseLong(args[4]);
            while (System.currentTimeMillis() < until) {
                if (latch.hasLeadership()) {
                    casStep(c, args[3]);
                }
            }
            latch.close();
        }
        System.out.println("violations " + violations);
        System.out.println("done");
        c.close();
    }

    static void delayQueue(CuratorFramework c, String path) throws Exception {
        QueueSerializer<String> utf8 = new QueueSerializer<String>() {
            public byte[] serialize(String s) {
                return s.getBytes(StandardCharsets.UTF_8);
            }

            public String deserialize(byte[] b) {
                return new String(b, StandardCharsets.UTF_8);
            }
        };
        DistributedDelayQueue<String> producer =
            QueueBuilder.builder(c, null, utf8, path).putInBackground(false).buildDelayQueue();
        producer.start();
        long now = System.currentTimeMillis();
        long early = now + 1000;
        long late = now + 2500;
        producer.put("j-late", late);
        producer.put("j-early", early);
        System.out.println("put " + early + " " + late);
        System.out.flush();
        java.io.BufferedReader in = new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null && !line.equals("consume")) { }
        final java.util.concurrent.CountDownLatch two = new java.util.concurrent.CountDownLatch(2);
        QueueConsumer<String> consumer = new QueueConsumer<String>() {
            public void consumeMessage(String item) {
                System.out.println("took " + item + " " + System.currentTimeMillis());
                System.out.flush();
                two.countDown();
            }

            public void stateChanged(CuratorFramework client, ConnectionState state) { }
        };
        DistributedDelayQueue<String> q = QueueBuilder.builder(c, consumer, utf8, path).buildDelayQueue();
        q.start();
        if (!two.await(30, java.util.concurrent.TimeUnit.SECONDS)) {
            System.out.println("timeout");
        }
        q.close();
        producer.close();
        System.out.println("done");
        System.out.flush();
        c.close();
    }

    // The persistent-node modes (pnode, ttlnode, protected): a client with a
    // short session timeout, so that a killed process's ephemerals go soon.
    static void persistentModes(String mode, String[] args) throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.newClient(
            args[1], 2000, 5000, new ExponentialBackoffRetry(50, 10));
        c.start();
        c.blockUntilConnected();
        long session = c.getZookeeperClient().getZooKeeper().getSessionId();
        java.io.BufferedReader in = new java.io.BufferedReader(
            new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        if (mode.equals("pnode")) {
            String path = args[2];
            org.apache.curator.framework.recipes.nodes.PersistentNode node =
                new org.apache.curator.framework.recipes.nodes.PersistentNode(
                    c, org.apache.zookeeper.CreateMode.EPHEMERAL, false, path,
                    args[3].getBytes(StandardCharsets.UTF_8));
            node.start();
            boolean ok = node.waitForInitialCreate(10, java.util.concurrent.TimeUnit.SECONDS);
            System.out.println("created " + ok + " " + node.getActualPath() + " " + session);
            System.out.flush();
            while ((line = in.readLine()) != null) {
                if (line.equals("show")) {
                    Stat st = new Stat();
                    try {
                        byte[] d = c.getData().storingStatIn(st).forPath(path);
                        System.out.println("node " + new String(d, StandardCharsets.UTF_8)
                            + " " + st.getEphemeralOwner());
                    } catch (KeeperException.NoNodeException e) {
                        System.out.println("node none");
                    }
                    System.out.flush();
                }
            }
            node.close();
            System.out.println("closed");
        } else if (mode.equals("ttlnode")) {
            byte[] data = args[2].getBytes(StandardCharsets.UTF_8);
            java.util.List<org.apache.curator.framework.recipes.nodes.PersistentTtlNode> nodes =
                new java.util.ArrayList<>();
            for (int i = 3; i < args.length; i++) {
                String[] pt = args[i].split("=");
                org.apache.curator.framework.recipes.nodes.PersistentTtlNode n =
                    new org.apache.curator.framework.recipes.nodes.PersistentTtlNode(
                        c, pt[0], Long.parseLong(pt[1]), data);
                n.start();
                nodes.add(n);
            }
            StringBuilder out = new StringBuilder("created");
            for (org.apache.curator.framework.recipes.nodes.PersistentTtlNode n : nodes) {
                out.append(' ').append(n.waitForInitialCreate(10, java.util.concurrent.TimeUnit.SECONDS));
            }
            System.out.println(out);
            System.out.flush();
            while (in.readLine() != null) { }
            for (org.apache.curator.framework.recipes.nodes.PersistentTtlNode n : nodes) {
                n.close();
            }
        } else {
            for (int i = 3; i < args.length; i++) {
                String name = args[i];
                System.out.println("check " + name + " "
                    + org.apache.curator.framework.imps.ProtectedUtils.isProtectedZNode(name) + " "
                    + org.apache.curator.framework.imps.ProtectedUtils.extractProtectedId(name).orElse("-")
                    + " " + org.apache.curator.framework.imps.ProtectedUtils.normalize(name));
            }
            org.apache.curator.framework.recipes.nodes.PersistentNode node =
                new org.apache.curator.framework.recipes.nodes.PersistentNode(
                    c, org.apache.zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, true, args[2] + "/worker-",
                    "j".getBytes(StandardCharsets.UTF_8));
            node.start();
            node.waitForInitialCreate(10, java.util.concurrent.TimeUnit.SECONDS);
            System.out.println("created " + node.getActualPath() + " " + session);
            System.out.flush();
            while ((line = in.readLine()) != null) {
                if (line.equals("path")) {
                    System.out.println("path " + node.getActualPath());
                    System.out.flush();
                }
            }
            node.close();
        }
        System.out.println("done");
        System.out.flush();
        c.close();
    }
}
