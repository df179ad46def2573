// Command minio-go-checks drives an S3 endpoint with minio-go the way Grafana
// Tempo and Loki do and prints one JSON line per check:
//
//	{"check": "...", "ok": true, "detail": "..."}
//
// It exits 1 if any check failed. Everything it writes lives under a random
// run prefix, removed at the end unless -keep is given; -clean only removes
// (and verifies the removal of) an earlier run's -prefix.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

type result struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type env struct {
	endpoint, access, secret, bucket, region, prefix string

	client *minio.Client
	core   *minio.Core
	rec    *recorder

	failed bool
	out    *json.Encoder

	mu      sync.Mutex
	written map[string]bool
}

func main() {
	e := &env{out: json.NewEncoder(os.Stdout), written: map[string]bool{}}
	keep := flag.Bool("keep", false, "leave the objects written by the run in place")
	clean := flag.Bool("clean", false, "only remove everything under -prefix and check that it is gone")
	flag.StringVar(&e.endpoint, "endpoint", "", "host:port of the S3 endpoint (plain HTTP)")
	flag.StringVar(&e.access, "access", "", "access key")
	flag.StringVar(&e.secret, "secret", "", "secret key")
	flag.StringVar(&e.bucket, "bucket", "proxy-bucket", "bucket")
	flag.StringVar(&e.region, "region", "us-east-1", `region; "" makes minio-go ask the bucket's location first`)
	flag.StringVar(&e.prefix, "prefix", "", "run prefix (default: a random one)")
	flag.Parse()
	if e.endpoint == "" || e.access == "" || e.secret == "" || (*clean && e.prefix == "") {
		flag.Usage()
		os.Exit(2)
	}
	if e.prefix == "" {
		e.prefix = "mgo-" + randHex(6) + "/"
	}
	if !strings.HasSuffix(e.prefix, "/") {
		e.prefix += "/"
	}

	e.check("setup", func(ctx context.Context) (string, error) {
		var err error
		e.client, e.rec, err = e.newClient(e.region)
		if err != nil {
			return "", err
		}
		e.core = &minio.Core{Client: e.client}
		// Tempo's start-up probe.
		if _, err := e.core.ListObjects(e.bucket, e.prefix, "", "/", 1); err != nil {
			return "", fmt.Errorf("start-up ListObjects: %s", describe(err))
		}
		return fmt.Sprintf("minio-go %s, prefix %s, region %q", minioVersion(), e.prefix, e.region), nil
	})
	if e.client == nil {
		os.Exit(1)
	}

	if *clean {
		e.cleanup(true)
	} else {
		e.tempoChecks()
		e.lokiChecks()
		e.regionlessChecks()
		e.trailerChecks()
		if !*keep {
			e.cleanup(false)
		}
	}
	if e.failed {
		os.Exit(1)
	}
}

func (e *env) newClient(region string) (*minio.Client, *recorder, error) {
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		return nil, nil, err
	}
	tr.MaxIdleConnsPerHost = 100
	rec := newRecorder(tr)
	c, err := minio.New(e.endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(e.access, e.secret, ""),
		Secure:    false,
		Region:    region,
		Transport: rec,
	})
	return c, rec, err
}

// check runs one check with a deadline, so a hanging server fails the check
// instead of the whole run, and reports it.
func (e *env) check(name string, fn func(ctx context.Context) (string, error)) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	detail, err := func() (detail string, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return fn(ctx)
	}()
	res := result{Check: name, OK: err == nil, Detail: detail}
	if err != nil {
		e.failed = true
		res.Detail = err.Error()
		if detail != "" {
			res.Detail += " (" + detail + ")"
		}
	}
	_ = e.out.Encode(res)
	return res.OK
}

func (e *env) key(format string, args ...any) string {
	return e.prefix + fmt.Sprintf(format, args...)
}

func (e *env) track(keys ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range keys {
		e.written[k] = true
	}
}

func (e *env) untrack(keys ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range keys {
		delete(e.written, k)
	}
}

