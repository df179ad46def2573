package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/minio/minio-go/v7"
)

func minioVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/minio/minio-go/v7" {
				if dep.Replace != nil {
					return dep.Replace.Version
				}
				return dep.Version
			}
		}
	}
	return "unknown"
}

// lokiUpload is objstore's Upload: PutObject with the size known, 4 threads,
// optional conditions.
func (e *env) lokiUpload(ctx context.Context, key string, body []byte, cond func(*minio.PutObjectOptions)) (minio.UploadInfo, error) {
	opts := minio.PutObjectOptions{NumThreads: 4, UserMetadata: map[string]string{}}
	if cond != nil {
		cond(&opts)
	}
	info, err := e.client.PutObject(ctx, e.bucket, key, bytes.NewReader(body), int64(len(body)), opts)
	if err == nil {
		e.track(key)
	}
	return info, err
}

// lokiGet is objstore's getRange: GetObject, then a zero-length Read to make
// the request happen and surface a missing key.
func (e *env) lokiGet(ctx context.Context, key string, opts minio.GetObjectOptions) ([]byte, minio.ObjectInfo, error) {
	obj, err := e.client.GetObject(ctx, e.bucket, key, opts)
	if err != nil {
		return nil, minio.ObjectInfo{}, err
	}
	defer obj.Close()
	if _, err := obj.Read(nil); err != nil {
		return nil, minio.ObjectInfo{}, err
	}
	st, err := obj.Stat()
	if err != nil {
		return nil, st, err
	}
	b, err := io.ReadAll(obj)
	return b, st, err
}

