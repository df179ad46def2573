package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

const (
	streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	testContentType  = "application/x-tss-test"
	mib              = 1 << 20
)

// tempoBlockFiles are the objects each block of the listing tree holds.
var tempoBlockFiles = []string{"bloom-0", "data.parquet", "meta.json"}

var tempoTenants = []string{"single-tenant", "tenant-2"}

// tempoTree is a Tempo bucket layout under the run prefix: blocks per tenant
// (block id strings, sorted), written by writeTempoTree.
type tempoTree struct {
	root   string // Tempo's configured storage prefix, with a trailing slash
	blocks map[string][]string
}

func (t *tempoTree) blockKey(tenant, block, file string) string {
	return t.root + tenant + "/" + block + "/" + file
}

func (e *env) tempoChecks() {
	objects := e.putChecks()
	e.multipartPutObject()
	parquetKey, parquet := e.explicitMultipart()
	e.abortedMultipart()
	if parquet != nil {
		e.rangeChecks(parquetKey, parquet)
	}
	if tree := e.writeTempoTree(); tree != nil {
		e.v1BlockListing(tree)
		e.v2ListBlocks(tree)
		e.findListing(tree)
		e.recursiveListings()
		e.compaction(tree)
		e.deletes(tree)
	}
	key := e.key("objects/size-%d", 5*mib)
	if data, ok := objects[key]; ok {
		e.hedgedReads(key, data)
	}
}

