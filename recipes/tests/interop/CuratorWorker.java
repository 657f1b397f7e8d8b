// A Curator 5.4 participant for zkit's interop tests (recipes/tests/interop.rs).
//
//   CuratorWorker lock  CONNECT LOCK_PATH COUNTER_PATH ROUNDS
//     InterProcessMutex: ROUNDS times acquire, read the counter, sleep 2 ms,
//     write counter+1 with the version read (BadVersion = two holders at
//     once), release. Prints "violations N" and "done".
//   CuratorWorker latch CONNECT LATCH_PATH COUNTER_PATH LEAD_MS ID
//     LeaderLatch: join, wait for leadership, then for LEAD_MS do CAS steps
//     on the counter as above, then close. Prints "leader", "violations N",
//     "done".
import java.nio.charset.StandardCharsets;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.data.Stat;

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
        if (mode.equals("lock")) {
            InterProcessMutex m = new InterProcessMutex(c, args[2]);
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
}
