package storeurl_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/msalcache/msalcache/storeurl"
)

// A program takes its store as one URL, from a flag or the environment.
func Example() {
	dir, _ := os.MkdirTemp("", "storeurl-example")
	defer os.RemoveAll(dir)
	s, err := storeurl.Open(context.Background(), "bbolt://"+filepath.Join(dir, "tokens.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println(s.URL.Kind)

	u, _ := storeurl.Parse("redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster")
	fmt.Println(u.Kind, u.Redis.MasterName, u.Redis.Addrs)
	fmt.Println(u) // never the password

	_, err = storeurl.Parse("redis://app:s3cret@10.0.0.1:bad")
	fmt.Println(err != nil)
	// Output:
	// bbolt
	// redis+sentinel mymaster [10.0.0.1:26379 10.0.0.2:26379]
	// redis+sentinel://app:xxxxx@10.0.0.1:26379,10.0.0.2:26379/mymaster
	// true
}

// A program that only reads opens the store read-only: a mistyped bbolt
// path is an error, never a new file.
func ExampleWithReadOnly() {
	dir, _ := os.MkdirTemp("", "storeurl-example")
	defer os.RemoveAll(dir)
	_, err := storeurl.Open(context.Background(), "bbolt://"+filepath.Join(dir, "typo.db"), storeurl.WithReadOnly())
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	_, err = os.Stat(filepath.Join(dir, "typo.db"))
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	// Output:
	// true
	// true
}