// getAll is Tempo's readAll: a GET through minio.Core, read to the end.
func (e *env) getAll(ctx context.Context, key string, opts minio.GetObjectOptions) ([]byte, minio.ObjectInfo, http.Header, error) {
	r, info, hdr, err := e.core.GetObject(ctx, e.bucket, key, opts)
	if err != nil {
		return nil, info, hdr, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return b, info, hdr, err
}

// sum is a short sha256 fingerprint for messages.
func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

func lookup(m map[string]string, key string) (string, bool) {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

func sameMap(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func (e *env) putChecks() map[string][]byte {
	written := map[string][]byte{}
	for _, size := range []int{0, 1, 64<<10 + 1, 5 * mib} {
		key := e.key("objects/size-%d", size)
		e.check(fmt.Sprintf("put/size-%d", size), func(ctx context.Context) (string, error) {
			data := randBytes(size)
			tags := map[string]string{"tier": "hot", "size": strconv.Itoa(size)}
			mark := e.rec.mark()
			info, err := e.client.PutObject(ctx, e.bucket, key, bytes.NewReader(data), int64(size), minio.PutObjectOptions{
				ContentType:  testContentType,
				UserMetadata: map[string]string{"Tss-Check": "put", "Tss-Size": strconv.Itoa(size)},
				UserTags:     tags,
				StorageClass: "STANDARD",
			})
			if err != nil {
				return "", fmt.Errorf("PutObject: %s", describe(err))
			}
			e.track(key)
			puts := filter(e.rec.since(mark), func(x exchange) bool { return x.Method == http.MethodPut })
			if len(puts) != 1 || puts[0].Query != "" {
				return "", fmt.Errorf("expected one single-request PUT, minio-go sent %d PUTs", len(puts))
			}
			p := puts[0]
			if p.ContentSHA256 != streamingPayload || p.DecodedLength != strconv.Itoa(size) {
				return "", fmt.Errorf("PUT not aws-chunked signed: x-amz-content-sha256 %q, x-amz-decoded-content-length %q", p.ContentSHA256, p.DecodedLength)
			}
			if p.Header.Get("X-Amz-Tagging") == "" || p.Header.Get("X-Amz-Storage-Class") != "STANDARD" {
				return "", fmt.Errorf("PUT lacked X-Amz-Tagging or X-Amz-Storage-Class")
			}

			got, oi, _, err := e.getAll(ctx, key, minio.GetObjectOptions{})
			if err != nil {
				return "", fmt.Errorf("GET: %s", describe(err))
			}
			if !bytes.Equal(got, data) {
				return "", fmt.Errorf("GET returned %d bytes (sha %s), want %d (sha %s)", len(got), sum(got), size, sum(data))
			}
			if oi.ContentType != testContentType {
				return "", fmt.Errorf("GET Content-Type %q, want %q", oi.ContentType, testContentType)
			}
			if oi.ETag == "" || oi.ETag != info.ETag {
				return "", fmt.Errorf("GET ETag %q, PUT answered %q", oi.ETag, info.ETag)
			}
			if oi.UserTagCount != len(tags) {
				return "", fmt.Errorf("GET x-amz-tagging-count %d, want %d", oi.UserTagCount, len(tags))
			}
			st, err := e.client.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{})
			if err != nil {
				return "", fmt.Errorf("StatObject: %s", describe(err))
			}
			if v, _ := lookup(st.UserMetadata, "Tss-Size"); v != strconv.Itoa(size) || st.Size != int64(size) {
				return "", fmt.Errorf("StatObject: size %d, user metadata %v", st.Size, st.UserMetadata)
			}
			if st.LastModified.IsZero() {
				return "", fmt.Errorf("StatObject: no Last-Modified")
			}
			gotTags, err := e.client.GetObjectTagging(ctx, e.bucket, key, minio.GetObjectTaggingOptions{})
			if err != nil {
				return "", fmt.Errorf("GetObjectTagging: %s", describe(err))
			}
			if !sameMap(gotTags.ToMap(), tags) {
				return "", fmt.Errorf("tags %v, want %v", gotTags.ToMap(), tags)
			}
			written[key] = data
			wire := fmt.Sprintf("aws-chunked, Content-Length %d", p.ContentLength)
			if p.ContentLength == 0 {
				// minio-go leaves the length unset for an empty body, so Go
				// sends the lone final chunk frame with Transfer-Encoding: chunked.
				wire = "aws-chunked final frame only, Transfer-Encoding: chunked"
			}
			return fmt.Sprintf("%d bytes byte-exact (%s); metadata, content type, %d tags kept; storage class as stored %q",
				size, wire, len(tags), st.StorageClass), nil
		})
	}
	return written
}

// multipartPutObject is Tempo's Write of a big object: PutObject with a
// known size above PartSize, which minio-go turns into a multipart upload
// with NumThreads parts in flight.
func (e *env) multipartPutObject() {
	const partSize = 16 * mib
	const parts = 5
	size := (parts-1)*partSize + 3*mib + 17
	key := e.key("objects/big")
	e.check("multipart/putobject-16MiB-parts", func(ctx context.Context) (string, error) {
		data := randBytes(size)
		mark := e.rec.mark()
		info, err := e.client.PutObject(ctx, e.bucket, key, bytes.NewReader(data), int64(size), minio.PutObjectOptions{
			PartSize: partSize, NumThreads: 4, ContentType: testContentType,
			UserTags: map[string]string{"tier": "hot"}, StorageClass: "STANDARD",
		})
		if err != nil {
			return "", fmt.Errorf("PutObject: %s", describe(err))
		}
		e.track(key)
		sent := e.rec.since(mark)
		inFlight := e.rec.maxPartsInFlight()
		ups := filter(sent, exchange.isPartUpload)
		if len(ups) != parts {
			return "", fmt.Errorf("minio-go sent %d part uploads, want %d", len(ups), parts)
		}
		sizes := map[int]string{}
		for _, u := range ups {
			q, _ := url.ParseQuery(u.Query)
			n, _ := strconv.Atoi(q.Get("partNumber"))
			sizes[n] = u.DecodedLength
			if u.ContentSHA256 != streamingPayload {
				return "", fmt.Errorf("part %d sent with x-amz-content-sha256 %q", n, u.ContentSHA256)
			}
		}
		for n := 1; n <= parts; n++ {
			want := partSize
			if n == parts {
				want = size - (parts-1)*partSize
			}
			if sizes[n] != strconv.Itoa(want) {
				return "", fmt.Errorf("part %d carried %q bytes, want %d", n, sizes[n], want)
			}
		}
		if inFlight < 2 || inFlight > 4 {
			return "", fmt.Errorf("%d parts were in flight at most, want 2 to 4", inFlight)
		}
		got, oi, _, err := e.getAll(ctx, key, minio.GetObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("GET: %s", describe(err))
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			return "", fmt.Errorf("GET returned %d bytes sha %s, want %d sha %s", len(got), sum(got), size, sum(data))
		}
		if oi.ETag != info.ETag || !strings.HasSuffix(oi.ETag, fmt.Sprintf("-%d", parts)) {
			return "", fmt.Errorf("GET ETag %q, upload answered %q; want a multipart ETag ending -%d", oi.ETag, info.ETag, parts)
		}
		return fmt.Sprintf("%d bytes in %d parts of 16 MiB, %d in flight at most, sha256 %s matches, ETag %s", size, parts, inFlight, sum(got), oi.ETag), nil
	})
}

// explicitMultipart is how Tempo writes data.parquet: one part per flush
// through minio.Core, completed without an abort path.
func (e *env) explicitMultipart() (string, []byte) {
	key := e.key("parquet/data.parquet")
	var whole []byte
	e.check("multipart/core-upload", func(ctx context.Context) (string, error) {
		opts := minio.PutObjectOptions{UserTags: map[string]string{"tier": "hot"}, StorageClass: "STANDARD",
			UserMetadata: map[string]string{"Tss-Check": "parquet"}}
		id, err := e.core.NewMultipartUpload(ctx, e.bucket, key, opts)
		if err != nil {
			return "", fmt.Errorf("NewMultipartUpload: %s", describe(err))
		}
		chunks := [][]byte{randBytes(5 * mib), randBytes(5 * mib), randBytes(123457)}
		var uploaded []minio.ObjectPart
		for i, c := range chunks {
			p, err := e.core.PutObjectPart(ctx, e.bucket, key, id, i+1, bytes.NewReader(c), int64(len(c)), minio.PutObjectPartOptions{})
			if err != nil {
				return "", fmt.Errorf("PutObjectPart %d: %s", i+1, describe(err))
			}
			uploaded = append(uploaded, p)
		}
		listed, err := e.core.ListObjectParts(ctx, e.bucket, key, id, 0, 1000)
		if err != nil {
			return "", fmt.Errorf("ListObjectParts: %s", describe(err))
		}
		if len(listed.ObjectParts) != len(chunks) {
			return "", fmt.Errorf("ListObjectParts shows %d parts, want %d", len(listed.ObjectParts), len(chunks))
		}
		for i, p := range listed.ObjectParts {
			if p.PartNumber != i+1 || p.Size != int64(len(chunks[i])) || strings.Trim(p.ETag, `"`) != strings.Trim(uploaded[i].ETag, `"`) {
				return "", fmt.Errorf("ListObjectParts entry %d: number %d size %d etag %s; uploaded size %d etag %s",
					i, p.PartNumber, p.Size, p.ETag, len(chunks[i]), uploaded[i].ETag)
			}
		}
		var complete []minio.CompletePart
		for _, p := range uploaded {
			complete = append(complete, minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag})
		}
		if _, err := e.core.CompleteMultipartUpload(ctx, e.bucket, key, id, complete, minio.PutObjectOptions{}); err != nil {
			return "", fmt.Errorf("CompleteMultipartUpload: %s", describe(err))
		}
		e.track(key)
		data := bytes.Join(chunks, nil)
		got, _, _, err := e.getAll(ctx, key, minio.GetObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("GET: %s", describe(err))
		}
		if !bytes.Equal(got, data) {
			return "", fmt.Errorf("GET returned %d bytes sha %s, want %d sha %s", len(got), sum(got), len(data), sum(data))
		}
		st, err := e.client.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("StatObject: %s", describe(err))
		}
		if v, _ := lookup(st.UserMetadata, "Tss-Check"); v != "parquet" {
			return "", fmt.Errorf("metadata given at NewMultipartUpload lost: %v", st.UserMetadata)
		}
		whole = data
		return fmt.Sprintf("3 parts (5 MiB, 5 MiB, 123457 B) listed then completed, %d bytes byte-exact", len(data)), nil
	})
	return key, whole
}