// live is every key the run has written and not deleted, sorted.
func (e *env) live() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.written))
	for k := range e.written {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// cleanup removes everything under the run prefix (the way Loki's and
// Tempo's test suites empty a bucket: list, then batch delete), aborts
// uploads left open, and checks that listings of the prefix come back empty.
func (e *env) cleanup(onlyClean bool) {
	e.check("cleanup/remove", func(ctx context.Context) (string, error) {
		var keys []string
		for obj := range e.client.ListObjects(ctx, e.bucket, minio.ListObjectsOptions{Prefix: e.prefix, Recursive: true}) {
			if obj.Err != nil {
				return "", fmt.Errorf("listing: %s", describe(obj.Err))
			}
			keys = append(keys, obj.Key)
		}
		var mismatch error
		if !onlyClean {
			mismatch = sameKeys(keys, e.live())
		}
		if err := e.removeAll(ctx, keys); err != nil {
			return "", err
		}
		e.untrack(keys...)
		aborted := 0
		for up := range e.client.ListIncompleteUploads(ctx, e.bucket, e.prefix, true) {
			if up.Err != nil {
				return "", fmt.Errorf("listing uploads: %s", describe(up.Err))
			}
			if err := e.core.AbortMultipartUpload(ctx, e.bucket, up.Key, up.UploadID); err != nil {
				return "", fmt.Errorf("abort %s: %s", up.Key, describe(err))
			}
			aborted++
		}
		if mismatch != nil {
			return "", fmt.Errorf("removed all, but the prefix did not hold exactly what the run left: %w", mismatch)
		}
		return fmt.Sprintf("removed %d objects, aborted %d uploads", len(keys), aborted), nil
	})
	e.check("cleanup/prefix-empty", func(ctx context.Context) (string, error) {
		for _, v1 := range []bool{false, true} {
			for obj := range e.client.ListObjects(ctx, e.bucket, minio.ListObjectsOptions{Prefix: e.prefix, Recursive: true, UseV1: v1}) {
				if obj.Err != nil {
					return "", fmt.Errorf("listing (v1=%v): %s", v1, describe(obj.Err))
				}
				return "", fmt.Errorf("listing (v1=%v) still shows %s", v1, obj.Key)
			}
		}
		page, err := e.core.ListObjects(e.bucket, e.prefix, "", "/", 1000)
		if err != nil {
			return "", fmt.Errorf("delimited v1 listing: %s", describe(err))
		}
		if n := len(page.Contents) + len(page.CommonPrefixes); n > 0 {
			return "", fmt.Errorf("delimited v1 listing shows %d entries", n)
		}
		for up := range e.client.ListIncompleteUploads(ctx, e.bucket, e.prefix, true) {
			if up.Err != nil {
				return "", fmt.Errorf("listing uploads: %s", describe(up.Err))
			}
			return "", fmt.Errorf("upload %s of %s still open", up.UploadID, up.Key)
		}
		return "v2, v1, delimited v1 and upload listings of the prefix are empty", nil
	})
}

// removeAll is a batch delete (POST ?delete) that fails on any per-key error.
func (e *env) removeAll(ctx context.Context, keys []string) error {
	ch := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		ch <- minio.ObjectInfo{Key: k}
	}
	close(ch)
	var errs []string
	for rerr := range e.client.RemoveObjects(ctx, e.bucket, ch, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Sprintf("%s: %s", rerr.ObjectName, describe(rerr.Err)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("RemoveObjects errors: %s", strings.Join(errs, "; "))
	}
	return nil
}

// describe shows the S3 error code and HTTP status minio-go saw, which is what
// Tempo and Loki branch on.
func describe(err error) string {
	if err == nil {
		return "no error"
	}
	r := minio.ToErrorResponse(err)
	if r.Code != "" || r.StatusCode != 0 {
		return fmt.Sprintf("%s (HTTP %d, code %q)", err.Error(), r.StatusCode, r.Code)
	}
	return err.Error()
}

func errCode(err error) string {
	return minio.ToErrorResponse(err).Code
}

func sameKeys(got, want []string) error {
	g := append([]string(nil), got...)
	w := append([]string(nil), want...)
	sort.Strings(g)
	sort.Strings(w)
	seen := map[string]int{}
	for _, k := range g {
		seen[k]++
	}
	var dup, missing, extra []string
	for k, n := range seen {
		if n > 1 {
			dup = append(dup, k)
		}
	}
	wanted := map[string]bool{}
	for _, k := range w {
		wanted[k] = true
		if seen[k] == 0 {
			missing = append(missing, k)
		}
	}
	for k := range seen {
		if !wanted[k] {
			extra = append(extra, k)
		}
	}
	if len(dup)+len(missing)+len(extra) == 0 {
		return nil
	}
	sort.Strings(dup)
	sort.Strings(extra)
	return fmt.Errorf("got %d, want %d; duplicated %s; missing %s; unexpected %s",
		len(g), len(w), short(dup), short(missing), short(extra))
}

func short(xs []string) string {
	if len(xs) > 5 {
		return fmt.Sprintf("%q… (%d)", xs[:5], len(xs))
	}
	return fmt.Sprintf("%q", xs)
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}