func (e *env) lokiChecks() {
	// Loki's keys sit at the bucket root: here, the run prefix.
	root := e.prefix
	chunk := root + "fake/1a2b3c4d5e6f7081/18f3a0c2b00:18f3a0d1e00:9c1d2e3f"
	chunkData := randBytes(200_000)
	var tables = map[string][]string{
		"index_19700": {"fake", "tenant-b"},
		"index_19701": {"fake"},
		"index_19702": {"tenant-b", "tenant-c"},
	}
	wrote := e.check("loki/write", func(ctx context.Context) (string, error) {
		if _, err := e.lokiUpload(ctx, chunk, chunkData, nil); err != nil {
			return "", fmt.Errorf("chunk upload: %s", describe(err))
		}
		n := 1
		for i := 0; i < 4; i++ {
			k := fmt.Sprintf("%sfake/1a2b3c4d5e6f7081/18f3a0c2b%02d:18f3a0d1e%02d:%08x", root, i, i, i)
			if _, err := e.lokiUpload(ctx, k, randBytes(1000), nil); err != nil {
				return "", fmt.Errorf("chunk upload: %s", describe(err))
			}
			n++
		}
		for table, tenants := range tables {
			for _, tenant := range tenants {
				for _, f := range []string{"1700000000-ingester-0-1700000000.tsdb.gz", "1700000900-compactor-1700000000.tsdb.gz"} {
					k := root + "index/" + table + "/" + tenant + "/" + f
					if _, err := e.lokiUpload(ctx, k, randBytes(500), nil); err != nil {
						return "", fmt.Errorf("index upload: %s", describe(err))
					}
					n++
				}
			}
		}
		return fmt.Sprintf("%d chunks and TSDB index files", n), nil
	})
	if !wrote {
		return
	}

	e.check("loki/get-chunk", func(ctx context.Context) (string, error) {
		got, st, err := e.lokiGet(ctx, chunk, minio.GetObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("GET: %s", describe(err))
		}
		if !bytes.Equal(got, chunkData) || st.Size != int64(len(chunkData)) {
			return "", fmt.Errorf("got %d bytes (stat size %d), want %d", len(got), st.Size, len(chunkData))
		}
		return fmt.Sprintf("key with colons, %d bytes exact", len(got)), nil
	})
	for _, r := range []struct {
		name        string
		off, length int64
	}{{"loki/get-range", 1000, 5000}, {"loki/get-range-to-end", 150_000, -1}} {
		e.check(r.name, func(ctx context.Context) (string, error) {
			var opts minio.GetObjectOptions
			want := chunkData[r.off:]
			if r.length != -1 {
				_ = opts.SetRange(r.off, r.off+r.length-1)
				want = chunkData[r.off : r.off+r.length]
			} else {
				_ = opts.SetRange(r.off, 0)
			}
			got, _, err := e.lokiGet(ctx, chunk, opts)
			if err != nil {
				return "", fmt.Errorf("GET %s: %s", opts.Header().Get("Range"), describe(err))
			}
			if !bytes.Equal(got, want) {
				return "", fmt.Errorf("%s gave %d bytes, want %d", opts.Header().Get("Range"), len(got), len(want))
			}
			return fmt.Sprintf("%s → %d bytes exact", opts.Header().Get("Range"), len(got)), nil
		})
	}

	e.check("loki/exists", func(ctx context.Context) (string, error) {
		st, err := e.client.StatObject(ctx, e.bucket, chunk, minio.StatObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("HEAD existing: %s", describe(err))
		}
		if st.Size != int64(len(chunkData)) || st.ETag == "" || st.LastModified.IsZero() {
			return "", fmt.Errorf("HEAD existing: size %d etag %q last-modified %v", st.Size, st.ETag, st.LastModified)
		}
		missing := root + "fake/1a2b3c4d5e6f7081/0:0:deadbeef"
		if _, err := e.client.StatObject(ctx, e.bucket, missing, minio.StatObjectOptions{}); errCode(err) != minio.NoSuchKey {
			return "", fmt.Errorf("HEAD missing: %s, want NoSuchKey", describe(err))
		}
		if _, _, err := e.lokiGet(ctx, missing, minio.GetObjectOptions{}); errCode(err) != minio.NoSuchKey {
			return "", fmt.Errorf("GET missing: %s, want NoSuchKey", describe(err))
		}
		return "HEAD gives size, ETag, Last-Modified; HEAD and GET of a missing key give NoSuchKey", nil
	})

	e.check("loki/get-if-match", func(ctx context.Context) (string, error) {
		st, err := e.client.StatObject(ctx, e.bucket, chunk, minio.StatObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("HEAD: %s", describe(err))
		}
		var match, mismatch minio.GetObjectOptions
		_ = match.SetMatchETag(st.ETag)
		_ = mismatch.SetMatchETag("0123456789abcdef0123456789abcdef")
		if got, _, err := e.lokiGet(ctx, chunk, match); err != nil || !bytes.Equal(got, chunkData) {
			return "", fmt.Errorf("GET If-Match current ETag: %s, %d bytes", describe(err), len(got))
		}
		if _, _, err := e.lokiGet(ctx, chunk, mismatch); errCode(err) != "PreconditionFailed" {
			return "", fmt.Errorf("GET If-Match wrong ETag: %s, want PreconditionFailed", describe(err))
		}
		if _, err := e.client.StatObject(ctx, e.bucket, chunk, match); err != nil {
			return "", fmt.Errorf("HEAD If-Match current ETag: %s", describe(err))
		}
		if _, err := e.client.StatObject(ctx, e.bucket, chunk, mismatch); errCode(err) != "PreconditionFailed" {
			return "", fmt.Errorf("HEAD If-Match wrong ETag: %s, want PreconditionFailed", describe(err))
		}
		return "GET and HEAD with If-Match: current ETag served, wrong ETag PreconditionFailed", nil
	})

	// objstore's GetAndReplace: read the ETag, write back with If-Match; a
	// writer holding a stale ETag loses with 412. Create-only is If-None-Match: *.
	e.check("loki/conditional-put", func(ctx context.Context) (string, error) {
		key := root + "index/delete_requests/delete_requests.gz"
		v1 := randBytes(3000)
		first, err := e.lokiUpload(ctx, key, v1, func(o *minio.PutObjectOptions) { o.SetMatchETagExcept("*") })
		if err != nil {
			return "", fmt.Errorf("If-None-Match: * on a new key: %s", describe(err))
		}
		if _, err := e.lokiUpload(ctx, key, randBytes(10), func(o *minio.PutObjectOptions) { o.SetMatchETagExcept("*") }); errCode(err) != "PreconditionFailed" {
			return "", fmt.Errorf("If-None-Match: * on an existing key: %s, want PreconditionFailed", describe(err))
		}
		_, st, err := e.lokiGet(ctx, key, minio.GetObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("GET: %s", describe(err))
		}
		if st.ETag != first.ETag {
			return "", fmt.Errorf("GET ETag %q, PUT answered %q", st.ETag, first.ETag)
		}
		v2 := randBytes(3001)
		mark := e.rec.mark()
		second, err := e.lokiUpload(ctx, key, v2, func(o *minio.PutObjectOptions) { o.SetMatchETag(st.ETag) })
		if err != nil {
			return "", fmt.Errorf("If-Match current ETag: %s", describe(err))
		}
		puts := filter(e.rec.since(mark), func(x exchange) bool { return x.Method == http.MethodPut })
		if len(puts) != 1 || puts[0].Header.Get("If-Match") != `"`+st.ETag+`"` {
			return "", fmt.Errorf("expected one PUT with If-Match: %q", `"`+st.ETag+`"`)
		}
		if second.ETag == first.ETag {
			return "", fmt.Errorf("new content kept ETag %q", first.ETag)
		}
		if _, err := e.lokiUpload(ctx, key, randBytes(3002), func(o *minio.PutObjectOptions) { o.SetMatchETag(first.ETag) }); errCode(err) != "PreconditionFailed" {
			return "", fmt.Errorf("If-Match stale ETag: %s, want PreconditionFailed", describe(err))
		}
		got, _, err := e.lokiGet(ctx, key, minio.GetObjectOptions{})
		if err != nil || !bytes.Equal(got, v2) {
			return "", fmt.Errorf("after the refused PUT the object is not the second version: %s, %d bytes", describe(err), len(got))
		}
		return "create-only and If-Match replace succeed; stale If-Match and If-None-Match: * on an existing key give PreconditionFailed and change nothing", nil
	})

	for _, v := range []struct {
		name string
		opts minio.ListObjectsOptions
	}{
		{"loki/list-tables-v2", minio.ListObjectsOptions{}},
		{"loki/list-tables-v2-max-keys-1", minio.ListObjectsOptions{MaxKeys: 1}},
		{"loki/list-tables-v1", minio.ListObjectsOptions{UseV1: true}},
		{"loki/list-tables-v1-max-keys-1", minio.ListObjectsOptions{UseV1: true, MaxKeys: 1}},
	} {
		e.check(v.name, func(ctx context.Context) (string, error) {
			opts := v.opts
			opts.Prefix = root + "index/"
			want := e.childPrefixes(opts.Prefix)
			got, err := e.listNames(ctx, opts)
			if err != nil {
				return "", err
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return "", fmt.Errorf("listed %q, want %q", got, want)
			}
			return fmt.Sprintf("%d table prefixes merged, each once, in order", len(got)), nil
		})
	}
	e.check("loki/list-table-tenants", func(ctx context.Context) (string, error) {
		got, err := e.listNames(ctx, minio.ListObjectsOptions{Prefix: root + "index/index_19702/"})
		if err != nil {
			return "", err
		}
		want := []string{root + "index/index_19702/tenant-b/", root + "index/index_19702/tenant-c/"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return "", fmt.Errorf("listed %q, want %q", got, want)
		}
		files, err := e.listNames(ctx, minio.ListObjectsOptions{Prefix: root + "index/index_19702/tenant-c/"})
		if err != nil {
			return "", err
		}
		if len(files) != 2 || !strings.HasSuffix(files[0], ".tsdb.gz") {
			return "", fmt.Errorf("tenant directory lists %q", files)
		}
		return "tenant prefixes of a table, then its two .tsdb.gz files", nil
	})
	e.check("loki/list-chunks", func(ctx context.Context) (string, error) {
		got, err := e.listNames(ctx, minio.ListObjectsOptions{Prefix: root + "fake/", Recursive: true})
		if err != nil {
			return "", err
		}
		var want []string
		for _, k := range e.live() {
			if strings.HasPrefix(k, root+"fake/") {
				want = append(want, k)
			}
		}
		if err := sameKeys(got, want); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d chunk keys with colons listed exactly", len(got)), nil
	})
	e.check("loki/delete-chunk", func(ctx context.Context) (string, error) {
		if err := e.client.RemoveObject(ctx, e.bucket, chunk, minio.RemoveObjectOptions{}); err != nil {
			return "", fmt.Errorf("RemoveObject: %s", describe(err))
		}
		e.untrack(chunk)
		if _, err := e.client.StatObject(ctx, e.bucket, chunk, minio.StatObjectOptions{}); errCode(err) != minio.NoSuchKey {
			return "", fmt.Errorf("after delete: %s, want NoSuchKey", describe(err))
		}
		return "deleted; HEAD gives NoSuchKey", nil
	})
}