func (e *env) abortedMultipart() {
	key := e.key("parquet/aborted.parquet")
	e.check("multipart/abort", func(ctx context.Context) (string, error) {
		id, err := e.core.NewMultipartUpload(ctx, e.bucket, key, minio.PutObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("NewMultipartUpload: %s", describe(err))
		}
		if _, err := e.core.PutObjectPart(ctx, e.bucket, key, id, 1, bytes.NewReader(randBytes(1000)), 1000, minio.PutObjectPartOptions{}); err != nil {
			return "", fmt.Errorf("PutObjectPart: %s", describe(err))
		}
		open := func() (bool, error) {
			res, err := e.core.ListMultipartUploads(ctx, e.bucket, key, "", "", "", 1000)
			if err != nil {
				return false, fmt.Errorf("ListMultipartUploads: %s", describe(err))
			}
			viaCore := false
			for _, u := range res.Uploads {
				viaCore = viaCore || u.UploadID == id
			}
			viaClient := false
			for u := range e.client.ListIncompleteUploads(ctx, e.bucket, key, true) {
				if u.Err != nil {
					return false, fmt.Errorf("ListIncompleteUploads: %s", describe(u.Err))
				}
				viaClient = viaClient || u.UploadID == id
			}
			if viaCore != viaClient {
				return false, fmt.Errorf("ListMultipartUploads says open=%v, ListIncompleteUploads says %v", viaCore, viaClient)
			}
			return viaCore, nil
		}
		if ok, err := open(); err != nil || !ok {
			return "", fmt.Errorf("upload not listed while open: %v", err)
		}
		if err := e.core.AbortMultipartUpload(ctx, e.bucket, key, id); err != nil {
			return "", fmt.Errorf("AbortMultipartUpload: %s", describe(err))
		}
		if ok, err := open(); err != nil || ok {
			return "", fmt.Errorf("upload still listed after abort: %v", err)
		}
		if _, err := e.client.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{}); errCode(err) != minio.NoSuchKey {
			return "", fmt.Errorf("aborted upload's key: StatObject %s, want NoSuchKey", describe(err))
		}
		return "listed while open, gone from both upload listings after abort, no object left", nil
	})
}

