package redisstore_test

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

// minParallel is how many parallel tests of this package run at once
// unless -parallel says otherwise. The default, GOMAXPROCS, is 2 on a
// 2-core machine, but these tests mostly wait for their servers (a
// cluster accepts writes 2 s after it starts, a Sentinel setup takes 2 s
// to settle, a failover seconds more) rather than use the CPU: 4 at once
// take the package's race run from 95 s to about 60 s there. The
// timing-sensitive tests are not parallel, so they still run alone.
const minParallel = 4

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); p != nil && !explicit {
		if n, err := strconv.Atoi(p.Value.String()); err == nil && n < minParallel {
			_ = p.Value.Set(strconv.Itoa(minParallel))
		}
	}
	os.Exit(m.Run())
}
