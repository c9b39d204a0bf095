package test

import (
	"strings"
	"testing"
)

// migrateFault runs a migration of migrate_worker in which one amber
// kills itself at a point (AMBER_MIGRATE_FAULT, in the source's env or
// the destination's), reaping the program's PID until both ambers ended.
func migrateFault(t *testing.T, sourceEnv, destEnv []string, extra ...string) (*zcase, *receiver, amberResult, error) {
	c := startCase(t, "migrate_worker")
	r := c.startReceive("received", destEnv...)
	stop := c.reapWhile()
	res := c.migrate(r, sourceEnv, extra...)
	recvErr := r.exited()
	stop()
	t.Logf("migrate: %v\n%s\nreceive: %v\n%s", res.err, res.stdout, recvErr, readAll(r.out))
	return c, r, res, recvErr
}

// requireOriginal requires that the program was never killed: the
// original process runs and passes its checks.
func requireOriginalPasses(c *zcase) {
	c.t.Helper()
	c.requireRuns()
	c.mustPass()
}

// TestMigrateDestinationRefuses hands over as between two hosts on one:
// the destination restores while the source is frozen, and its restore
// fails on the PIDs the frozen source holds. The source is thawed and
// runs on, never killed; the destination keeps no task and no image.
func TestMigrateDestinationRefuses(t *testing.T) {
	c, r, res, recvErr := migrateFault(t, nil, nil, "--two-hosts")
	requireFailure(t, res, "restore on the destination")
	if recvErr == nil {
		t.Fatal("amber receive succeeded")
	}
	r.requireEmpty()
	requireOriginalPasses(c)
}

// TestMigrateKillDestination kills amber receive at three points. After
// the first pre-dump the source was never stopped for long: it runs on.
// Once the restore is asked for (one host: the source has killed its
// tree) the source restores the tree from the destination's images. Once
// the destination restored it, before it said so, the tree runs there.
// In each the images are gone and the program passes its checks.
func TestMigrateKillDestination(t *testing.T) {
	for _, tc := range []struct{ point, want string }{
		{"pages-received", "closed the connection"},
		{"restore-requested", "the tree runs here again"},
		{"restored", "restored by the destination"},
	} {
		t.Run(tc.point, func(t *testing.T) {
			c, r, res, _ := migrateFault(t, nil, []string{faultEnv + "=" + tc.point})
			requireFailure(t, res, tc.want)
			r.requireEmpty()
			c.requireRuns()
			c.mustPass()
		})
	}
}

// TestMigrateKillSource kills amber migrate at three points. After a
// pre-dump, and with the tree frozen and every image sent, the tree thaws
// and runs on here; the destination removes its images. Once the source
// killed its tree for the handover (one host), the destination restores
// it on its own.
func TestMigrateKillSource(t *testing.T) {
	for _, tc := range []struct {
		point    string
		restored bool
	}{
		{"pre-dumped", false},
		{"images-sent", false},
		{"tree-killed", true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			c, r, res, recvErr := migrateFault(t, []string{faultEnv + "=" + tc.point}, nil)
			if res.err == nil || exitCode(res.err) != -1 {
				t.Fatalf("amber migrate was not killed at %s: %v", tc.point, res.err)
			}
			if tc.restored != (recvErr == nil) {
				t.Fatalf("amber receive: %v; want restored %v", recvErr, tc.restored)
			}
			if !tc.restored && !strings.Contains(readAll(r.out), "went away") {
				t.Fatalf("amber receive did not say the source went away")
			}
			r.requireEmpty()
			c.requireRuns()
			c.mustPass()
		})
	}
}

// faultEnv is the variable that names where amber kills itself.
const faultEnv = "AMBER_MIGRATE_FAULT"