// rangeChecks are Tempo's readRange (end one past the last byte wanted, so
// the footer read asks for bytes=<size-8>-<size>) and the other range forms
// minio-go can express.
func (e *env) rangeChecks(key string, data []byte) {
	size := int64(len(data))
	cases := []struct {
		name       string
		start, end int64
		want       []byte
	}{
		{"range/tempo-footer", size - 8, size, data[size-8:]},
		{"range/tempo-middle", 1000, 1000 + 4096, data[1000 : 1000+4097]},
		{"range/first-100", 0, 99, data[:100]},
		{"range/suffix-10", 0, -10, data[size-10:]},
		{"range/open-ended", size - 100, 0, data[size-100:]},
	}
	for _, c := range cases {
		e.check(c.name, func(ctx context.Context) (string, error) {
			var opts minio.GetObjectOptions
			if err := opts.SetRange(c.start, c.end); err != nil {
				return "", err
			}
			mark := e.rec.mark()
			got, _, hdr, err := e.getAll(ctx, key, opts)
			if err != nil {
				return "", fmt.Errorf("GET %s: %s", opts.Header().Get("Range"), describe(err))
			}
			gets := filter(e.rec.since(mark), func(x exchange) bool { return x.Method == http.MethodGet })
			if len(gets) != 1 || gets[0].Status != http.StatusPartialContent {
				return "", fmt.Errorf("want one GET answered 206, saw %d GETs, status %v", len(gets), statuses(gets))
			}
			if !bytes.Equal(got, c.want) {
				return "", fmt.Errorf("%s gave %d bytes, want %d", opts.Header().Get("Range"), len(got), len(c.want))
			}
			if c.name == "range/tempo-footer" {
				// What Tempo does with it: ReadFull of 8 bytes, then one more read hitting EOF.
				var opts2 minio.GetObjectOptions
				_ = opts2.SetRange(c.start, c.end)
				r, _, _, err := e.core.GetObject(ctx, e.bucket, key, opts2)
				if err != nil {
					return "", fmt.Errorf("second footer GET: %s", describe(err))
				}
				buf := make([]byte, 8)
				_, err = io.ReadFull(r, buf)
				var dummy [1]byte
				n, eof := r.Read(dummy[:])
				r.Close()
				if err != nil || !bytes.Equal(buf, c.want) || n != 0 || eof != io.EOF {
					return "", fmt.Errorf("Tempo-style footer read: err %v, extra read %d bytes (%v)", err, n, eof)
				}
			}
			return fmt.Sprintf("%s → 206 %s, %d bytes exact", opts.Header().Get("Range"), hdr.Get("Content-Range"), len(got)), nil
		})
	}
}

func statuses(xs []exchange) []int {
	var out []int
	for _, x := range xs {
		out = append(out, x.Status)
	}
	return out
}

func uuidString(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func parseUUID(s string) ([16]byte, bool) {
	var out [16]byte
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 || len(s) != 36 {
		return out, false
	}
	copy(out[:], raw)
	return out, true
}

// writeTempoTree writes 2 tenants × 10 blocks × 3 files, a tenant index and
// the cluster seed, in parallel like a busy Tempo. Block ids are random with
// their first byte spread so every ListBlocks range holds blocks.
func (e *env) writeTempoTree() *tempoTree {
	// Tempo's storage prefix is the run prefix itself, so a proxy hashing
	// below it (hash_prefix) spreads blocks, as it would for a real Tempo.
	tree := &tempoTree{root: e.prefix, blocks: map[string][]string{}}
	ok := e.check("tempo/write-tree", func(ctx context.Context) (string, error) {
		var keys []string
		for _, tenant := range tempoTenants {
			for i := 0; i < 10; i++ {
				var id [16]byte
				copy(id[:], randBytes(16))
				id[0] = byte(i*25) + id[0]%25
				block := uuidString(id)
				tree.blocks[tenant] = append(tree.blocks[tenant], block)
				for _, f := range tempoBlockFiles {
					keys = append(keys, tree.blockKey(tenant, block, f))
				}
			}
			sort.Strings(tree.blocks[tenant])
			keys = append(keys, tree.root+tenant+"/index.json.gz")
		}
		keys = append(keys, tree.root+"tempo_cluster_seed.json")
		work := make(chan string)
		errs := make(chan error, len(keys))
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range work {
					body := []byte(`{"key":"` + k + `"}`)
					_, err := e.client.PutObject(ctx, e.bucket, k, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{
						UserTags: map[string]string{"tier": "hot"}, StorageClass: "STANDARD",
					})
					if err != nil {
						errs <- fmt.Errorf("PutObject %s: %s", k, describe(err))
						continue
					}
					e.track(k)
				}
			}()
		}
		for _, k := range keys {
			work <- k
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			return "", err
		}
		return fmt.Sprintf("%d objects for %d tenants", len(keys), len(tempoTenants)), nil
	})
	if !ok {
		return nil
	}
	return tree
}

