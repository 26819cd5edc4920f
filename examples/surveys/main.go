// Command surveys runs Tailspin Surveys, the multitenant web app of the
// architecture note "Cache access tokens in a multitenant app", on a farm
// of two web servers behind a round-robin load balancer, sharing one
// encrypted msalcache token store:
//
//	go run ./examples/surveys                         # tokens in an embedded bbolt file in a temporary folder
//	go run ./examples/surveys -bolt ./surveys.db      # ... in a file that outlives the run
//	go run ./examples/surveys -redis redis://10.0.0.5:6379/0   # ... in a Redis you name
//	go run ./examples/surveys -bolt ./surveys.db -kek-cert ./kek.pem   # KEK: a certificate, created self-signed
//
// It needs no setup and no network: the Entra ID emulator (entratest)
// signs people in, on loopback. It prints one URL to open. Enroll an
// organization (as its administrator), sign in as one of its users,
// create and publish a survey, and watch the box at the bottom of each
// page: which server answered, and whether the page's API token came from
// the shared cache or from the token endpoint. It writes into no server
// you did not name: without -redis, only into its bbolt file.
//
// It also prints the address of /metrics, where every instance's Adapter
// reports through OpenTelemetry and its Prometheus exporter (-metrics
// picks the address): reload a page and
//
//	curl -s http://127.0.0.1:PORT/metrics | grep '^msalcache_operations_total'
//
// shows the hit ratio move (db_operation_name="replace" with
// msalcache_outcome hit, reused or l1_hit, against all of them), with no
// token, partition key or user name in it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/msalcache/msalcache/examples/surveys/internal/surveys"
)

func main() {
	var cfg surveys.Config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "loopback address of the load balancer, the URL to open")
	flag.StringVar(&cfg.RedisURL, "redis", "", "keep tokens in this Redis (redis://host:port/db); empty: the embedded bbolt store")
	flag.StringVar(&cfg.RedisPrefix, "redis-prefix", "msalcache-surveys:", "key prefix in Redis")
	flag.StringVar(&cfg.BoltPath, "bolt", "", "bbolt file for the tokens; empty: a new temporary folder, removed on exit")
	flag.StringVar(&cfg.MetricsAddr, "metrics", "127.0.0.1:0", "loopback address that serves /metrics (Prometheus); port 0: a free one")
	flag.StringVar(&cfg.KEKFile, "kek-file", "", "key-encryption key file when MSALCACHE_KEK is unset (default: the bolt file + .kek, or .msalcache-surveys.key with -redis)")
	flag.StringVar(&cfg.KEKCert, "kek-cert", "", "PEM certificate to use as the key-encryption key (its key in FILE.key); created self-signed if absent")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, cfg); err != nil {
		log.SetFlags(0)
		log.Fatalf("surveys: %v", err)
	}
}

func run(ctx context.Context, out io.Writer, cfg surveys.Config) error {
	cfg.Out = out
	farm, err := surveys.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer farm.Close()
	fmt.Fprintf(out, "Two web instances behind a round-robin load balancer; Entra ID emulator at %s.\n", farm.Entra().BrowserURL())
	fmt.Fprintf(out, "Metrics (Prometheus): %s\n", farm.MetricsURL())
	fmt.Fprintf(out, "\nOpen %s\n\n", farm.URL())
	fmt.Fprintln(out, "Enroll contoso or fabrikam as admin@..., sign in as alice@contoso.com or bob@fabrikam.com;")
	fmt.Fprintln(out, "northwind has not enrolled. Ctrl-C stops.")
	<-ctx.Done()
	return nil
}