// childPrefixes are the distinct "directories" right below prefix among the
// keys the run has written, sorted.
func (e *env) childPrefixes(prefix string) []string {
	var out []string
	for _, k := range e.live() {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.Index(rest, "/"); i >= 0 {
			p := prefix + rest[:i+1]
			if len(out) == 0 || out[len(out)-1] != p {
				out = append(out, p)
			}
		}
	}
	return out
}

// listNames is objstore's Iter: keys and common prefixes (as keys ending
// in "/") in one stream.
func (e *env) listNames(ctx context.Context, opts minio.ListObjectsOptions) ([]string, error) {
	var got []string
	for obj := range e.client.ListObjects(ctx, e.bucket, opts) {
		if obj.Err != nil {
			return nil, fmt.Errorf("ListObjects: %s", describe(obj.Err))
		}
		got = append(got, obj.Key)
	}
	return got, nil
}

// regionlessChecks use a client without a region, as Tempo and Loki build
// one when none is configured: it asks the bucket's location first (signed
// for us-east-1) and signs everything after with the answer.
func (e *env) regionlessChecks() {
	e.check("region/location-lookup", func(ctx context.Context) (string, error) {
		client, rec, err := e.newClient("")
		if err != nil {
			return "", err
		}
		key := e.key("regionless/object")
		body := randBytes(70_000)
		if _, err := client.PutObject(ctx, e.bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			return "", fmt.Errorf("PutObject: %s", describe(err))
		}
		e.track(key)
		obj, err := client.GetObject(ctx, e.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("GetObject: %s", describe(err))
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || !bytes.Equal(got, body) {
			return "", fmt.Errorf("GET: %s, %d bytes of %d", describe(err), len(got), len(body))
		}
		if st, err := client.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{}); err != nil || st.Size != int64(len(body)) {
			return "", fmt.Errorf("StatObject: %s, size %d", describe(err), st.Size)
		}
		sent := rec.since(0)
		lookups := filter(sent, func(x exchange) bool { return x.Query == "location=" })
		if len(sent) == 0 || sent[0].Query != "location=" || len(lookups) != 1 {
			return "", fmt.Errorf("want exactly one GET ?location= first; sent %d requests, %d lookups", len(sent), len(lookups))
		}
		if lookups[0].Method != http.MethodGet || lookups[0].Path != "/"+e.bucket+"/" || lookups[0].Status != http.StatusOK || lookups[0].scope() != "us-east-1" {
			return "", fmt.Errorf("lookup was %s %s signed for %q, answered %d", lookups[0].Method, lookups[0].Path, lookups[0].scope(), lookups[0].Status)
		}
		region := sent[1].scope()
		for _, x := range sent[1:] {
			if x.scope() != region || region == "" {
				return "", fmt.Errorf("requests after the lookup signed for %q and %q", region, x.scope())
			}
		}
		return fmt.Sprintf("GET /%s/?location= answered 200; %d requests after it signed for %q; put+get+stat work", e.bucket, len(sent)-1, region), nil
	})
}