// v1BlockListing is Tempo's List: V1 with delimiter "/", looping on
// NextMarker while truncated, reading only CommonPrefixes.
func (e *env) v1BlockListing(tree *tempoTree) {
	e.check("list-v1/tenants", func(ctx context.Context) (string, error) {
		got, pages, err := e.v1Prefixes(tree.root, 1)
		if err != nil {
			return "", err
		}
		// Every directory at the root counts as a tenant to Tempo, including
		// the other checks' ones.
		var want []string
		for _, p := range e.childPrefixes(tree.root) {
			want = append(want, strings.TrimSuffix(strings.TrimPrefix(p, tree.root), "/"))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return "", fmt.Errorf("tenants listed %q, want %q", got, want)
		}
		return fmt.Sprintf("%d tenant directories %q in %d pages of max-keys=1", len(got), got, pages), nil
	})
	for _, tenant := range tempoTenants {
		e.check("list-v1/blocks-"+tenant, func(ctx context.Context) (string, error) {
			got, pages, err := e.v1Prefixes(tree.root+tenant+"/", 3)
			if err != nil {
				return "", err
			}
			if fmt.Sprint(got) != fmt.Sprint(tree.blocks[tenant]) {
				return "", fmt.Errorf("blocks listed %q, want %q", got, tree.blocks[tenant])
			}
			return fmt.Sprintf("%d blocks, sorted, no duplicates, in %d pages of max-keys=3", len(got), pages), nil
		})
	}
}

func (e *env) v1Prefixes(prefix string, maxKeys int) ([]string, int, error) {
	var got []string
	marker := ""
	for pages := 1; pages <= 200; pages++ {
		res, err := e.core.ListObjects(e.bucket, prefix, marker, "/", maxKeys)
		if err != nil {
			return nil, pages, fmt.Errorf("ListObjects marker %q: %s", marker, describe(err))
		}
		if n := len(res.Contents) + len(res.CommonPrefixes); n > maxKeys {
			return nil, pages, fmt.Errorf("page of %d entries for max-keys=%d", n, maxKeys)
		}
		for _, cp := range res.CommonPrefixes {
			got = append(got, strings.Split(strings.TrimPrefix(cp.Prefix, prefix), "/")[0])
		}
		if !res.IsTruncated {
			return got, pages, nil
		}
		if res.NextMarker == "" {
			return nil, pages, fmt.Errorf("truncated page %d without NextMarker: Tempo would start over", pages)
		}
		if res.NextMarker <= marker {
			return nil, pages, fmt.Errorf("NextMarker %q does not advance past %q", res.NextMarker, marker)
		}
		marker = res.NextMarker
	}
	return nil, 200, fmt.Errorf("listing did not end within 200 pages")
}

// v2ListBlocks is Tempo's ListBlocks: three goroutines over slices of the
// block-id space, each V2 with start-after=<tenant>/<range start> and the
// continuation token in the same call, stopping at the first id past its range.
func (e *env) v2ListBlocks(tree *tempoTree) {
	bounds := [][16]byte{{0x00}, {0x55}, {0xaa}}
	for _, tenant := range tempoTenants {
		e.check("list-v2/listblocks-"+tenant, func(ctx context.Context) (string, error) {
			prefix := tree.root + tenant + "/"
			found := make([][]string, len(bounds))
			pages := make([]int, len(bounds))
			errs := make([]error, len(bounds))
			var wg sync.WaitGroup
			for i := range bounds {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					lo := bounds[i]
					last := i == len(bounds)-1
					var hi [16]byte
					if !last {
						hi = bounds[i+1]
					}
					startAfter := prefix + uuidString(lo)
					var res minio.ListBucketV2Result
					for res.IsTruncated = true; res.IsTruncated; {
						if pages[i]++; pages[i] > 200 {
							errs[i] = fmt.Errorf("range %d did not end within 200 pages", i)
							return
						}
						var err error
						res, err = e.core.ListObjectsV2(e.bucket, prefix, startAfter, res.NextContinuationToken, "", 4)
						if err != nil {
							errs[i] = fmt.Errorf("range %d: ListObjectsV2: %s", i, describe(err))
							return
						}
						for _, c := range res.Contents {
							parts := strings.Split(strings.TrimPrefix(c.Key, prefix), "/")
							if len(parts) != 2 {
								continue
							}
							id, ok := parseUUID(parts[0])
							if !ok {
								continue
							}
							if bytes.Compare(id[:], lo[:]) < 0 {
								errs[i] = fmt.Errorf("range %d: key %s below the range's start-after", i, c.Key)
								return
							}
							if !last && bytes.Compare(id[:], hi[:]) >= 0 {
								return
							}
							if n := len(found[i]); n > 0 && found[i][n-1] >= c.Key {
								errs[i] = fmt.Errorf("range %d: %s came after %s", i, c.Key, found[i][n-1])
								return
							}
							found[i] = append(found[i], c.Key)
						}
					}
				}(i)
			}
			wg.Wait()
			var all []string
			for i := range bounds {
				if errs[i] != nil {
					return "", errs[i]
				}
				if len(found[i]) == 0 {
					return "", fmt.Errorf("range %d found no blocks", i)
				}
				all = append(all, found[i]...)
			}
			var want []string
			for _, b := range tree.blocks[tenant] {
				for _, f := range tempoBlockFiles {
					want = append(want, tree.blockKey(tenant, b, f))
				}
			}
			if err := sameKeys(all, want); err != nil {
				return "", err
			}
			return fmt.Sprintf("%d keys exactly once over 3 ranges (%d/%d/%d keys, %v pages of max-keys=4)",
				len(all), len(found[0]), len(found[1]), len(found[2]), pages), nil
		})
	}
}

// findListing is Tempo's Find: recursive V2 through Core, token only.
func (e *env) findListing(tree *tempoTree) {
	e.check("list-v2/find", func(ctx context.Context) (string, error) {
		var keys []string
		token := ""
		pages := 0
		for truncated := true; truncated; {
			if pages++; pages > 500 {
				return "", fmt.Errorf("listing did not end within 500 pages")
			}
			res, err := e.core.ListObjectsV2(e.bucket, tree.root, "", token, "", 5)
			if err != nil {
				return "", fmt.Errorf("ListObjectsV2: %s", describe(err))
			}
			for _, c := range res.Contents {
				if c.LastModified.IsZero() {
					return "", fmt.Errorf("%s listed without LastModified", c.Key)
				}
				keys = append(keys, c.Key)
			}
			truncated, token = res.IsTruncated, res.NextContinuationToken
		}
		if !sort.StringsAreSorted(keys) {
			return "", fmt.Errorf("keys out of order")
		}
		var want []string
		for _, k := range e.live() {
			if strings.HasPrefix(k, tree.root) {
				want = append(want, k)
			}
		}
		if err := sameKeys(keys, want); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d keys in %d pages of max-keys=5", len(keys), pages), nil
	})
}

// recursiveListings use minio-go's high-level iterator, V2 and V1, with
// default and tiny pages, over everything the run has written.
func (e *env) recursiveListings() {
	for _, v := range []struct {
		name string
		opts minio.ListObjectsOptions
	}{
		{"list/recursive-v2", minio.ListObjectsOptions{Recursive: true}},
		{"list/recursive-v2-max-keys-7", minio.ListObjectsOptions{Recursive: true, MaxKeys: 7}},
		{"list/recursive-v1", minio.ListObjectsOptions{Recursive: true, UseV1: true}},
		{"list/recursive-v1-max-keys-7", minio.ListObjectsOptions{Recursive: true, UseV1: true, MaxKeys: 7}},
	} {
		e.check(v.name, func(ctx context.Context) (string, error) {
			opts := v.opts
			opts.Prefix = e.prefix
			var keys []string
			for obj := range e.client.ListObjects(ctx, e.bucket, opts) {
				if obj.Err != nil {
					return "", fmt.Errorf("ListObjects: %s", describe(obj.Err))
				}
				keys = append(keys, obj.Key)
			}
			if !sort.StringsAreSorted(keys) {
				return "", fmt.Errorf("keys out of order")
			}
			if err := sameKeys(keys, e.live()); err != nil {
				return "", err
			}
			return fmt.Sprintf("%d keys, sorted, each once", len(keys)), nil
		})
	}
}

// compaction is Tempo's MarkBlockCompacted (server-side copy of meta.json to
// meta.compacted.json, then delete meta.json), once as Tempo does it through
// Core and once replacing the tags.
func (e *env) compaction(tree *tempoTree) {
	tenant := tempoTenants[0]
	e.check("copy/mark-compacted", func(ctx context.Context) (string, error) {
		block := tree.blocks[tenant][0]
		src, dst := tree.blockKey(tenant, block, "meta.json"), tree.blockKey(tenant, block, "meta.compacted.json")
		before := time.Now()
		if _, err := e.core.CopyObject(ctx, e.bucket, src, e.bucket, dst, nil, minio.CopySrcOptions{}, minio.PutObjectOptions{}); err != nil {
			return "", fmt.Errorf("CopyObject: %s", describe(err))
		}
		e.track(dst)
		if err := e.core.RemoveObject(ctx, e.bucket, src, minio.RemoveObjectOptions{}); err != nil {
			return "", fmt.Errorf("RemoveObject meta.json: %s", describe(err))
		}
		e.untrack(src)
		got, info, _, err := e.getAll(ctx, dst, minio.GetObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("GET copy: %s", describe(err))
		}
		if want := `{"key":"` + src + `"}`; string(got) != want {
			return "", fmt.Errorf("copy holds %q, want %q", got, want)
		}
		// Tempo takes the compaction time from Last-Modified (second precision on the wire).
		if info.LastModified.Before(before.Add(-2*time.Second)) || info.LastModified.After(time.Now().Add(2*time.Second)) {
			return "", fmt.Errorf("copy Last-Modified %s, copied at %s", info.LastModified, before)
		}
		if _, err := e.client.StatObject(ctx, e.bucket, src, minio.StatObjectOptions{}); errCode(err) != minio.NoSuchKey {
			return "", fmt.Errorf("meta.json after delete: %s, want NoSuchKey", describe(err))
		}
		return fmt.Sprintf("copied, source deleted, Last-Modified %s", info.LastModified.Format(time.RFC3339)), nil
	})
	e.check("copy/replace-tags", func(ctx context.Context) (string, error) {
		block := tree.blocks[tenant][1]
		src, dst := tree.blockKey(tenant, block, "meta.json"), tree.blockKey(tenant, block, "meta.compacted.json")
		newTags := map[string]string{"compacted": "true", "level": "2"}
		mark := e.rec.mark()
		if _, err := e.client.CopyObject(ctx,
			minio.CopyDestOptions{Bucket: e.bucket, Object: dst, ReplaceTags: true, UserTags: newTags},
			minio.CopySrcOptions{Bucket: e.bucket, Object: src}); err != nil {
			return "", fmt.Errorf("CopyObject: %s", describe(err))
		}
		e.track(dst)
		copies := filter(e.rec.since(mark), func(x exchange) bool { return x.Header.Get("X-Amz-Copy-Source") != "" })
		if len(copies) != 1 || copies[0].Header.Get("X-Amz-Tagging-Directive") != "REPLACE" {
			return "", fmt.Errorf("expected one copy request with x-amz-tagging-directive: REPLACE")
		}
		tags, err := e.client.GetObjectTagging(ctx, e.bucket, dst, minio.GetObjectTaggingOptions{})
		if err != nil {
			return "", fmt.Errorf("GetObjectTagging copy: %s", describe(err))
		}
		if !sameMap(tags.ToMap(), newTags) {
			return "", fmt.Errorf("copy tags %v, want %v", tags.ToMap(), newTags)
		}
		srcTags, err := e.client.GetObjectTagging(ctx, e.bucket, src, minio.GetObjectTaggingOptions{})
		if err != nil {
			return "", fmt.Errorf("GetObjectTagging source: %s", describe(err))
		}
		if !sameMap(srcTags.ToMap(), map[string]string{"tier": "hot"}) {
			return "", fmt.Errorf("source tags changed to %v", srcTags.ToMap())
		}
		st, err := e.client.StatObject(ctx, e.bucket, dst, minio.StatObjectOptions{})
		if err != nil {
			return "", fmt.Errorf("StatObject copy: %s", describe(err))
		}
		if st.LastModified.IsZero() || time.Since(st.LastModified) > time.Minute {
			return "", fmt.Errorf("copy Last-Modified %v", st.LastModified)
		}
		if err := e.core.RemoveObject(ctx, e.bucket, src, minio.RemoveObjectOptions{}); err != nil {
			return "", fmt.Errorf("RemoveObject meta.json: %s", describe(err))
		}
		e.untrack(src)
		return fmt.Sprintf("copy tagged %v, source keeps its own, Last-Modified %s", tags.ToMap(), st.LastModified.Format(time.RFC3339)), nil
	})
}

func (e *env) deletes(tree *tempoTree) {
	tenant := tempoTenants[0]
	e.check("delete/existing-and-missing", func(ctx context.Context) (string, error) {
		key := tree.blockKey(tenant, tree.blocks[tenant][2], "bloom-0")
		missing := tree.blockKey(tenant, tree.blocks[tenant][2], "never-written")
		mark := e.rec.mark()
		if err := e.client.RemoveObject(ctx, e.bucket, key, minio.RemoveObjectOptions{}); err != nil {
			return "", fmt.Errorf("RemoveObject existing: %s", describe(err))
		}
		e.untrack(key)
		if err := e.client.RemoveObject(ctx, e.bucket, missing, minio.RemoveObjectOptions{}); err != nil {
			return "", fmt.Errorf("RemoveObject missing (minio-go wants 204): %s", describe(err))
		}
		dels := filter(e.rec.since(mark), func(x exchange) bool { return x.Method == http.MethodDelete })
		if fmt.Sprint(statuses(dels)) != "[204 204]" {
			return "", fmt.Errorf("DELETE statuses %v, want [204 204]", statuses(dels))
		}
		if _, err := e.client.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{}); errCode(err) != minio.NoSuchKey {
			return "", fmt.Errorf("deleted key: StatObject %s, want NoSuchKey", describe(err))
		}
		return "both answered 204; deleted key is NoSuchKey", nil
	})
	e.check("delete/clear-block", func(ctx context.Context) (string, error) {
		prefix := tree.root + tenant + "/" + tree.blocks[tenant][3] + "/"
		res, err := e.core.ListObjects(e.bucket, prefix, "", "/", 0)
		if err != nil {
			return "", fmt.Errorf("ListObjects: %s", describe(err))
		}
		var keys []string
		for _, c := range res.Contents {
			keys = append(keys, c.Key)
		}
		var want []string
		for _, f := range tempoBlockFiles {
			want = append(want, prefix+f)
		}
		if err := sameKeys(keys, want); err != nil {
			return "", fmt.Errorf("block listing: %w", err)
		}
		for _, k := range keys {
			if err := e.core.RemoveObject(ctx, e.bucket, k, minio.RemoveObjectOptions{}); err != nil {
				return "", fmt.Errorf("RemoveObject %s: %s", k, describe(err))
			}
			e.untrack(k)
		}
		res, err = e.core.ListObjects(e.bucket, prefix, "", "/", 0)
		if err != nil {
			return "", fmt.Errorf("ListObjects after: %s", describe(err))
		}
		if len(res.Contents) > 0 {
			return "", fmt.Errorf("%d objects left in the block", len(res.Contents))
		}
		return "one V1 page listed the block's 3 files; deleted one by one; block empty", nil
	})
	e.check("delete/batch-with-missing", func(ctx context.Context) (string, error) {
		other := tempoTenants[1]
		var keys, existing []string
		for _, b := range tree.blocks[other][4:7] {
			for _, f := range tempoBlockFiles {
				keys = append(keys, tree.blockKey(other, b, f))
				existing = append(existing, tree.blockKey(other, b, f))
			}
			keys = append(keys, tree.blockKey(other, b, "meta.compacted.json"))
		}
		if err := e.removeAll(ctx, keys); err != nil {
			return "", err
		}
		e.untrack(existing...)
		for _, k := range existing {
			if _, err := e.client.StatObject(ctx, e.bucket, k, minio.StatObjectOptions{}); errCode(err) != minio.NoSuchKey {
				return "", fmt.Errorf("%s after batch delete: %s, want NoSuchKey", k, describe(err))
			}
		}
		return fmt.Sprintf("%d keys over 3 blocks (%d missing) removed without errors", len(keys), len(keys)-len(existing)), nil
	})
}

// hedgedReads are the two identical GETs Tempo's hedged transport sends at once.
func (e *env) hedgedReads(key string, data []byte) {
	e.check("hedged-reads", func(ctx context.Context) (string, error) {
		var wg sync.WaitGroup
		got := make([][]byte, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range got {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				got[i], _, _, errs[i] = e.getAll(ctx, key, minio.GetObjectOptions{})
			}(i)
		}
		close(start)
		wg.Wait()
		for i := range got {
			if errs[i] != nil {
				return "", fmt.Errorf("GET %d: %s", i, describe(errs[i]))
			}
			if !bytes.Equal(got[i], data) {
				return "", fmt.Errorf("GET %d gave %d bytes sha %s, want %d sha %s", i, len(got[i]), sum(got[i]), len(data), sum(data))
			}
		}
		return fmt.Sprintf("two concurrent GETs of %d bytes both exact", len(data)), nil
	})
}
